"""Notebooks written the way analysts write them, for the differential fidelity test.

``STYLES`` draw a chart in each of the ways people do: most end the cell and
let Jupyter show the figure, some end with ``;``, a bare ``fig``, ``df.plot()``
or ``display(fig)``; only a few call ``plt.show()``. ``LEAVERS`` also draw a
chart, and leave behind one kind of state a reused kernel must not pass on.
``RETIRING`` leave state no reset can undo: their kernel must be retired.

Every notebook has a ``run`` parameter that changes nothing in the image, so
the test can render the same chart many times without hitting the cache.
"""

from __future__ import annotations

from pathlib import Path

from .notebooks import Cell, write_notebook

PARAMS: Cell = ("run = 0  # changes nothing; makes each render a cache miss", ["parameters"])
MPL = "import matplotlib.pyplot as plt\nimport numpy as np"
PD = "import pandas as pd\n" + MPL


def _nb(setup: str, chart: str, *more: Cell) -> list[Cell]:
    return [setup, PARAMS, *more, (chart, ["chart"])]


STYLES: dict[str, list[Cell]] = {
    "cell_ends": _nb(
        MPL,
        "months = ['Jan', 'Feb', 'Mar', 'Apr']\n"
        "fig, ax = plt.subplots(figsize=(5, 3))\n"
        "ax.plot(months, [12, 30, 21, 27], marker='o')\n"
        "ax.set_title('Monthly sales')",
    ),
    "semicolon": _nb(
        MPL,
        "x = np.linspace(0, 2 * np.pi, 200)\nplt.plot(x, np.sin(x))\nplt.title('Sine wave');",
    ),
    "pandas_dates": _nb(
        PD,
        "df.plot(figsize=(6, 3))",
        "rng = np.random.default_rng(7)\n"
        "days = pd.date_range('2024-01-01', periods=90, freq='D')\n"
        "df = pd.DataFrame({'visits': rng.poisson(40, 90).cumsum()}, index=days)",
    ),
    "pandas_bar_title": _nb(
        PD,
        "df = pd.DataFrame({'north': [1.23456, 2.5], 'south': [3.14159, 0.5]}, index=['Q1', 'Q2'])\n"
        "ax = df.plot.bar(rot=0)\n"
        "ax.set_title(df.mean().to_string().replace('\\n', ' | '))",
    ),
    "display_close": _nb(
        MPL + "\nfrom IPython.display import display",
        "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.bar(['a', 'b', 'c'], [3, 1, 2], color='tab:green')\n"
        "display(fig)\n"
        "plt.close(fig)",
    ),
    "bare_fig": _nb(
        MPL,
        "fig, ax = plt.subplots(figsize=(4, 4))\n"
        "ax.scatter([1, 2, 3, 4], [4, 1, 3, 2], s=[20, 80, 40, 160])\n"
        "fig",
    ),
    "plt_show": _nb(
        MPL,
        "plt.figure(figsize=(4, 3))\nplt.step([1, 2, 3, 4], [1, 4, 2, 3])\nplt.grid(True)\nplt.show()",
    ),
    "several_figures": _nb(
        MPL,
        "fig1, ax1 = plt.subplots()\n"
        "ax1.plot([3, 2, 1])\n"
        "fig2, ax2 = plt.subplots(figsize=(3, 3))\n"
        "ax2.pie([2, 3, 5], labels=['x', 'y', 'z'])",
    ),
    "warns": _nb(
        MPL + "\nimport warnings",
        "warnings.warn('the Q3 numbers are preliminary')\n"
        "shares = np.array([1.0, 0.0, 2.0])\n"
        "logs = np.log(shares)  # divide-by-zero warning, as in real data\n"
        "plt.bar(range(3), np.nan_to_num(logs, neginf=-1))\n"
        "plt.axhline(0, color='k');",
    ),
    "env_and_data": _nb(
        PD + "\nimport os",
        "title = os.environ.get('CHART_TITLE', 'Weekly sales')\n"
        "sales = pd.read_csv('weekly.csv')\n"
        "ax = sales.plot(x='week', y='amount', kind='area', figsize=(5, 3), title=title)",
    ),
    "style_context": _nb(
        MPL,
        "with plt.style.context('seaborn-v0_8-darkgrid'):\n"
        "    fig, ax = plt.subplots(figsize=(5, 3))\n"
        "    ax.plot([1, 4, 2, 5], lw=2)\n"
        "ax.set_xlabel('quarter')",
    ),
    "hist": _nb(
        MPL,
        "values = np.random.default_rng(3).normal(size=500)\n"
        "fig, ax = plt.subplots()\n"
        "ax.hist(values, bins=25, edgecolor='white')\n"
        "ax.set_title(f'n = {len(values)}, mean = {values.mean()}')",
    ),
    # Layout engines lay a figure out again at every draw, so these notice a draw
    # the fresh kernel makes and a reused one skips (or the other way round).
    "constrained_colorbar": _nb(
        MPL,
        "fig, axes = plt.subplots(1, 2, figsize=(6, 3), layout='constrained')\n"
        "for ax, k in zip(axes, (1, 3)):\n"
        "    im = ax.imshow(np.outer(np.arange(8), np.arange(6)) ** k)\n"
        "    ax.set_title(f'power {k}')\n"
        "fig.colorbar(im, ax=axes, shrink=0.8)\n"
        "fig.suptitle('Growth by power')",
    ),
    "tight_engine_legend": _nb(
        MPL,
        "fig, ax = plt.subplots(figsize=(5, 3), layout='tight')\n"
        "x = np.arange(10)\n"
        "ax.plot(x, x ** 2, label='squares')\n"
        "ax.plot(x, 40 - x * 3, label='falling')\n"
        "ax.set_xticks(x, [f'week {i}' for i in x], rotation=45, ha='right')\n"
        "ax.legend(loc='best')\n"
        "ax.annotate('peak', xy=(9, 81), xytext=(5, 70), arrowprops={'arrowstyle': '->'})",
    ),
}

