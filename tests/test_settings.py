"""One table of settings: the CLI, the environment and the README all agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import serve
from publisher.settings import ENVIRONMENT_ONLY, SETTINGS, Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    for setting in SETTINGS:
        if setting.name != "notebook_dir" and setting.name not in ENVIRONMENT_ONLY:
            assert f"`{setting.option}`" in README, setting.option
        assert f"`{setting.envvar}`" in README, setting.envvar


def test_every_setting_but_the_secret_is_an_option_of_serve() -> None:
    options = {opt for param in serve.params for opt in param.opts}
    for setting in SETTINGS:
        if setting.name != "notebook_dir":
            expected = setting.name not in ENVIRONMENT_ONLY
            assert (setting.option in options) == expected, setting.option


def test_environment_variables_set_settings() -> None:
    settings = Settings.from_env(
        {"PUBLISHER_PORT": "9001", "PUBLISHER_TIMEOUT": "2.5", "PUBLISHER_NOTEBOOK_DIR": "x"}
    )
    assert (settings.port, settings.timeout, settings.notebook_dir) == (9001, 2.5, Path("x"))


def test_explicit_values_win_over_the_environment() -> None:
    assert Settings.from_env({"PUBLISHER_PORT": "9001"}, port=9002).port == 9002


def test_unset_values_keep_their_defaults() -> None:
    assert Settings.from_env({}, port=None) == Settings()


@pytest.mark.parametrize(
    "option, value",
    [
        ("--public-url", "charts.example.org"),
        ("--public-url", "ftp://charts.example.org"),
        ("--frame-ancestors", "'self'; script-src *"),
        ("--frame-ancestors", "'self'\nX-Injected: 1"),
        ("--header-timeout", "0"),
    ],
)
def test_a_setting_that_would_break_every_answer_stops_serve(
    option: str, value: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(serve, [str(tmp_path), option, value])
    assert result.exit_code == 2
    assert option in result.output


def test_a_public_url_with_a_path_prefix_is_accepted() -> None:
    url = "https://example.org/charts-proxy"
    assert Settings(public_url=url).public_url == url


def test_the_secret_is_not_read_with_the_other_settings() -> None:
    # secret.read_secret reads it, the one place that refuses a blank key
    assert Settings.from_env({"PUBLISHER_SECRET": " "}).secret is None
