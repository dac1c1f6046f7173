"""Shared fixtures: reference notebooks on disk and real servers with real kernels.

Starting kernels costs about a second, so servers are module-scoped: each
test module that needs one starts it once, on a module-scoped event loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from publisher.app import create_app
from publisher.logs import AccessLogger
from publisher.service import Publisher
from publisher.settings import Settings
from publisher.state import SERVICE

from .notebooks import write_all

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "notebooks"
IN_CI = os.environ.get("CI") == "true"


def require_program(path: str) -> str:
    """The program's path; a missing one skips the test locally and fails it in CI."""
    found = shutil.which(path)
    if found is None:
        message = f"{path} is not installed (apt-get install -y {Path(path).name})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


async def error_of(response: ClientResponse) -> dict[str, Any]:
    """The error of an answer, after checking it has the one shape every error has."""
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    return dict(body["error"])


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server we started, as its supervisor would: SIGTERM, then SIGKILL after 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def refuse_listing(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``os.scandir`` of ``folder`` fails as a folder we may not read does: the tests run as
    root, from whom ``chmod`` takes nothing away."""
    scandir = os.scandir

    def refused(path: Any) -> Any:
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refused)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_all(tmp_path_factory.mktemp("notebooks"))


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("examples") / "notebooks"
    shutil.copytree(EXAMPLES, target)
    return target


def test_settings(notebook_dir: Path, cache_dir: Path, **changes: object) -> Settings:
    """Settings for a test server: small, fast to notice edits, strict timeouts."""
    base = Settings(
        notebook_dir=notebook_dir,
        cache_dir=cache_dir,
        kernels=2,
        timeout=20.0,
        scan_interval=0.0,
        queue_size=8,
    )
    return base.replace(**changes)


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(
    reference_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    """A server on the reference notebooks, shared by the tests of one module."""
    async with serve(test_settings(reference_dir, tmp_path_factory.mktemp("cache"))) as client:
        yield client


@contextlib.asynccontextmanager
async def serve(settings: Settings, service: Publisher | None = None) -> AsyncIterator[TestClient]:
    """A real server on a loopback port, its kernels warm before the first request."""
    app = create_app(settings, service)
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLogger)
    client = TestClient(server)
    await client.start_server()
    try:
        await app[SERVICE].pool.wait_ready()
        yield client
    finally:
        await client.close()
