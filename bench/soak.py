"""Soak test: the real publisher server under minutes of mixed traffic from many clients.

Run from the repository root::

    .venv/bin/python bench/soak.py                  # 120 s, 32 clients
    .venv/bin/python bench/soak.py --quick          # 20 s
    .venv/bin/python bench/soak.py --seconds 600 --clients 64 --keep

Exit status: 0 when the last line is ``SOAK PASS``, 1 on ``SOAK FAIL: reasons``.

What it does:

* Writes the reference notebooks (``tests/notebooks.py``) and a copy of the
  example notebooks (``notebooks/``) into one temporary folder, and starts the
  real server as a subprocess: ``python -m publisher serve TMP --host 127.0.0.1
  --port FREE --cache-dir TMP/cache --kernels 2 --timeout 3 --queue-size 16``,
  its log in ``TMP/server.log``. The server gets an environment variable
  ``SOAK_RUN_ID=<random>``, which its kernels inherit: that is how kernels
  left behind are found even after the server is gone and they were reparented.
* Waits (at most 180 s) for ``/healthz`` to report both kernels idle, records
  the server's RSS (the server process alone) and its kernels' RSS (the sum
  over its ``ipykernel_launcher`` descendants), then primes the hit URLs
  (each fetched until it answers 200, at most 5 tries).
* Runs ``--clients`` aiohttp clients (one session each) for ``--seconds``.
  Each picks a request kind by weight, and each kind has a fixed set of
  expected answers, written ``"STATUS CODE"`` (CODE is the JSON error code,
  the cache result ``X-Publisher-Cache`` for a chart, or ``png`` for an error
  drawn as an image: a quarter of the error requests send
  ``Accept: image/png``, as an ``<img>`` tag does):

  ======== ====== ==================================== ==========================
  kind     weight request                              expected
  ======== ====== ==================================== ==========================
  hit      60     10 echo URLs + the 4 example charts  200 hit, 304 hit (a tenth
                  with default parameters, primed      send If-None-Match). A hit
                                                       must never need a kernel,
                                                       so 503 is *not* expected
  miss     20     echo?count=N, N new each time        200 miss, 503 overloaded
  error    5      fails?reason=N                       500 notebook_error, 503
  noimage  3      noimage                              500 no_image, 503
  crash    2      crash (kills its kernel);            500 kernel_died, 503
                  at most one every ``--crash-every``
  timeout  2      slow?seconds=10 (server timeout 3s); 504 timeout, 503
                  at most one every ``--timeout-every``
  bad_*    2 each echo?count=abc, echo?bogus=1,        400 invalid_parameter,
                  echo?_dpi=99999, /charts/nope/...    400 unknown_parameter,
                                                       400 invalid_option,
                                                       404 unknown_notebook
  ======== ====== ==================================== ==========================

  A rate-limited kind picked too early is replaced by another pick.
  ``--weight KIND=N`` changes a weight (``--weight error=0``: no errors). Plus
  ``--quitters`` clients that only ask for new misses with a 0.05 s client
  timeout and walk away (kind ``abandon``: expected ``abandoned``, or any
  answer a miss may get), which exercises the server's cancellation. Any other
  answer, any connection error, and any client-side timeout (30 s) of a
  normal client is *unexpected*.
* Samples the RSS of the server and of its kernels every 5 s, and the set of
  its kernel processes every 0.5 s.
* After the load: waits (at most 60 s) for the pool to settle (2 idle, none
  busy or waiting), checks that exactly ``--kernels`` kernel processes live,
  that a fresh miss still renders (200 miss), snapshots ``/metrics`` and
  ``/healthz``, then sends SIGTERM and waits at most 30 s (then SIGKILL).
  Kernels left = kernels seen during the run still alive, plus any process
  carrying this run's ``SOAK_RUN_ID`` (that includes any
  ``ipykernel_launcher`` whose parent was the server), counted the moment
  the server has exited and again after a 5 s grace; any still there are then
  killed by pid. Both counts must be 0: the server's shutdown must stop its
  kernels itself (an orphaned ipykernel notices its parent is gone and exits
  by itself within about a second, which the grace alone would hide).

Memory rule ("bounded"): the *warm* RSS is the server's RSS sampled
``--warmup`` (10) seconds into the load, once every code path (the kernel
client, PIL for error images, the caches) has been imported and used. The
soak fails when the server's RSS after the load is more than 1.5x the warm RSS
plus ``--memory-cache-mb`` (16 MiB, passed to the server as
``--memory-cache-mb``: the memory cache may legitimately fill up to that
size during the run, and a smaller cap than the 64 MiB default keeps the rule
tight). The growth from warm to after, and its rate per minute, are printed
either way.

Fails (``SOAK FAIL: ...``) on: any unexpected answer, no successful miss at
all, a pool that does not settle or has a different number of kernel
processes than configured, a fresh miss that does not render after the load,
the memory rule, a server that needs SIGKILL or exits non-zero, any kernel
process alive when the server exited, or ``Task exception was never
retrieved`` in the server log.
Every loop here is bounded in time or count; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import LOOPBACK, free_port, percentile, serve_argv  # noqa: E402  (bench/ is sys.path[0])

from tests.notebooks import write_all  # noqa: E402

KERNELS = 2
SERVER_TIMEOUT = 3
QUEUE_SIZE = 16
CLIENT_TIMEOUT = 30.0
ABANDON_TIMEOUT = 0.05
IMAGE_ACCEPT = "image/png,image/*;q=0.8,*/*;q=0.5"
JSON_ACCEPT = "application/json"
MEMORY_FACTOR = 1.5

HIT_URLS = [f"/charts/echo.png?text=hit{i}" for i in range(10)] + [
    "/charts/distribution/chart.png",
    "/charts/sales/regions/by_region.png",
    "/charts/sales/regions/trend.png",
    "/charts/timeseries/chart.png",
]

OVERLOADED = "503 overloaded"


def _err(*codes: str) -> frozenset[str]:
    """An error answer may come as JSON (its code) or, for Accept: image/png, as a picture."""
    return frozenset(itertools.chain.from_iterable((c, c.split()[0] + " png") for c in codes))


EXPECTED: dict[str, frozenset[str]] = {
    "hit": frozenset({"200 hit", "304 hit"}),
    "miss": frozenset({"200 miss", OVERLOADED}),
    "error": _err("500 notebook_error", OVERLOADED),
    "noimage": _err("500 no_image", OVERLOADED),
    "crash": _err("500 kernel_died", OVERLOADED),
    "timeout": _err("504 timeout", OVERLOADED),
    "bad_type": _err("400 invalid_parameter"),
    "bad_param": _err("400 unknown_parameter"),
    "bad_option": _err("400 invalid_option"),
    "not_found": _err("404 unknown_notebook"),
    "abandon": frozenset({"abandoned", "200 miss", OVERLOADED}),
}
WEIGHTS = {
    "hit": 60,
    "miss": 20,
    "error": 5,
    "noimage": 3,
    "crash": 2,
    "timeout": 2,
    "bad_type": 2,
    "bad_param": 2,
    "bad_option": 2,
    "not_found": 2,
}
ERROR_KINDS = {k for k in WEIGHTS if k not in ("hit", "miss")}


# --------------------------------------------------------------------------- helpers


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def is_kernel(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return any("ipykernel_launcher" in part for part in proc.cmdline())
    return False


class Server:
    """The publisher subprocess; everything about it is found by pid or by our run id."""

    def __init__(self, folder: Path, cache: Path, log: Path, memory_cache_mb: float) -> None:
        self.port = free_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.run_id = uuid.uuid4().hex
        self.argv = serve_argv(
            folder, self.port, cache, KERNELS,
            "--timeout", str(SERVER_TIMEOUT),
            "--queue-size", str(QUEUE_SIZE),
            "--memory-cache-mb", str(memory_cache_mb),
        )  # fmt: skip
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
        env["SOAK_RUN_ID"] = self.run_id
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ps = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {}  # every kernel process seen, by pid
        self.max_kernel_procs = 0

    def kernels(self) -> list[psutil.Process]:
        """The server's kernel processes now, remembered for the leftover check."""
        try:
            procs = [p for p in self.ps.children(recursive=True) if is_kernel(p)]
        except psutil.Error:
            return []
        for p in procs:
            self.seen.setdefault(p.pid, p)
        live = [p for p in procs if _running(p)]
        self.max_kernel_procs = max(self.max_kernel_procs, len(live))
        return live

    def rss(self) -> tuple[int, int, int]:
        """(server RSS, sum of its kernels' RSS, kernel count)."""
        server = self.ps.memory_info().rss
        total, count = 0, 0
        for p in self.kernels():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
                count += 1
        return server, total, count

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 30.0) -> tuple[int | None, bool]:
        """SIGTERM, wait up to ``grace`` s, else SIGKILL; (exit code, whether it was killed)."""
        self.kernels()
        killed = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                killed = True
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)
        return self.proc.returncode, killed

    def leftovers(self, grace: float = 5.0) -> list[psutil.Process]:
        """Our kernels (or anything else carrying our run id) still running after ``grace`` s."""
        deadline = time.monotonic() + grace
        while True:  # bounded by the deadline
            left = {p.pid: p for p in self.seen.values() if _running(p)}
            for p in psutil.process_iter(["pid", "ppid", "cmdline"]):
                if p.pid in left or p.pid == os.getpid():
                    continue
                with contextlib.suppress(psutil.Error):
                    if p.info["ppid"] == self.proc.pid and is_kernel(p):
                        left[p.pid] = p
                        continue
                    if p.environ().get("SOAK_RUN_ID") == self.run_id and _running(p):
                        left[p.pid] = p
            if not left or time.monotonic() > deadline:
                return sorted(left.values(), key=lambda p: p.pid)
            time.sleep(0.2)


