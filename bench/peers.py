"""Publisher beside Jupyter Kernel Gateway's notebook-http mode, on distinct renders.

Run from the repository root (about 90 s; the first run also installs Kernel Gateway
into a virtualenv of its own, ``--kg-venv``, never into .venv)::

    .venv/bin/python bench/peers.py
    .venv/bin/python bench/peers.py --rounds 3 --requests 12

One chart, the same cells for both: a notebook for publisher (a ``parameters``
cell, a ``chart`` cell the inline backend shows) and one for Kernel Gateway
(``# GET /chart`` reads the seed from ``REQUEST``). Every request is a new seed,
so publisher's cache never hits; both run 2 warm kernels. Publisher resets a
kernel after each render; KG lends a kernel (``prespawn_count`` of them behind a
semaphore, first free first) to one request for three executions (``REQUEST =
...``, the endpoint cell, the ResponseInfo cell), queues the rest, resets nothing.

Kernel Gateway answers with the cell's stdout, a ``str`` (binary cannot pass:
see ``KG_NOTE``), so its cell writes the PNG into KG's own static folder and
its ``# ResponseInfo`` cell answers ``303`` to ``/public/NAME.png``; the client
follows, as a browser's ``<img>`` would, and the time counts both hops. The
``/chart`` endpoint prints the figure as IPython's inline backend does, so its
PNG can be compared byte for byte with publisher's; ``/savefig`` is a plain
``fig.savefig(buf, format="png")``.

Rounds alternate the three targets (ABC, CBA, ...); the table holds medians of
rounds. Exit status: 0 figures printed (whoever is faster), 2 a server failed
to start, answered an error, or left a kernel behind.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from common import LOOPBACK, free_port, percentile, serve_argv  # bench/ is sys.path[0]
from latency import (
    REPO,
    Child,
    Seeds,
    get,
    kernel_pids,
    section,
    wait_until,
    write_notebook,
)

KG_VENV = Path.home() / ".cache" / "publisher-bench" / "kg-venv"
KG_PACKAGES = ["jupyter_kernel_gateway", "matplotlib", "numpy", "pandas", "ipykernel"]
PNG = b"\x89PNG\r\n\x1a\n"
KG_NOTE = (
    "KG notebook-http sends a cell's stdout (a str, UTF-8 encoded by tornado) or"
    " else the execute_result bundle as JSON; display_data is ignored, and the kernel"
    " messages are decoded with errors='replace', so raw PNG bytes cannot be the body"
)

IMPORTS = "import matplotlib.pyplot as plt\nimport numpy as np"
DRAW = (
    "values = np.random.default_rng(seed).integers(20, 100, 12)\n"
    "fig, ax = plt.subplots(figsize=(6, 3.5))\n"
    "ax.bar(range(12), values, color='#4c72b0')\n"
    "ax.set_title(f'Signups by month (seed {seed})');"
)
KG_GET = "seed = int(json.loads(REQUEST)['args']['seed'][0])\n" + DRAW + "\nbuf = io.BytesIO()\n"
PRINTS = {  # KG endpoint -> how its cell prints the figure
    "chart": "fig.canvas.print_figure(buf, format='png', dpi=fig.dpi, bbox_inches='tight',"
    " facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor())",
    "savefig": "fig.savefig(buf, format='png')",
}
KG_KEEP = "plt.close(fig)\nNAME = keep(buf.getvalue())"
KG_SEED = IMPORTS + (
    "\nimport io, json, os, uuid\nPUBLIC = {public!r}\n\n"
    "def keep(data):\n"
    "    name = uuid.uuid4().hex + '.png'\n"
    "    with open(os.path.join(PUBLIC, name), 'wb') as f:\n"
    "        f.write(data)\n"
    "    return name"
)
KG_RESPONSE = "print(json.dumps({'status': 303, 'headers': {'Location': '/public/' + NAME}}))"


def write_notebooks(tmp: Path, public: Path) -> tuple[Path, Path]:
    folder = tmp / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "peer.ipynb", [(IMPORTS, []), ("seed = 0", ["parameters"]), (DRAW, ["chart"])]
    )
    cells = [(KG_SEED.format(public=str(public)), [])]
    for endpoint, printer in PRINTS.items():
        cells.append((f"# GET /{endpoint}\n{KG_GET}{printer}\n{KG_KEEP}", []))
        cells.append((f"# ResponseInfo GET /{endpoint}\n{KG_RESPONSE}", []))
    write_notebook(tmp / "kg.ipynb", cells)
    return folder, tmp / "kg.ipynb"


def ensure_kg_venv(venv: Path, log: Path) -> dict[str, str]:
    """Kernel Gateway in a virtualenv of its own, with .venv's pinned chart libraries."""
    python = venv / "bin" / "python"
    with log.open("ab") as out:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=out)
        argv = [str(python), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt")]
        subprocess.run(argv + KG_PACKAGES, check=True, stdout=out, stderr=subprocess.STDOUT)
    names = ["jupyter_kernel_gateway", "jupyter_server", "ipykernel", "matplotlib", "pillow"]
    code = "import importlib.metadata as m, json, sys; print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))"
    theirs = json.loads(subprocess.check_output([str(python), "-c", code, *names]))
    if any(theirs[n] != metadata.version(n) for n in names[2:]):
        raise RuntimeError(f"KG venv has {theirs}: not .venv's versions")
    return theirs


async def phase(
    url: str, seeds: list[int], clients: int, limit: float
) -> tuple[float, list[float]]:
    """``clients`` connections share ``seeds`` (one request each) until done or ``limit`` s."""
    import aiohttp

    todo, latencies, errors = iter(seeds), [], []
    stop = time.monotonic() + limit

    async def client(session: aiohttp.ClientSession) -> None:
        for seed in todo:  # bounded: one shared iterator, and the clock
            if time.monotonic() > stop:
                return
            started = time.perf_counter()
            async with session.get(url.format(seed)) as r:  # follows KG's 303
                body = await r.read()
            latencies.append(time.perf_counter() - started)
            if not (r.status == 200 and body.startswith(PNG)) or (
                r.headers.get("X-Publisher-Cache", "miss") != "miss"
            ):
                errors.append(f"{r.status} {r.url} {r.headers.get('X-Publisher-Cache')}")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} bad answers from {url}: {errors[:3]}")
    return len(latencies) / wall, latencies


