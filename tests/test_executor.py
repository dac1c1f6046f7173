"""One kernel, driven directly: what a notebook can and cannot see of the server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from publisher.errors import KernelDied, NotebookFailed
from publisher.executor import Job, Kernel
from publisher.kernel_side import RESET_MIME
from publisher.options import RenderOptions
from publisher.settings import Settings

from .notebooks import FUSE, write_notebook


@contextlib.asynccontextmanager
async def started(in_render: bool = False) -> AsyncIterator[Kernel]:
    """A warm kernel for one test, stopped after it; ``in_render``: asked to reset itself
    within each render's last request, as the pool asks it to under load."""
    kernel = await Kernel(["matplotlib.pyplot"]).start()
    kernel.reset_in_render = in_render
    try:
        yield kernel
    finally:
        await kernel.shutdown()


async def test_the_servers_settings_do_not_reach_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "do not leak")
    monkeypatch.setenv("PUBLISHER_REDIS_URL", "redis://:password@127.0.0.1:1/0")
    monkeypatch.setenv("ORDINARY_VARIABLE", "visible")
    kernel = await Kernel(Settings().preload_modules).start()
    try:
        probe = "import os\nprint(sorted(k for k in os.environ if 'PUBLISHER' in k or k == 'ORDINARY_VARIABLE'))"
        outputs = await kernel.run(Job(str(tmp_path), (probe,), RenderOptions()), 30)
    finally:
        await kernel.shutdown()
    assert outputs[-1][0]["text"].strip() == "['ORDINARY_VARIABLE']"


