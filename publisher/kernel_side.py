"""The part of publisher that runs inside the kernel.

Its source is sent to every kernel when it starts (so the kernel needs no
publisher install) and lives there as the module ``_publisher``. It does two
things the server cannot do from outside: put a reused kernel back into the
state of a fresh one after each render, and make matplotlib print figures in
the format, dpi and pixel size the URL asked for, whatever the notebook does
with ``%matplotlib inline``. And, while a render runs, it records the files the
notebook reads (an audit hook), so a chart can follow its data.

"Fresh" means what a new kernel looks like when a notebook's first figure
appears: the inline backend loaded, its hooks registered, matplotlib's
defaults in force. ``warm`` brings a kernel to that point once; ``snapshot``
records it; ``reset`` puts back every kind of state listed in ``RESTORED``
and reports whether anything it cannot restore (a
monkeypatched library class, a rebound library global) was changed, so the
server retires that kernel instead of lending it again.
"""

from __future__ import annotations

import copy
import gc
import importlib
import importlib.util
import json
import operator
import os
import site
import sys
import threading
import types
import warnings
from collections.abc import Callable
from typing import Any

# How the kernel tells the server things: display outputs of these types.
ERROR_MIME = "application/vnd.publisher.error+json"  # the image would be too big
RESET_MIME = "application/vnd.publisher.reset+json"  # what a reset could not restore
ANSWERED_MIME = "application/vnd.publisher.answered+json"  # the render's outputs end here

_options: dict[str, Any] = {"dpi": None, "width": None, "height": None, "max_pixels": None}
_original_print_figure: Any = None
_home = os.getcwd()
_saved: dict[str, Any] = {}  # what a render may change and reset() puts back
_watched: list[
    tuple[str, Any, tuple[Any, ...], dict[str, Any]]
] = []  # library namespaces reset cannot restore: name, namespace, its values, public values
_LIBRARIES = ("numpy", "pandas", "matplotlib", "PIL", "cycler", "dateutil")
_ALWAYS = ("numpy", "pandas", "matplotlib.pyplot")
# Namespaces a render legitimately changes (the backend's globals, figure bookkeeping);
# reset() restores them whole, so they are not watched.
_NAMESPACES = (
    "matplotlib",
    "matplotlib.pyplot",
    "matplotlib._pylab_helpers",
    "matplotlib.backends",
    "matplotlib.units",
    "matplotlib_inline.backend_inline",
    "IPython.core.pylabtools",
)


