"""One kernel, driven directly: what a notebook can and cannot see of the server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from publisher.errors import KernelDied
from publisher.executor import Job, Kernel
from publisher.options import RenderOptions
from publisher.settings import Settings


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
    kernel = await Kernel(["matplotlib.pyplot"]).start()
    try:
        folder = Path(kernel.folder)
        assert kernel.km.transport == "ipc" and folder.stat().st_mode & 0o077 == 0
        assert any(p.is_socket() for p in folder.iterdir())
        forged = "import os\nos.write(2, b'\\n2026-01-01 CRITICAL forged\\n')"
        await kernel.run(Job(str(tmp_path), (forged,), RenderOptions()), 30)
    finally:
        await kernel.shutdown()
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
    kernel = await Kernel(["matplotlib.pyplot"]).start()
    try:
        leave = "import pandas as pd\npd.set_option('display.precision', 1)"
        await kernel.run(Job(str(tmp_path), (leave,), RenderOptions()), 30)
        assert (await kernel.reset()).changed == []
        look = "import pandas as pd\nprint(pd.get_option('display.precision'))"
        outputs = await kernel.run(Job(str(tmp_path), (look,), RenderOptions()), 30)
    finally:
        await kernel.shutdown()
    assert outputs[-1][0]["text"].strip() == "6"


async def test_a_kernel_whose_reset_says_nothing_is_reported_dead(tmp_path: Path) -> None:
    """A notebook that silences IPython's display leaves a kernel no reset can vouch for."""
    kernel = await Kernel(["matplotlib.pyplot"]).start()
    try:
        silence = "import IPython.display\nIPython.display.publish_display_data = print"
        await kernel.run(Job(str(tmp_path), (silence,), RenderOptions()), 30)
        with pytest.raises(KernelDied, match="did not report"):
            await kernel.reset()
    finally:
        await kernel.shutdown()


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
