"""The command line works on the same code path as the server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest
from click.testing import CliRunner

import publisher.app
import publisher.cli
from publisher.cli import main
from publisher.settings import Settings
from publisher.signing import signature

from .conftest import refuse_listing
from .notebooks import IMPORTS, rewrite, write_notebook


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PUBLISHER_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("PUBLISHER_SECRET", "PUBLISHER_SECRET_FILE"):
        monkeypatch.delenv(name, raising=False)

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


def test_render_verbose_lists_the_data_files_the_chart_follows(run, tmp_path: Path) -> None:
    folder = tmp_path / "notebooks"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "sales.csv").write_text("month,total\n1,3\n2,5\n")
    plot = "pd.read_csv('data/sales.csv').plot(x='month', y='total');"
    write_notebook(folder / "sales.ipynb", ["import pandas as pd", plot])
    out = tmp_path / "sales.png"
    for cache in ("miss", "hit"):  # a hit from the disk cache knows its data too
        result = run("render", "sales", "-v", "-o", str(out), "--notebooks", str(folder))
        assert result.exit_code == 0, result.output
        assert "data: data/sales.csv (20 bytes, modified " in result.output
        assert f"({cache}, " in result.output
    quiet = run("render", "sales", "-o", str(out), "--notebooks", str(folder))
    assert "data:" not in quiet.output and "(hit, " in quiet.output
    before = out.read_bytes()
    rewrite(folder / "data" / "sales.csv", "month,total\n1,9\n2,1\n")
    edited = run("render", "sales", "-o", str(out), "--notebooks", str(folder))
    assert "(miss, " in edited.output and out.read_bytes() != before  # not the stale chart


def test_render_verbose_says_when_a_chart_reads_nothing_or_too_much(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name in ("jan", "feb", "mar"):
        (folder / f"{name}.txt").write_text(name)
    write_notebook(folder / "plain.ipynb", [IMPORTS, "plt.bar(['a', 'b'], [3, 4])"])
    reads = "sizes = [len(open(f'{m}.txt').read()) for m in ('jan', 'feb', 'mar')]"
    write_notebook(folder / "months.ipynb", [IMPORTS, f"{reads}\nplt.plot(sizes);"])
    nothing = run(
        "render", "plain", "-v", "-o", str(tmp_path / "a.png"), "--notebooks", str(folder)
    )
    assert "data: none read (the chart follows its notebook and ttl only)" in nothing.output
    monkeypatch.setenv("PUBLISHER_MAX_DATA_FILES", "1")
    many = run("render", "months", "-v", "-o", str(tmp_path / "b.png"), "--notebooks", str(folder))
    assert many.exit_code == 0, many.output
    assert "data: jan.txt (3 bytes" in many.output
    assert "data: 2 more files read, not followed" in many.output


def test_render_takes_list_values_like_a_query_string(
    run, reference_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "echo.png"
    args = ["render", "echo", "chart", "-p", "names", "x", "-p", "names", "y", "-o", str(out)]
    result = run(*args, "--notebooks", str(reference_dir))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("name", "fmt", "magic"),
    [("CHART.SVG", None, b"<?xml"), ("chart.gif", "svg", b"<?xml"), ("chart", "PNG", b"\x89PNG")],
)
def test_render_takes_the_format_from_the_name_or_from_format(
    run, reference_dir: Path, tmp_path: Path, name: str, fmt: str | None, magic: bytes
) -> None:
    out = tmp_path / name
    args = ["render", "echo", "-o", str(out), "--notebooks", str(reference_dir)]
    result = run(*args, *(["--format", fmt] if fmt else []))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().lstrip().startswith(magic)


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("chart.gif", None, "cannot tell the format from 'chart.gif'"),
        ("chart", None, "cannot tell the format from 'chart'"),
        ("chart.svg", "png", "--format png disagrees with the file name 'chart.svg'"),
    ],
)
def test_render_refuses_a_file_name_that_would_lie_about_its_format(
    run, reference_dir: Path, tmp_path: Path, name: str, fmt: str | None, message: str
) -> None:
    args = ["render", "echo", "-o", str(tmp_path / name), "--notebooks", str(reference_dir)]
    result = run(*args, *(["--format", fmt] if fmt else []))
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / name).exists()


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


def signed_with(output: str, secret: str) -> bool:
    url = urlsplit(output.strip())
    pairs = parse_qsl(url.query, keep_blank_values=True)
    path = unquote(url.path)  # as aiohttp decodes it
    return dict(pairs)["_sig"] == signature(secret, path, pairs)


def test_sign_reads_the_secret_from_the_environment(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "k")
    assert signed_with(run("sign", "/charts/echo.png?count=2").output, "k")


def test_sign_reads_the_secret_from_a_file_without_its_newline(run, tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k\n")
    assert signed_with(
        run("sign", "/charts/echo.png", "--secret-file", str(tmp_path / "key")).output, "k"
    )


def test_sign_keeps_the_order_of_repeated_keys(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "k")
    output = run("sign", "/charts/echo.png?names=North&names=West").output
    assert "?names=North&names=West&_sig=" in output and signed_with(output, "k")


def test_sign_prints_a_url_that_can_be_pasted(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "k")
    output = run("sign", "/charts/Q1 (draft)/café.png?text=a b").output.strip()
    assert output.startswith("/charts/Q1%20(draft)/caf%C3%A9.png?text=a+b&_sig=")
    assert signed_with(output, "k")


def test_sign_signs_the_expiry_it_adds(run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "k")
    before = time.time()
    output = run("sign", "/charts/echo.png", "--expires", "60").output
    expires = int(dict(parse_qsl(urlsplit(output.strip()).query))["_expires"])
    assert before + 59 <= expires <= time.time() + 60 and signed_with(output, "k")


@pytest.mark.parametrize("expires", ["inf", "-inf", "nan", "-5", "0", "1e300", "soon"])
def test_sign_refuses_an_expiry_that_is_not_seconds_ahead(
    run, monkeypatch: pytest.MonkeyPatch, expires: str
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", "k")
    result = run("sign", "/charts/echo.png", "--expires", expires)
    assert result.exit_code == 2 and "--expires" in result.output


def test_sign_needs_a_key(run) -> None:
    result = run("sign", "/charts/echo.png")
    assert result.exit_code == 2 and "no key to sign with" in result.output


@pytest.mark.parametrize("command", ["sign", "serve"])
def test_no_command_takes_the_secret_in_argv(run, tmp_path: Path, command: str) -> None:
    result = run(
        command, "/charts/echo.png" if command == "sign" else str(tmp_path), "--secret", "k"
    )
    assert result.exit_code == 2 and "No such option '--secret'" in result.output


MISSING = object()
UNUSABLE_SECRETS = {
    "empty variable": ({"PUBLISHER_SECRET": ""}, None, "PUBLISHER_SECRET is empty"),
    "blank variable": ({"PUBLISHER_SECRET": " \t\n"}, None, "PUBLISHER_SECRET is empty"),
    "empty file": ({}, "", "is empty: an empty key would turn signing off"),
    "blank file": ({}, " \n", "is empty: an empty key would turn signing off"),
    "missing file": ({}, MISSING, "cannot read the secret file"),
    "both": ({"PUBLISHER_SECRET": "k"}, "k", "not both"),
    "empty file variable": (
        {"PUBLISHER_SECRET_FILE": ""},
        None,
        "PUBLISHER_SECRET_FILE is set but empty",
    ),
}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """What ``serve`` did past its checks, in order: made itself undumpable, then served."""
    calls: list[object] = []
    monkeypatch.setattr(publisher.cli, "forbid_dumping", lambda: calls.append("forbid_dumping"))
    monkeypatch.setattr(publisher.app, "run", calls.append)
    return calls


@pytest.mark.parametrize("command", ["sign", "serve"])
@pytest.mark.parametrize("case", list(UNUSABLE_SECRETS))
def test_an_unusable_secret_is_a_usage_error(
    run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served: list[object],
    command: str,
    case: str,
) -> None:
    environ, content, message = UNUSABLE_SECRETS[case]
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    args = ["/charts/echo.png"] if command == "sign" else [str(tmp_path)]
    if content is not None:
        key = tmp_path / "key"
        if content is not MISSING:
            key.write_text(str(content))
        args += ["--secret-file", str(key)]
    result = run(command, *args)
    assert result.exit_code == 2 and message in result.output
    assert served == []


def test_serve_reads_the_secret_file_and_stops_dumping_before_it_serves(
    run, tmp_path: Path, served: list[object]
) -> None:
    (tmp_path / "key").write_text("k\n")
    assert run("serve", str(tmp_path), "--secret-file", str(tmp_path / "key")).exit_code == 0
    assert served[0] == "forbid_dumping"
    assert isinstance(served[1], Settings) and served[1].secret == "k"


def test_serve_takes_the_secret_from_the_environment(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[object]
) -> None:
    monkeypatch.setenv("PUBLISHER_SECRET", " k ")
    assert run("serve", str(tmp_path)).exit_code == 0
    assert isinstance(served[1], Settings) and served[1].secret == " k "


def test_serve_without_a_secret_serves_unsigned(run, tmp_path: Path, served: list[object]) -> None:
    assert run("serve", str(tmp_path)).exit_code == 0
    assert served[0] == "forbid_dumping"
    assert isinstance(served[1], Settings) and served[1].secret is None


def test_serve_stops_when_it_cannot_hide_its_environment(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[object]
) -> None:
    def fails() -> bool:
        raise OSError(1, "prctl(PR_SET_DUMPABLE, 0) failed: Operation not permitted")

    monkeypatch.setattr(publisher.cli, "forbid_dumping", fails)
    result = run("serve", str(tmp_path))
    assert result.exit_code == 1
    assert "cannot keep the secret from notebooks: prctl" in result.output
    assert served == []


@pytest.mark.parametrize(
    "command", [["serve"], ["list"], ["render", "sales", "--notebooks"]], ids=lambda c: c[0]
)
def test_every_command_refuses_a_missing_folder(tmp_path: Path, command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no notebook folder" in result.output


def test_list_of_a_folder_that_cannot_be_read_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refuse_listing(monkeypatch, tmp_path)
    result = CliRunner().invoke(main, ["list", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "cannot be read (Permission denied) [notebooks_unreadable]" in result.output


def test_render_stops_dumping_before_any_kernel_starts(
    run, monkeypatch: pytest.MonkeyPatch, served: list[object]
) -> None:
    async def render(*args: object) -> tuple[bytes, str, dict[str, object]]:
        served.append("render")
        return b"\x89PNG", "miss", {"files": [], "globs": [], "dropped": 0}

    monkeypatch.setattr(publisher.cli, "_render", render)
    assert run("render", "echo").exit_code == 0
    assert served == ["forbid_dumping", "render"]


@pytest.mark.parametrize("command", [["render", "echo"], ["serve"]])
def test_a_setting_from_the_environment_that_cannot_work_is_a_usage_error(
    run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[object], command: list[str]
) -> None:
    monkeypatch.setenv("PUBLISHER_HEADER_TIMEOUT", "0")
    result = run(*command, *([str(tmp_path)] if command == ["serve"] else []))
    assert result.exit_code == 2 and "--header-timeout" in result.output
    assert served == []