_recording = False  # a render is running: the files it opens for reading are its data
_reads: dict[str, tuple[int, int]] = {}  # path -> size, mtime_ns when first opened; in order
_written: set[str] = set()  # opened for writing in this render: its own output, not its data
_reading: dict[str, Any] = {"limit": 1000, "dropped": 0, "reported": -1, "report": None}
_ignored: dict[str, Any] = {"all": (), "for": None, "now": ()}  # places, the root they suit
_WRITING = (os.O_WRONLY, os.O_RDWR)
_FONT_FILES = (".ttf", ".otf", ".ttc", ".afm", ".pfa", ".pfb")


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Note a file the render opens; runs for every audit event, so it is lean."""
    if not _recording:
        return
    if event == "open":
        path, mode, flags = args
        if mode is None:  # os.open: the flags say
            writes = flags & os.O_ACCMODE in _WRITING
        else:
            writes = "r" not in mode or "+" in mode
    elif event == "sqlite3.connect":
        path, writes = args[0], False
        if path in (":memory:", "", b""):
            return
    else:
        return
    if isinstance(path, int):
        return  # an already open descriptor
    _note(os.path.abspath(os.fsdecode(path)), writes)


def _note(path: str, writes: bool) -> None:
    """Remember a file as it is when first read (a later change is a change), or as written."""
    if writes:
        if path != _reading["report"]:
            _written.add(path)
        return
    if path in _reads or path.startswith(_ignored["now"]):
        return
    if path.endswith(_FONT_FILES) or "/__pycache__/" in path:
        return
    if len(_reads) >= _reading["limit"]:
        _reading["dropped"] += 1
        return
    try:
        stat = os.stat(path)
    except OSError:
        return  # the open will fail too
    _reads[path] = (stat.st_size, stat.st_mtime_ns)


def _ignored_places() -> tuple[str, ...]:
    """Where no notebook keeps its data: the Python installation, matplotlib's and
    IPython's own files, and the system's."""
    import matplotlib
    from IPython.paths import get_ipython_dir

    places = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages()}
    places |= {site.getusersitepackages(), get_ipython_dir()}
    places |= {matplotlib.get_cachedir(), matplotlib.get_configdir(), matplotlib.get_data_path()}
    places |= {"/proc", "/sys", "/dev", "/etc", "/usr/share", "/usr/lib", "/run"}
    found = {os.path.realpath(p) for p in places} | {os.path.abspath(p) for p in places}
    return tuple(place.rstrip(os.sep) + os.sep for place in sorted(found))


def _ignore_outside(root: str) -> None:
    """The ignored places, less any that holds the notebooks (``/usr`` for a system Python)."""
    if _ignored["for"] != root:
        inside = root.rstrip(os.sep) + os.sep
        kept = tuple(place for place in _ignored["all"] if not inside.startswith(place))
        _ignored.update({"for": root, "now": kept})


def _report_reads() -> None:
    """After each cell of a render, what it has read so far, in a file the server reads.

    A file rather than a display output: ``%%capture`` or ``clear_output``
    in the notebook cannot swallow it, and the cells' outputs stay exactly
    what a fresh kernel shows.
    """
    report = _reading["report"]
    count = len(_reads) + len(_written) + _reading["dropped"]
    if not _recording or report is None or count == _reading["reported"]:
        return
    files = [[path, *seen] for path, seen in _reads.items() if path not in _written]
    with open(report, "w") as out:  # a write: not a read of the render's
        json.dump({"files": files, "dropped": _reading["dropped"]}, out)
    _reading["reported"] = count


def _draw_last_cell() -> None:
    """pyplot's post_execute hook for a render's last cell, less the work nobody sees.

    When a cell ends, pyplot's hook draws every stale figure onto its canvas, and
    the inline backend then prints it, which draws it twice more (a tight crop
    measures, then renders at the cropped size). After the render's last cell no
    other cell runs, so the hook's raster is never read, and of its effects only
    the state it leaves in the figure can reach the image:

    - A figure with a layout engine (constrained, tight, compressed) lays itself
      out again at every draw, so one draw more moves things: it gets a draw
      without rendering, which updates every artist exactly as the full draw does
      and skips only the ``renderer.draw_*`` calls. So does every figure when the
      URL sets the size or dpi: the print then resizes the figure after this draw.
    - Any other figure comes out of the inline backend's own print the same with
      or without that draw (``tests/test_redundant_draw.py`` holds matplotlib to
      it, chart type by chart type), so it is only marked drawn; the print draws
      it as always. ``draw_event`` listeners are notebook code that could count
      draws: a figure with one is drawn without rendering instead.

    Either way pyplot's hook then finds the figure up to date and leaves it.
    This spares about 15% of a render's CPU. Earlier cells keep the full draw:
    a later cell may read a canvas's pixels.
    """
    _render["depth"] = max(0, _render["depth"] - 1)  # a blank cell ends without starting
    if _render["depth"] or not _last_request():
        return  # a cell run from within a cell (%%capture) ended, or not the last request
    import matplotlib
    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from matplotlib._pylab_helpers import Gcf
    from matplotlib.backend_bases import FigureCanvasBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    hooks = get_ipython().events.callbacks["post_execute"]
    if not matplotlib.is_interactive() or plt._draw_all_if_interactive not in hooks:
        return  # pyplot would not draw at all
    default_print = not (_options["dpi"] or _options["width"] or _options["height"])
    for manager in Gcf.get_all_fig_managers():
        canvas: Any = manager.canvas  # its idle-draw flag is private: typed stubs omit it
        kind, figure = type(canvas), canvas.figure
        if (
            not figure.stale
            or kind.draw is not FigureCanvasAgg.draw  # a GUI or widget canvas: its own way
            or kind.draw_idle is not FigureCanvasBase.draw_idle
            or canvas._is_idle_drawing
        ):
            continue
        if (
            default_print
            and figure.get_layout_engine() is None
            and not canvas.callbacks.callbacks.get("draw_event")
        ):
            figure.stale = False
        else:
            with canvas._idle_draw_cntx():  # what draw_idle holds while it draws
                figure.draw_without_rendering()


def _last_request() -> bool:
    """Whether the execute request running now is the render's last."""
    return 0 < _render["requests"] == _render["started"]


