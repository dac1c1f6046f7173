"""The gallery and the API at thousands of notebooks (README, "Thousands of notebooks").

.venv/bin/python bench/gallery.py [--notebooks 3000]
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator

from common import IMPORTS, Bench, Row, ms, percentile, timed, write_notebook

FOLDERS = 50
PARAMETERS = "year = 2024  # the year shown\nregion = 'North'  # one region\n"
PARAMETERS += "products = ['a', 'b']  # which products\n"
CELLS = [
    (IMPORTS, []),
    (PARAMETERS, ["parameters"]),
    ("fig, ax = plt.subplots()\nax.plot(np.arange(year % 10 + 3))", ["chart:trend"]),
    ("fig, ax = plt.subplots()\nax.bar(products, [1, 2])", ["chart:mix"]),
]
PAGES = ["/", "/?folder=team7", "/?folder=team7&page=2", "/?q=mix", "/?q=report%2012"]
PAGES += ["/?q=nothing%20like%20this", "/api/notebooks", "/api/notebooks?offset=0"]
PAGES += ["/api/notebooks?limit=500", "/api/notebooks?q=report%2012"]
PAGES += ["/api/notebooks?folder=team7", "/api/folders"]


class Gallery(Bench):
    def phases(self) -> Iterator[tuple[str, Callable[[], list[Row]]]]:
        yield f"write {self.args.notebooks} notebooks", self.write
        yield "start the server", self.start_server
        yield "pages: median and p95 of 30 requests", self.pages

    def write(self) -> list[Row]:
        a, started = self.args, time.perf_counter()
        for i in range(a.notebooks):
            path = self.tmp / "notebooks" / f"team{i % FOLDERS + 1}" / f"report {i}.ipynb"
            write_notebook(path, [f"# Report {i}\nWeekly figures.", *CELLS])
        took = f"{time.perf_counter() - started:.1f}s"
        return [("notebooks", str(a.notebooks), f"in {FOLDERS} folders, written in {took}")]

    def start_server(self) -> list[Row]:
        server = self.serve(self.tmp / "notebooks", 1, "--preload", "")
        listening = server.wait("/healthz", self.health, 120)
        read = server.wait("first read", lambda: self.health()["catalog"]["read"], 120)
        first, second = (timed(self.base + "/api/notebooks")[1] for _ in range(2))
        return [
            ("listening after", f"{listening:.2f} s", ""),
            ("every notebook read after", f"{listening + read:.2f} s", ""),
            ("GET /api/notebooks, first after the read", ms(first), f"then {ms(second)}"),
        ]

    def pages(self) -> list[Row]:
        rows = [("path", "median", "p95, bytes")]
        for path in PAGES:
            sizes, times = zip(*(timed(self.base + path) for _ in range(30)), strict=True)
            note = f"{ms(percentile(list(times), 95))}, {sizes[0]:,} bytes"
            rows.append((path, ms(statistics.median(times)), note))
        return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--notebooks", type=int, default=3000)
    return Gallery(p.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
