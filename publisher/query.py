"""A URL's query string, read as typed parameter values and render options.

Limits are checked here, on the raw text, before anything is coerced or
rendered: a hostile query string costs a few comparisons and a 400.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from .catalog import Notebook
from .errors import BadRequest, InvalidOption, UnknownParameter
from .options import RenderOptions
from .parameters import Parameter, Value, coerce, invalid, list_items
from .settings import Settings
from .signing import EXPIRES, SIG

OPTIONS = {"_dpi": "a number of dots per inch", "_width": "pixels", "_height": "pixels"}
RESERVED = {SIG, EXPIRES}  # read by the signature check, not here


# In the cache key, for a parameter left to a notebook default that has no URL form:
# a dict, which no query value can become, so it never equals a value from a URL.
NOTEBOOK_DEFAULT: Value = cast(Value, {"notebook default": True})


@dataclass(frozen=True)
class Query:
    values: dict[str, Value]  # every parameter, defaults filled in: what the cache key covers
    injected: dict[str, Value]  # what the URL set to something else than the default
    options: RenderOptions


def read_query(
    notebook: Notebook, items: Iterable[tuple[str, str]], fmt: str, settings: Settings
) -> Query:
    raw: dict[str, list[str]] = {}
    for key, value in items:
        raw.setdefault(key, []).append(value)
    if len(raw) > settings.max_params:
        raise BadRequest(f"too many query keys ({len(raw)}; at most {settings.max_params})")
    options = RenderOptions(
        fmt=fmt,
        dpi=_number(raw, "_dpi", float, 10, settings.max_dpi),
        width=_pixels(raw, "_width", settings.max_pixels),
        height=_pixels(raw, "_height", settings.max_pixels),
    )
    given: dict[str, Value] = {}
    for name, values in raw.items():
        if name in OPTIONS or name in RESERVED:
            continue
        if name.startswith("_"):
            raise InvalidOption(
                f"unknown render option '{name}' (options: {', '.join(OPTIONS)})", option=name
            )
        param = notebook.parameter(name)
        if param is None:
            valid = [p.name for p in notebook.parameters]
            raise UnknownParameter(
                f"notebook '{notebook.id}' has no parameter '{name}'"
                f" (parameters: {', '.join(valid) or 'none'})",
                parameter=name,
                valid=valid,
            )
        _check_size(param, values, settings)
        given[name] = coerce(param, values)
    defaults = {
        p.name: p.default if p.injectable else NOTEBOOK_DEFAULT for p in notebook.parameters
    }
    # As papermill: only values given are injected, so a notebook's own defaults (a tuple,
    # an int for a float, a None its next lines replace) run as written. A value equal to
    # its default is the same render under the same key, so it is not injected either.
    injected = {k: v for k, v in given.items() if _spelled(v) != _spelled(defaults[k])}
    return Query(values=defaults | given, injected=injected, options=options)


def _spelled(value: Value) -> str:
    """Equal only for the same type and value: True is not 1, 1 is not 1.0."""
    return json.dumps(value)


def _check_size(param: Parameter, values: list[str], settings: Settings) -> None:
    items = list_items(values) if param.type.startswith("list") else values
    if len(items) > settings.max_list_items:
        raise invalid(
            param,
            f"parameter '{param.name}' has {len(items)} items (at most {settings.max_list_items})",
        )
    if param.type in ("int", "list[int]"):
        longest, limit, unit = (
            max((len(i.strip().lstrip("+-")) for i in items), default=0),
            settings.max_int_digits,
            "digits",
        )
    else:
        longest = max((len(i) for i in items), default=0)
        limit, unit = settings.max_value_length, "characters"
    if longest > limit:
        raise invalid(
            param,
            f"parameter '{param.name}' expects {param.type}: a value has {longest} {unit}"
            f" (at most {limit})",
        )


def _pixels(raw: dict[str, list[str]], key: str, high: int) -> int | None:
    number = _number(raw, key, int, 16, high)
    return None if number is None else int(number)


def _number(
    raw: dict[str, list[str]], key: str, kind: type, low: float, high: float
) -> float | None:
    values = raw.get(key)
    if not values:
        return None
    what = OPTIONS[key]
    try:
        if len(values) != 1 or len(values[0]) > 20:
            raise ValueError
        number = kind(values[0])
        if not math.isfinite(number) or not low <= number <= high:
            raise ValueError
    except ValueError:
        raise InvalidOption(
            f"option '{key}' expects {what} from {low:g} to {high:g}, got {values[0]!r}",
            option=key,
        ) from None
    return number