def _count_requests(kernel: Any) -> Callable[[], None]:
    """The kernel's pre_handler_hook, which also counts a render's execute requests.

    Requests, not cells: a cell may run cells within it (``%%capture``, ``%run``),
    and a blank one ends without starting, but each request is one cell of ours.
    """
    handled = kernel.pre_handler_hook

    def pre_handler_hook() -> None:
        handled()
        if _render["requests"] and _executing(kernel):
            _render["started"] += 1

    return pre_handler_hook


def _reset_after_reply(kernel: Any) -> Callable[[], None]:
    """The kernel's post_handler_hook, which also resets the kernel after a render's last
    request when the server asked for it.

    ipykernel calls it once a request's reply is sent and before the kernel says
    it is idle, so the report reaches the server as that cell's last output, and
    the server need not send a request of its own (a round trip, and a few
    milliseconds of CPU on each side). It runs after every callback the
    notebook could register for the cell's end.

    A mark goes out first, with the cell's error as its reply gave it: the reset
    runs notebook code too (finalizers), which may print, or kill the kernel. The
    server takes what comes after the mark as the reset's, and if the kernel dies,
    the mark tells it that every output of the render had already come, so the
    render still counts (or fails as it did); only the kernel is lost.
    """
    handled = kernel.post_handler_hook

    def post_handler_hook() -> None:
        handled()
        if _render["reset_asked"] and _last_request() and _executing(kernel):
            from IPython import get_ipython
            from IPython.display import publish_display_data

            publish_display_data({ANSWERED_MIME: {"error": _reply_error(get_ipython())}})
            _sent(kernel)
            reset()

    return post_handler_hook


def _reply_error(shell: Any) -> list[str] | None:
    """The request's error as ipykernel's execute reply names it: [ename, evalue], or None.

    The same test as ipykernel's ``do_execute``: a display formatter that raised
    makes the reply an error too (with no exception: "NoneType").
    """
    result = shell.last_execution_result
    failed = result is not None and not result.success
    if not failed and not getattr(shell, "_last_traceback_during_displayhook", False):
        return None
    error = None if result is None else result.error_before_exec or result.error_in_exec
    return [type(error).__name__, str(error)]


def _sent(kernel: Any) -> None:
    """Until the IOPub thread has handed every output so far to ZeroMQ: a process that
    ends soon after must not take them with it."""
    done = threading.Event()
    kernel.iopub_thread.schedule(done.set)
    done.wait(1)


def _executing(kernel: Any) -> bool:
    return bool(kernel.get_parent("shell").get("header", {}).get("msg_type") == "execute_request")


def _cell_starts() -> None:
    """pre_execute: cells run within a cell (``%%capture``) nest, and only the outer one
    ends the request."""
    _render["depth"] += 1


_render: dict[str, Any] = {
    "requests": 0,  # execute requests this render makes (set by prepare)
    "started": 0,  # of them, started so far (prepare runs in the first)
    "reset_asked": False,  # by the server, for after the last (set by prepare)
    "depth": 0,  # of cells run within cells
}


