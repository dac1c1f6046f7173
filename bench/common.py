"""What the benchmark scripts share: a run of phases, supervised children, HTTP and load."""

import asyncio
import contextlib
import json
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the notebooks are written as the tests write theirs
from tests.notebooks import IMPORTS as IMPORTS  # noqa: E402  (after the path)
from tests.notebooks import write_notebook as write_notebook  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
CACHE = "X-Publisher-Cache"  # hit, miss, ...: on every chart's answer
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
Row = tuple[str, str, str]  # label, value, note: what every phase returns
Answer = namedtuple("Answer", "status cache png seconds")  # status: int, or an exception's name


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:  # nearest rank
    return sorted(values)[max(0, math.ceil(pct / 100 * len(values)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    try:
        with DIRECT.open(url, timeout=timeout) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def timed(url: str) -> tuple[int, float]:  # bytes and seconds of a 200 answer
    started, (status, _, body) = time.perf_counter(), get(url, 60)
    if status != 200:
        raise RuntimeError(f"{url} answered {status}")
    return len(body), time.perf_counter() - started


def running(p: psutil.Process, kernel: bool = False) -> bool:
    """Alive, not a zombie (``is_running`` also guards against pid reuse), maybe a kernel."""
    with contextlib.suppress(psutil.Error):
        alive = p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        return alive and (not kernel or any("ipykernel_launcher" in a for a in p.cmdline()))
    return False


class Child:
    """A process we started, its log in a file, in a session of its own: stopped by pid and
    process group, never by name, and its kernels (in sessions of their own) by pid."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True
            )
        self.ps = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {}  # every kernel seen, by pid
        self.left = 0  # processes left behind

    def kernels(self) -> list[psutil.Process]:  # remembered for the leftover check
        with contextlib.suppress(psutil.Error):
            live = [p for p in self.ps.children(recursive=True) if running(p, kernel=True)]
            self.seen.update((p.pid, p) for p in live)
            return live
        return []

    def rss(self) -> tuple[int, int]:  # its own and its kernels'
        sizes = []
        for p in self.kernels():
            with contextlib.suppress(psutil.Error):
                sizes.append(p.memory_info().rss)
        return self.ps.memory_info().rss, sum(sizes)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds (user + system) so far: its own, and its live kernels' together."""
        own = sum(self.ps.cpu_times()[:2])
        kernels = 0.0
        for p in self.kernels():
            with contextlib.suppress(psutil.Error):
                kernels += sum(p.cpu_times()[:2])
        return own, kernels

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> float:
        """Seconds until ``check()`` holds; an error with the log's tail if it exits first."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            self.kernels()
            with contextlib.suppress(OSError, ValueError, KeyError):
                if check():
                    return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"{what}: not ready after {timeout:.0f}s:\n{self.tail()}")

    def stop(self, grace: float = 30.0) -> int:
        """SIGTERM, then its whole group SIGKILLed after ``grace`` s; its exit code."""
        self.kernels()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.terminate()
            self.proc.wait(grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(10)

    def close(self) -> None:
        """Stop it, then kill (and count) the kernels still running 5 s later."""
        self.stop()
        deadline, left = time.monotonic() + 5, list(self.seen.values())
        while (left := [p for p in left if running(p)]) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.left = len(left)
        for p in left:
            print(f"   {self.name}: killing left-over {p.pid} {' '.join(p.cmdline())[:100]}")
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == p.pid:  # a kernel leads a group of its own
                    os.killpg(p.pid, signal.SIGKILL)
                p.kill()


@dataclass
class Bench:
    """One run of phases: its options, folder, server, children and the commands it ran."""

    args: Any
    base: str = ""  # the server's URL
    tmp: Path = Path()
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    children: list[Child] = field(default_factory=list)
    commands: list[str] = field(default_factory=lambda: [shlex.join([sys.executable, *sys.argv])])
    seeds: Iterator[int] = field(default_factory=lambda: iter(range(10**6 + os.getpid(), 10**9)))
    problems: list[str] = field(default_factory=list)  # a run with any has failed

    def start(self, child: Child) -> Child:
        self.commands.append(shlex.join(child.argv))
        self.children.append(child)
        self.stack.callback(child.close)
        return child

    def serve(self, folder: Path, kernels: int, *options: str) -> Child:
        """A real ``publisher serve`` on loopback, its log in the temporary folder."""
        port = free_port()
        self.base = f"http://{LOOPBACK}:{port}"
        argv = [sys.executable, "-m", "publisher", "serve", str(folder), "--host", LOOPBACK]
        argv += ["--port", str(port), "--cache-dir", str(self.tmp / "cache")]
        argv += ["--kernels", str(kernels), *options]
        return self.start(Child("server", argv, self.tmp / "server.log"))

    def health(self) -> dict[str, Any]:
        return json.loads(get(self.base + "/healthz", 2)[2])

    def idle(self, kernels: int) -> bool:  # every kernel idle, none busy, nobody waiting
        k = self.health()["kernels"]
        return k["idle"] == kernels and k["busy"] == 0 and k["waiting"] == 0

    def metric(self, name: str) -> float:
        for line in get(self.base + "/metrics")[2].decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        raise RuntimeError(f"no {name} in /metrics")

    def run(self) -> int:
        """Each of ``self.phases()`` (title, method returning rows), then all rows in one table.
        Exit status 0, or 2 (logs kept) when a phase failed or a process of ours lived on."""
        began, rows = time.monotonic(), []
        self.tmp = Path(tempfile.mkdtemp(prefix=f"publisher-{Path(sys.argv[0]).stem}-"))
        try:
            with self.stack:
                for title, phase in self.phases():  # type: ignore[attr-defined]
                    print(f"\n== {title}", flush=True)
                    started = time.monotonic()
                    rows += phase()
                    print(f"   ({time.monotonic() - started:.1f}s)", flush=True)
        except Exception as e:
            self.problems.append(f"{type(e).__name__}: {e}")
            print(f"\nBENCHMARK FAILED: {self.problems[-1]}", flush=True)
        left = sum(c.left for c in self.children)
        print("\n== summary")
        w1, w2 = (max((len(r[i]) for r in rows), default=0) for i in (0, 1))
        for label, value, note in rows:
            print(f"   {label:{w1}}  {value:>{w2}}  {note}".rstrip())
        print(f"   processes of ours left behind (and killed): {left}")
        print(f"   total {time.monotonic() - began:.0f}s; commands:", *self.commands, sep="\n     ")
        if self.problems or left:
            print(f"   logs kept in {self.tmp}")
            return 2
        shutil.rmtree(self.tmp, ignore_errors=True)
        return 0


async def fetch_all(
    urls: Iterable[str], clients: int, limit: float = 120, **connector: Any
) -> tuple[float, list[Answer]]:
    """``clients`` connections share ``urls``, one request each, until done or ``limit`` s."""
    import aiohttp

    todo, answers, stop = iter(urls), [], time.monotonic() + limit

    async def client(session: aiohttp.ClientSession) -> None:
        for url in todo:  # bounded: one shared iterator, and the clock
            if time.monotonic() > stop:
                return
            started, body, cache = time.perf_counter(), b"", None
            try:
                async with session.get(url) as r:  # follows redirects
                    body, status, cache = await r.read(), r.status, r.headers.get(CACHE)
            except (aiohttp.ClientError, TimeoutError) as e:
                status = type(e).__name__
            seconds = time.perf_counter() - started
            answers.append(Answer(status, cache, body.startswith(PNG), seconds))

    tcp = aiohttp.TCPConnector(limit=clients, **connector)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(limit), connector=tcp) as s:
        started = time.perf_counter()
        await asyncio.gather(*(client(s) for _ in range(clients)))
        return time.perf_counter() - started, answers
