"""Over a thousand notebooks in nested folders, for the tests of finding one among many.

Written as plain JSON (no nbformat validation per file), so making them takes a
fraction of a second. Each names its folder and number the way people do
("report 7"), so natural order can be told from string order; a few carry what
a search must find. ``natural`` is the order the server must give, worked out
from the numbers in the names rather than by the code under test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TEAMS = 12  # team1 ... team12: "team2" before "team10"
BIG_TEAM = "team1"  # enough notebooks directly inside for three gallery pages
DIRECT = {BIG_TEAM: 120}
DIRECT_DEFAULT = 40
PROJECTS = 2  # team*/project 1, team*/project 2
PER_PROJECT = 20
ARCHIVED = 10  # team*/project 1/archive
TOP_LEVEL = ["overview", "Read me first"]

# what a search must find, and where it lives
TITLED = "team3/report 7"  # its title: "Quarterly REVENUE by Region"
CHARTED = "team5/project 2/report 3"  # a chart named "waterfall"
PARAMETERED = "team7/report 11"  # a parameter named "discount_rate"
TITLE = "Quarterly REVENUE by Region"


def corpus_ids() -> list[str]:
    ids = list(TOP_LEVEL)
    for t in range(1, TEAMS + 1):
        team = f"team{t}"
        ids += [f"{team}/report {i}" for i in range(1, DIRECT.get(team, DIRECT_DEFAULT) + 1)]
        for p in range(1, PROJECTS + 1):
            ids += [f"{team}/project {p}/report {i}" for i in range(1, PER_PROJECT + 1)]
        ids += [f"{team}/project 1/archive/report {i}" for i in range(1, ARCHIVED + 1)]
    return ids


def natural(ids: list[str]) -> list[str]:
    """The natural order: by folder level, each level by its words, then by its number's value."""

    def key(id: str) -> tuple[tuple[str, int], ...]:
        parts = []
        for part in id.split("/"):
            match = re.fullmatch(r"(\D*?)\s*(\d*)", part)
            assert match is not None
            parts.append((match.group(1).casefold(), int(match.group(2) or -1)))
        return tuple(parts)

    return sorted(ids, key=key)


def write_corpus(folder: Path) -> list[str]:
    """Every notebook of ``corpus_ids`` under ``folder``; returns their ids."""
    ids = corpus_ids()
    for id in ids:
        path = folder / f"{id}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_notebook(id)))
    return ids


def title_of(id: str) -> str:
    return TITLE if id == TITLED else id.rpartition("/")[2].capitalize()


def _notebook(id: str) -> dict[str, Any]:
    chart = "waterfall" if id == CHARTED else "trend"
    parameters = "points = 3  # how many points"
    if id == PARAMETERED:
        parameters = f"discount_rate = 0.5  # a rate\n{parameters}"
    return {
        "nbformat": 4,
        "nbformat_minor": 4,
        "metadata": {},
        "cells": [
            _cell("markdown", f"# {title_of(id)}"),
            _cell("code", "import matplotlib.pyplot as plt"),
            _cell("code", parameters, "parameters"),
            _cell(
                "code",
                "fig, ax = plt.subplots(figsize=(2, 1.5))\nax.plot(range(points))",
                f"chart:{chart}",
            ),
        ],
    }


def _cell(kind: str, source: str, tag: str | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {"tags": [tag]} if tag else {}}
    cell["source"] = source
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell
