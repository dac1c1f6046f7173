"""Small reference notebooks for the tests, written out with nbformat where a test needs them.

Each notebook is a list of cells; a cell is its source, or (source, tags).
Keeping them here, as Python, keeps what a test checks next to what it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat

Cell = str | tuple[str, list[str]]

IMPORTS = "import matplotlib.pyplot as plt\nimport numpy as np"


def chart(body: str = "plt.plot([1, 3, 2])", tag: str = "chart") -> tuple[str, list[str]]:
    return (f"fig, ax = plt.subplots(figsize=(4, 3))\n{body}\nplt.show()", [tag])


# An object whose finalizer kills the kernel as the reset frees it. It takes a moment first,
# as a crashing cleanup does: an exit within microseconds of the kernel's mark can take the
# mark with it, before ZeroMQ's thread sends it (README, "Warm kernels and isolation").
FUSE = (
    "import os, time\n"
    "class Fuse:\n"
    "    def __del__(self, exit=os._exit, sleep=time.sleep):  # os may be gone by then\n"
    "        sleep(0.05)\n"
    "        exit(1)\n"
    "fuse = Fuse()\n"
    "print('drawn')"
)


NOTEBOOKS: dict[str, list[Cell]] = {
    # every parameter type; the chart's title spells back what the kernel received
    "echo": [
        "# Echo\nA chart whose title is the hex of every value it was given.",
        IMPORTS,
        (
            "text = 'hello'  # any text\n"
            "count = 3  # an int\n"
            "ratio: float = 0.5  # a float\n"
            "flag = False  # a bool\n"
            "names = ['a', 'b']  # a list of str\n"
            "numbers = [1, 2]  # a list of int\n"
            "anything = None  # untyped\n",
            ["parameters"],
        ),
        chart(
            "plt.rcParams['svg.fonttype'] = 'none'\n"
            "seen = repr((text, count, ratio, flag, names, numbers, anything))\n"
            "ax.set_title(seen.encode('utf-8').hex())\n"
            "ax.plot([0, count])"
        ),
    ],
    "fails": [
        IMPORTS,
        ("reason = 'boom'", ["parameters"]),
        chart("raise ValueError(f'cannot chart: {reason}')"),
    ],
    "noimage": [IMPORTS, ("print('no figure here')", ["chart"])],
    "slow": [
        IMPORTS,
        ("seconds = 5.0", ["parameters"]),
        chart("import time\ntime.sleep(seconds)\nax.plot([1, 2])"),
    ],
    "crash": [IMPORTS, ("import os\nos._exit(1)", ["chart"])],
    # a render must not see what the previous one left behind
    "state": [
        IMPORTS,
        ("run = 0", ["parameters"]),
        chart(
            "assert 'leftover' not in globals(), 'saw a global from an earlier render'\n"
            "assert plt.rcParams['lines.linewidth'] == 1.5, 'saw rcParams from an earlier render'\n"
            "assert not plt.get_fignums()[:-1], 'saw a figure from an earlier render'\n"
            "leftover = run\n"
            "plt.rcParams['lines.linewidth'] = 9\n"
            "plt.figure()\n"
            "ax.plot([run, 1])"
        ),
    ],
    # cells after the chart must not run: the last one would write a file
    "partial": [
        IMPORTS,
        ("marker = 'after.txt'", ["parameters"]),
        chart(tag="chart:first"),
        "open(marker, 'w').write('ran')",
        chart("ax.bar([1, 2], [3, 4])", tag="chart:second"),
    ],
    "untagged": [
        IMPORTS + "\nplt.rcParams['svg.fonttype'] = 'none'",
        "plt.plot([1, 2]); plt.title('first image'); plt.show()",
        "plt.bar([1], [2]); plt.title('last image'); plt.show()",
        "x = 1",
    ],
    "reads_csv": [
        "import pandas as pd\n" + IMPORTS,
        chart("df = pd.read_csv('data.csv')\nax.plot(df['x'], df['y'])"),
    ],
    # cell magics must keep their cell to themselves; line magics work anywhere
    "magics": [
        "%%capture captured\nimport matplotlib.pyplot as plt\nprint('hidden')\nn = 3",
        "%matplotlib inline\nlabel = captured.stdout.strip()",
        ("%%capture ignored\nx = 1", ["parameters"]),
        chart("assert label == 'hidden' and n == 3 and x == 1\nax.plot([n, x])"),
    ],
    "empty": [],
    "badparams": [IMPORTS, ("year = = 2024", ["parameters"]), chart()],
}


KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def write_notebook(path: Path, cells: list[Cell], metadata: dict[str, Any] | None = None) -> Path:
    """A notebook as Jupyter saves one. A plain string starting with ``# `` is a Markdown
    cell; a (source, tags) pair is always code, whatever its first line."""
    nb = nbformat.v4.new_notebook(metadata=metadata or {})
    nb.metadata.setdefault("kernelspec", KERNELSPEC)
    nb.metadata.setdefault("language_info", {"name": "python"})
    for cell in cells:
        source, tags = (cell, []) if isinstance(cell, str) else cell
        if isinstance(cell, str) and source.startswith("# "):
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_all(folder: Path) -> Path:
    """Every reference notebook, plus the data file and the broken ones."""
    for name, cells in NOTEBOOKS.items():
        write_notebook(folder / f"{name}.ipynb", cells)
    (folder / "data.csv").write_text("x,y\n1,2\n2,4\n3,3\n")
    write_notebook(folder / "nested" / "deep" / "inner.ipynb", [IMPORTS, chart()])
    (folder / "unreadable.ipynb").write_text("{ this is not json")
    (folder / ".hidden.ipynb").write_text("{}")
    (folder / ".ipynb_checkpoints").mkdir(exist_ok=True)
    (folder / ".ipynb_checkpoints" / "echo-checkpoint.ipynb").write_text("{}")
    return folder


def rewrite(path: Path, content: str) -> None:
    """Write new content with an mtime surely past the last one (filesystems keep coarse times)."""
    later = path.stat().st_mtime_ns + 10**9
    path.write_text(content)
    os.utime(path, ns=(later, later))


def csv_chart(folder: Path, name: str) -> None:
    """``name.csv``, and ``name.ipynb`` reading it and ending with ``df.plot(...);``."""
    (folder / f"{name}.csv").write_text("month,total\n1,3\n2,5\n")
    plot = f"pd.read_csv('{name}.csv').plot(x='month', y='total');"
    write_notebook(folder / f"{name}.ipynb", ["import pandas as pd", plot])
