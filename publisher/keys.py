"""One cache key per distinct render, however the URL spelled it.

The key covers the notebook (its id, since a copy elsewhere reads other data
files, and its content), the chart, every parameter's value
with defaults filled in (so spelling a default out changes nothing), and the
render options. Values are already typed, so ``1`` and ``1.0`` for a float
are the same ``1.0`` here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from .options import RenderOptions
from .parameters import Value

VERSION = "2"  # bump when the render itself changes what it produces


def render_key(
    notebook_id: str,
    digest: str,
    chart: str,
    params: Mapping[str, Value],
    options: RenderOptions,
) -> str:
    canonical = json.dumps(
        [
            VERSION,
            notebook_id,
            digest,
            chart,
            sorted(params.items()),
            [options.fmt, options.dpi, options.width, options.height],
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
