"""Warm kernels under load and under faults, against real kernels.

Each test starts its own small server, since the behaviour depends on the
pool's size, queue and timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import TestClient, TestServer

from publisher.app import create_app
from publisher.executor import Job, Kernel, ResetReport
from publisher.options import RenderOptions
from publisher.pool import KernelPool
from publisher.settings import Settings
from publisher.state import SERVICE

from .conftest import error_of, free_port, serve, test_settings
from .notebooks import FUSE, IMPORTS, chart, write_notebook
from .oracle import difference, fresh_image


def renders(client: TestClient) -> int:
    return client.app[SERVICE].pool.renders


async def settle(client: TestClient) -> None:
    """Until no render is in flight and every kernel is back (bounded)."""
    service, pool = client.app[SERVICE], client.app[SERVICE].pool
    for _ in range(400):
        if not service.pipeline.revalidating and pool.busy == 0 and pool.idle == pool.size:
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the server did not settle")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


async def test_concurrent_identical_requests_share_one_execution(
    reference_dir: Path, cache_dir: Path
) -> None:
    async with serve(test_settings(reference_dir, cache_dir)) as client:
        before = renders(client)
        responses = await asyncio.gather(
            *(client.get("/charts/slow.png?seconds=0.5") for _ in range(25))
        )
        bodies = {await r.read() for r in responses}
        assert [r.status for r in responses] == [200] * 25
        assert len(bodies) == 1
        assert renders(client) - before == 1
        assert sorted(r.headers["X-Publisher-Cache"] for r in responses).count("miss") == 25


async def test_a_miss_uses_a_warm_kernel_without_starting_one(
    reference_dir: Path, cache_dir: Path
) -> None:
    async with serve(test_settings(reference_dir, cache_dir)) as client:
        pool = client.app[SERVICE].pool
        assert pool.idle == pool.size == 2
        pids = pool.pids
        assert (await client.get("/charts/echo.png?count=101")).status == 200
        await settle(client)
        assert pool.restarts == 0
        assert pool.pids == pids


async def test_past_the_queue_the_answer_is_503_with_retry_after(
    reference_dir: Path, cache_dir: Path
) -> None:
    settings = test_settings(reference_dir, cache_dir, kernels=1, queue_size=1)
    async with serve(settings) as client:
        responses = await asyncio.gather(
            *(client.get(f"/charts/slow.png?seconds=1.{i}") for i in range(4))
        )
        statuses = sorted(r.status for r in responses)
        assert statuses == [200, 200, 503, 503]
        refused = next(r for r in responses if r.status == 503)
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await error_of(refused))["code"] == "overloaded"


async def test_a_client_that_leaves_while_queued_starts_no_render(
    reference_dir: Path, cache_dir: Path
) -> None:
    settings = test_settings(reference_dir, cache_dir, kernels=1)
    async with serve(settings) as client:
        before = renders(client)
        busy = asyncio.ensure_future(client.get("/charts/slow.png?seconds=1"))
        while client.app[SERVICE].pool.busy == 0:
            await asyncio.sleep(0.01)
        with pytest.raises(asyncio.TimeoutError):
            await client.get(
                "/charts/slow.png?seconds=0.1", timeout=aiohttp.ClientTimeout(total=0.3)
            )
        assert (await busy).status == 200
        await settle(client)
        assert renders(client) - before == 1


async def test_a_kernel_that_dies_gives_500_and_is_replaced(
    reference_dir: Path, cache_dir: Path
) -> None:
    async with serve(test_settings(reference_dir, cache_dir)) as client:
        response = await client.get("/charts/crash.png")
        assert response.status == 500
        assert (await error_of(response))["code"] == "kernel_died"
        await settle(client)
        assert client.app[SERVICE].pool.restarts == 1
        assert (await client.get("/charts/echo.png?count=102")).status == 200


async def test_a_render_past_the_timeout_gives_504_and_its_kernel_is_replaced(
    reference_dir: Path, cache_dir: Path
) -> None:
    settings = test_settings(reference_dir, cache_dir, kernels=1, timeout=1.0)
    async with serve(settings) as client:
        pool = client.app[SERVICE].pool
        (old_pid,) = pool.pids
        response = await client.get("/charts/slow.png?seconds=30")
        assert response.status == 504
        assert (await error_of(response))["code"] == "timeout"
        await settle(client)
        assert pool.restarts == 1
        assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
        assert (await client.get("/charts/echo.png?count=103")).status == 200


async def test_a_kernel_is_replaced_after_its_quota_of_renders(
    reference_dir: Path, cache_dir: Path
) -> None:
    settings = test_settings(reference_dir, cache_dir, kernels=1, renders_per_kernel=2)
    async with serve(settings) as client:
        for count in range(3):
            assert (await client.get(f"/charts/echo.png?count={200 + count}")).status == 200
            await settle(client)
        assert client.app[SERVICE].pool.restarts == 1


async def test_a_notebook_error_costs_a_reset_not_a_kernel(
    reference_dir: Path, cache_dir: Path
) -> None:
    settings = test_settings(reference_dir, cache_dir, kernels=1, error_ttl=0.0)
    async with serve(settings) as client:
        pool = client.app[SERVICE].pool
        (pid,) = pool.pids
        for reason in ("one", "two", "three"):
            response = await client.get(f"/charts/fails.png?reason={reason}")
            assert (await error_of(response))["exception"] == "ValueError"
            await settle(client)
        assert pool.restarts == 0
        assert pool.pids == [pid]
        assert (await client.get("/charts/state.png?run=1")).status == 200


def kernel_pids(server: psutil.Process) -> set[int]:
    return {p.pid for p in server.children(recursive=True) if "ipykernel" in " ".join(p.cmdline())}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_answers_in_flight_requests_and_leaves_no_kernel(
    reference_dir: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "publisher", "serve", str(reference_dir), "--port", str(port)]
    command += ["--cache-dir", str(tmp_path), "--kernels", "2"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        server = psutil.Process(proc.pid)

        async def scenario() -> tuple[int, set[int]]:
            async with aiohttp.ClientSession() as http:
                for _ in range(300):
                    try:
                        async with http.get(f"{base}/healthz") as r:
                            if (await r.json())["kernels"]["idle"] == 2:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                pids = kernel_pids(server)
                in_flight = asyncio.ensure_future(http.get(f"{base}/charts/slow.png?seconds=1"))
                await asyncio.sleep(0.3)  # let the render start before the signal
                os.kill(proc.pid, stop)
                response = await in_flight
                return response.status, pids

        status, pids = asyncio.run(scenario())
        assert len(pids) == 2
        assert status == 200
        assert proc.wait(timeout=30) == 0
        assert not [p for p in pids if psutil.pid_exists(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_render_cannot_leave_state_for_the_next_one(tmp_path: Path) -> None:
    """One kernel serves both: the polluter's changes must all be gone for the checker."""
    folder = tmp_path / "nbs"
    for name in ("one", "two"):
        (folder / name).mkdir(parents=True)
        (folder / name / "helper.py").write_text(f"VALUE = {name!r}\n")
        write_notebook(
            folder / name / "uses_helper.ipynb",
            [IMPORTS, chart(f"import helper\nassert helper.VALUE == {name!r}, helper.VALUE")],
        )
    (folder / "lib").mkdir()
    (folder / "lib" / "shared.py").write_text("VALUE = 'first'\n")
    pollute = (
        "import matplotlib, os, sys\n"
        "%matplotlib agg\n"
        "matplotlib.use('Agg'); plt.ioff()\n"
        "sys.path.append(os.path.abspath('lib')); import shared\n"
        "sys.path.append('/polluted'); os.environ['POLLUTED'] = '1'\n"
        "fig, ax = plt.subplots(); ax.plot([1]); display(fig)"
    )
    check = (
        "import os, sys\n"
        "assert 'inline' in matplotlib.get_backend(), matplotlib.get_backend()\n"
        "assert matplotlib.is_interactive()\n"
        "assert '/polluted' not in sys.path and 'POLLUTED' not in os.environ\n"
        "assert 'shared' not in sys.modules\n"
        "plt.plot([3, 4])  # shown by the inline backend's own hook, not by display()\n"
        "ax.plot([1, 2])"
    )
    write_notebook(
        folder / "pollute.ipynb", [IMPORTS + "\nimport matplotlib", (pollute, ["chart"])]
    )
    write_notebook(folder / "check.ipynb", [IMPORTS + "\nimport matplotlib", chart(check)])
    settings = test_settings(folder, tmp_path / "cache", kernels=1)
    async with serve(settings) as client:
        for path in ("pollute", "check", "one/uses_helper", "two/uses_helper", "check"):
            response = await client.get(f"/charts/{path}.png")
            assert response.status == 200, (path, await response.text())
            await settle(client)
        assert client.app[SERVICE].pool.restarts == 0  # one kernel did it all


