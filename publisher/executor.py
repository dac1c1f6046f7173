"""One running ipykernel, driven cell by cell through nbclient.

A ``Kernel`` is started once, warmed with the imports renders need, and then
runs many jobs. nbclient does the Jupyter protocol (outputs, errors, dead
kernels, timeouts); this module decides what a render runs and turns
nbclient's exceptions into ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from time import monotonic
from typing import Any

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from .errors import KernelDied, NotebookFailed, RenderTimeout
from .inject import cell_magic
from .kernel_side import ANSWERED_MIME, RESET_MIME
from .options import RenderOptions

log = logging.getLogger(__name__)

_KERNEL_SIDE = resources.files("publisher").joinpath("kernel_side.py").read_text()
_INSTALL = (
    "import sys as _s, types as _t\n"
    "_m = _t.ModuleType('_publisher')\n"
    "exec(compile({source!r}, '<publisher>', 'exec'), _m.__dict__)\n"
    "_s.modules['_publisher'] = _m\n"
    "_m.warm({modules!r})\n"
    "del _s, _t, _m\n"
)
_PUBLISHER = "__import__('_publisher')."  # binds no name the notebook could see


@dataclass(frozen=True)
class Job:
    """The cells one render runs, already with the parameters injected, and where it runs."""

    cwd: str
    cells: tuple[str, ...]
    options: RenderOptions
    root: str = ""  # the notebooks' folder: modules imported from it are forgotten after
    max_pixels: int | None = None  # largest side of the final image
    max_reads: int = 1000  # files recorded as the render's data; the rest are counted


Outputs = list[list[dict[str, Any]]]


@dataclass(frozen=True)
class ResetReport:
    """What a reset found: whether the kernel can be lent again, and how big it is."""

    changed: list[str]  # library classes or globals a render rebound: no reset restores them
    rss: int  # resident bytes after the reset


class Kernel:
    """A kernel process plus the nbclient client that talks to it."""

    def __init__(self, preload: list[str]) -> None:
        self.preload = preload
        self.renders = 0
        self.reset_report: ResetReport | None = None  # from the kernel's last reset, if unread
        self.died_resetting = False  # after its render's last output, in the reset that followed
        # Reset within the render's last request rather than in a request of its own:
        # less CPU on both sides, and a few milliseconds more before the answer.
        self.reset_in_render = False
        # Local kernels talk over Unix sockets in a folder only this user can enter: no
        # TCP port for another local user to reach, and no socket names to collide on.
        self.folder = tempfile.mkdtemp(prefix="publisher-kernel-")
        self.reads_file = os.path.join(self.folder, "reads.json")  # kernel_side._report_reads
        self.km = AsyncKernelManager(
            kernel_name="python3",
            transport="ipc",
            connection_file=os.path.join(self.folder, "kernel.json"),
        )
        self.client = NotebookClient(nbformat.v4.new_notebook(), km=self.km, allow_errors=False)

    @property
    def pid(self) -> int | None:
        provisioner = self.km.provisioner
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    async def start(self) -> Kernel:
        """Start the process and import the preload list; returns self once it can render."""
        # The server's own settings (the signing secret, the Redis URL and its password)
        # are not the notebook's business: a chart could print them for anyone to see.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
        env.update(PYDEVD_DISABLE_FILE_VALIDATION="1", JUPYTER_PLATFORM_DIRS="1")
        env.pop("PYTHONSTARTUP", None)
        try:  # a start cancelled part-way must still stop the process it launched
            # A notebook's own output reaches the server over the protocol; what a
            # kernel writes to its file descriptors directly must not forge log lines.
            await self.km.start_kernel(
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            await self.client.async_start_new_kernel_client()
            install = _INSTALL.format(source=_KERNEL_SIDE, modules=self.preload)
            await self._run_cells((install, _PUBLISHER + "snapshot()"), monotonic() + 120)
        except BaseException:
            await self.shutdown()
            raise
        return self

    async def run(self, job: Job, timeout: float) -> Outputs:
        """Run one render's cells in a clean kernel; returns each cell's outputs, in order.

        After any exception the kernel's state is unknown: the caller must
        not give it another job.
        """
        self.renders += 1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.reads_file)  # the last render's
        o = job.options
        first, *rest = job.cells or ("",)
        alone = cell_magic(first)  # the magic must stay the first line of its cell
        requests = 1 + alone + sum(1 for cell in rest if cell.strip())  # nbclient skips blanks
        prepare = (
            _PUBLISHER + f"prepare({job.root or job.cwd!r}, {job.cwd!r}, {o.fmt!r},"
            f" {o.dpi!r}, {o.width!r}, {o.height!r}, {job.max_pixels!r}, {job.max_reads!r},"
            f" {self.reads_file!r}, {requests}, {self.reset_in_render!r})"
        )
        deadline, reported = monotonic() + timeout, self.reset_in_render
        if alone:
            outputs = await self._run_cells((prepare, first, *rest), deadline, reported)
            return outputs[1:]
        return await self._run_cells((prepare + "\n" + first, *rest), deadline, reported)

    def reads(self) -> dict[str, Any] | None:
        """What the last render reported it read (``kernel_side._report_reads``); None: nothing."""
        try:
            with open(self.reads_file) as report:
                raw = json.load(report)
        except FileNotFoundError:
            return None
        except ValueError:  # cut short: the render wrote it as it ended
            log.warning("kernel %s: unreadable report of the files it read", self.pid)
            return None
        return raw if isinstance(raw, dict) else None

    async def reset(self, timeout: float = 30) -> ResetReport:
        """Back to the state of a fresh kernel; done between renders, not during one.

        Not needed after a render run with ``reset_in_render`` that left a
        ``reset_report``: that kernel reset itself (``kernel_side._reset_after_reply``).
        """
        if self.died_resetting:
            raise KernelDied("the kernel died resetting itself after its render")
        await self._run_cells((_PUBLISHER + "reset()",), monotonic() + timeout, True)
        report, self.reset_report = self.reset_report, None
        if report is None:
            raise KernelDied("the kernel did not report on its reset")
        return report

    async def _run_cells(
        self, sources: tuple[str, ...], deadline: float, reported: bool = False
    ) -> Outputs:
        """Each cell's outputs; with ``reported``, the last cell's ends with a reset report,
        which goes to ``reset_report`` (a report anywhere else is the notebook's output)."""
        client = self.client
        client.nb = _notebook(sources)
        client.reset_execution_trackers()
        client.timeout_func = lambda cell: max(0.001, deadline - monotonic())  # type: ignore[assignment]
        outputs: Outputs = []
        self.reset_report = None
        last = max(i for i, source in enumerate(sources) if source.strip())  # blanks: not sent
        try:
            for index, cell in enumerate(client.nb.cells):
                mark = None
                try:
                    await client.async_execute_cell(cell, index, store_history=False)
                except DeadKernelError:
                    if not (reported and index == last):
                        raise
                    mark, self.reset_report = _take_reset(cell.outputs)
                    if mark is None:
                        raise
                    self.died_resetting = True  # the render is whole; the kernel is lost
                    log.warning("kernel %s died resetting itself after a render", self.pid)
                    if mark["error"]:  # nbclient never read the reply: the mark carries it
                        raise _failed(*mark["error"]) from None
                finally:  # a last cell that raised has reset the kernel too
                    if reported and index == last and mark is None:
                        _, self.reset_report = _take_reset(cell.outputs)
                outputs.append(list(cell.outputs))
        except CellExecutionError as e:
            raise _failed(e.ename, e.evalue) from None
        except CellTimeoutError:
            raise RenderTimeout("the render took longer than its time limit") from None
        except DeadKernelError:
            raise KernelDied("the kernel died while rendering") from None
        return outputs

    async def alive(self) -> bool:
        return bool(await self.km.is_alive())

    async def shutdown(self) -> None:
        """Stop the process now; renders are disposable, so there is nothing to save."""
        try:
            if self.client.kc is not None:
                self.client.kc.stop_channels()
                self.client.kc = None
            if self.km.has_kernel:
                await self.km.shutdown_kernel(now=True)
        except Exception:  # a kernel that is already gone is what we wanted
            log.debug("kernel shutdown", exc_info=True)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            await asyncio.sleep(0)


def _notebook(sources: tuple[str, ...]) -> Any:
    """The cells to run as a notebook, built without nbformat's schema validation:
    they are ours and well formed, and validating them took about 7% of the server's
    CPU for a render."""
    cells: list[dict[str, Any]] = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell-{i}",
            "metadata": {},
            "outputs": [],
            "source": source,
        }
        for i, source in enumerate(sources)
    ]
    return nbformat.from_dict({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _take_reset(outputs: list[Any]) -> tuple[dict[str, Any] | None, ResetReport | None]:
    """Remove what the kernel's reset added to the last cell's outputs; returns the mark it
    sent first (``kernel_side._reset_after_reply``), and its report.

    From the last mark on, every output is the reset's: its report, and whatever
    the notebook's finalizers printed as the reset freed them. A reset in a request
    of its own sends no mark; its report is the last output.
    """
    marks = [i for i, output in enumerate(outputs) if ANSWERED_MIME in output.get("data", {})]
    if not marks:
        if not outputs or RESET_MIME not in outputs[-1].get("data", {}):
            return None, None
        return None, _report(outputs.pop()["data"][RESET_MIME])
    mark, reset = outputs[marks[-1]]["data"][ANSWERED_MIME], outputs[marks[-1] + 1 :]
    del outputs[marks[-1] :]
    reports = [
        output["data"][RESET_MIME] for output in reset if RESET_MIME in output.get("data", {})
    ]
    return mark, _report(reports[-1]) if reports else None


def _report(data: dict[str, Any]) -> ResetReport:
    return ResetReport(list(data["changed"]), int(data["rss"]))


def _failed(name: str, value: str) -> NotebookFailed:
    """The notebook's exception, as its execute reply names it."""
    return NotebookFailed(f"{name}: {value}" if value else name, exception=name)
