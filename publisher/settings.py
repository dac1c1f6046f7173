"""Every setting in one table: the CLI, the environment, the README and a test read it.

A setting is a field of ``Settings`` with its help text; each is a command-line
option of ``publisher serve`` and an environment variable ``PUBLISHER_<NAME>``.
The dataclass is the only place a default lives.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

ENVIRONMENT_ONLY = frozenset({"secret"})
"""Settings that are never command-line options: every local user can read a process's argv."""


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    notebook_dir: Path = _setting(Path("notebooks"), "Folder of notebooks, searched recursively.")
    host: str = _setting("127.0.0.1", "Address to listen on.")
    port: int = _setting(8080, "Port to listen on.")
    cache_dir: Path = _setting(Path(".publisher-cache"), "Folder of the disk cache.")
    disk_cache_mb: float = _setting(
        1024.0, "Size of the disk cache, in MiB; least recently used entries go first."
    )
    redis_url: str | None = _setting(None, "Redis URL of a cache shared by several servers.")
    kernels: int = _setting(2, "Warm kernels; also how many renders run at once.")
    timeout: float = _setting(30.0, "Seconds a render may take before it answers 504.")
    secret: str | None = _setting(
        None,
        "Key for signed URLs, from the environment only (never argv, which every local user"
        " can read); with a key, chart URLs must be signed.",
    )
    secret_file: Path | None = _setting(
        None,
        "File holding the key for signed URLs, read once at start (or set PUBLISHER_SECRET);"
        " with a key, chart URLs must be signed.",
    )
    queue_size: int = _setting(32, "Renders that may wait for a kernel before the answer is 503.")
    memory_cache_mb: float = _setting(64.0, "Size of the in-memory cache tier, in MiB.")
    renders_per_kernel: int = _setting(
        10_000, "Renders a kernel serves before it is replaced, however small it stayed."
    )
    kernel_memory_mb: float = _setting(
        1024.0, "Resident memory, in MiB, past which a kernel is replaced after its render."
    )
    preload: str = _setting(
        "numpy,pandas,matplotlib,matplotlib.pyplot",
        "Modules each warm kernel imports before its first render (comma-separated).",
    )
    scan_interval: float = _setting(
        1.0, "Seconds between scans of the notebook folder for new, edited and removed notebooks."
    )
    error_ttl: float = _setting(
        10.0, "Seconds a failed render's error is answered again before the render is retried."
    )
    browser_max_age: int = _setting(
        300, "Seconds browsers and CDNs may reuse a chart without a ttl before asking again."
    )
    max_stale: float = _setting(
        3600.0, "Seconds a chart past its ttl, or whose data changed, may still be served."
    )
    redis_ttl: float = _setting(7 * 24 * 3600.0, "Seconds an entry lives in Redis.")
    max_query_length: int = _setting(4096, "Longest query string accepted, in characters.")
    max_params: int = _setting(32, "Most query keys accepted in one request.")
    max_value_length: int = _setting(1000, "Longest string value or list item, in characters.")
    max_list_items: int = _setting(100, "Most items in a list value.")
    max_int_digits: int = _setting(18, "Most digits in an integer value.")
    max_dpi: float = _setting(600.0, "Largest _dpi.")
    max_pixels: int = _setting(
        4096, "Largest side of a chart image, in pixels, after aspect scaling and _dpi."
    )
    max_data_files: int = _setting(
        1000, "Most files a render records as its data (past it, the rest are not followed)."
    )
    header_timeout: float = _setting(
        5.0, "Seconds a client may take to send a request's headers before it is disconnected."
    )
    public_url: str | None = _setting(
        None, "Address people reach the server at (behind a proxy), for the gallery's URLs."
    )
    trust_forwarded: bool = _setting(
        False, "Read X-Forwarded-Proto and X-Forwarded-Host from a proxy in front of the server."
    )
    frame_ancestors: str = _setting(
        "'self'", "Who may frame the gallery: the CSP frame-ancestors sources."
    )

    def __post_init__(self) -> None:
        """Refuse values that would break every answer, rather than serve broken pages."""
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
                raise ValueError(
                    f"--public-url must be an http(s) address such as https://charts.example.org,"
                    f" got {self.public_url!r}"
                )
        if any(c in self.frame_ancestors for c in ";,\r\n") or not self.frame_ancestors.strip():
            raise ValueError(
                "--frame-ancestors takes CSP sources separated by spaces, such as"
                f" \"'self' https://wiki.example.org\", got {self.frame_ancestors!r}"
            )
        if not self.header_timeout > 0:
            raise ValueError(f"--header-timeout must be above 0, got {self.header_timeout:g}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``PUBLISHER_*`` variables, then explicit values (the CLI's)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            if setting.name in ENVIRONMENT_ONLY:
                continue  # read by secret.read_secret, which refuses a blank key
            raw = environ.get(setting.envvar)
            if raw:
                values[setting.name] = setting.parse(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def preload_modules(self) -> list[str]:
        return [m.strip() for m in self.preload.split(",") if m.strip()]

    @property
    def memory_cache_bytes(self) -> int:
        return int(self.memory_cache_mb * 1024 * 1024)

    @property
    def disk_cache_bytes(self) -> int:
        return int(self.disk_cache_mb * 1024 * 1024)


@dataclass(frozen=True)
class Setting:
    """One row of the table, as the CLI and the README show it."""

    name: str
    default: Any
    type: type
    help: str

    def parse(self, raw: str) -> Any:
        """The value of an environment variable; a bool reads as click reads one."""
        if self.type is bool:
            return click.BOOL.convert(raw, None, None)
        return self.type(raw)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envvar(self) -> str:
        return "PUBLISHER_" + self.name.upper()


def _plain_type(hint: Any) -> type:
    """``str | None`` -> ``str``: the type a command-line value is read as."""
    if isinstance(hint, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.cast(type, hint)


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(
        f.name, f.default, _plain_type(typing.get_type_hints(Settings)[f.name]), f.metadata["help"]
    )
    for f in dataclasses.fields(Settings)
)