@pytest.mark.parametrize("in_render", [True, False], ids=["reset in render", "reset after"])
async def test_a_kernel_killed_by_what_its_reset_frees_costs_the_kernel_not_the_chart(
    tmp_path: Path, in_render: bool
) -> None:
    """A finalizer that ends the process (a C library crashing in its cleanup) runs when the
    reset frees the notebook's objects, after the render: the chart is still served."""
    fuse = FUSE.replace("fuse = Fuse()\nprint('drawn')", "connection = Fuse()")
    folder = tmp_path / "nbs"
    # as analysts end a cell: no plt.show(), the figure shown because the cell ends
    bars = ("fig, ax = plt.subplots(figsize=(4, 3))\nax.bar(['north', 'south'], [3, 1])", ["chart"])
    path = write_notebook(folder / "fuse.ipynb", [IMPORTS, fuse, bars])
    write_notebook(folder / "plain.ipynb", [IMPORTS, chart()])
    async with serve(test_settings(folder, tmp_path / "cache", kernels=1)) as client:
        pool = client.app[SERVICE].pool
        pool.reset_in_render = in_render
        response = await client.get("/charts/fuse.png")
        assert response.status == 200, await response.text()
        served = await response.read()
        await settle(client)
        assert pool.restarts == 1
        assert (await client.get("/charts/plain.png")).status == 200
    assert difference(served, await fresh_image(path)) is None


