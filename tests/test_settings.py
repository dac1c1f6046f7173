"""One table of settings: the CLI, the environment and the README all agree with it."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from publisher.cli import main
from publisher.settings import SETTINGS, Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    for setting in SETTINGS:
        if setting.name != "notebook_dir":
            assert f"`{setting.option}`" in README, setting.option
        assert f"`{setting.envvar}`" in README, setting.envvar


def test_every_setting_is_an_option_of_serve() -> None:
    help_text = CliRunner().invoke(main, ["serve", "--help"]).output
    for setting in SETTINGS:
        if setting.name != "notebook_dir":
            assert setting.option in help_text


def test_environment_variables_set_settings() -> None:
    settings = Settings.from_env(
        {"PUBLISHER_PORT": "9001", "PUBLISHER_TIMEOUT": "2.5", "PUBLISHER_NOTEBOOK_DIR": "x"}
    )
    assert (settings.port, settings.timeout, settings.notebook_dir) == (9001, 2.5, Path("x"))


def test_explicit_values_win_over_the_environment() -> None:
    assert Settings.from_env({"PUBLISHER_PORT": "9001"}, port=9002).port == 9002


def test_unset_values_keep_their_defaults() -> None:
    assert Settings.from_env({}, port=None) == Settings()