def same_image(a: bytes, b: bytes) -> str:
    from PIL import Image

    if a == b:
        return f"byte-identical ({len(a)} bytes)"
    ia, ib = Image.open(io.BytesIO(a)), Image.open(io.BytesIO(b))
    if ia.size == ib.size and ia.convert("RGBA").tobytes() == ib.convert("RGBA").tobytes():
        return f"pixel-identical, bytes differ ({len(a)} vs {len(b)} bytes: metadata)"
    return f"DIFFERENT: {ia.size} {len(a)} bytes vs {ib.size} {len(b)} bytes"


def run(args: argparse.Namespace, tmp: Path, children: list[Child], commands: list[str]) -> None:
    public = tmp / "kg-public"
    public.mkdir()
    folder, kg_notebook = write_notebooks(tmp, public)
    with section(f"Kernel Gateway's virtualenv: {args.kg_venv}"):
        versions = ensure_kg_venv(args.kg_venv, tmp / "pip.log")
        print("   " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        print(f"   {KG_NOTE}: its cell writes the PNG to /public and answers 303 there")

    with section(f"start publisher and Kernel Gateway, {args.kernels} kernels each"):
        port, kg_port = free_port(), free_port()
        pub_argv = serve_argv(folder, port, tmp / "cache", args.kernels)
        kg_argv = [
            str(args.kg_venv / "bin" / "jupyter-kernelgateway"),
            "--KernelGatewayApp.api=kernel_gateway.notebook_http",
            f"--KernelGatewayApp.seed_uri={kg_notebook}",
            f"--KernelGatewayApp.prespawn_count={args.kernels}",
            f"--KernelGatewayApp.ip={LOOPBACK}",
            f"--KernelGatewayApp.port={kg_port}",
            f"--NotebookHTTPPersonality.static_path={public}",
        ]
        commands += [shlex.join(pub_argv), shlex.join(kg_argv)]
        pub = Child("publisher", pub_argv, tmp / "publisher.log")
        children.append(pub)
        kg = Child("kernel gateway", kg_argv, tmp / "kg.log")
        children.append(kg)
        base, kg_base = f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{kg_port}"

        def idle() -> bool:
            status, _, body = get(base + "/healthz", 2)
            return status == 200 and json.loads(body)["kernels"]["idle"] == args.kernels

        def spec() -> bool:  # answered once the seeded kernel pool is up
            return get(kg_base + "/_api/spec/swagger.json", 2)[0] == 200

        print(f"   publisher kernels idle after {wait_until('publisher', idle, pub, 180):.1f}s")
        print(f"   kernel gateway answering {wait_until('KG', spec, kg, 180):.1f}s later")

    targets = {
        "publisher": base + "/charts/peer/chart.png?seed={}",
        "KG tight": kg_base + "/chart?seed={}",
        "KG savefig": kg_base + "/savefig?seed={}",
    }
    seeds = Seeds()
    with section("warm up (every kernel's first figures), then one seed on each"):
        for url in targets.values():
            asyncio.run(phase(url, [seeds.take() for _ in range(4 * args.kernels)], 4, 120))
        seed = seeds.take()
        png = {name: get(url.format(seed), 30)[2] for name, url in targets.items()}
        same = {kg: same_image(png["publisher"], png[kg]) for kg in ("KG tight", "KG savefig")}
        for kg_name, verdict in same.items():
            print(f"   seed {seed}, publisher vs {kg_name}: {verdict}")
        for c in children:
            c.note_children()

    figures: dict[str, dict[str, list[float]]] = {n: {} for n in targets}
    phases = ((1, args.requests), (4, 2 * args.requests))
    with section(
        f"{args.rounds} rounds, ABC then CBA: {args.requests} renders at c=1, then {2 * args.requests} at c=4"
    ):
        for r in range(args.rounds):
            for name in list(targets)[:: 1 if r % 2 == 0 else -1]:
                for c, count in phases:
                    seeds_now = [seeds.take() for _ in range(count)]
                    rate, lat = asyncio.run(phase(targets[name], seeds_now, c, args.limit))
                    for key, value in (
                        ("rps", rate),
                        ("p50", percentile(lat, 50)),
                        ("p95", percentile(lat, 95)),
                    ):
                        figures[name].setdefault(f"{key} c={c}", []).append(value)
            rates = (
                f"{n} {f['rps c=1'][-1]:.1f}/{f['rps c=4'][-1]:.1f}" for n, f in figures.items()
            )
            print(f"   round {r + 1}, renders/s c=1/c=4: " + ", ".join(rates), flush=True)

    hop: list[float] = []  # what KG's redirect costs: the static GET alone
    for _ in range(20):
        started = time.perf_counter()
        get(f"{kg_base}/public/{next(public.iterdir()).name}")
        hop.append(time.perf_counter() - started)
    med = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in figures.items()}
    print(f"\n== distinct renders, {args.kernels} kernels each, medians of {args.rounds} rounds")
    head = ("", "publisher", "KG tight", "KG savefig", "pub/KG tight", "pub/KG savefig")
    print("   " + "".join(f"{h:>15}" for h in head))
    for label, key, scale in ROWS:
        p, t, s = (med[n][key] * scale for n in targets)
        row = (label, f"{p:.1f}", f"{t:.1f}", f"{s:.1f}", f"{p / t:.2f}x", f"{p / s:.2f}x")
        print("   " + "".join(f"{cell:>15}" for cell in row))
    print("   (pub/KG above 1 is publisher ahead for renders/s, below 1 for latency)")
    for kg_name, verdict in same.items():
        print(f"   PNG, publisher vs {kg_name}: {verdict}")
    print(
        f"   KG's 303 hop alone (GET /public/NAME.png): median {statistics.median(hop) * 1000:.1f} ms"
    )
    print("   commands:\n" + "\n".join(f"     {c}" for c in commands))


