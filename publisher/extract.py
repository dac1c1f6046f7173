"""The chart's bytes, taken from the outputs of the cells a render ran."""

from __future__ import annotations

import base64
from typing import Any

from .errors import ImageTooLarge, InvalidOption, NoImage
from .kernel_side import ERROR_MIME

FORMATS: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
}


def chart_image(outputs: list[list[dict[str, Any]]], fmt: str, whole_notebook: bool) -> bytes:
    """The last image the chart displayed: in its own cell (the last one run), or anywhere.

    An image the kernel refused to draw, for its size, counts as displayed: the
    chart is then that refusal, a 400 when the URL asked for the size.
    """
    mime = FORMATS[fmt]
    cells = outputs if whole_notebook else outputs[-1:]
    for cell in reversed(cells):
        for output in reversed(cell):
            data = output.get("data", {})
            if mime in data:
                return _decode(data[mime], mime)
            refused = data.get(ERROR_MIME)
            if refused is not None:
                if refused["asked"]:
                    raise InvalidOption(refused["message"], option="_width/_height/_dpi")
                raise ImageTooLarge(refused["message"])
    where = "the notebook" if whole_notebook else "the chart cell"
    other = sorted(
        {m for cell in cells for o in cell for m in o.get("data", {}) if m.startswith("image/")}
    )
    hint = f" (it displayed {', '.join(other)})" if other else ""
    raise NoImage(f"{where} displayed no {fmt} image{hint}")


def _decode(data: str | list[str], mime: str) -> bytes:
    text = "".join(data) if isinstance(data, list) else data
    if mime == "image/svg+xml":
        return text.encode("utf-8")
    return base64.b64decode(text)
