"""The gallery and the API at thousands of notebooks: page sizes and build times.

Writes N notebooks (default 3,000 in 50 folders) to a temporary folder, starts
``publisher serve`` on them, and prints figures, not verdicts:

- how long the server takes to listen, and to finish its first read of the notebooks;
- the first ``/api/notebooks`` answer after that read, then the same request again;
- for the top page, a folder page, a search page and the API: bytes, and the
  median and p95 time of an answer over loopback (build plus a little HTTP).

    .venv/bin/python bench/gallery.py [--notebooks 3000] [--folders 50] [--subfolders 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LOOPBACK, free_port, percentile, serve_argv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 120
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def notebook(title: str) -> dict[str, Any]:
    """A notebook as analysts write one: a heading, parameters, two charts."""

    def code(source: str, tags: list[str] | None = None) -> dict[str, Any]:
        meta = {"tags": tags} if tags else {}
        return {
            "cell_type": "code",
            "execution_count": None,
            "metadata": meta,
            "outputs": [],
            "source": source,
        }

    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": f"# {title}\nWeekly figures."},
            code("import matplotlib.pyplot as plt\nimport numpy as np"),
            code(
                "year = 2024  # the year shown\n"
                "region = 'North'  # one region\n"
                "products = ['a', 'b']  # which products\n",
                ["parameters"],
            ),
            code("fig, ax = plt.subplots()\nax.plot(np.arange(year % 10 + 3))", ["chart:trend"]),
            code("fig, ax = plt.subplots()\nax.bar(products, [1, 2])", ["chart:mix"]),
        ],
    }


def write_notebooks(folder: Path, count: int, folders: int, subfolders: int) -> None:
    """``count`` notebooks spread over ``folders`` folders, each with ``subfolders`` more."""
    places = [Path(f"team{t + 1}") for t in range(folders)]
    places += [place / f"project {s + 1}" for place in list(places) for s in range(subfolders)]
    for i in range(count):
        place = folder / places[i % len(places)]
        place.mkdir(parents=True, exist_ok=True)
        (place / f"report {i}.ipynb").write_text(json.dumps(notebook(f"Report {i}")))


def fetch(url: str) -> tuple[bytes, float]:
    started = time.perf_counter()
    with DIRECT.open(url, timeout=60) as response:
        body = response.read()
    return body, time.perf_counter() - started


def wait_read(origin: str, process: subprocess.Popen[bytes]) -> tuple[float, float]:
    """Seconds until the server listens, and until it has read every notebook."""
    started = time.perf_counter()
    listening = None
    while time.perf_counter() - started < STARTUP_SECONDS:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            body, _ = fetch(f"{origin}/healthz")
        except OSError:
            time.sleep(0.02)
            continue
        listening = listening or time.perf_counter() - started
        if json.loads(body)["catalog"]["read"]:
            return listening, time.perf_counter() - started
        time.sleep(0.02)
    raise SystemExit(f"the server did not read its notebooks within {STARTUP_SECONDS}s")


def measure(origin: str, path: str, rounds: int) -> tuple[int, float, float]:
    """Bytes of the answer, median and p95 milliseconds over ``rounds`` requests."""
    times = []
    size = 0
    for _ in range(rounds):
        body, seconds = fetch(origin + path)
        size = len(body)
        times.append(seconds * 1000)
    return size, statistics.median(times), percentile(times, 95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=3000)
    parser.add_argument("--folders", type=int, default=50)
    parser.add_argument("--subfolders", type=int, default=0, help="more folders in each folder")
    parser.add_argument("--rounds", type=int, default=30, help="requests per page measured")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="publisher-gallery-") as tmp:
        folder = Path(tmp, "notebooks")
        started = time.perf_counter()
        write_notebooks(folder, args.notebooks, args.folders, args.subfolders)
        print(
            f"wrote {args.notebooks} notebooks in {args.folders} folders"
            f" (+{args.subfolders} each) in {time.perf_counter() - started:.1f}s"
        )
        port = free_port()
        origin = f"http://{LOOPBACK}:{port}"
        argv = serve_argv(folder, port, Path(tmp, "cache"), 1, "--preload", "")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            report(origin, process, args.rounds)
        finally:
            process.terminate()
            process.wait(timeout=60)


def report(origin: str, process: subprocess.Popen[bytes], rounds: int) -> None:
    listening, read = wait_read(origin, process)
    print(f"listening after {listening:.2f}s; every notebook read after {read:.2f}s")
    _, first = fetch(f"{origin}/api/notebooks")
    _, second = fetch(f"{origin}/api/notebooks")
    print(f"GET /api/notebooks: first request {first * 1000:.1f} ms, second {second * 1000:.1f} ms")
    pages = [
        ("top page", "/"),
        ("folder page", "/?folder=team7"),
        ("folder page 2", "/?folder=team7&page=2"),
        ("search, 1 word", "/?q=mix"),
        ("search, 2 words", "/?q=report%2012"),
        ("search, no match", "/?q=nothing%20like%20this"),
        ("API, every notebook", "/api/notebooks"),
        ("API, a page", "/api/notebooks?offset=0"),
        ("API, limit=500", "/api/notebooks?limit=500"),
        ("API, search", "/api/notebooks?q=report%2012"),
        ("API, folder", "/api/notebooks?folder=team7"),
        ("API, folders", "/api/folders"),
    ]
    print(f"\n{'page':<20} {'path':<32} {'bytes':>10} {'median ms':>10} {'p95 ms':>8}")
    for name, path in pages:
        size, median, p95 = measure(origin, path, rounds)
        print(f"{name:<20} {path:<32} {size:>10,} {median:>10.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
