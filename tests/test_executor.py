"""One kernel, driven directly: what a notebook can and cannot see of the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.executor import Job, Kernel, RenderOptions
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
