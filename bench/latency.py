"""Latency and throughput of the real publisher server, each figure beside its baseline, in the
same run (README, "Performance"): warm misses against papermill and nbclient, distinct misses,
a stampede, cache hits against a bare aiohttp handler (this script with ``--bare-server``)
serving the same bytes, both under wrk. ``--profile`` (auto: when the warm miss misses its
target) times a warm miss's steps in the package's own kernel.

wrk is required: ``scripts/system-deps`` installs it (``make bench`` runs that first), so there
is no fallback load generator, and the script stops at once when wrk is missing.

    .venv/bin/python bench/latency.py [--quick] [--notebook timeseries] [--profile yes|no]
"""

import argparse
import asyncio
import json
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any, NamedTuple

import common
from common import CACHE, LOOPBACK, Bench, Row, fetch_all, get, ms, percentile

CHART = "values = np.random.default_rng(seed).integers(20, 100, 12)\n"
CHART += "fig, ax = plt.subplots(figsize=(4, 2.5))\nax.bar(range(12), values, color='#4c72b0')\n"
CHART += "ax.set_title('Signups by month')\nplt.show()"
SMALL = [(common.IMPORTS, []), ("seed = 1  # random seed", ["parameters"]), (CHART, ["chart"])]
KERNELS, MISSES_PER_ROUND, DISTINCT, CLIENTS, STAMPEDE = 2, 6, 40, 4, 50
WRK = ["-t2", "-c32"]  # threads, connections
HIT_HEADERS = ("Content-Type", "ETag", "Last-Modified", "Cache-Control", CACHE)
QUIET = ["--IPKernelApp.log_level=CRITICAL"]  # the baselines' kernels: no chatter on our stderr
WRK_OUT = re.compile(
    r"^ +99% +([\d.]+)(us|ms|s|m) *$.*?^ +(\d+) requests in.*^Requests/sec: +([\d.]+)", re.M | re.S
)
WRK_ERRORS = re.compile(r"^ *(Non-2xx or 3xx responses: +\d+|Socket errors: .+)$", re.M)
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
Step = Callable[[], Awaitable[Any]]  # a step of the profile


class Miss(NamedTuple):
    seconds: float
    render: float | None  # Server-Timing's
    cache: str
    status: int


class Load(NamedTuple):
    rps: float
    p99: float  # seconds
    requests: int
    errors: str
    argv: list[str]


