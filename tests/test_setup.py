"""The two commands of the README: `make serve` needs only the package, `make test` adds its tools;
both, and the image, install the pinned versions."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dry_run(target: str, tmp_path: Path) -> str:
    """What `make TARGET` would run on a fresh clone (no virtualenv yet)."""
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    return subprocess.run(
        [make, "-n", target], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout


def test_serving_installs_the_package_without_the_test_tools(tmp_path: Path) -> None:
    commands = dry_run("serve", tmp_path)
    assert "pip install -q -c constraints.txt -e ." in commands
    assert "[test]" not in commands
    assert "publisher serve notebooks" in commands


def test_testing_installs_the_test_tools_too(tmp_path: Path) -> None:
    commands = dry_run("test", tmp_path)
    assert "-c constraints.txt -e '.[test]'" in commands
    assert "pytest" in commands


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_dependency_is_pinned_in_the_constraints_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pinned[_name(name)] = version
    assert {_name(r) for r in wanted} <= set(pinned)


def test_the_image_installs_the_pinned_versions() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml README.md constraints.txt" in dockerfile
    assert "pip install --no-cache-dir -c constraints.txt ." in dockerfile
