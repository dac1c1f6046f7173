"""The trusted slower path: what a notebook shows when it runs whole in a new kernel.

Tests compare what the server serves with this, pixel for pixel, rather than
with their own expectations.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image, ImageChops


async def fresh_image(path: Path) -> bytes:
    """The last PNG the chart cell shows when the notebook runs whole in a new kernel."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    await client.async_execute()
    (cell,) = [c for c in nb.cells if "chart" in c.get("metadata", {}).get("tags", [])]
    images = [o["data"]["image/png"] for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: a fresh kernel shows no image"
    return base64.b64decode(images[-1])


def difference(served: bytes, expected: bytes) -> str | None:
    """None when both PNGs hold the same pixels, else what differs."""
    a = Image.open(io.BytesIO(served)).convert("RGBA")
    b = Image.open(io.BytesIO(expected)).convert("RGBA")
    if a.size != b.size:
        return f"size {a.size}, fresh kernel {b.size}"
    box = ImageChops.difference(a, b).getbbox()
    return None if box is None else f"pixels differ within {box}"