def wrk(url: str, seconds: int) -> Load:
    argv = ["wrk", *WRK, f"-d{seconds}s", "--latency", url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    if not (m := WRK_OUT.search(out)):
        raise RuntimeError(f"could not read wrk's output:\n{out}")
    errors = "; ".join(WRK_ERRORS.findall(out)) or "none"
    return Load(float(m[4]), float(m[1]) * UNITS[m[2]], int(m[3]), errors, argv)


def verdict(target: str, ok: bool) -> str:
    return f"target {target}: {'PASS' if ok else 'MISS'}"


@dataclass
class Latency(Bench):
    cached: int = 0  # the stampede's seed: a hit once it is done
    missed: bool = False  # the warm-miss target; profile (auto) when missed

    def url(self, seed: int, base: str | None = None) -> str:
        base = self.base if base is None else base
        return f"{base}/charts/{self.args.notebook}/chart.png?seed={seed}"

    def phases(self) -> Iterator[tuple[str, Callable[[], list[Row]]]]:
        a = self.args
        yield f"start the server ({KERNELS} kernels)", self.start_server
        rounds = f"{a.rounds} rounds of {MISSES_PER_ROUND} server misses + 1 papermill + 1 nbclient"
        yield f"1. warm miss vs papermill vs nbclient ({rounds})", self.warm_miss
        clients = f"{DISTINCT} requests, {CLIENTS} clients, {KERNELS} kernels"
        yield f"2. distinct misses: {clients}", self.distinct_misses
        yield f"3. stampede: {STAMPEDE} concurrent requests for one new seed", self.stampede
        yield f"4. cache hits: server vs bare aiohttp handler, {a.duration}s loads", self.hits
        if a.profile == "yes" or (a.profile == "auto" and self.missed):
            yield "profile: where a warm miss's time goes (our own kernel, no HTTP)", self.profile

    def misses(self, count: int) -> list[Miss]:
        """Requests for new seeds, one after the other over one connection."""
        conn, out = HTTPConnection(LOOPBACK, int(self.base.rsplit(":", 1)[1]), timeout=60), []
        for seed in [next(self.seeds) for _ in range(count)]:
            started = time.perf_counter()
            conn.request("GET", self.url(seed, ""))
            r = conn.getresponse()
            r.read()
            total = time.perf_counter() - started
            m = re.search(r"render;dur=([\d.]+)", r.getheader("Server-Timing") or "")
            out.append(Miss(total, float(m[1]) / 1000 if m else None, r.getheader(CACHE), r.status))
        conn.close()
        return out

    def baseline(self, papermill: bool) -> float:
        """Seconds for papermill, or nbclient on papermill's notebook, in a fresh kernel."""
        import papermill as pm
        from nbclient import NotebookClient

        started, seed, folder = time.perf_counter(), next(self.seeds), self.tmp / "notebooks"
        path, out = str(folder / f"{self.args.notebook}.ipynb"), str(self.tmp / f"pm-{seed}.ipynb")
        if papermill:
            options = {"cwd": str(folder), "progress_bar": False, "extra_arguments": QUIET}
            pm.execute_notebook(path, out, {"seed": seed}, **options)
            return time.perf_counter() - started
        nb = pm.parameterize.parameterize_notebook(pm.iorw.load_notebook_node(path), {"seed": seed})
        resources = {"metadata": {"path": str(folder)}}
        client = NotebookClient(
            nb, kernel_name="python3", resources=resources, extra_arguments=QUIET
        )
        client.execute()
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        if not any("image/png" in o.get("data", {}) for o in outputs):
            raise RuntimeError("nbclient run produced no image")
        return time.perf_counter() - started

    def start_server(self) -> list[Row]:
        folder = self.tmp / "notebooks"
        shutil.copytree(common.REPO / "notebooks", folder, ignore=shutil.ignore_patterns(".*"))
        common.write_notebook(folder / "small.ipynb", SMALL)
        server = self.serve(folder, KERNELS)
        up = server.wait("/healthz", self.health, 60)
        idle = server.wait("kernels idle", lambda: self.idle(KERNELS), 180)
        print(f"   /healthz answered after {up:.1f}s; {KERNELS} kernels idle {idle:.1f}s later")
        firsts = self.misses(2 * KERNELS)
        if any(m.status != 200 for m in firsts):
            raise RuntimeError(f"warm-up requests answered {firsts}:\n{server.tail()}")
        print("   first misses (each kernel's first render, untimed):", *(ms(m[0]) for m in firsts))
        return []

    def warm_miss(self) -> list[Row]:
        self.baseline(papermill=True)  # untimed: imports and disk caches
        server, pm, nbc = [], [], []
        for i in range(self.args.rounds):
            server += self.misses(MISSES_PER_ROUND)
            pm.append(self.baseline(papermill=True))
            nbc.append(self.baseline(papermill=False))
            median = ms(statistics.median(m.seconds for m in server[-MISSES_PER_ROUND:]))
            print(f"   round {i + 1}: server median {median}, papermill {ms(pm[-1])}, ", end="")
            print(f"nbclient {ms(nbc[-1])}", flush=True)
        if bad := [m for m in server if m.status != 200 or m.cache != "miss"]:
            raise RuntimeError(f"{len(bad)} warm-miss requests were not 200 misses: {bad[:3]}")
        totals = [m.seconds for m in server]
        srv, pm_med, nbc_med = (statistics.median(x) for x in (totals, pm, nbc))
        spread = f"n={len(totals)}, min {ms(min(totals))}, max {ms(max(totals))}"
        self.missed = srv > 0.100
        rows = [("warm miss median", ms(srv), verdict("<= 100 ms", not self.missed))]
        rows += [("warm miss p95", ms(percentile(totals, 95)), spread)]
        if renders := [m for m in server if m.render is not None]:
            rest = statistics.median(m.seconds - m.render for m in renders)
            render = statistics.median(m.render for m in renders)
            note = f"Server-Timing; the rest (HTTP, routing, parsing) {ms(rest)}"
            rows += [("  render part (median)", ms(render), note)]
        rows += [("papermill median", ms(pm_med), f"n={len(pm)}, p95 {ms(percentile(pm, 95))}")]
        note = f"n={len(nbc)}, p95 {ms(percentile(nbc, 95))}"
        rows += [("nbclient fresh-kernel median", ms(nbc_med), note)]
        note = verdict(">= 15x", pm_med >= 15 * srv)
        rows += [("papermill / server (median)", f"{pm_med / srv:.1f}x", note)]
        return rows + [("nbclient / server (median)", f"{nbc_med / srv:.1f}x", "")]

    def distinct_misses(self) -> list[Row]:
        urls = [self.url(next(self.seeds)) for _ in range(DISTINCT)]
        wall, answers = asyncio.run(fetch_all(urls, CLIENTS))
        ok, rate = sum(a.status == 200 and a.cache == "miss" for a in answers), DISTINCT / wall
        target = verdict(">= 10/s, all 200", rate >= 10 and ok == DISTINCT)
        note = f"{ok}/{DISTINCT} 200 miss in {wall:.2f}s; {target}"
        return [(f"distinct misses/s ({CLIENTS} clients)", f"{rate:.1f}/s", note)]

    def stampede(self) -> list[Row]:
        """Executions counted by the server itself: ``publisher_renders_total``."""
        self.cached, before = next(self.seeds), self.metric("publisher_renders_total")
        urls = [self.url(self.cached)] * STAMPEDE
        wall, answers = asyncio.run(fetch_all(urls, STAMPEDE, force_close=True))
        after = self.metric("publisher_renders_total")
        runs, ok = int(after - before), sum(a.status == 200 for a in answers)
        codes = dict(Counter(f"{a.status} {a.cache}" for a in answers))
        note = f"/metrics {before:.0f} -> {after:.0f}; {verdict('== 1', runs == 1)}"
        rows = [("stampede executions", str(runs), note)]
        note = f"{codes}; {verdict(f'{STAMPEDE}/{STAMPEDE}', ok == STAMPEDE)}"
        return rows + [("stampede answered 200", f"{ok}/{STAMPEDE} in {ms(wall)}", note)]

    def hits(self) -> list[Row]:
        status, headers, body = get(self.url(self.cached))
        if status != 200 or headers.get(CACHE) != "hit":
            raise RuntimeError(f"expected a cached chart, got {status} {headers}")
        chart, port = self.tmp / "chart.png", common.free_port()
        chart.write_bytes(body)
        keep = json.dumps({k: headers[k] for k in HIT_HEADERS})
        argv = [sys.executable, str(Path(__file__).resolve()), "--bare-server", str(port)]
        bare = self.start(
            common.Child("bare server", [*argv, str(chart), keep], self.tmp / "bare.log")
        )
        urls = {"bare": self.url(self.cached, f"http://{LOOPBACK}:{port}")}
        urls["server"] = self.url(self.cached)
        bare.wait("bare server", lambda: get(urls["bare"], 2)[2] == body, 30)
        loads: dict[str, list[Load]] = {"bare": [], "server": []}
        for r in range(self.args.load_rounds):  # ABBA: a drift in the load hits both alike
            for name in ["bare", "server"][:: 1 - r % 2 * 2]:
                loads[name].append(load := wrk(urls[name], self.args.duration))
                if r == 0:
                    self.commands.append(shlex.join(load.argv))
                head = f"   round {r + 1} {name:6}: {load.rps:8.0f} req/s, p99 {ms(load.p99)},"
                print(head, load.requests, "requests, errors:", load.errors, flush=True)
        rps = {k: statistics.mean(x.rps for x in v) for k, v in loads.items()}
        p99 = {k: statistics.mean(x.p99 for x in v) for k, v in loads.items()}
        ratio, clean = rps["server"] / rps["bare"], all(x.errors == "none" for x in loads["server"])
        rows = []
        for name in ("server", "bare"):
            note = f"p99 {ms(p99[name])}; mean of {self.args.load_rounds} round(s)"
            rows.append((f"hit req/s {name}", f"{rps[name]:.0f}/s", note))
        note = f"p99 bare / server {p99['bare'] / p99['server']:.2f}; "
        note += verdict(">= 0.8, no errors", ratio >= 0.8 and clean)
        return rows + [("hit req/s server / bare", f"{ratio:.2f}", note)]

    def profile(self) -> list[Row]:
        """Median time of each step of a warm miss in a kernel built as the server builds one
        (the package's own ``Kernel``; its private ``_run_cells`` runs a cell alone)."""
        from publisher.catalog import Catalog
        from publisher.executor import Job, Kernel
        from publisher.inject import cells_to_run
        from publisher.options import RenderOptions
        from publisher.settings import Settings

        notebook, chart = Catalog(self.tmp / "notebooks").chart(self.args.notebook)
        kernel = Kernel(Settings().preload_modules)
        cells = cells_to_run(notebook, chart, {"seed": 1})

        def render(sources: tuple[str, ...]) -> Awaitable[Any]:
            return kernel.run(Job(str(notebook.folder), sources, RenderOptions()), 60)

        def fresh() -> Awaitable[Any]:  # a whole render of a new seed
            return render(cells_to_run(notebook, chart, {"seed": next(self.seeds)}))

        def cell(source: str) -> Awaitable[Any]:
            return kernel._run_cells((source,), time.monotonic() + 60)

        async def median(step: Step, before: Step | None = None) -> str:
            times = []
            for _ in range(7):
                if before:
                    await before()
                started = time.perf_counter()
                await step()
                times.append(time.perf_counter() - started)
            return ms(statistics.median(times))

        async def steps() -> list[Row]:
            await kernel.start()
            try:
                for _ in range(3):  # the first render imports pandas
                    await fresh()
                took = await median(fresh)
                rows = [("profile: whole render", took, "Kernel.run: prepare + cells")]
                took = await median(lambda: render(()))
                rows.append(("profile:   prepare() alone", took, "working folder, figure format"))
                for i, source in enumerate(cells):  # each cell after a run of the ones before it
                    took = await median(lambda s=source: cell(s), lambda i=i: render(cells[:i]))
                    rows.append(
                        (f"profile:   cell {i + 1}", took, source.strip().splitlines()[0][:48])
                    )
                took = await median(lambda: cell("pass"))
                return rows + [("profile:   a no-op cell", took, "round trip")]
            finally:
                await kernel.shutdown()

        return asyncio.run(steps())


def bare_server(port: str, file: str, headers: str) -> None:
    """A minimal aiohttp app: every GET answers the same bytes and headers from memory."""
    from aiohttp import web

    body, head = Path(file).read_bytes(), json.loads(headers)

    async def handle(_request: web.Request) -> web.Response:
        return web.Response(body=body, headers=head)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host=LOOPBACK, port=int(port), access_log=None, print=None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 rounds, one 3 s load each")
    p.add_argument("--notebook", default="small", help="small or timeseries (an int 'seed')")
    p.add_argument("--profile", choices=("auto", "yes", "no"), default="auto", help="[auto]")
    p.add_argument("--bare-server", nargs=3, help=argparse.SUPPRESS)  # PORT FILE HEADERS
    args = p.parse_args()
    if args.bare_server:
        bare_server(*args.bare_server)
        return 0
    if not shutil.which("wrk"):
        print(
            "latency.py needs wrk: run scripts/system-deps (apt-get install wrk)", file=sys.stderr
        )
        return 2
    args.rounds, args.duration, args.load_rounds = (3, 3, 1) if args.quick else (5, 10, 2)
    return Latency(args).run()


if __name__ == "__main__":
    sys.exit(main())