def warm(modules: list[str]) -> None:
    """Import what renders will need, and bring matplotlib to the state of a first figure.

    The data libraries are imported whatever ``modules`` says: their state is only
    restored, and their classes only watched, when they are loaded before the snapshot.
    """
    global _original_print_figure
    for name in modules:
        importlib.import_module(name)
    for name in _ALWAYS:
        if importlib.util.find_spec(name.partition(".")[0]) is not None:
            importlib.import_module(name)
    import matplotlib.pyplot as plt
    from IPython.core import pylabtools

    if _original_print_figure is None:
        _ignored["all"] = _ignored_places()
        sys.addaudithook(_audit)  # for good: an audit hook cannot be removed
        from IPython import get_ipython

        shell = get_ipython()
        events = shell.events
        events.register("post_execute", _report_reads)
        # Ahead of pyplot's hook, so it finds the figures already drawn (not stale).
        events.callbacks["post_execute"].insert(0, _draw_last_cell)
        events.callbacks["pre_execute"].insert(0, _cell_starts)
        kernel = shell.kernel
        kernel.pre_handler_hook = _count_requests(kernel)
        kernel.post_handler_hook = _reset_after_reply(kernel)
        _original_print_figure = pylabtools.print_figure
        # select_figure_formats looks this name up when it binds a formatter,
        # so every formatter it makes (ours or a notebook's %matplotlib) goes here.
        pylabtools.print_figure = _print_figure  # type: ignore[assignment]
        _guard_raster_size()
    # A new kernel loads the inline backend at its first figure, and only then registers
    # the hooks that show a figure when a cell ends: do it now, so the snapshot has them.
    plt._get_backend_mod()
    # Print one figure in every format: libraries fill their lazy caches and plugin
    # tables now, once, rather than in the first render (and in the snapshot's diff).
    figure = plt.figure(figsize=(1, 1))
    figure.add_subplot().plot([0, 1])
    for fmt in ("png", "svg", "pdf"):
        _original_print_figure(figure, fmt=fmt)
    plt.close(figure)


def snapshot() -> None:
    """Remember the kernel as a fresh notebook finds it; in its own cell, after ``warm``."""
    for name, (save, _) in RESTORED.items():
        _saved[name] = save()
    _saved["roots"] = set()  # notebook folders seen: modules from there belong to one notebook
    # where libraries are installed: never a notebook's own module, even inside its folder
    _saved["installed"] = [
        os.path.realpath(p) for p in {*site.getsitepackages(), site.getusersitepackages()}
    ]
    _watch_libraries()
    # What is loaded now lives as long as the kernel: keep the collector off it.
    gc.collect()
    gc.freeze()


def reset() -> None:
    """Make this kernel look fresh again, and tell the server whether it could.

    Runs after a render: from ``_reset_after_reply``, or when the server asks
    (a render that stopped before its last cell). The answer is a display output
    rather than a value, so nothing lands in the notebook's ``_`` or ``Out``.
    """
    global _guarding, _recording
    from IPython import get_ipython

    _guarding = _recording = False
    _render.update(requests=0, started=0, reset_asked=False, depth=0)
    shell = get_ipython()
    # reset() would flush the output cache with a full gc.collect(), tens of
    # milliseconds; renders run with store_history=False, so there is no cache.
    full_cache, shell.displayhook.do_full_cache = shell.displayhook.do_full_cache, 0
    try:
        shell.reset(new_session=False, aggressive=False)
    finally:
        shell.displayhook.do_full_cache = full_cache
    import matplotlib.pyplot as plt

    plt.close("all")
    for name, (_, restore) in RESTORED.items():
        restore(_saved[name])
    _forget_local_modules()
    from IPython.display import publish_display_data

    publish_display_data({RESET_MIME: {"changed": changed_libraries(), "rss": resident_bytes()}})