async def test_a_request_waits_for_a_kernel_no_longer_than_the_timeout(
    reference_dir: Path, cache_dir: Path
) -> None:
    settings = test_settings(reference_dir, cache_dir, kernels=1, timeout=1.0)
    async with serve(settings) as client:
        slow = asyncio.ensure_future(client.get("/charts/slow.png?seconds=30"))
        while client.app[SERVICE].pool.busy == 0:
            await asyncio.sleep(0.01)
        waiting = await client.get("/charts/echo.png?count=104")
        assert waiting.status == 503
        assert "no kernel was free within 1s" in (await error_of(waiting))["message"]
        assert (await slow).status == 504


async def test_kernels_that_cannot_start_make_the_server_unhealthy(
    reference_dir: Path, cache_dir: Path
) -> None:
    settings = test_settings(reference_dir, cache_dir, kernels=1, preload="no_such_module")
    async with contextlib.AsyncExitStack() as stack:
        app = create_app(settings)
        app_client = await stack.enter_async_context(TestClient(TestServer(app)))
        for _ in range(600):
            health = await (await app_client.get("/healthz")).json()
            if not health["ok"]:
                break
            await asyncio.sleep(0.05)
        response = await app_client.get("/healthz")
        assert response.status == 503
        assert health["kernels"]["failed_starts"] >= 3 and health["ready"] is False


@pytest.mark.parametrize("after", [0.0, 0.01, 0.2])
async def test_closing_while_kernels_start_leaves_no_kernel_process(after: float) -> None:
    before = kernel_pids(psutil.Process())
    pool = KernelPool(2, Settings().preload_modules)
    pool.start()
    await asyncio.sleep(after)
    await pool.close()
    assert not [pid for pid in kernel_pids(psutil.Process()) - before if running(pid)]


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


FRESH = [
    "import os, sys\nimport matplotlib.pyplot as plt",
    ("run = 0", ["parameters"]),
    (
        "first = not hasattr(sys, 'rendered_here')  # a reset does not clear sys attributes\n"
        "sys.rendered_here = True\n"
        "open(f'seen-{run}.txt', 'w').write(f'{os.getpid()} {first}')\n"
        "plt.plot([1, 2])",
        ["chart"],
    ),
]


async def test_a_fresh_kernel_notebook_renders_each_time_in_a_new_kernel(tmp_path: Path) -> None:
    write_notebook(tmp_path / "fresh.ipynb", FRESH, {"publisher": {"kernel": "fresh"}})
    write_notebook(tmp_path / "warm.ipynb", FRESH)
    settings = test_settings(tmp_path, tmp_path / "cache", kernels=1)
    async with serve(settings) as client:
        for run in (1, 2):
            assert (await client.get(f"/charts/warm.png?run={run}")).status == 200
            await settle(client)
        for run in (11, 12, 13):
            assert (await client.get(f"/charts/fresh.png?run={run}")).status == 200
            await settle(client)
    seen = {run: (tmp_path / f"seen-{run}.txt").read_text().split() for run in (1, 2, 11, 12, 13)}
    assert seen[2] == [seen[1][0], "False"]  # an ordinary notebook reuses its kernel
    assert [seen[run][1] for run in (11, 12, 13)] == ["True"] * 3
    assert len({seen[run][0] for run in (2, 11, 12, 13)}) == 4