# Two folders, each with its own helper.py under the same module name.
HELPERS = {
    "team_a": "def series():\n    return [1, 2, 3, 5, 8]\n\nCOLOR = 'tab:red'\n",
    "team_b": "def series():\n    return [9, 7, 4, 2, 1]\n\nCOLOR = 'tab:purple'\n",
}
HELPER_CHART = _nb(
    MPL + "\nimport helper",
    "fig, ax = plt.subplots(figsize=(4, 3))\nax.plot(helper.series(), color=helper.COLOR)",
)

_DRAW = "fig, ax = plt.subplots(figsize=(4, 3))\nax.plot([2, 5, 3, 6], label='sales')\nax.legend()"
_SHOWN = _DRAW + "\ndisplay(fig)"

LEAVERS: dict[str, list[Cell]] = {
    "style_use": _nb(MPL + "\nplt.style.use('ggplot')", _DRAW),
    "rc_update": _nb(
        MPL,
        _DRAW,
        "plt.rcParams.update({'lines.linewidth': 6, 'axes.facecolor': '#fffbe6', 'font.size': 14})",
    ),
    "xkcd": _nb(MPL + "\nplt.xkcd()", _DRAW),
    "agg_magic": _nb("%matplotlib agg\n" + MPL + "\nfrom IPython.display import display", _SHOWN),
    "matplotlib_use": _nb(
        "import matplotlib\n" + MPL + "\nfrom IPython.display import display",
        _DRAW + "\nmatplotlib.use('agg')\ndisplay(fig)",
    ),
    "ioff": _nb(MPL + "\nfrom IPython.display import display\nplt.ioff()", _SHOWN),
    # Pixels pyplot's hook drew when an earlier cell ended, read back (the agg backend
    # keeps figures open): that draw must stay a real one.
    "agg_reads_pixels": _nb(
        "%matplotlib agg\n" + MPL + "\nfrom IPython.display import display",
        "pixels = np.asarray(thumb.canvas.buffer_rgba())\n"
        "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.imshow(pixels)\n"
        "ax.set_title(f'{pixels.shape[1]}x{pixels.shape[0]}, {pixels.std():.2f}')\n"
        "display(fig)",
        "thumb, small = plt.subplots(figsize=(2, 1.5))\nsmall.plot([1, 3, 2, 4])",
    ),
    "config_retina": _nb("%config InlineBackend.figure_format = 'retina'\n" + MPL, _DRAW),
    "config_kwargs": _nb(
        "%config InlineBackend.print_figure_kwargs = {'bbox_inches': None, 'facecolor': 'lightyellow'}\n"
        + MPL,
        _DRAW,
    ),
    "warnings_error": _nb(MPL + "\nimport warnings\nwarnings.simplefilter('error')", _DRAW),
    "seterr": _nb(MPL + "\nnp.seterr(all='raise')\nnp.set_printoptions(precision=2)", _DRAW),
    "pandas_options": _nb(
        PD
        + "\npd.set_option('display.precision', 1)\npd.plotting.register_matplotlib_converters()",
        _DRAW,
    ),
    "registers_a_colormap": _nb(
        MPL + "\nimport matplotlib\nfrom matplotlib.colors import LinearSegmentedColormap\n"
        "brand = LinearSegmentedColormap.from_list('brand', ['#003f5c', '#ffa600'])\n"
        "matplotlib.colormaps.register(brand)",
        "fig, ax = plt.subplots(figsize=(4, 3))\n"
        "ax.imshow(np.arange(12).reshape(3, 4), cmap='brand')",
    ),
    "process_state": _nb(
        MPL + "\nimport os, sys\nos.environ['CHART_TITLE'] = 'leaked title'\n"
        "sys.path.insert(0, '/tmp')\nos.chdir('/')\nmonths, sales, df, title = 1, 2, 3, 4",
        _DRAW,
    ),
}