async def test_a_kernel_talks_over_a_private_unix_socket_and_prints_nothing_on_its_own(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async with started() as kernel:
        folder = Path(kernel.folder)
        assert kernel.km.transport == "ipc" and folder.stat().st_mode & 0o077 == 0
        assert any(p.is_socket() for p in folder.iterdir())
        forged = "import os\nos.write(2, b'\\n2026-01-01 CRITICAL forged\\n')"
        await kernel.run(Job(str(tmp_path), (forged,), RenderOptions()), 30)
    assert not folder.exists()
    # no start-up warning (such as TCP without encryption), and nothing a notebook wrote
    # to the kernel's own file descriptors reaches the server's log
    err = capfd.readouterr().err
    assert "forged" not in err and "WARNING" not in err


async def test_a_reset_names_what_it_cannot_restore(tmp_path: Path) -> None:
    kernel = await Kernel(["pandas", "matplotlib.pyplot"]).start()
    try:
        plain = "import matplotlib.pyplot as plt\nplt.plot([1, 2])"
        await kernel.run(Job(str(tmp_path), (plain,), RenderOptions()), 30)
        clean = await kernel.reset()
        assert clean.changed == [] and 50 * 2**20 < clean.rss < 2**30
        patch = "import pandas as pd\npd.DataFrame.plot = None"
        await kernel.run(Job(str(tmp_path), (patch,), RenderOptions()), 30)
        assert "DataFrame" in " ".join((await kernel.reset()).changed)
    finally:
        await kernel.shutdown()


async def test_pandas_options_are_restored_even_when_pandas_is_not_preloaded(
    tmp_path: Path,
) -> None:
    async with started() as kernel:
        leave = "import pandas as pd\npd.set_option('display.precision', 1)"
        await kernel.run(Job(str(tmp_path), (leave,), RenderOptions()), 30)
        assert (await kernel.reset()).changed == []
        look = "import pandas as pd\nprint(pd.get_option('display.precision'))"
        outputs = await kernel.run(Job(str(tmp_path), (look,), RenderOptions()), 30)
    assert outputs[-1][0]["text"].strip() == "6"


async def test_a_kernel_whose_reset_says_nothing_is_reported_dead(tmp_path: Path) -> None:
    """A notebook that silences IPython's display leaves a kernel no reset can vouch for."""
    async with started() as kernel:
        silence = "import IPython.display\nIPython.display.publish_display_data = print"
        await kernel.run(Job(str(tmp_path), (silence,), RenderOptions()), 30)
        with pytest.raises(KernelDied, match="did not report"):
            await kernel.reset()


async def test_a_report_of_reads_cut_short_is_no_data_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel = Kernel([])  # not started: the report is a file in its private folder
    try:
        assert kernel.reads() is None  # no render yet, no report
        Path(kernel.reads_file).write_text('{"files": [["/data/sales.csv", 12')
        with caplog.at_level(logging.WARNING, logger="publisher.executor"):
            assert kernel.reads() is None
        assert "unreadable report of the files it read" in caplog.text
    finally:
        await kernel.shutdown()


POLLUTE = (
    "%matplotlib agg\n"
    "import matplotlib.pyplot as plt, os, sys\n"
    "plt.rcParams['lines.linewidth'] = 9\n"
    "os.environ['POLLUTED'] = '1'\n"
    "sys.path.append('/polluted')\n"
    "left_behind = 1\n"
    "plt.plot([1, 2])"
)
LOOK = (
    "import matplotlib, matplotlib.pyplot as plt, os, sys\n"
    "print(plt.rcParams['lines.linewidth'], 'left_behind' in globals(), 'POLLUTED' in os.environ,"
    " '/polluted' in sys.path, 'inline' in matplotlib.get_backend())"
)
CLEAN = "1.5 False False False True"  # what LOOK prints in a kernel POLLUTE left nothing in


async def look(kernel: Kernel, tmp_path: Path) -> str:
    """What LOOK prints in the kernel's next render (one that leaves the reset to the server)."""
    kernel.reset_in_render = False
    outputs = await kernel.run(Job(str(tmp_path), (LOOK,), RenderOptions()), 30)
    assert kernel.reset_report is None  # not asked: the server sends a reset of its own
    return str(outputs[-1][0]["text"]).strip()


async def test_a_kernel_asked_to_resets_itself_as_the_render_ends(tmp_path: Path) -> None:
    async with started(in_render=True) as kernel:
        outputs = await kernel.run(Job(str(tmp_path), ("x = 1", POLLUTE), RenderOptions()), 30)
        report = kernel.reset_report
        assert report is not None and report.changed == [] and report.rss > 50 * 2**20
        assert all(RESET_MIME not in output.get("data", {}) for cell in outputs for output in cell)
        assert await look(kernel, tmp_path) == CLEAN


async def test_a_last_cell_that_raises_still_resets_its_kernel(tmp_path: Path) -> None:
    async with started(in_render=True) as kernel:
        failing = POLLUTE + "\nraise ValueError('no data for 2031')"
        with pytest.raises(NotebookFailed, match="no data for 2031"):
            await kernel.run(Job(str(tmp_path), ("x = 1", failing), RenderOptions()), 30)
        assert kernel.reset_report is not None
        assert await look(kernel, tmp_path) == CLEAN


async def test_a_render_that_stops_early_leaves_the_reset_to_the_server(tmp_path: Path) -> None:
    async with started(in_render=True) as kernel:
        first = POLLUTE + "\n1 / 0"
        with pytest.raises(NotebookFailed, match="ZeroDivisionError"):
            await kernel.run(Job(str(tmp_path), (first, "x = 1"), RenderOptions()), 30)
        assert kernel.reset_report is None  # its last cell never ran
        assert (await kernel.reset()).changed == []
        assert await look(kernel, tmp_path) == CLEAN


async def test_cells_run_within_a_cell_do_not_count_as_the_renders_last(tmp_path: Path) -> None:
    """%%capture runs its cell as a cell of its own: the render is not over when it ends."""
    async with started(in_render=True) as kernel:
        cells = ("%%capture\nvalue = 41\nprint('hidden')", "print(value + 1)")
        outputs = await kernel.run(Job(str(tmp_path), cells, RenderOptions()), 30)
        assert kernel.reset_report is not None
    assert outputs[-1][0]["text"].strip() == "42"


async def test_a_run_notebook_with_a_blank_cell_does_not_end_the_render(tmp_path: Path) -> None:
    """%run of a notebook runs its cells within ours, a blank one too (ending, never starting)."""
    write_notebook(tmp_path / "setup.ipynb", ["y = 2", ""])
    async with started(in_render=True) as kernel:
        cells = ("%run setup.ipynb\nx = 1", "", "print(x, y)", "")  # blanks are never sent
        outputs = await kernel.run(Job(str(tmp_path), cells, RenderOptions()), 30)
        assert kernel.reset_report is not None  # after the last request, not before
    assert outputs[2][0]["text"].strip() == "1 2"


async def test_a_report_the_notebook_publishes_itself_is_not_taken_for_a_reset(
    tmp_path: Path,
) -> None:
    forge = (
        "from IPython.display import publish_display_data\n"
        f"publish_display_data({{{RESET_MIME!r}: {{'changed': [], 'rss': 1}}}})\n"
        "secret = 9"
    )
    async with started() as kernel:
        outputs = await kernel.run(Job(str(tmp_path), (forge,), RenderOptions()), 30)
        assert kernel.reset_report is None  # no reset was asked: the server sends its own
        assert RESET_MIME in outputs[-1][0]["data"]  # the notebook's own output, left as is
        kernel.reset_in_render = True
        await kernel.run(Job(str(tmp_path), (forge,), RenderOptions()), 30)
        report = kernel.reset_report
        assert report is not None and report.rss > 2**20  # the kernel's, which comes last
        kernel.reset_in_render = False
        outputs = await kernel.run(
            Job(str(tmp_path), ("'secret' in globals()",), RenderOptions()), 30
        )
    assert outputs[-1][-1]["data"]["text/plain"] == "False"


async def test_a_kernel_that_dies_resetting_itself_still_answers_its_render(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The render was over when its reset freed the notebook's objects: the kernel is
    lost, the answer is not."""
    async with started(in_render=True) as kernel:
        with caplog.at_level(logging.WARNING, logger="publisher.executor"):
            outputs = await kernel.run(Job(str(tmp_path), ("x = 1", FUSE), RenderOptions()), 30)
        assert kernel.reset_report is None
        with pytest.raises(KernelDied, match="died resetting itself"):
            await kernel.reset()
    assert [output["text"] for output in outputs[-1]] == ["drawn\n"]  # and no mark of ours
    assert "died resetting itself after a render" in caplog.text


async def test_a_failed_render_whose_kernel_dies_resetting_is_the_notebooks_error(
    tmp_path: Path,
) -> None:
    """Failed as its reply said: an error the cell only showed (and went on) is no failure."""
    failing = FUSE + "\nraise ValueError('no data for 2031')"
    shown = FUSE + "\ntry:\n    1 / 0\nexcept ZeroDivisionError:\n    get_ipython().showtraceback()"
    async with started(in_render=True) as kernel:
        with pytest.raises(NotebookFailed, match="^ValueError: no data for 2031$"):
            await kernel.run(Job(str(tmp_path), ("x = 1", failing), RenderOptions()), 30)
        assert kernel.died_resetting
    async with started(in_render=True) as kernel:
        outputs = await kernel.run(Job(str(tmp_path), ("x = 1", shown), RenderOptions()), 30)
        assert kernel.died_resetting
    assert [output["output_type"] for output in outputs[-1]] == ["stream", "error"]


async def test_what_the_reset_prints_is_not_the_renders_and_does_not_hide_its_mark(
    tmp_path: Path,
) -> None:
    """A finalizer that says goodbye (a library closing its connection) before it kills
    the kernel, or without killing it: its words are the reset's."""
    goodbye = "print('closing', file=__import__('sys').stderr, flush=True)"
    loud = FUSE.replace("exit(1)", goodbye)
    dying = FUSE.replace("exit(1)", f"{goodbye}; exit(1)")
    async with started(in_render=True) as kernel:
        outputs = await kernel.run(Job(str(tmp_path), ("x = 1", loud), RenderOptions()), 30)
        assert kernel.reset_report is not None and not kernel.died_resetting
    assert [output["text"] for output in outputs[-1]] == ["drawn\n"]
    for _ in range(3):  # its words race its death: the mark must hold either way
        async with started(in_render=True) as kernel:
            outputs = await kernel.run(Job(str(tmp_path), ("x = 1", dying), RenderOptions()), 30)
            assert kernel.died_resetting and kernel.reset_report is None
        assert [output["text"] for output in outputs[-1]] == ["drawn\n"]


async def test_a_display_that_raised_fails_the_render_on_both_paths(tmp_path: Path) -> None:
    """ipykernel's reply is an error when a display formatter raised, though the cell ran:
    a kernel that dies resetting after it must fail the render the same way."""
    bad = "class Bad:\n    def __repr__(self):\n        raise ValueError('no repr')\nBad()"
    errors = []
    for cells, in_render in (((bad,), False), ((FUSE + "\n" + bad,), True)):
        async with started(in_render) as kernel:
            with pytest.raises(NotebookFailed) as raised:
                await kernel.run(Job(str(tmp_path), cells, RenderOptions()), 30)
            errors.append((raised.value.message, kernel.died_resetting))
    assert errors == [("NoneType: None", False), ("NoneType: None", True)]


async def test_a_kernel_that_dies_in_the_renders_last_cell_is_dead_not_answered(
    tmp_path: Path,
) -> None:
    async with started(in_render=True) as kernel:
        with pytest.raises(KernelDied, match="while rendering"):
            await kernel.run(
                Job(str(tmp_path), ("print('drawn')\nimport os\nos._exit(1)",), RenderOptions()), 30
            )
        assert not kernel.died_resetting


async def test_the_garbage_collector_is_put_back(tmp_path: Path) -> None:
    async with started() as kernel:
        fresh = "import gc\nprint(gc.isenabled(), gc.get_threshold())"
        before = await kernel.run(Job(str(tmp_path), (fresh,), RenderOptions()), 30)
        await kernel.reset()
        leave = "import gc\ngc.disable()\ngc.set_threshold(1, 2, 3)"
        await kernel.run(Job(str(tmp_path), (leave,), RenderOptions()), 30)
        assert (await kernel.reset()).changed == []
        after = await kernel.run(Job(str(tmp_path), (fresh,), RenderOptions()), 30)
    assert after[-1][0]["text"] == before[-1][0]["text"]
    assert before[-1][0]["text"].startswith("True (")