class GatedKernel(Kernel):
    """A kernel with no process, whose start waits for the test to open a gate."""

    reset_report: ResetReport | None = None  # never reset by a render: the pool asks
    reset_in_render = False
    died_resetting = False

    def __init__(self, gate: asyncio.Event) -> None:
        self.preload, self.renders, self.gate = [], 0, gate

    @property
    def pid(self) -> int:
        return id(self)

    async def start(self) -> Kernel:
        await self.gate.wait()
        return self

    async def alive(self) -> bool:
        return True

    async def reset(self, timeout: float = 30) -> ResetReport:
        return ResetReport([], 0)

    async def shutdown(self) -> None:
        pass


async def test_a_fresh_kernel_swap_keeps_its_slot_busy_until_the_new_one_is_up() -> None:
    gate = asyncio.Event()
    gate.set()
    pool = KernelPool(1, [], kernel_factory=lambda preload: GatedKernel(gate))
    try:
        async with pool.kernel() as used:
            used.renders = 1
        await pool.wait_ready()
        gate.clear()

        async def fresh_render() -> Kernel:
            async with pool.kernel(fresh=True) as kernel:
                return kernel

        swap = asyncio.ensure_future(fresh_render())
        while pool.restarts == 0:  # the swap has begun: the new kernel is starting
            await asyncio.sleep(0)
        assert (pool.idle, pool.busy) == (0, 1)  # /healthz stays ready meanwhile
        gate.set()
        assert (await swap) is not used
    finally:
        await pool.close()


async def test_a_kernel_that_grew_past_its_memory_limit_is_replaced(tmp_path: Path) -> None:
    pool = KernelPool(1, ["matplotlib.pyplot"], max_rss=200 * 2**20)
    try:
        kept = "import sys\nsys.kept_by_the_kernel = bytearray(300 * 2**20)  # no reset frees it"
        for cells, replaced in ((("x = 1",), 0), ((kept,), 1)):
            async with pool.kernel() as kernel:
                await kernel.run(Job(str(tmp_path), cells, RenderOptions()), 30)
            await pool.wait_ready()
            assert pool.restarts == replaced
    finally:
        await pool.close()


def test_the_server_and_the_command_line_build_the_same_pool(tmp_path: Path) -> None:
    settings = Settings(
        notebook_dir=tmp_path,
        cache_dir=tmp_path / "cache",
        kernels=3,
        renders_per_kernel=7,
        kernel_memory_mb=64,
        timeout=9,
    )

    def shape(pool: KernelPool) -> tuple[object, ...]:
        return (pool.size, pool.renders_per_kernel, pool.max_rss, pool.wait_timeout)

    assert shape(create_app(settings)[SERVICE].pool) == (3, 7, 64 * 2**20, 9)
    assert shape(KernelPool.from_settings(settings, size=1)) == (1, 7, 64 * 2**20, 9)


async def test_a_kernel_lent_while_renders_wait_resets_within_its_render(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load the reset rides on the render's last request; alone, it waits for the answer."""
    asked: list[bool] = []
    resets = 0
    reset = Kernel.reset

    async def counted(self: Kernel, timeout: float = 30) -> ResetReport:
        nonlocal resets
        resets += 1
        return await reset(self, timeout)

    monkeypatch.setattr(Kernel, "reset", counted)
    pool = KernelPool(1, ["matplotlib.pyplot"])
    try:
        pool.start()
        await pool.wait_ready()

        async def render(hold: bool = False) -> None:
            async with pool.kernel() as kernel:
                asked.append(kernel.reset_in_render)
                while hold and pool.waiting < 2:  # until both others queue behind it
                    await asyncio.sleep(0.01)
                await kernel.run(Job(str(tmp_path), ("left = 1",), RenderOptions()), 30)

        first = asyncio.ensure_future(render(hold=True))
        await asyncio.sleep(0.05)  # it holds the kernel; the next two wait for it
        await asyncio.gather(first, render(), render())
        await pool.wait_ready()
        separate = resets
        async with pool.kernel() as kernel:
            look = Job(str(tmp_path), ("'left' in globals()",), RenderOptions())
            outputs = await kernel.run(look, 30)
    finally:
        await pool.close()
    assert asked == [False, True, False]  # none waiting, then one, then none again
    assert separate == 2  # after the first and the last: the second reset itself
    assert outputs[-1][0]["data"]["text/plain"] == "False"