ROWS = [
    ("renders/s c=1", "rps c=1", 1),
    ("renders/s c=4", "rps c=4", 1),
    ("p50 ms c=4", "p50 c=4", 1000),
    ("p95 ms c=4", "p95 c=4", 1000),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="ABC/CBA rounds [5]")
    p.add_argument(
        "--requests", type=int, default=16, help="renders at c=1 a round; twice that at c=4 [16]"
    )
    p.add_argument("--kernels", type=int, default=2, help="kernels of each server [2]")
    p.add_argument("--limit", type=float, default=60, help="seconds at most of one load phase [60]")
    p.add_argument(
        "--kg-venv", type=Path, default=KG_VENV, help=f"Kernel Gateway's virtualenv [{KG_VENV}]"
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = p.parse_args()
    before = kernel_pids()
    tmp = Path(tempfile.mkdtemp(prefix="publisher-peers-"))
    children: list[Child] = []
    failed = False
    try:
        run(args, tmp, children, [shlex.join([sys.executable, *sys.argv])])
    except Exception as e:
        failed = True
        print(f"\nBENCHMARK FAILED: {type(e).__name__}: {e}", flush=True)
    finally:
        left = [pid for c in reversed(children) for pid in c.stop()]
        if left:
            print(f"   killed leftover children {left}")
        ours = kernel_pids() & set().union(*(c.seen for c in children))
        print(f"ipykernel_launcher processes: before {len(before)}, ours still running {len(ours)}")
        if args.keep or failed:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 2 if failed or ours else 0


if __name__ == "__main__":
    sys.exit(main())
