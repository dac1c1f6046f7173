"""Publisher beside Jupyter Kernel Gateway's notebook-http mode on distinct renders (README,
"Peers"). KG sends a cell's stdout as text, so its cell writes the PNG to KG's static folder
and answers 303 there; both hops are timed. KG runs from a virtualenv of its own, KG_VENV.

    .venv/bin/python bench/peers.py [--rounds 5] [--requests 16]
"""

import argparse
import asyncio
import statistics
import struct
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

import common
from common import (
    IMPORTS,
    LOOPBACK,
    Bench,
    Row,
    fetch_all,
    get,
    ms,
    percentile,
    write_notebook,
)

KERNELS = 2
KG_VENV = Path.home() / ".cache" / "publisher-bench" / "kg-venv"
KG_PACKAGES = ["jupyter_kernel_gateway", "matplotlib", "numpy", "pandas", "ipykernel"]
VERSIONS = ["jupyter_kernel_gateway", "jupyter_server", "ipykernel", "matplotlib", "pillow"]
DRAW = (
    "values = np.random.default_rng(seed).integers(20, 100, 12)\n"
    "fig, ax = plt.subplots(figsize=(6, 3.5))\nax.bar(range(12), values, color='#4c72b0')\n"
    "ax.set_title(f'Signups by month (seed {seed})');"
)
PRINTS = {  # KG endpoint -> how its cell prints the figure
    "chart": "fig.canvas.print_figure(buf, format='png', dpi=fig.dpi, bbox_inches='tight',"
    " facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor())",
    "savefig": "fig.savefig(buf, format='png')",
}
KG_SETUP = IMPORTS + (
    "\nimport io, json, os, uuid\n\ndef keep(data):\n    name = uuid.uuid4().hex + '.png'\n"
    "    with open(os.path.join({public!r}, name), 'wb') as f:\n"
    "        f.write(data)\n    return name"
)
KG_GET = "seed = int(json.loads(REQUEST)['args']['seed'][0])\n" + DRAW + "\nbuf = io.BytesIO()\n"
KG_KEEP = "\nplt.close(fig)\nNAME = keep(buf.getvalue())"
KG_RESPONSE = "print(json.dumps({'status': 303, 'headers': {'Location': '/public/' + NAME}}))"
ALONE = (  # the chart alone: the figure and the inline backend's print, nothing around them
    "import resource, sys, matplotlib\n"
    "matplotlib.use('module://matplotlib_inline.backend_inline')\n"
    "from IPython.core.pylabtools import print_figure\n"
    f"{IMPORTS}\n"
    "def once(seed):\n"
    + "".join(f"    {line}\n" for line in DRAW.splitlines())
    + "    print_figure(fig, 'png', bbox_inches='tight')\n    plt.close(fig)\n"
    "def cpu():\n    r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "    return r.ru_utime + r.ru_stime\n"
    "for seed in range(10): once(seed)\n"
    "n, began = int(sys.argv[1]), cpu()\n"
    "for seed in range(n): once(1000 + seed)\n"
    "print((cpu() - began) / n)\n"
)
FIGURES = [(f"renders/s, {c} client(s)", f"rps c={c}", 1) for c in (1, 4)]
FIGURES += [(f"{p} ms, {c} client(s)", f"{p} c={c}", 1000) for p in ("p50", "p95") for c in (1, 4)]


