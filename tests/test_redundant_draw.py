"""What the kernel's ``_draw_last_cell`` relies on, held against matplotlib itself.

When a render's last cell ends, a fresh kernel draws each figure (pyplot's
post_execute hook) and then prints it. A reused kernel skips that draw for a
figure without a layout engine, and makes it a draw without rendering for one
with an engine. Both must leave the printed PNG byte for byte the same; these
charts, written the way analysts write them, check it type by type, in this
process, with IPython's own ``print_figure`` (what the inline backend calls).
A failure here after a matplotlib upgrade means the skip is no longer safe.
(With matplotlib 3.11, three of the four engine charts print differently when
that draw is skipped altogether: an engine lays the figure out anew at every
draw. That is why they are drawn without rendering rather than skipped.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import matplotlib
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from IPython.core.pylabtools import print_figure
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnchoredText
from mpl_toolkits.axes_grid1 import make_axes_locatable

Chart = Callable[[np.random.Generator], object]
PLAIN: dict[str, Chart] = {}  # no layout engine: the draw before the print is skipped
ENGINE: dict[str, Chart] = {}  # a layout engine: that draw is made without rendering


def plain(chart: Chart) -> Chart:
    PLAIN[chart.__name__] = chart
    return chart


def engine(chart: Chart) -> Chart:
    ENGINE[chart.__name__] = chart
    return chart


def _days(rng: np.random.Generator) -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=120, freq="D")
    return pd.DataFrame(rng.normal(size=(120, 2)).cumsum(axis=0), index=index, columns=["a", "b"])


@plain
def pandas_dates(rng: np.random.Generator) -> object:
    return _days(rng).plot(figsize=(6, 3), title="visits")


@plain
def pandas_subplots(rng: np.random.Generator) -> object:
    return _days(rng).plot(subplots=True, figsize=(5, 4))


@plain
def log_and_twinx(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    ax.semilogy(np.arange(1, 50) ** 3)
    return ax.twinx().plot(np.sin(np.arange(49)), "r")


@plain
def polar(rng: np.random.Generator) -> object:
    t = np.linspace(0, 2 * np.pi, 100)
    return plt.subplot(projection="polar").plot(t, 1 + np.sin(3 * t))


@plain
def surface_3d(rng: np.random.Generator) -> object:
    x = np.linspace(-2, 2, 30)
    X, Y = np.meshgrid(x, x)
    return plt.figure().add_subplot(projection="3d").plot_surface(X, Y, np.exp(-(X**2) - Y**2))


@plain
def errorbars_and_band(rng: np.random.Generator) -> object:
    x = np.arange(10)
    plt.errorbar(x, x**0.5, yerr=0.2, capsize=3)
    return plt.fill_between(x, x**0.5 - 0.3, x**0.5 + 0.3, alpha=0.2)


@plain
def stack_box_violin(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(1, 3, figsize=(8, 3))
    axes[0].stackplot(range(5), [1, 2, 3, 2, 1], [2, 2, 1, 1, 3])
    axes[1].boxplot(rng.normal(size=(50, 3)))
    return axes[2].violinplot(rng.normal(size=(50, 3)))


@plain
def hexbin_colorbar(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    cells = ax.hexbin(rng.normal(size=500), rng.normal(size=500), gridsize=15)
    return fig.colorbar(cells, extend="both")


@plain
def contours_with_labels(rng: np.random.Generator) -> object:
    x = np.linspace(-3, 3, 50)
    X, Y = np.meshgrid(x, x)
    plt.colorbar(plt.contourf(X, Y, np.sin(X) * np.cos(Y), 12))
    return plt.clabel(plt.contour(X, Y, np.sin(X) * np.cos(Y), 5, colors="k"))


@plain
def quiver_and_pie(rng: np.random.Generator) -> object:
    fig, (left, right) = plt.subplots(1, 2)
    X, Y = np.meshgrid(range(5), range(5))
    left.quiver(X, Y, np.cos(X), np.sin(Y))
    return right.pie([3, 2, 5], labels=["x", "y", "z"], autopct="%1.1f%%", explode=[0, 0.1, 0])


@plain
def table_and_arrow(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    ax.plot([1, 3, 2])
    ax.annotate("max", xy=(1, 3), xytext=(1.5, 2.5), arrowprops={"arrowstyle": "fancy"})
    ax.table(cellText=[["1", "2"], ["3", "4"]], colLabels=["a", "b"], loc="bottom")
    fig.subplots_adjust(bottom=0.3)


@plain
def wrapped_text_and_math(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.text(0.1, 0.5, "a rather long sentence that wraps around the axes " * 3, wrap=True)
    ax.set_title(r"$\alpha^2 + \sum_{i=0}^{n} \frac{x_i}{\sqrt{2}}$")
    return ax.set_xlabel(r"$\mu$ (m/s$^2$)")


@plain
def legend_outside(rng: np.random.Generator) -> object:
    for k in range(4):
        plt.plot(np.arange(10) * k, label=f"series {k}")
    plt.legend(loc="upper left", bbox_to_anchor=(1.02, 1))
    return plt.title("legend outside")


@plain
def legend_best(rng: np.random.Generator) -> object:
    x = np.linspace(0, 10, 200)
    plt.plot(x, np.sin(x), label="sin")
    plt.plot(x, np.cos(x) + 1, label="cos")
    return plt.legend()


@plain
def aspect_by_data_limits(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 10], [0, 3])
    return ax.set_aspect("equal", adjustable="datalim")


@plain
def shared_axes_with_aspect(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(2, 2, sharex=True, sharey=True)
    for ax in axes.flat:
        ax.plot(rng.normal(size=20))
    return axes[0, 0].set_aspect(2)


@plain
def gridspec_and_inset(rng: np.random.Generator) -> object:
    fig = plt.figure(figsize=(6, 4))
    grid = fig.add_gridspec(2, 3)
    top, bottom = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0:2])
    top.plot(range(10))
    top.inset_axes((0.6, 0.1, 0.3, 0.3)).plot([3, 1, 2])
    return bottom.barh(["x", "y"], [3, 5])


@plain
def secondary_axis(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    ax.plot(range(1, 100))
    twice = ax.secondary_xaxis("top", functions=(lambda x: x * 2, lambda x: x / 2))
    return twice.set_xlabel("doubled")


@plain
def bar_labels_and_spans(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    ax.bar_label(ax.bar(["north", "south", "east"], [12.5, 30.25, 7]), fmt="%.1f")
    ax.axhline(10)
    return ax.axvspan(0.5, 1.5, alpha=0.2)


@plain
def pandas_scatter_colormap(rng: np.random.Generator) -> object:
    points = pd.DataFrame(rng.normal(size=(100, 3)), columns=list("xyz"))
    return points.plot.scatter(x="x", y="y", c="z", colormap="viridis")


@plain
def pandas_boxplot_by(rng: np.random.Generator) -> object:
    values = pd.DataFrame({"v": rng.normal(size=200), "g": rng.choice(["a", "b"], 200)})
    return values.boxplot(column="v", by="g")


@plain
def concise_dates(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    days = _days(rng)
    ax.plot(days.index, days["a"])
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.autofmt_xdate()


@plain
def divider_colorbar(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    image = ax.imshow(rng.normal(size=(10, 10)))
    cax = make_axes_locatable(ax).append_axes("right", size="5%", pad=0.05)
    return fig.colorbar(image, cax=cax)


@plain
def anchored_text_and_sup_labels(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(1, 2)
    axes[0].add_artist(AnchoredText("note", loc="upper left"))
    fig.suptitle("Suptitle")
    fig.supxlabel("x")
    return fig.supylabel("y")


@plain
def tight_layout_called_once(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(2, 2)
    for i, ax in enumerate(axes.flat):
        ax.set_title(f"long title number {i}")
    fig.tight_layout()


@plain
def interpolated_image(rng: np.random.Generator) -> object:
    plt.imshow(rng.normal(size=(30, 30)), interpolation="bicubic", cmap="magma")
    return plt.colorbar()


@plain
def rotated_categories(rng: np.random.Generator) -> object:
    plt.bar([f"category number {i}" for i in range(12)], range(12))
    return plt.xticks(rotation=60)


@plain
def aligned_labels(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(2, 1)
    axes[0].plot([1, 1000000])
    axes[1].plot([1, 2])
    axes[0].set_ylabel("big")
    axes[1].set_ylabel("small")
    fig.align_labels()


@plain
def log_log_minor_grid(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots()
    ax.loglog(np.logspace(-3, 5, 50), np.logspace(2, -4, 50))
    return ax.grid(True, which="both")


@plain
def subfigures(rng: np.random.Generator) -> object:
    fig = plt.figure(figsize=(6, 3))
    left, right = fig.subfigures(1, 2)
    left.subplots().plot([1, 2])
    right.subplots(2, 1)
    left.suptitle("left")
    return right.suptitle("right")


@plain
def steps_and_sized_markers(rng: np.random.Generator) -> object:
    plt.step(range(10), rng.integers(0, 5, 10), where="mid", marker="o")
    return plt.scatter(range(10), range(10), s=np.arange(10) * 20, c=range(10))


@plain
def stacked_bars_legend_beside(rng: np.random.Generator) -> object:
    shares = pd.DataFrame(rng.random((5, 3)), index=list("abcde"))
    return shares.plot.bar(stacked=True).legend(loc="center left", bbox_to_anchor=(1, 0.5))


@plain
def ggplot_style(rng: np.random.Generator) -> object:
    with plt.style.context("ggplot"):
        return pd.DataFrame(rng.random((10, 3)), columns=list("xyz")).plot.area(title="area")


@engine
def constrained_with_colorbar(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(1, 2, figsize=(6, 3), layout="constrained")
    for ax, k in zip(axes, (1, 3), strict=True):
        image = ax.imshow(np.outer(np.arange(8), np.arange(6)) ** k)
        ax.set_title(f"power {k}")
    fig.colorbar(image, ax=axes, shrink=0.8)
    return fig.suptitle("Growth")


@engine
def tight_engine_rotated_ticks(rng: np.random.Generator) -> object:
    fig, ax = plt.subplots(figsize=(5, 3), layout="tight")
    x = np.arange(10)
    ax.plot(x, x**2, label="squares")
    ax.set_xticks(x, [f"week {i}" for i in x], rotation=45, ha="right")
    return ax.legend()


@engine
def constrained_grid(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(3, 3, layout="constrained", figsize=(5, 5))
    for i, ax in enumerate(axes.flat):
        ax.plot(np.arange(10) * 10**i)
        ax.set_title(f"t{i}")


@engine
def compressed_images(rng: np.random.Generator) -> object:
    fig, axes = plt.subplots(2, 2, layout="compressed", figsize=(5, 4))
    for ax in axes.flat:
        image = ax.imshow(rng.normal(size=(10, 12)))
    return fig.colorbar(image, ax=axes)


@pytest.fixture(autouse=True)
def agg() -> Iterator[None]:
    backend = matplotlib.get_backend()
    plt.switch_backend("agg")
    yield
    plt.close("all")
    plt.switch_backend(backend)


def printed(
    chart: Chart, before_print: Callable[[Figure], None], sized: bool = False
) -> list[bytes]:
    """Each figure the chart makes, as the inline backend prints it after ``before_print``;
    ``sized``: as a URL with ``_width`` and ``_height`` has it printed (the kernel's
    ``_print_figure``: resized after that draw, then printed without the tight crop)."""
    plt.close("all")
    with plt.rc_context():
        chart(np.random.default_rng(1))
        figures = [plt.figure(number) for number in plt.get_fignums()]
        for figure in figures:
            before_print(figure)
            if sized:
                figure.set_size_inches(8, 2)
        crop = None if sized else "tight"
        return [print_figure(figure, "png", bbox_inches=crop, dpi=100) for figure in figures]


def full_draw(figure: Figure) -> None:  # pyplot's hook in a fresh kernel
    figure.canvas.draw()


@pytest.mark.parametrize("name", PLAIN)
def test_without_a_layout_engine_the_draw_before_the_print_changes_nothing(name: str) -> None:
    fresh = printed(PLAIN[name], full_draw)
    assert fresh
    assert printed(PLAIN[name], lambda figure: None) == fresh


@pytest.mark.parametrize("name", ENGINE)
def test_with_a_layout_engine_a_draw_without_rendering_stands_in_for_it(name: str) -> None:
    fresh = printed(ENGINE[name], full_draw)
    assert fresh
    assert printed(ENGINE[name], lambda figure: figure.draw_without_rendering()) == fresh


@pytest.mark.parametrize("name", [*PLAIN, *ENGINE])
def test_resized_for_the_url_a_draw_without_rendering_stands_in_for_it(name: str) -> None:
    """Resizing after the draw is not drawing twice at one size: ``aspect_by_data_limits``
    prints differently if that draw is skipped, so every figure gets one."""
    chart = {**PLAIN, **ENGINE}[name]
    fresh = printed(chart, full_draw, sized=True)
    assert fresh
    dry = printed(chart, lambda figure: figure.draw_without_rendering(), sized=True)
    assert dry == fresh
