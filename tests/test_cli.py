"""The command line works on the same code path as the server."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.signing import signature


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PUBLISHER_CACHE_DIR", str(tmp_path / "cache"))

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_render_writes_the_chart_in_the_format_of_the_file(
    run, reference_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "echo.svg"
    result = run(
        "render", "echo", "-p", "count", "4", "-o", str(out), "--notebooks", str(reference_dir)
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().lstrip().startswith(b"<?xml")


def test_render_takes_list_values_like_a_query_string(
    run, reference_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "echo.png"
    args = ["render", "echo", "chart", "-p", "names", "x", "-p", "names", "y", "-o", str(out)]
    result = run(*args, "--notebooks", str(reference_dir))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no notebook 'nope'"),
        (["echo", "nochart"], "no chart 'nochart'"),
        (["echo", "-p", "count", "many"], "expects int"),
        (["fails"], "ValueError: cannot chart: boom"),
    ],
)
def test_render_errors_say_what_went_wrong(
    run, reference_dir: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["render", *args, "--notebooks", str(reference_dir)])
    assert result.exit_code == 1
    assert message in result.output


def test_list_shows_notebooks_charts_and_parameters(run, reference_dir: Path) -> None:
    result = run("list", str(reference_dir))
    assert result.exit_code == 0
    assert "partial  (partial)" in result.output
    assert "chart second: /charts/partial/second.png" in result.output
    assert "count: int = 3  # an int" in result.output
    assert "error: cannot read notebook 'unreadable'" in result.output


def test_list_json_is_the_api_listing(run, reference_dir: Path) -> None:
    listing = json.loads(run("list", str(reference_dir), "--json").output)
    echo = next(nb for nb in listing["notebooks"] if nb["id"] == "echo")
    assert echo["charts"][0]["url"] == "/charts/echo/chart.png"


def test_sign_adds_a_signature_the_server_accepts(run) -> None:
    result = run("sign", "/charts/echo.png?count=2", "--secret", "k")
    url = urlsplit(result.output.strip())
    pairs = [(k, v) for k, vs in parse_qs(url.query).items() for v in vs]
    assert dict(pairs)["_sig"] == signature("k", url.path, pairs)


def test_sign_reads_the_secret_from_the_environment(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "k")
    assert "_sig=" in run("sign", "/charts/echo.png").output


def test_serve_refuses_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no notebook folder" in result.output