class Peers(Bench):
    kg: str  # Kernel Gateway's URL
    targets: dict[str, str]  # name -> URL but the seed
    owners: dict[str, common.Child]  # name -> the server that answers it
    cpu: dict[str, dict[str, list[float]]]  # name -> server/kernels -> CPU s a render, per run
    cpu_ms: dict[str, dict[str, float]]  # name -> the same, median of rounds, in ms

    def phases(self) -> Iterator[tuple[str, Callable[[], list[Row]]]]:
        n, rounds = self.args.requests, self.args.rounds
        yield f"Kernel Gateway's virtualenv: {KG_VENV}", self.kg_venv
        yield f"start publisher and Kernel Gateway, {KERNELS} kernels each", self.start_both
        yield "warm up (every kernel's first figures), then one seed on each", self.warm_up
        yield f"{rounds} rounds, ABC then CBA: {n} renders at c=1, then {2 * n} at c=4", self.rounds
        yield "the chart alone in one process (figure and inline print), 3 x 60", self.alone
        if self.args.memory_renders:
            yield f"publisher's kernels over {self.args.memory_renders} more renders", self.memory

    def kg_venv(self) -> list[Row]:
        python = KG_VENV / "bin" / "python"
        with (self.tmp / "pip.log").open("ab") as log:
            if not python.exists():
                subprocess.run([sys.executable, "-m", "venv", str(KG_VENV)], check=True, stdout=log)
            pip = [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-c",
                str(common.REPO / "constraints.txt"),
            ]
            subprocess.run(pip + KG_PACKAGES, check=True, stdout=log, stderr=log)
        code = "import importlib.metadata as m, sys; print(*map(m.version, sys.argv[1:]))"
        out = subprocess.check_output([str(python), "-c", code, *VERSIONS], text=True)
        theirs = dict(zip(VERSIONS, out.split(), strict=True))
        if any(theirs[n] != metadata.version(n) for n in VERSIONS[2:]):
            raise RuntimeError(f"KG venv has {theirs}: not .venv's versions")
        kg = theirs.pop(VERSIONS[0])
        return [("Kernel Gateway", kg, ", ".join(f"{k} {v}" for k, v in theirs.items()))]

    def start_both(self) -> list[Row]:
        public, folder, port = self.tmp / "kg-public", self.tmp / "notebooks", common.free_port()
        public.mkdir()
        cells = [(IMPORTS, []), ("seed = 0", ["parameters"]), (DRAW, ["chart"])]
        write_notebook(folder / "peer.ipynb", cells)
        cells = [(KG_SETUP.format(public=str(public)), [])]
        for endpoint, printer in PRINTS.items():
            cells.append((f"# GET /{endpoint}\n{KG_GET}{printer}{KG_KEEP}", []))
            cells.append((f"# ResponseInfo GET /{endpoint}\n{KG_RESPONSE}", []))
        write_notebook(self.tmp / "kg.ipynb", cells)
        publisher = self.serve(folder, KERNELS)
        idle = publisher.wait("kernels idle", lambda: self.idle(KERNELS), 180)
        argv = [str(KG_VENV / "bin" / "jupyter-kernelgateway")]
        argv += ["--KernelGatewayApp.api=kernel_gateway.notebook_http"]
        argv += [f"--KernelGatewayApp.seed_uri={self.tmp / 'kg.ipynb'}"]
        argv += [f"--KernelGatewayApp.prespawn_count={KERNELS}"]
        argv += [f"--KernelGatewayApp.ip={LOOPBACK}", f"--KernelGatewayApp.port={port}"]
        argv += [f"--NotebookHTTPPersonality.static_path={public}"]
        kg = self.start(common.Child("kernel gateway", argv, self.tmp / "kg.log"))
        self.kg = f"http://{LOOPBACK}:{port}"
        spec = self.kg + "/_api/spec/swagger.json"
        answering = kg.wait("KG", lambda: get(spec, 2)[0] == 200, 180)
        self.targets = {"publisher": f"{self.base}/charts/peer/chart.png?seed="}
        self.targets["KG tight"] = f"{self.kg}/chart?seed="
        self.targets["KG savefig"] = f"{self.kg}/savefig?seed="
        self.owners = {"publisher": publisher, "KG tight": kg, "KG savefig": kg}
        self.cpu = {name: defaultdict(list) for name in self.targets}
        note = f"Kernel Gateway answering {answering:.1f}s later"
        return [("publisher kernels idle after", f"{idle:.1f}s", note)]

    def render(self, name: str, count: int, clients: int, limit: float = 60) -> list[float]:
        """Latencies of ``count`` renders of new seeds shared by ``clients``, then the wall time.
        The CPU the server and its kernels spent on them goes to ``self.cpu[name]``."""
        urls = [self.targets[name] + str(next(self.seeds)) for _ in range(count)]
        before = self.owners[name].cpu()
        wall, answers = asyncio.run(fetch_all(urls, clients, limit))  # follows KG's 303
        after = self.owners[name].cpu()
        for part, b, a in zip(("server", "kernels"), before, after, strict=True):
            self.cpu[name][f"{part} c={clients}"].append((a - b) / count)
        ok = [a for a in answers if a.status == 200 and a.png and a.cache in (None, "miss")]
        if len(ok) != count:
            raise RuntimeError(f"{count - len(ok)} bad answers from {name}: {answers[:3]}")
        return [a.seconds for a in answers] + [wall]

    def warm_up(self) -> list[Row]:
        for name in self.targets:  # every kernel's first figures
            self.render(name, 4 * KERNELS, 4, 120)
        seed, rows = next(self.seeds), []
        png = {name: get(url + str(seed), 30)[2] for name, url in self.targets.items()}
        size = {}
        for name, data in png.items():
            width, height = struct.unpack(">II", data[16:24])  # from the PNG header
            size[name] = f"{width}x{height} {len(data)} bytes"
        for name in list(png)[1:]:
            same = "byte-identical" if png[name] == png["publisher"] else "DIFFERENT"
            rows.append((f"PNG, publisher vs {name}", same, f"{size['publisher']} vs {size[name]}"))
        return rows

    def rounds(self) -> list[Row]:
        figures = {name: defaultdict(list) for name in self.targets}
        self.cpu = {name: defaultdict(list) for name in self.targets}
        for r in range(self.args.rounds):
            for name in list(self.targets)[:: 1 - r % 2 * 2]:  # ABC, then CBA
                for c, times in ((1, 1), (4, 2)):  # c=4 renders twice as many
                    *lat, wall = self.render(name, times * self.args.requests, c)
                    figures[name][f"rps c={c}"].append(len(lat) / wall)
                    figures[name][f"p50 c={c}"].append(percentile(lat, 50))
                    figures[name][f"p95 c={c}"].append(percentile(lat, 95))
            rates = [
                f"{n} {f['rps c=1'][-1]:.1f}/{f['rps c=4'][-1]:.1f}" for n, f in figures.items()
            ]
            print(f"   round {r + 1}, renders/s c=1/c=4:", ", ".join(rates), flush=True)
        med = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in figures.items()}
        rows = [("median of rounds", "publisher", "KG tight, KG savefig (publisher / KG)")]
        for label, key, scale in FIGURES:
            p, t, s = (med[n][key] * scale for n in self.targets)
            rows.append((label, f"{p:.1f}", f"{t:.1f} ({p / t:.2f}x), {s:.1f} ({p / s:.2f}x)"))
        self.cpu_ms = cpu = {
            n: {k: 1000 * statistics.median(v) for k, v in c.items()} for n, c in self.cpu.items()
        }
        for c in (1, 4):
            parts = [f"{t[f'server c={c}']:.1f} + {t[f'kernels c={c}']:.1f}" for t in cpu.values()]
            label = f"CPU ms a render, server + kernels, {c} client(s)"
            rows.append((label, parts[0], ", ".join(parts[1:])))
        static = f"{self.kg}/public/{next((self.tmp / 'kg-public').iterdir()).name}"
        hop = statistics.median(common.timed(static)[1] for _ in range(20))
        return rows + [("KG's 303 hop alone (GET /public/NAME.png), median", ms(hop), "")]

    def alone(self) -> list[Row]:
        """What neither server can avoid, and so how far ahead the rest could put publisher."""
        runs = [
            float(subprocess.check_output([sys.executable, "-c", ALONE, "60"], text=True))
            for _ in range(3)
        ]
        chart = 1000 * statistics.median(runs)
        total = {n: c["server c=4"] + c["kernels c=4"] for n, c in self.cpu_ms.items()}
        publisher, kg = total["publisher"], total["KG tight"]
        return [
            ("chart alone, one process: CPU ms a render", f"{chart:.1f}", "figure + inline print"),
            (
                "CPU ms a render beyond the chart, 4 clients",
                f"{publisher - chart:.1f}",
                f"KG tight {kg - chart:.1f}",
            ),
            (
                "publisher / KG tight at 4 clients, at most",
                f"{kg / chart:.2f}x",
                "if nothing but the chart cost publisher CPU",
            ),
            (
                "left for all but the chart, for 1.2x KG tight",
                f"{kg / 1.2 - chart:.1f} ms",
                "server, execute requests, reset",
            ),
        ]

    def memory(self) -> list[Row]:
        """Kernel memory after many renders: what the reset leaves behind adds up here."""
        publisher, count = self.owners["publisher"], self.args.memory_renders
        restarts = self.metric("publisher_kernel_restarts_total")
        before = [p.memory_info().rss for p in publisher.kernels()]
        self.render("publisher", count, 4, limit=30 + count)
        after = [p.memory_info().rss for p in publisher.kernels()]
        replaced = self.metric("publisher_kernel_restarts_total") - restarts
        sizes = [" + ".join(f"{n / 2**20:.0f}" for n in rss) + " MiB" for rss in (before, after)]
        return [
            (
                f"kernel RSS after {count} more renders",
                sizes[1],
                f"before: {sizes[0]}, {replaced:.0f} kernels replaced",
            )
        ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="ABC/CBA rounds [5]")
    p.add_argument("--requests", type=int, default=16, help="renders at c=1 a round; 2x at c=4")
    p.add_argument("--memory-renders", type=int, default=2000, help="then kernel RSS after these")
    return Peers(p.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
