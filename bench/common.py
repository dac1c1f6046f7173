"""What the benchmark scripts share."""

from __future__ import annotations

import math
import socket
import sys
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def serve_argv(folder: Path, port: int, cache: Path, kernels: int, *options: str) -> list[str]:
    """The command line of a real server on loopback, as the benchmarks start it."""
    return [sys.executable, "-m", "publisher", "serve", str(folder), "--host", LOOPBACK] + [
        "--port",
        str(port),
        "--cache-dir",
        str(cache),
        "--kernels",
        str(kernels),
        *options,
    ]
