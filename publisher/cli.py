"""The command line: parse, build Settings, call into the package. Nothing else lives here."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from .api import data_json, notebook_json
from .assembly import build
from .catalog import Catalog
from .errors import PublisherError
from .extract import FORMATS
from .secret import SecretError, forbid_dumping, read_secret
from .settings import ENVIRONMENT_ONLY, SETTINGS, Settings
from .signing import sign_url

MAX_EXPIRES = 100 * 365 * 24 * 3600  # a century: past it, leave --expires out


def _serve_options(command: Any) -> Any:
    """One option per setting, each reading its PUBLISHER_* variable too; no secret in argv."""
    for setting in reversed(SETTINGS):
        if setting.name == "notebook_dir" or setting.name in ENVIRONMENT_ONLY:
            continue
        flag = setting.type is bool  # --name/--no-name, no value
        command = click.option(
            f"{setting.option}/--no-{setting.option[2:]}" if flag else setting.option,
            setting.name,
            type=None if flag else setting.type,
            envvar=setting.envvar,
            default=None,
            show_envvar=True,
            help=f"{setting.help} [default: {setting.default}]",
        )(command)
    return command


@click.group()
def main() -> None:
    """Publish Jupyter notebook charts at stable, cacheable URLs."""


@main.command()
@click.argument("notebook_dir", required=False, type=Path, envvar="PUBLISHER_NOTEBOOK_DIR")
@_serve_options
def serve(notebook_dir: Path | None, **options: Any) -> None:
    """Serve the charts of the notebooks in NOTEBOOK_DIR (default: ./notebooks)."""
    from .app import run

    settings = _settings(notebook_dir=notebook_dir, **options)
    settings = settings.replace(secret=_secret(settings.secret_file))
    _forbid_dumping()  # before the first kernel starts: kernels run as this user
    run(settings)


def _settings(**options: Any) -> Settings:
    """Settings from the environment and options; a value that cannot work is a usage error."""
    try:
        settings = Settings.from_env(**options)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if not settings.notebook_dir.is_dir():
        raise click.UsageError(f"no notebook folder at {settings.notebook_dir}")
    return settings


def _forbid_dumping() -> None:
    try:
        forbid_dumping()
    except OSError as e:
        raise click.ClickException(f"cannot keep the secret from notebooks: {e.strerror}") from None


def _secret(secret_file: Path | None) -> str | None:
    try:
        return read_secret(os.environ, secret_file)
    except SecretError as e:
        raise click.UsageError(str(e)) from None


@main.command()
@click.argument("notebook_id")
@click.argument("chart", required=False)
@click.option(
    "-p",
    "--parameter",
    "params",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="A parameter value, as in a URL's query string; repeat for lists.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write; its suffix (.png, .svg, .pdf) picks the format. Default: stdout.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS), case_sensitive=False),
    default=None,
    help="Image format, for stdout or a file whose name does not say; with a .png, .svg or"
    " .pdf file it must agree. [default: png]",
)
@click.option(
    "--notebooks",
    "notebook_dir",
    type=Path,
    envvar="PUBLISHER_NOTEBOOK_DIR",
    default=None,
    help="Folder of notebooks. [default: notebooks]",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Also list, on stderr, the data files the render read (what its cache entry follows).",
)
def render(
    notebook_id: str,
    chart: str | None,
    params: tuple[tuple[str, str], ...],
    output: Path | None,
    fmt: str | None,
    notebook_dir: Path | None,
    verbose: bool,
) -> None:
    """Render one chart of NOTEBOOK_ID, as the server would, to a file or stdout."""
    # max_stale 0: a chart past its ttl or whose data changed is rendered now, not served stale
    settings = _settings(notebook_dir=notebook_dir, kernels=1, max_stale=0.0)
    _forbid_dumping()  # the caller's PUBLISHER_SECRET must not reach this notebook either
    fmt = _format_of(output, fmt)
    started = time.perf_counter()
    try:
        body, how, data = asyncio.run(_render(settings, notebook_id, chart, list(params), fmt))
    except PublisherError as e:
        raise click.ClickException(f"{e.message} [{e.code}, HTTP {e.status}]") from None
    if verbose:
        _list_data(data)
    if output is None:
        sys.stdout.buffer.write(body)
    else:
        output.write_bytes(body)
        click.echo(
            f"{output}: {len(body)} bytes ({how}, {time.perf_counter() - started:.2f}s)", err=True
        )


def _format_of(output: Path | None, fmt: str | None) -> str:
    """The format to render; a file named for another format would lie about its bytes."""
    if output is None:
        return fmt or "png"
    suffix = output.suffix.lstrip(".").lower()
    if suffix in FORMATS:
        if fmt is not None and fmt != suffix:
            raise click.UsageError(f"--format {fmt} disagrees with the file name {output.name!r}")
        return suffix
    if fmt is None:
        known = ", ".join(f".{f}" for f in FORMATS)
        raise click.UsageError(
            f"cannot tell the format from {output.name!r}: name the file {known}, or give --format"
        )
    return fmt


def _list_data(data: dict[str, Any]) -> None:
    files, globs = data["files"], data["globs"]
    if not files and not globs:
        click.echo("data: none read (the chart follows its notebook and ttl only)", err=True)
    for f in files:
        modified = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["modified"]))
        click.echo(f"data: {f['path']} ({f['size']} bytes, modified {modified})", err=True)
    for pattern in globs:
        click.echo(f"data: declared {pattern}", err=True)
    if data["dropped"]:
        click.echo(f"data: {data['dropped']} more files read, not followed", err=True)


async def _render(
    settings: Settings, notebook_id: str, chart: str | None, params: list[tuple[str, str]], fmt: str
) -> tuple[bytes, str, dict[str, Any]]:
    service = build(settings)
    try:  # the pool starts a kernel only if the chart is not in the cache
        notebook, chart_ = service.catalog.chart(notebook_id, chart)
        outcome = await service.get(service.resolve(notebook, chart_, urlencode(params), fmt))
    finally:
        await service.close()
    return outcome.entry.body, outcome.cache, data_json(outcome.entry.data, notebook)


@main.command(name="list")
@click.argument("notebook_dir", required=False, type=Path, envvar="PUBLISHER_NOTEBOOK_DIR")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the JSON of /api/notebooks, every notebook."
)
def list_(notebook_dir: Path | None, as_json: bool) -> None:
    """List the notebooks in NOTEBOOK_DIR with their charts and parameters."""
    settings = _settings(notebook_dir=notebook_dir)
    try:
        notebooks = [notebook_json(nb) for nb in Catalog(settings.notebook_dir).all()]  # in order
    except PublisherError as e:
        raise click.ClickException(f"{e.message} [{e.code}]") from None
    if as_json:  # every notebook on one page: the shape of /api/notebooks without its links
        body = {"notebooks": notebooks, "total": len(notebooks)}
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    for nb in notebooks:
        click.echo(f"{nb['id']}  ({nb['title']})")
        if nb["error"]:
            click.echo(f"  error: {nb['error']['message']}")
        for chart in nb["charts"]:
            click.echo(f"  chart {chart['name']}: {chart['url']}")
        for p in nb["parameters"]:
            help_ = f"  # {p['help']}" if p["help"] else ""
            click.echo(f"  {p['name']}: {p['type']} = {p['default']!r}{help_}")


def _seconds_ahead(ctx: click.Context, param: click.Parameter, value: float | None) -> Any:
    if value is not None and not 0 < value <= MAX_EXPIRES:  # nan fails every comparison
        raise click.BadParameter(
            f"must be seconds from now, above 0 and at most {MAX_EXPIRES} (a century)"
        )
    return value


@main.command()
@click.argument("url")
@click.option(
    "--secret-file",
    type=Path,
    envvar="PUBLISHER_SECRET_FILE",
    show_envvar=True,
    help="File holding the key the server was started with (or set PUBLISHER_SECRET).",
)
@click.option(
    "--expires",
    type=float,
    default=None,
    callback=_seconds_ahead,
    help="Seconds from now after which the URL is refused.",
)
def sign(url: str, secret_file: Path | None, expires: float | None) -> None:
    """Print URL with a signature the server started with the same key accepts."""
    secret = _secret(secret_file)
    if secret is None:
        raise click.UsageError("no key to sign with: set PUBLISHER_SECRET or give --secret-file")
    until = int(time.time() + expires) if expires is not None else None
    click.echo(sign_url(url, secret, until))