def resident_bytes() -> int:
    """This kernel's resident memory now: the server replaces a kernel that has grown."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak, which is what grew
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def changed_libraries() -> list[str]:
    """The library namespaces reset() does not restore that a render changed.

    A name starting with ``_`` is a library's own cache, and a submodule appears
    when it is first imported: neither is a change. When only such things
    changed, they become the new normal, so the next check is quick again.
    """
    changed = []
    for i, (name, namespace, values, public) in enumerate(_watched):
        if len(namespace) == len(values) and all(map(operator.is_, namespace.values(), values)):
            continue
        now = _public(namespace)
        if now.keys() != public.keys() or any(
            now[key] is not value for key, value in public.items()
        ):
            changed.append(name)
        else:
            _watched[i] = (name, namespace, tuple(namespace.values()), public)
    return changed


def _public(namespace: Any) -> dict[str, Any]:
    """The public values of a namespace; compared by identity (``operator.is_``), not with
    ``id()``, which raises an audit event per call: tens of thousands per reset."""
    return {
        key: value
        for key, value in namespace.items()
        if not key.startswith("_") and not isinstance(value, types.ModuleType)
    }


def _watch_libraries() -> None:
    """Record the public modules of the data libraries, and the public classes they expose.

    A notebook that rebinds ``pandas.DataFrame.plot`` or ``matplotlib.axes.Axes.bar``
    leaves a kernel no reset can clean: such a kernel is retired. Comparing a few
    thousand values by identity costs about 2 ms, so it is done after every render.
    """
    _watched.clear()
    seen: set[int] = set()  # id() here is once per kernel, not once per reset
    for name, module in list(sys.modules.items()):
        parts = name.split(".")
        if (
            parts[0] not in _LIBRARIES
            or name in _NAMESPACES
            or any(p.startswith("_") for p in parts)
            or not isinstance(module, types.ModuleType)
        ):
            continue
        namespaces: list[tuple[str, Any]] = [(name, vars(module))]
        for attribute, value in list(vars(module).items()):
            if (
                isinstance(value, type)
                and not attribute.startswith("_")
                and value.__module__.split(".")[0] in _LIBRARIES
                and id(value) not in seen
            ):
                seen.add(id(value))
                namespaces.append((f"{name}.{attribute}", value.__dict__))
        _watched.extend((n, ns, tuple(ns.values()), _public(ns)) for n, ns in namespaces)


# -- what reset() restores: a name, how to save it, how to put it back ------------------


def _save_rc() -> dict[str, Any]:
    import matplotlib

    rc: Any = matplotlib.rcParams
    return {key: copy.deepcopy(rc._get(key)) for key in rc}


def _restore_rc(saved: dict[str, Any]) -> None:
    """Only the keys a render changed: validating all three hundred costs milliseconds."""
    import matplotlib

    rc: Any = matplotlib.rcParams
    changed = {k: v for k, v in saved.items() if not _same(rc._get(k), v)}
    for key, value in changed.items():
        rc._set(key, copy.deepcopy(value))


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays compare elementwise
        return a is b


def _save_namespaces() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Module and function attributes the backend machinery keeps its state in."""
    import matplotlib.pyplot as plt
    from matplotlib_inline import backend_inline

    objects: list[Any] = [sys.modules[name] for name in _NAMESPACES if name in sys.modules]
    objects += [backend_inline.show, backend_inline.configure_inline_support, plt.show]
    objects += [getattr(plt, "draw_if_interactive", None)]
    return [(vars(o), copy.copy(vars(o))) for o in objects if hasattr(o, "__dict__")]


