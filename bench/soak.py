"""Soak: the real server under a mix of traffic (KINDS) from many clients for a while (README,
"Soak"): every answer the expected one, kernels replaced after crashes and timeouts, memory
before and after, a clean exit on SIGTERM. The last line is SOAK PASS, or SOAK FAIL: why.

    .venv/bin/python bench/soak.py [--seconds 120] [--clients 32]
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
from common import CACHE, PNG, REPO, Bench, Row, get

from tests.notebooks import write_all

KERNELS, CLIENT_TIMEOUT = 2, 30.0
OPTIONS = ("--timeout", "3", "--queue-size", "16", "--memory-cache-mb", "16")
HIT_URLS = [f"/charts/echo.png?text=hit{i}" for i in range(10)]
HIT_URLS += ["/charts/distribution/chart.png", "/charts/timeseries/chart.png"]
HIT_URLS += ["/charts/sales/regions/by_region.png", "/charts/sales/regions/trend.png"]
BUSY = "503 overloaded"
KINDS: dict[str, tuple[int, str, tuple[str, ...]]] = {  # weight, URL ({n}: new each time), expected
    "hit": (60, "", ("200 hit",)),  # never needs a kernel, so never a 503
    "miss": (20, "/charts/echo.png?count={n}", ("200 miss", BUSY)),
    "error": (5, "/charts/fails.png?reason=r{n}", ("500 notebook_error", BUSY)),
    "noimage": (3, "/charts/noimage.png", ("500 no_image", BUSY)),
    "crash": (2, "/charts/crash.png", ("500 kernel_died", BUSY)),
    "timeout": (2, "/charts/slow.png?seconds=10", ("504 timeout", BUSY)),
    "bad_type": (2, "/charts/echo.png?count=abc", ("400 invalid_parameter",)),
    "bad_param": (2, "/charts/echo.png?bogus=1", ("400 unknown_parameter",)),
    "bad_option": (2, "/charts/echo.png?_dpi=99999", ("400 invalid_option",)),
    "not_found": (2, "/charts/nope{m}/chart.png", ("404 unknown_notebook",)),
}
EVERY = {"crash": 2.0, "timeout": 3.0}  # at most one every so many seconds, across all clients


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


async def fetch(session: aiohttp.ClientSession, url: str) -> str:
    """ "STATUS CACHE" for an image, "STATUS CODE" for an error (its JSON error code)."""
    async with session.get(url, allow_redirects=False) as r:
        body = await r.read()
    if r.status == 200 and body.startswith(PNG):
        return f"200 {r.headers.get(CACHE)}"
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return f"{r.status} {json.loads(body)['error']['code']}"
    return f"{r.status} {body[:200].decode(errors='replace')}"


@dataclass
class Soak(Bench):
    """What every client asked and got, the server's memory, why the soak failed."""

    rng: random.Random = field(default_factory=lambda: random.Random(1))
    next_at: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: list[str] = field(default_factory=list)
    before: tuple[int, int] = (0, 0)  # RSS: the server's, its kernels'

    def phases(self) -> Iterator[tuple[str, Callable[[], list[Row]]]]:
        yield f"start the server and prime {len(HIT_URLS)} hit URLs", self.start_server
        yield f"load: {self.args.seconds:.0f}s, {self.args.clients} clients", self.load
        yield "after the load: the pool settled, memory (RSS), SIGTERM", self.after

    def start_server(self) -> list[Row]:
        shutil.copytree(REPO / "notebooks", write_all(self.tmp / "notebooks"), dirs_exist_ok=True)
        server = self.serve(self.tmp / "notebooks", KERNELS, *OPTIONS)
        waited = server.wait("pool ready", lambda: self.idle(KERNELS), 180)
        self.before = server.rss()
        for url in HIT_URLS:  # a cold render may time out
            for _ in range(5):
                if get(self.base + url, CLIENT_TIMEOUT)[0] == 200:
                    break
            else:
                raise RuntimeError(f"could not prime {url}")
        return [("ready after", f"{waited:.1f}s", "")]

    def pick(self, n: int) -> tuple[str, str]:
        now = time.monotonic()
        kinds = [k for k in KINDS if now >= self.next_at.get(k, 0)]
        kind = self.rng.choices(kinds, [KINDS[k][0] for k in kinds])[0]
        self.next_at[kind] = now + EVERY.get(kind, 0)
        url = self.rng.choice(HIT_URLS) if kind == "hit" else KINDS[kind][1].format(n=n, m=n % 7)
        return kind, url

    async def client(
        self, session: aiohttp.ClientSession, until: float, counter: Iterator[int]
    ) -> None:
        while time.monotonic() < until:  # bounded: every request has a timeout
            kind, url = self.pick(next(counter))
            try:
                outcome = await fetch(session, self.base + url)
            except TimeoutError:
                outcome = "client-timeout"
            except aiohttp.ClientError as e:
                outcome = f"conn {type(e).__name__}: {e}"
            self.outcomes[kind][outcome] += 1
            if outcome not in KINDS[kind][2]:
                self.unexpected.append(f"{kind} {url} -> {outcome[:300]}")
            if outcome == BUSY:  # a polite client backs off a little
                await asyncio.sleep(self.rng.uniform(0.05, 0.2))

    async def clients(self) -> None:
        until, counter = time.monotonic() + self.args.seconds, itertools.count(1)
        timeout, accept = aiohttp.ClientTimeout(CLIENT_TIMEOUT), {"Accept": "application/json"}
        async with aiohttp.ClientSession(timeout=timeout, headers=accept) as session:
            tasks = [self.client(session, until, counter) for _ in range(self.args.clients)]
            await asyncio.wait_for(asyncio.gather(*tasks), self.args.seconds + CLIENT_TIMEOUT)

    def load(self) -> list[Row]:
        started = time.monotonic()
        asyncio.run(self.clients())
        wall, rows = time.monotonic() - started, []
        for kind in [k for k in KINDS if k in self.outcomes]:
            answers = self.outcomes[kind]
            outcomes = ", ".join(f"{o}: {c}" for o, c in sorted(answers.items()))
            rows.append((kind, str(answers.total()), outcomes))
        total = sum(c.total() for c in self.outcomes.values())
        rows.append(("requests", str(total), f"{total / wall:.1f} req/s over {wall:.1f}s"))
        rows.append(("unexpected answers", str(len(self.unexpected)), ""))
        rows += [("", "", u) for u in self.unexpected[:20]]
        if self.unexpected:
            self.problems.append(f"{len(self.unexpected)} unexpected answers")
        if not self.outcomes["miss"]["200 miss"]:
            self.problems.append("no miss rendered during the load")
        return rows

    def after(self) -> list[Row]:
        server = self.children[0]
        settled = server.wait("pool settled", lambda: self.idle(KERNELS), 60)
        after, restarts = server.rss(), self.health()["kernels"]["restarts"]
        code = server.stop()
        server.close()  # counts the kernels still running 5 s after the server exited
        if code != 0 or server.left:
            self.problems.append(f"server exit code {code}, {server.left} kernels left")
        return [
            ("pool settled after", f"{settled:.1f}s", ""),
            ("server RSS before, after", f"{mib(self.before[0])}, {mib(after[0])}", ""),
            ("kernels' RSS before, after", f"{mib(self.before[1])}, {mib(after[1])}", ""),
            ("kernel replacements", str(restarts), "/healthz: kernels.restarts"),
            ("server exit code (SIGTERM)", str(code), f"{server.left} kernel processes left"),
        ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0, help="seconds of load [120]")
    p.add_argument("--clients", type=int, default=32, help="clients [32]")
    soak = Soak(p.parse_args())
    failed = soak.run()
    print("SOAK FAIL: " + "; ".join(soak.problems or ["the soak broke"]) if failed else "SOAK PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