RETIRING: dict[str, list[Cell]] = {
    "patches_a_class": _nb(
        MPL + "\nimport matplotlib.axes\n"
        "_plot = matplotlib.axes.Axes.plot\n"
        "def loud_plot(self, *args, **kwargs):\n"
        "    kwargs.setdefault('linewidth', 8)\n"
        "    return _plot(self, *args, **kwargs)\n"
        "matplotlib.axes.Axes.plot = loud_plot",
        _DRAW,
    ),
    "rebinds_a_module_global": _nb(
        MPL + "\nimport matplotlib.dates\nmatplotlib.dates.DAYS_PER_YEAR = 360",
        _DRAW,
    ),
    "adds_a_method": _nb(
        PD + "\npd.DataFrame.total = lambda self: self.sum(axis=1)",
        "df = pd.DataFrame({'a': [1, 2], 'b': [3, 4]})\nax = df.total().plot.bar()",
    ),
}


def write_corpus(folder: Path) -> dict[str, list[str]]:
    """Every corpus notebook under ``folder``; returns the notebook ids of each group.

    ``team_a/chart`` and ``team_b/chart`` import a different ``helper`` under
    the same name: the first counts as a leaver, the second as a style.
    """
    ids: dict[str, list[str]] = {}
    for group, notebooks in (("styles", STYLES), ("leavers", LEAVERS), ("retiring", RETIRING)):
        ids[group] = []
        for name, cells in notebooks.items():
            write_notebook(folder / group / f"{name}.ipynb", cells)
            ids[group].append(f"{group}/{name}")
    (folder / "styles" / "weekly.csv").write_text("week,amount\n1,120\n2,135\n3,90\n4,160\n")
    for team, source in HELPERS.items():
        (folder / team).mkdir(exist_ok=True)
        (folder / team / "helper.py").write_text(source)
        write_notebook(folder / team / "chart.ipynb", HELPER_CHART)
    ids["leavers"].append("team_a/chart")
    ids["styles"].append("team_b/chart")
    return ids