def _restore_namespaces(saved: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    for namespace, values in saved:
        for key in [k for k in namespace if k not in values]:
            if not isinstance(namespace[key], types.ModuleType):  # a submodule stays imported
                del namespace[key]
        for key, value in values.items():
            if namespace.get(key, _MISSING) is not value:
                namespace[key] = copy.copy(value) if type(value) in (list, dict) else value


_MISSING = object()


def _save_shell() -> dict[str, Any]:
    from IPython import get_ipython

    # configure_inline_support keeps the rc it overrode here, for %matplotlib <other>
    return dict(getattr(get_ipython(), "_saved_rcParams", {}))


def _restore_shell(saved: dict[str, Any]) -> None:
    from IPython import get_ipython

    get_ipython()._saved_rcParams = dict(saved)


def _save_inline_config() -> dict[str, Any]:
    from matplotlib_inline.config import InlineBackend

    config = InlineBackend.instance()
    return {name: copy.deepcopy(getattr(config, name)) for name in _INLINE_TRAITS}


def _restore_inline_config(saved: dict[str, Any]) -> None:
    from matplotlib_inline.config import InlineBackend

    config = InlineBackend.instance()
    for name, value in saved.items():
        if getattr(config, name) != value:
            setattr(config, name, copy.deepcopy(value))


_INLINE_TRAITS = ("figure_formats", "print_figure_kwargs", "close_figures", "rc", "figure_format")


def _save_events() -> dict[str, list[Any]]:
    from IPython import get_ipython

    # %matplotlib agg drops the inline backend's hook; %load_ext adds hooks of its own
    return {event: list(hooks) for event, hooks in get_ipython().events.callbacks.items()}


def _restore_events(saved: dict[str, list[Any]]) -> None:
    from IPython import get_ipython

    callbacks = get_ipython().events.callbacks
    for event, hooks in saved.items():
        if callbacks[event] != hooks:
            callbacks[event][:] = hooks


def _save_warnings() -> tuple[list[Any], Any]:
    return list(warnings.filters), warnings.showwarning


def _restore_warnings(saved: tuple[list[Any], Any]) -> None:
    filters, show = saved
    warnings.resetwarnings()  # public, and it invalidates every "shown once" registry
    current: Any = warnings.filters
    current[:] = filters
    warnings.showwarning = show


def _save_numpy() -> tuple[Any, Any]:
    import numpy

    return numpy.geterr(), numpy.get_printoptions()


def _restore_numpy(saved: tuple[Any, Any]) -> None:
    import numpy

    errors, printing = saved
    if numpy.geterr() != errors:
        numpy.seterr(**errors)
    if numpy.get_printoptions() != printing:
        numpy.set_printoptions(**printing)


def _save_pandas() -> tuple[dict[str, Any], dict[str, Any]] | None:
    if "pandas" not in sys.modules:
        return None
    from pandas._config import config

    keys = set(config._registered_options) - set(config._deprecated_options)
    values = {key: copy.deepcopy(config.get_option(key)) for key in keys}
    return copy.deepcopy(config._global_config), values


def _restore_pandas(saved: tuple[dict[str, Any], dict[str, Any]] | None) -> None:
    if saved is None:
        return
    from pandas._config import config

    whole, values = saved
    if config._global_config == whole:  # one comparison in C for the usual case
        return
    for key, value in values.items():
        if not _same(config.get_option(key), value):
            config.set_option(key, copy.deepcopy(value))


def _save_units() -> dict[Any, Any]:
    import matplotlib.units

    return dict(matplotlib.units.registry)  # pandas' register_matplotlib_converters adds here


def _restore_units(saved: dict[Any, Any]) -> None:
    import matplotlib.units

    registry = matplotlib.units.registry
    if registry != saved:
        registry.clear()
        registry.update(saved)


def _save_registries() -> tuple[dict[str, Any], dict[str, Any], list[Any], list[Any]]:
    """Named colormaps and color sequences a notebook registers, and fonts it adds."""
    import matplotlib
    from matplotlib import font_manager

    fonts: Any = font_manager.fontManager
    mpl: Any = matplotlib  # the registries' dicts are private: typed stubs omit them
    return (
        dict(mpl.colormaps._cmaps),
        dict(mpl.color_sequences._color_sequences),
        list(fonts.ttflist),
        list(fonts.afmlist),
    )


def _restore_registries(saved: tuple[dict[str, Any], dict[str, Any], list[Any], list[Any]]) -> None:
    import matplotlib
    from matplotlib import font_manager

    colormaps, sequences, ttf, afm = saved
    mpl: Any = matplotlib
    for current, kept in (
        (mpl.colormaps._cmaps, colormaps),
        (mpl.color_sequences._color_sequences, sequences),
    ):
        if current != kept:
            current.clear()
            current.update(kept)
    fonts: Any = font_manager.fontManager
    if len(fonts.ttflist) != len(ttf) or len(fonts.afmlist) != len(afm):
        fonts.ttflist[:], fonts.afmlist[:] = ttf, afm
        fonts._findfont_cached.cache_clear()


def _save_gc() -> tuple[bool, tuple[int, ...]]:
    return gc.isenabled(), gc.get_threshold()


def _restore_gc(saved: tuple[bool, tuple[int, ...]]) -> None:
    """A notebook's ``gc.disable()`` would otherwise leave every later render without a
    collector, and the kernel's memory growing until it is replaced."""
    enabled, threshold = saved
    if gc.isenabled() != enabled:
        (gc.enable if enabled else gc.disable)()
    if gc.get_threshold() != threshold:
        gc.set_threshold(*threshold)


def _save_process() -> dict[str, Any]:
    return {"path": list(sys.path), "environ": dict(os.environ), "modules": set(sys.modules)}


def _restore_process(saved: dict[str, Any]) -> None:
    sys.path[:] = saved["path"]
    environ = saved["environ"]
    for key in set(os.environ) - set(environ):  # key by key: never empty, even for a moment
        del os.environ[key]
    for key, value in environ.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    os.chdir(_home)


RESTORED: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {
    "backend": (_save_namespaces, _restore_namespaces),  # first: rc and hooks depend on it
    "rcParams": (_save_rc, _restore_rc),
    "inline backend rc": (_save_shell, _restore_shell),
    "inline backend config": (_save_inline_config, _restore_inline_config),
    "IPython events": (_save_events, _restore_events),
    "warnings": (_save_warnings, _restore_warnings),
    "numpy": (_save_numpy, _restore_numpy),
    "pandas options": (_save_pandas, _restore_pandas),
    "matplotlib units": (_save_units, _restore_units),
    "colormaps, color sequences, fonts": (_save_registries, _restore_registries),
    "sys.path, environment, cwd": (_save_process, _restore_process),
    "garbage collector": (_save_gc, _restore_gc),
}


def _forget_local_modules() -> None:
    """Drop modules a render imported from the notebooks' folder (a helper.py beside a
    notebook), so the next notebook imports its own; libraries stay loaded, wherever they
    were installed from (a virtualenv inside the notebooks' folder included)."""
    roots = [os.path.realpath(root) for root in _saved["roots"]]
    installed = _saved["installed"]
    known = _saved["sys.path, environment, cwd"]["modules"]
    for name in set(sys.modules) - known:
        module = sys.modules[name]
        places = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
        local = [os.path.realpath(place) for place in places if place]
        if any(_inside(place, roots) and not _inside(place, installed) for place in local):
            del sys.modules[name]
    importlib.invalidate_caches()


def _inside(path: str, roots: list[str]) -> bool:
    return any(os.path.commonpath([path, root]) == root for root in roots)


def prepare(
    root: str,
    cwd: str,
    fmt: str,
    dpi: float | None,
    width: int | None,
    height: int | None,
    max_pixels: int | None = None,
    max_reads: int = 1000,
    report: str | None = None,
    requests: int = 1,
    reset_after: bool = False,
) -> None:
    """Point a clean kernel at this render: its folder, how to print its figures, what
    it reads from now on, how many execute requests (this one included) it makes,
    and whether to reset itself after the last (``_reset_after_reply``)."""
    from IPython import get_ipython
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib_inline.config import InlineBackend

    global _guarding, _recording
    _saved["roots"].add(root)
    _render.update(requests=requests, started=1, reset_asked=reset_after)
    os.chdir(cwd)
    _reads.clear()
    _written.clear()
    _reading.update(limit=max_reads, dropped=0, reported=0, report=report)
    _ignore_outside(root)
    _recording = True
    _options.update(dpi=dpi, width=width, height=height, max_pixels=max_pixels)
    _guarding = True
    config = InlineBackend.instance()
    config.figure_formats = {fmt}
    # Bound again even when the trait did not change: a notebook's %matplotlib may have
    # rebound them, and this is how a new kernel binds them, kwargs included.
    select_figure_formats(get_ipython(), {fmt}, **config.print_figure_kwargs)


def _print_figure(fig: Any, fmt: str = "png", bbox_inches: Any = "tight", **kwargs: Any) -> Any:
    """Print with the render's options: dpi, and an exact pixel size when one was asked for.

    With no options this is IPython's own print_figure, untouched, so the image
    is the one a new kernel shows. Either way no raster past the limit is drawn:
    an exact size is checked first, and any other (a tight crop takes in what is
    drawn outside the figure) when matplotlib allocates it, before it draws.
    """
    dpi, width, height = _options["dpi"], _options["width"], _options["height"]
    asked = bool(dpi or width or height)
    if asked:
        dpi = dpi or kwargs.pop("dpi", None) or fig.dpi
        kwargs["dpi"] = dpi
    if width or height:
        w_in, h_in = fig.get_size_inches()
        if width and not height:
            height = max(1, round(width * h_in / w_in))
        elif height and not width:
            width = max(1, round(height * w_in / h_in))
        if not _size_allowed(width, height, asked=True):
            return None
        fig.set_size_inches(width / dpi, height / dpi)
        bbox_inches = None
    try:
        return _original_print_figure(fig, fmt=fmt, bbox_inches=bbox_inches, **kwargs)
    except _TooLarge as e:
        _size_allowed(e.width, e.height, asked=asked)
        return None


class _TooLarge(Exception):
    """Raised where a canvas past the limit would be allocated; a notebook that draws one
    itself (``fig.canvas.draw()``) fails with this message."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__(
            f"a {width}x{height} pixel canvas is past the server's limit of"
            f" {_options['max_pixels']} pixels on a side"
        )
        self.width, self.height = width, height


_guarding = False  # a render is running: the raster size limit applies


def _guard_raster_size() -> None:
    """Refuse to allocate an Agg canvas past the limit while a render runs.

    The canvas is allocated at the final size, crop and dpi applied, and before
    anything is drawn on it: the one place that sees the true size in time. Not
    only printing allocates one: pyplot's hook draws every figure when a cell ends.
    """
    from matplotlib.backends import backend_agg

    allocate = backend_agg.RendererAgg.__init__

    def guarded(self: Any, width: float, height: float, dpi: float) -> None:
        limit = _options["max_pixels"]
        if _guarding and limit is not None and (width > limit or height > limit):
            raise _TooLarge(round(width), round(height))
        allocate(self, width, height, dpi)

    backend_agg.RendererAgg.__init__ = guarded  # type: ignore[method-assign]


def _size_allowed(width: int, height: int, asked: bool) -> bool:
    """False, after telling the server why, for an image past the limit; nothing is drawn."""
    limit = _options["max_pixels"]
    if limit is None or (width <= limit and height <= limit):
        return True
    from IPython.display import publish_display_data

    cause = "the requested size" if asked else "the figure's own size and dpi"
    message = (
        f"the chart would be {width}x{height} pixels ({cause});"
        f" the limit is {limit} pixels on a side"
    )
    publish_display_data({ERROR_MIME: {"asked": asked, "message": message}})
    return False
