"""How a chart is printed, as the URL's ``_`` keys and its suffix ask.

Its own module, so that the pure parsing modules (``query``, ``keys``) need
nothing from the one that drives kernels.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RenderOptions:
    """``fmt`` is png, svg or pdf; the rest may be left to the figure."""

    fmt: str = "png"
    dpi: float | None = None
    width: int | None = None
    height: int | None = None
