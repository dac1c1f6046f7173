"""Warm kernels, started ahead, lent to one render at a time.

The pool is the server's only limit on work: at most ``size`` renders run at
once, at most ``queue_size`` more wait for a kernel, and past that a render is
refused (503) rather than queued without end. After each render a kernel is
reset; one that crashed, timed out, failed its reset or was changed in ways a
reset cannot undo is never lent again: it is shut down and a new one is
started in its place. An exception in the notebook's own code is not such a
failure: it costs a reset, not a kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from .errors import NotebookFailed, Overloaded, ShuttingDown
from .executor import Kernel, ResetReport
from .settings import Settings

log = logging.getLogger(__name__)
_DEFAULTS = Settings()  # the one place defaults live; a pool built by hand (tests) shares them


class KernelPool:
    def __init__(
        self,
        size: int,
        preload: list[str],
        *,
        queue_size: int = _DEFAULTS.queue_size,
        renders_per_kernel: int = _DEFAULTS.renders_per_kernel,
        max_rss: int = int(_DEFAULTS.kernel_memory_mb * 2**20),
        wait_timeout: float = _DEFAULTS.timeout,
        kernel_factory: Callable[[list[str]], Kernel] = Kernel,
    ) -> None:
        self.size = size
        self.preload = preload
        self.queue_size = queue_size
        self.renders_per_kernel = renders_per_kernel
        self.reset_in_render: bool | None = None  # None: when renders wait; tests force it
        self.max_rss = max_rss
        self.wait_timeout = wait_timeout
        self.kernel_factory = kernel_factory
        self.renders = 0  # kernels lent: renders started
        self.restarts = 0
        self.tainted = 0  # kernels retired because a render left what reset cannot undo
        self.failed_starts = 0  # in a row: a preload that cannot import never gets better
        self.waiting = 0
        self.closed = False
        self._idle: asyncio.Queue[Kernel] = asyncio.Queue()
        self._busy: set[Kernel] = set()
        self._up: set[Kernel] = set()  # started and not yet retired: idle, busy or resetting
        self._tasks: set[asyncio.Task[None]] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._started = False

    @classmethod
    def from_settings(cls, settings: Settings, size: int | None = None) -> KernelPool:
        """The pool the settings describe; the server and ``publisher render`` both use it."""
        return cls(
            settings.kernels if size is None else size,
            settings.preload_modules,
            queue_size=settings.queue_size,
            renders_per_kernel=settings.renders_per_kernel,
            max_rss=int(settings.kernel_memory_mb * 2**20),
            wait_timeout=settings.timeout,
        )

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    @property
    def busy(self) -> int:
        return len(self._busy)

    @property
    def pids(self) -> list[int]:
        """The process ids of the kernels that are up, idle or busy: for operators, on /healthz."""
        return sorted(pid for kernel in self._up if (pid := kernel.pid) is not None)

    def start(self) -> None:
        """Begin warming every kernel; returns at once, renders wait for the first ready one.

        A pool nobody started starts on its first render (``publisher render``
        answers a cache hit without starting a kernel).
        """
        if self._started:
            return
        self._started = True
        for _ in range(self.size):
            self._start_kernel()

    async def wait_ready(self, count: int | None = None) -> None:
        """Until ``count`` kernels (default: all) are idle; for tests and benchmarks."""
        while self.idle < (self.size if count is None else count):
            await asyncio.sleep(0.05)

    @contextlib.asynccontextmanager
    async def kernel(self, fresh: bool = False) -> AsyncIterator[Kernel]:
        """Lend a warm kernel, and take it back for a reset once the block is done.

        An exception the notebook raised is the notebook's fault: the kernel is
        reset and reused like after any render. Any other failure (a crash, a
        timeout, a cancelled render) retires it. ``fresh`` lends a kernel that
        has never rendered, and retires it afterwards.
        """
        kernel = await self._acquire()
        self._busy.add(kernel)
        if fresh and kernel.renders:
            kernel = await self._replace_now(kernel)
        # With renders waiting, CPU is what limits how many are answered a second: the
        # kernel resets itself as its render ends, which spares a request on each side.
        # Otherwise the reset waits for the answer to go out, and costs nobody time.
        # A kernel retired after this render needs no reset at all.
        retiring = fresh or kernel.renders + 1 >= self.renders_per_kernel  # this render: +1
        under_load = self.waiting > 0 if self.reset_in_render is None else self.reset_in_render
        kernel.reset_in_render = under_load and not retiring
        self.renders += 1
        try:
            yield kernel
        except NotebookFailed:
            self._give_back(kernel, retire=fresh)
            raise
        except BaseException:
            self._retire(kernel)
            raise
        else:
            self._give_back(kernel, retire=retiring)

    def _give_back(self, kernel: Kernel, retire: bool) -> None:
        report, kernel.reset_report = kernel.reset_report, None
        if retire or self.closed or kernel.died_resetting:
            self._retire(kernel)
        elif report is not None:  # the render's last cell reset it already
            self._judge(kernel, report)
        else:
            self._background(self._recycle(kernel))

    async def _replace_now(self, used: Kernel) -> Kernel:
        """A new kernel in the place of ``used``, started while the caller waits.

        ``used`` keeps the slot counted as busy until its successor is up, so the
        pool never looks empty (``/healthz`` stays ready) during the swap.
        """
        self._background(used.shutdown())
        self._up.discard(used)
        self.restarts += 1
        kernel = self.kernel_factory(self.preload)
        try:
            await kernel.start()
        except BaseException:
            self._busy.discard(used)
            self._start_kernel()  # the slot is not lost: the pool refills it as usual
            raise
        self._busy.discard(used)
        self._busy.add(kernel)
        self._up.add(kernel)
        return kernel

    async def _recycle(self, kernel: Kernel) -> None:
        """Reset a kernel after its render, so the next one finds it clean and waits for nothing."""
        try:
            report = await kernel.reset()
        except Exception:
            log.warning("kernel %s failed its reset; replacing it", kernel.pid, exc_info=True)
            self._retire(kernel)
            return
        self._judge(kernel, report)

    def _judge(self, kernel: Kernel, report: ResetReport) -> None:
        """Lend a reset kernel again, or retire it for what its reset found."""
        if report.changed:
            changed = ", ".join(report.changed[:5]) + (" ..." if len(report.changed) > 5 else "")
            log.info(
                "kernel %s retired: a render changed %s, which no reset restores",
                kernel.pid,
                changed,
            )
            self.tainted += 1
            self._retire(kernel)
        elif report.rss > self.max_rss:
            log.info("kernel %s retired: it grew to %d MiB", kernel.pid, report.rss >> 20)
            self._retire(kernel)
        elif self.closed:
            self._retire(kernel)
        else:
            self._busy.discard(kernel)
            self._idle.put_nowait(kernel)

    async def _acquire(self) -> Kernel:
        if self.closed:
            raise ShuttingDown("the server is shutting down", retry_after=5)
        if self._idle.empty() and self.waiting >= self.queue_size:
            raise Overloaded(
                f"all {self.size} kernels are busy and {self.waiting} renders are waiting",
                retry_after=2,
            )
        self.start()
        self.waiting += 1
        try:
            while True:
                try:  # at once when one is idle, so a request right behind sees it taken
                    kernel = self._idle.get_nowait()
                except asyncio.QueueEmpty:
                    kernel = await self._wait_for_kernel()
                if await kernel.alive():
                    return kernel
                log.warning("kernel %s died while idle; replacing it", kernel.pid)
                self._busy.add(kernel)
                self._retire(kernel)
        finally:
            self.waiting -= 1

    async def _wait_for_kernel(self) -> Kernel:
        try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
            async with asyncio.timeout(self.wait_timeout):
                return await self._idle.get()
        except TimeoutError:
            raise Overloaded(
                f"no kernel was free within {self.wait_timeout:g}s", retry_after=5
            ) from None

    def _retire(self, kernel: Kernel) -> None:
        self._busy.discard(kernel)
        self._up.discard(kernel)
        self._background(kernel.shutdown())
        if not self.closed:
            self.restarts += 1
            self._start_kernel()

    async def _start_one(self) -> None:
        delay = 0.5
        while not self.closed:
            kernel = self.kernel_factory(self.preload)
            try:
                await kernel.start()
            except Exception:
                self.failed_starts += 1
                log.exception("kernel failed to start; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
                continue
            self.failed_starts = 0
            if self.closed:
                await kernel.shutdown()
            else:
                self._up.add(kernel)
                self._idle.put_nowait(kernel)
            return

    def _start_kernel(self) -> None:
        task = asyncio.ensure_future(self._start_one())
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop every kernel: idle, busy, or still starting (a start stops its own on cancel)."""
        self.closed = True
        for task in self._starting:
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        while self._tasks:  # shutdowns and resets; a reset may retire its kernel: a new task
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        kernels = list(self._busy)
        while not self._idle.empty():
            kernels.append(self._idle.get_nowait())
        await asyncio.gather(*(k.shutdown() for k in kernels), return_exceptions=True)
