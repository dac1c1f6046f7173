"""The part of publisher that runs inside the kernel.

Its source is sent to every kernel when it starts (so the kernel needs no
publisher install) and lives there as the module ``_publisher``. It does two
things the server cannot do from outside: put a reused kernel back into the
state of a fresh one after each render, and make matplotlib print figures in
the format, dpi and pixel size the URL asked for, whatever the notebook does
with ``%matplotlib inline``.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import Any

_options: dict[str, Any] = {"dpi": None, "width": None, "height": None}
_rc_defaults: dict[str, Any] = {}
_original_print_figure: Any = None
_home = os.getcwd()
_kernel: dict[str, Any] = {}  # what a render may change and reset() puts back


def warm(modules: list[str]) -> None:
    """Import what renders will need, once per kernel, and remember a clean matplotlib."""
    global _original_print_figure
    for name in modules:
        importlib.import_module(name)
    import matplotlib

    # The inline backend applies its rc on first use; take the snapshot after it.
    import matplotlib.pyplot  # noqa: F401
    from IPython.core import pylabtools

    # The backend and interactive mode belong to the kernel, not to a render.
    _rc_defaults.update(
        (k, v) for k, v in matplotlib.rcParams.items() if k not in ("backend", "interactive")
    )
    if _original_print_figure is None:
        _original_print_figure = pylabtools.print_figure
        # select_figure_formats looks this name up when it binds a formatter,
        # so every formatter it makes (ours or a notebook's %matplotlib) goes here.
        pylabtools.print_figure = _print_figure  # type: ignore[assignment]
    # What is loaded now lives as long as the kernel: keep the collector off it.
    gc.collect()
    gc.freeze()


def snapshot() -> None:
    """Remember the kernel as a fresh notebook finds it; in its own cell, after ``warm``."""
    import matplotlib
    from IPython import get_ipython

    _kernel.update(
        backend=matplotlib.get_backend(),
        path=list(sys.path),
        environ=dict(os.environ),
        modules=set(sys.modules),
        # %matplotlib agg drops the inline backend's hook; %load_ext adds hooks of its own
        events={event: list(hooks) for event, hooks in get_ipython().events.callbacks.items()},
        roots=set(),  # notebook folders seen: modules from there belong to one notebook
    )


def reset() -> None:
    """Make this kernel look fresh again; runs after a render, off the request's path."""
    import matplotlib
    import matplotlib.pyplot as plt
    from IPython import get_ipython

    shell = get_ipython()
    # reset() would flush the output cache with a full gc.collect(), tens of
    # milliseconds; renders run with store_history=False, so there is no cache.
    full_cache, shell.displayhook.do_full_cache = shell.displayhook.do_full_cache, 0
    try:
        shell.reset(new_session=False, aggressive=False)
    finally:
        shell.displayhook.do_full_cache = full_cache
    plt.close("all")
    if matplotlib.get_backend() != _kernel["backend"]:
        plt.switch_backend(_kernel["backend"])
    matplotlib.interactive(True)  # as IPython's activate_matplotlib leaves every notebook
    matplotlib.rcParams.update(_rc_defaults)  # type: ignore[arg-type]
    for event, hooks in _kernel["events"].items():
        shell.events.callbacks[event][:] = hooks
    sys.path[:] = _kernel["path"]
    _restore_environ(_kernel["environ"])
    _forget_local_modules()
    os.chdir(_home)


def _restore_environ(saved: dict[str, str]) -> None:
    """Put the environment back key by key: never empty, even for a moment."""
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def _forget_local_modules() -> None:
    """Drop modules a render imported from the notebooks' folder (a helper.py beside a
    notebook), so the next notebook imports its own; libraries stay loaded, wherever they
    were installed from."""
    roots = [os.path.realpath(root) for root in _kernel["roots"]]
    for name in set(sys.modules) - _kernel["modules"]:
        module = sys.modules[name]
        places = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
        if any(place and _inside(os.path.realpath(place), roots) for place in places):
            del sys.modules[name]
    importlib.invalidate_caches()


def _inside(path: str, roots: list[str]) -> bool:
    return any(os.path.commonpath([path, root]) == root for root in roots)


def prepare(
    root: str, cwd: str, fmt: str, dpi: float | None, width: int | None, height: int | None
) -> None:
    """Point a clean kernel at this render: its folder, and how to print its figures."""
    from IPython import get_ipython
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib_inline.config import InlineBackend

    _kernel["roots"].add(root)
    os.chdir(cwd)
    _options.update(dpi=dpi, width=width, height=height)
    InlineBackend.instance().figure_formats = {fmt}
    select_figure_formats(get_ipython(), {fmt})


def _print_figure(fig: Any, fmt: str = "png", bbox_inches: Any = "tight", **kwargs: Any) -> Any:
    """Print with the render's options: dpi, and an exact pixel size when one was asked for."""
    dpi = _options["dpi"] or kwargs.pop("dpi", None) or fig.dpi
    kwargs["dpi"] = dpi
    width, height = _options["width"], _options["height"]
    if width or height:
        w_in, h_in = fig.get_size_inches()
        if width and not height:
            height = width * h_in / w_in
        elif height and not width:
            width = height * w_in / h_in
        fig.set_size_inches(width / dpi, height / dpi)
        bbox_inches = None
    return _original_print_figure(fig, fmt=fmt, bbox_inches=bbox_inches, **kwargs)