def _running(p: psutil.Process) -> bool:
    """Alive and not a zombie; ``is_running`` also guards against pid reuse."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --------------------------------------------------------------------------- the load


@dataclass
class Tally:
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latency: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)
    unexpected_count: int = 0

    def add(self, kind: str, outcome: str, seconds: float, url: str, detail: str = "") -> None:
        self.outcomes[kind][outcome] += 1
        self.latency[kind].append(seconds)
        if outcome not in EXPECTED[kind]:
            self.unexpected_count += 1
            if len(self.unexpected) < 20:
                self.unexpected.append(f"{kind} {url} -> {outcome} {detail[:300]}")

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.outcomes.values())


class Picker:
    """Request kinds by weight, with the kernel-killing ones rate-limited across all clients."""

    def __init__(self, crash_every: float, timeout_every: float, rng: random.Random) -> None:
        self.every = {"crash": crash_every, "timeout": timeout_every}
        self.next_at = {"crash": 0.0, "timeout": 0.0}
        self.rng = rng
        self.kinds = list(WEIGHTS)
        self.weights = [WEIGHTS[k] for k in self.kinds]
        self.free = [k for k in self.kinds if k not in self.every]
        self.free_weights = [WEIGHTS[k] for k in self.free]
        self.counter = itertools.count(1)

    def pick(self) -> str:
        kind = self.rng.choices(self.kinds, self.weights)[0]
        if kind in self.every:
            now = time.monotonic()
            if now < self.next_at[kind]:
                return self.rng.choices(self.free, self.free_weights)[0]
            self.next_at[kind] = now + self.every[kind]
        return kind

    def url(self, kind: str) -> str:
        n = next(self.counter)
        return {
            "hit": lambda: self.rng.choice(HIT_URLS),
            "miss": lambda: f"/charts/echo.png?count={n}",
            "error": lambda: f"/charts/fails.png?reason=r{n}",
            "noimage": lambda: "/charts/noimage.png",
            "crash": lambda: "/charts/crash.png",
            "timeout": lambda: "/charts/slow.png?seconds=10",
            "bad_type": lambda: "/charts/echo.png?count=abc",
            "bad_param": lambda: "/charts/echo.png?bogus=1",
            "bad_option": lambda: "/charts/echo.png?_dpi=99999",
            "not_found": lambda: f"/charts/nope{n % 7}/chart.png",
            "abandon": lambda: f"/charts/echo.png?text=quit{n}",
        }[kind]()


async def fetch(
    session: aiohttp.ClientSession, base: str, kind: str, url: str, headers: dict[str, str]
) -> tuple[str, str]:
    """(outcome, detail) of one request; see EXPECTED for the outcomes."""
    async with session.get(base + url, headers=headers, allow_redirects=False) as r:
        body = await r.read()
        ctype = r.headers.get("Content-Type", "")
        if r.status in (200, 304):
            cache = r.headers.get("X-Publisher-Cache", "-")
            if r.status == 200 and (ctype != "image/png" or not body.startswith(b"\x89PNG")):
                return f"{r.status} {cache} bad-body", ctype
            return f"{r.status} {cache}", ""
        if ctype.startswith("image/png"):
            ok = body.startswith(b"\x89PNG") and headers.get("Accept") == IMAGE_ACCEPT
            return f"{r.status} {'png' if ok else 'unasked-png'}", ""
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return f"{r.status} not-json", body[:200].decode(errors="replace")
        if r.status == 503 and "Retry-After" not in r.headers:
            return f"{r.status} {code} no-retry-after", ""
        return f"{r.status} {code}", body.decode(errors="replace")


async def client(
    base: str, picker: Picker, tally: Tally, until: float, etags: dict[str, str], seed: int
) -> None:
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < until:  # bounded: each request is bounded by CLIENT_TIMEOUT
            kind = picker.pick()
            url = picker.url(kind)
            headers = {"Accept": JSON_ACCEPT}
            if kind in ERROR_KINDS and rng.random() < 0.25:
                headers["Accept"] = IMAGE_ACCEPT
            if kind == "hit" and url in etags and rng.random() < 0.1:
                headers["If-None-Match"] = etags[url]
            started = time.monotonic()
            try:
                outcome, detail = await fetch(session, base, kind, url, headers)
            except TimeoutError:
                outcome, detail = "client-timeout", ""
            except aiohttp.ClientError as e:
                outcome, detail = f"conn {type(e).__name__}", str(e)
            tally.add(kind, outcome, time.monotonic() - started, url, detail)
            if outcome.startswith("503"):
                await asyncio.sleep(rng.uniform(0.05, 0.2))  # a polite client backs off a little


async def quitter(base: str, picker: Picker, tally: Tally, until: float, seed: int) -> None:
    """A client that asks for new misses and walks away after 0.05 s."""
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=ABANDON_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < until:  # bounded: each request is bounded by its timeout
            url = picker.url("abandon")
            started = time.monotonic()
            try:
                outcome, detail = await fetch(
                    session, base, "abandon", url, {"Accept": JSON_ACCEPT}
                )
            except TimeoutError:
                outcome, detail = "abandoned", ""
            except aiohttp.ClientError as e:
                outcome, detail = f"conn {type(e).__name__}", str(e)
            tally.add("abandon", outcome, time.monotonic() - started, url, detail)
            await asyncio.sleep(rng.uniform(0.05, 0.25))


@dataclass
class Memory:
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, srv, krn, n
    warm: int | None = None
    warm_at: float | None = None


async def monitor(server: Server, memory: Memory, started: float, until: float, warmup: float):
    """Kernel processes every 0.5 s, RSS every 5 s (and once at the warm-up mark)."""
    next_sample = started
    while time.monotonic() < until:  # bounded by the load's end
        now = time.monotonic()
        if memory.warm is None and now - started >= warmup:
            memory.warm, _, _ = server.rss()
            memory.warm_at = now - started
        if now >= next_sample:
            memory.samples.append((now - started, *server.rss()))
            next_sample += 5
        else:
            server.kernels()
        await asyncio.sleep(0.5)


async def run_load(
    server: Server, args: argparse.Namespace, etags: dict[str, str]
) -> tuple[Tally, Memory, float]:
    picker = Picker(args.crash_every, args.timeout_every, random.Random(args.seed))
    tally, memory = Tally(), Memory()
    started = time.monotonic()
    until = started + args.seconds
    tasks = [
        asyncio.ensure_future(client(server.base, picker, tally, until, etags, args.seed + i))
        for i in range(args.clients)
    ]
    tasks += [
        asyncio.ensure_future(quitter(server.base, picker, tally, until, args.seed + 1000 + i))
        for i in range(args.quitters)
    ]
    watcher = asyncio.ensure_future(monitor(server, memory, started, until, args.warmup))
    done, pending = await asyncio.wait(tasks, timeout=args.seconds + CLIENT_TIMEOUT + 10)
    for t in pending:
        t.cancel()
    for t in done:
        if t.exception() is not None:
            tally.unexpected_count += 1
            tally.unexpected.append(f"client task failed: {t.exception()!r}")
    if pending:
        tally.unexpected_count += len(pending)
        tally.unexpected.append(f"{len(pending)} client tasks did not finish in time")
    await asyncio.wait([watcher], timeout=5)
    return tally, memory, time.monotonic() - started


# --------------------------------------------------------------------------- setup and checks


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as r:
        body = await r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body.decode(errors="replace")


async def wait_pool(
    server: Server, timeout: float, want_idle: int = KERNELS
) -> tuple[bool, Any, float]:
    """Until /healthz shows ``want_idle`` idle kernels and nothing busy or waiting."""
    started = time.monotonic()
    last: Any = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() - started < timeout:  # bounded by timeout
            if server.proc.poll() is not None:
                return False, f"server exited ({server.proc.returncode})", 0.0
            server.kernels()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                _, last = await get_json(session, server.base + "/healthz")
                k = last.get("kernels", {}) if isinstance(last, dict) else {}
                if k.get("idle") == want_idle and k.get("busy") == 0 and k.get("waiting") == 0:
                    return True, last, time.monotonic() - started
            await asyncio.sleep(0.2)
    return False, last, time.monotonic() - started


async def prime(server: Server) -> tuple[dict[str, str], list[str]]:
    """Fetch every hit URL until it answers 200; their ETags, and what could not be primed."""
    etags: dict[str, str] = {}
    failed = []
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for url in HIT_URLS:
            status = None
            for _ in range(5):  # a cold first render may time out on a busy machine
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(server.base + url) as r:
                        await r.read()
                        status = r.status
                        if r.status == 200:
                            etags[url] = r.headers["ETag"]
                            break
                await asyncio.sleep(0.5)
            if url not in etags:
                failed.append(f"{url} -> {status}")
    return etags, failed


async def fresh_miss(server: Server) -> str:
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            outcome, detail = await fetch(
                session, server.base, "miss", "/charts/echo.png?text=after-soak", {}
            )
        except (aiohttp.ClientError, TimeoutError) as e:
            return f"conn {type(e).__name__}"
        return f"{outcome} {detail[:200]}".strip()


async def snapshot(server: Server) -> tuple[str, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(server.base + "/metrics") as r:
            metrics = await r.text()
        _, health = await get_json(session, server.base + "/healthz")
    return metrics, health


def metric_lines(text: str) -> list[str]:
    keep = (
        "publisher_requests_total",
        "publisher_chart_cache_total",
        "publisher_render_seconds_count",
        "publisher_render_seconds_sum",
        "publisher_kernel_restarts",
        "publisher_queue_depth",
        "publisher_kernels_",
    )
    return [line for line in text.splitlines() if line.startswith(keep)]


def scan_log(path: Path) -> dict[str, list[str]]:
    patterns = {
        "Traceback": "Traceback",
        "never retrieved": "Task exception was never retrieved",
        "unexpected error": "unexpected error on",
        "died while idle": "died while idle",
        "failed to start": "kernel failed to start",
        "Unclosed": "Unclosed",
        "ERROR": "ERROR",
    }
    found: dict[str, list[str]] = {k: [] for k in patterns}
    with contextlib.suppress(OSError), path.open(errors="replace") as f:
        for line in f:
            for name, pattern in patterns.items():
                if pattern in line:
                    found[name].append(line.rstrip())
    return found


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--quick", action="store_true", help="20 s instead of --seconds")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--quitters", type=int, default=2, help="clients that give up at 0.05 s")
    parser.add_argument("--crash-every", type=float, default=2.0, help="min seconds between")
    parser.add_argument("--timeout-every", type=float, default=3.0, help="min seconds between")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before warm RSS")
    parser.add_argument("--memory-cache-mb", type=float, default=16.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--weight",
        action="append",
        default=[],
        metavar="KIND=N",
        help=f"change a kind's weight (kinds: {', '.join(WEIGHTS)}); repeatable",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 20.0
    for item in args.weight:
        kind, _, n = item.partition("=")
        if kind not in WEIGHTS or not n.isdigit():
            parser.error(f"--weight {item}: want KIND=N with KIND one of {', '.join(WEIGHTS)}")
        WEIGHTS[kind] = int(n)
    if not any(WEIGHTS[k] for k in WEIGHTS if k not in ("crash", "timeout")):
        parser.error("at least one kind other than crash and timeout needs a weight")

    tmp = Path(tempfile.mkdtemp(prefix="publisher-soak-"))
    folder = write_all(tmp / "notebooks")
    shutil.copytree(REPO / "notebooks", folder, dirs_exist_ok=True)
    reasons: list[str] = []
    server = Server(folder, tmp / "cache", tmp / "server.log", args.memory_cache_mb)
    print(f"soak: {args.seconds:.0f}s, {args.clients} clients + {args.quitters} quitters")
    print(f"  server: {' '.join(server.argv[1:])}")
    print(f"  log: {server.log}")
    try:
        reasons = soak(server, args)
    except Exception as e:  # the soak itself broke: still stop everything
        reasons.append(f"soak aborted: {e!r}")
        print(f"\n!! soak aborted: {e!r}\n{server.tail()}")
    finally:
        code, killed = server.stop()
        at_exit = server.leftovers(grace=0)
        left = server.leftovers()
        for p in left:  # ours: started by the server we started
            with contextlib.suppress(psutil.Error):
                print(f"  killing left-over {p.pid} {' '.join(p.cmdline())[:100]}")
                p.kill()
    print(f"server exit code: {code}" + (" (needed SIGKILL)" if killed else ""))
    print(f"kernel processes alive the moment the server exited: {len(at_exit)}")
    print(f"kernel processes left (after a 5 s grace): {len(left)}")
    print(f"kernel processes seen during the run: {len(server.seen)}")
    logged = scan_log(server.log)
    print("server log: " + ", ".join(f"{k}={len(v)}" for k, v in logged.items()))
    for name in ("never retrieved", "unexpected error", "Traceback"):
        for line in logged[name][:3]:
            print(f"  {line[:200]}")
    if killed:
        reasons.append("server ignored SIGTERM")
    if code != 0:
        reasons.append(f"server exit code {code}")
    if left:
        reasons.append(f"{len(left)} kernel processes left")
    elif at_exit:
        reasons.append(f"{len(at_exit)} kernel processes outlived the server (then exited alone)")
    if logged["never retrieved"]:
        reasons.append(f"{len(logged['never retrieved'])} 'Task exception was never retrieved'")
    if reasons or args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print("SOAK PASS" if not reasons else "SOAK FAIL: " + "; ".join(reasons))
    return 0 if not reasons else 1


def soak(server: Server, args: argparse.Namespace) -> list[str]:
    reasons: list[str] = []
    ready, health, waited = asyncio.run(wait_pool(server, 180))
    if not ready:
        raise RuntimeError(f"server not ready after {waited:.0f}s: {health}\n{server.tail()}")
    rss0, krss0, nk0 = server.rss()
    print(f"  ready after {waited:.1f}s; server RSS {mib(rss0)}, {nk0} kernels {mib(krss0)}")
    etags, failed = asyncio.run(prime(server))
    if failed:
        raise RuntimeError(f"could not prime hit URLs: {failed}")
    print(f"  primed {len(etags)} hit URLs; load for {args.seconds:.0f}s ...", flush=True)

    tally, memory, wall = asyncio.run(run_load(server, args, etags))

    settled, health, waited = asyncio.run(wait_pool(server, 60))
    rss1, krss1, nk1 = server.rss()
    after_miss = asyncio.run(fresh_miss(server))
    nk_after = len(server.kernels())
    metrics, health_end = asyncio.run(snapshot(server))

    # ---------------------------------------------------------------- report
    total = tally.total
    print(
        f"\n== duration {wall:.1f}s (load {args.seconds:.0f}s, then"
        f" {wall - args.seconds:.1f}s for requests in flight), {total} requests,"
        f" {total / wall:.1f} req/s"
    )
    print(f"   {'kind':10} {'n':>7} {'p50':>8} {'p95':>8}  outcomes")
    for kind in [*WEIGHTS, "abandon"]:
        if kind not in tally.outcomes:
            continue
        lat = tally.latency[kind]
        outcomes = ", ".join(
            f"{o}: {n}{'' if o in EXPECTED[kind] else ' (UNEXPECTED)'}"
            for o, n in sorted(tally.outcomes[kind].items())
        )
        n = sum(tally.outcomes[kind].values())
        print(
            f"   {kind:10} {n:7} {ms(percentile(lat, 50)):>8} {ms(percentile(lat, 95)):>8}  {outcomes}"
        )
    by_status: Counter[str] = Counter()
    for counts in tally.outcomes.values():
        for outcome, n in counts.items():
            by_status[outcome.split()[0]] += n
    print("   by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(by_status.items())))
    print(f"   unexpected: {tally.unexpected_count}")
    for line in tally.unexpected:
        print(f"     {line}")

    print("\n== memory (RSS)")
    srv_max = max([rss0, rss1, *(s[1] for s in memory.samples)])
    krn_max = max([krss0, krss1, *(s[2] for s in memory.samples)])
    print(f"   server before {mib(rss0)}, after {mib(rss1)}, max {mib(srv_max)}")
    for t, srv, krn, n in memory.samples:
        print(f"     t={t:5.0f}s server {mib(srv):>10}  kernels {mib(krn):>10} ({n})")
    print(f"   kernels before {mib(krss0)} ({nk0}), after {mib(krss1)} ({nk1}), max {mib(krn_max)}")
    print(f"   most kernel processes at once: {server.max_kernel_procs}")
    limit_extra = args.memory_cache_mb * 2**20
    if memory.warm is None:
        reasons.append("no warm-up RSS sample (run longer than --warmup)")
    else:
        growth = rss1 - memory.warm
        span = max(1.0, wall - (memory.warm_at or 0))
        limit = MEMORY_FACTOR * memory.warm + limit_extra
        print(
            f"   warm (t={memory.warm_at:.0f}s) {mib(memory.warm)}; growth warm->after"
            f" {growth / 2**20:+.1f} MiB ({growth / memory.warm:+.1%}),"
            f" {growth / 2**20 / span * 60:+.1f} MiB/min;"
            f" total growth before->after {(rss1 - rss0) / 2**20:+.1f} MiB"
        )
        print(
            f"   rule: after <= {MEMORY_FACTOR} x warm + {args.memory_cache_mb:g} MiB"
            f" = {mib(limit)}: {'ok' if rss1 <= limit else 'EXCEEDED'}"
        )
        if rss1 > limit:
            reasons.append(f"server RSS {mib(rss1)} > {mib(limit)}")

    print("\n== pool and server")
    print(f"   settled after the load: {settled} in {waited:.1f}s; healthz {health}")
    print(f"   kernel processes after settling: {nk_after} (configured {KERNELS})")
    print(f"   a fresh miss after the load: {after_miss}")
    restarts = (
        health_end.get("kernels", {}).get("restarts") if isinstance(health_end, dict) else None
    )
    print(f"   kernel restarts: {restarts}")
    print(f"   /healthz: {json.dumps(health_end)}")
    print("   /metrics:")
    for line in metric_lines(metrics):
        print(f"     {line}")
    print()

    if tally.unexpected_count:
        reasons.append(f"{tally.unexpected_count} unexpected answers")
    if not tally.outcomes["miss"].get("200 miss"):
        reasons.append("no miss rendered during the load")
    if not settled:
        reasons.append(f"pool did not settle in 60s: {health}")
    if nk_after != KERNELS:
        reasons.append(f"{nk_after} kernel processes after settling, not {KERNELS}")
    if not after_miss.startswith("200 miss"):
        reasons.append(f"a fresh miss after the load answered {after_miss}")
    return reasons


if __name__ == "__main__":
    sys.exit(main())
