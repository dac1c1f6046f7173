"""A notebook's parameters, read from its papermill ``parameters`` cell, and URL text made typed.

The cell is parsed, never run: defaults come from ``ast.literal_eval`` and help
text from ``tokenize``, so reading a notebook cannot execute it. Query values
are read strictly as the declared type, so the notebook sees data it expects.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from IPython.core.inputtransformer2 import TransformerManager

from .errors import BrokenNotebook, InvalidParameter

Value: TypeAlias = int | float | str | bool | None | list["Value"]

SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
TYPES = frozenset([*SCALARS.values(), *(f"list[{t}]" for t in SCALARS.values()), "list", "any"])

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_TYPE_COMMENT = re.compile(r"type:\s*(\S*)\s*(.*)", re.DOTALL)
_BOOLS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}
_PAPERMILL_WORDS = {"True": True, "False": False, "None": None}
_SHOWN = 80  # characters of a bad value an error message repeats


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # one of TYPES; "any" reads values the way papermill's ``-p`` does
    default: Value
    help: str = ""
    # False when the notebook's default (a dict, a set) has no URL form: then only
    # a value from the URL is injected, and the notebook's own literal stands.
    injectable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default, "help": self.help}


def read_parameters(source: str) -> tuple[Parameter, ...]:
    """Parameters declared by the source of the cell tagged `parameters`.

    Only top-level ``name = literal`` assignments count: anything papermill's
    override could not simply replace (a computed value, an import) is left to run.
    IPython syntax such as ``%matplotlib inline`` is fine, as in a kernel.
    """
    source = _as_python(source)
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        where = f"line {e.lineno}: " if e.lineno else ""
        text = f" ({_shown(e.text.strip())!r})" if e.text and e.text.strip() else ""
        raise BrokenNotebook(f"{where}{e.msg}{text}", line=e.lineno) from None
    comments = _comments(source)
    last_on_line = {_end(node): node for node in tree.body}
    params = []
    for node in tree.body:
        declared = _declaration(node)
        if declared is None:
            continue
        name, annotation, default, injectable = declared
        comment = comments.get(_end(node), "") if last_on_line[_end(node)] is node else ""
        type_comment, help_text = _split_type_comment(comment)
        if annotation is not None:
            kind = _type_name(annotation)
        elif type_comment is not None:
            kind = _type_name(type_comment)
        else:
            kind = _type_of(default)
        params.append(Parameter(name, kind, _as_declared(kind, default), help_text, injectable))
    return tuple(params)


def coerce(param: Parameter, raw: Sequence[str]) -> Value:
    """Read the query string values given for one parameter (a key may repeat) as the declared type.

    A list takes repeated keys or one comma-separated value, so ``?x=1&x=2`` and
    ``?x=1,2`` are the same request.
    """
    if param.type.startswith("list"):
        item_type = param.type.removeprefix("list").strip("[]") or "any"
        items = list_items(raw)
        if item_type != "str":
            items = [item.strip() for item in items]
        return [_read(param, _READERS[item_type], item) for item in items]
    if len(raw) != 1:
        raise invalid(
            param, f"parameter {param.name!r} expects one {param.type} value, got {len(raw)}"
        )
    return _read(param, _READERS[param.type], raw[0])


def _as_python(source: str) -> str:
    """IPython syntax (``%matplotlib inline``) as the plain Python a kernel would run."""
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # IPython trips on some broken cells; Python's parser then names the fault
        return source


def _declaration(node: ast.stmt) -> tuple[str, ast.expr | None, Value, bool] | None:
    """Name, annotation and default of an assignment papermill could override; else None."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target, annotation, value = node.targets[0], None, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target, annotation, value = node.target, node.annotation, node.value
    else:
        return None
    if not isinstance(target, ast.Name):
        return None
    try:
        literal = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    try:
        return target.id, annotation, _value(literal), True
    except ValueError:
        return target.id, annotation, None, False  # the notebook's own dict or set stands


def _value(literal: object) -> Value:
    """The literal as a Value: tuples read as lists; dicts, sets and bytes have no URL form."""
    if literal is None or isinstance(literal, bool | int | float | str):
        return literal
    if isinstance(literal, list | tuple):
        return [_value(item) for item in literal]
    raise ValueError(f"no URL form for {type(literal).__name__}")


def _end(node: ast.stmt) -> int:
    return node.end_lineno or node.lineno


def _comments(source: str) -> dict[int, str]:
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0]: t.string[1:].strip() for t in tokens if t.type == tokenize.COMMENT}


def _split_type_comment(comment: str) -> tuple[str | None, str]:
    """Papermill's ``# type: TYPE help`` form; mypy's ``# type: ignore`` is not a type."""
    match = _TYPE_COMMENT.fullmatch(comment)
    if match is None:
        return None, comment
    type_text, help_text = match.groups()
    return (type_text if type_text and not type_text.startswith("ignore") else None), help_text


def _type_name(annotation: ast.expr | str) -> str:
    """One of TYPES for an annotation, a string annotation or a type comment."""
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        annotation = annotation.value
    if isinstance(annotation, str):
        try:
            annotation = ast.parse(annotation.strip(), mode="eval").body
        except SyntaxError:
            return "any"
    name = re.sub(r"^(typing\.)?List\b", "list", ast.unparse(annotation).replace(" ", ""))
    return name if name in TYPES else "any"


def _type_of(default: Value) -> str:
    if isinstance(default, list):
        kinds = {SCALARS.get(type(item)) for item in default}
        return f"list[{kinds.pop()}]" if len(kinds) == 1 and None not in kinds else "list"
    return SCALARS.get(type(default), "any")


def _as_declared(kind: str, default: Value) -> Value:
    """An int default of a float parameter is that float, as a URL's ``1`` would be."""
    if kind == "float" and type(default) is int:
        return float(default)
    if kind == "list[float]" and isinstance(default, list):
        return [float(v) if type(v) is int else v for v in default]
    return default


def list_items(raw: Sequence[str]) -> list[str]:
    """A list's items: repeated keys are items as given; a single value splits on commas."""
    if len(raw) != 1:
        return list(raw)
    return raw[0].split(",") if raw[0] else []


def invalid(param: Parameter, message: str) -> InvalidParameter:
    """The 400 for a value of ``param``: it names the parameter and the type it expects."""
    return InvalidParameter(message, parameter=param.name, expected=param.type)


def _read(param: Parameter, reader: Callable[[str], Value], text: str) -> Value:
    try:
        return reader(text)
    except ValueError:
        raise invalid(
            param, f"parameter {param.name!r} expects {param.type}, got {_shown(text)!r}"
        ) from None


def _shown(text: str) -> str:
    """Enough of a bad value for a message, however long the value was."""
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _read_int(text: str) -> int:
    text = text.strip()
    if not _INT.fullmatch(text):
        raise ValueError(text)
    return int(text)  # ValueError beyond Python's 4300-digit limit


def _read_float(text: str) -> float:
    text = text.strip()
    if not _FLOAT.fullmatch(text):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _read_bool(text: str) -> bool:
    try:
        return _BOOLS[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def _read_str(text: str) -> str:
    return text


def _read_untyped(text: str) -> Value:
    """As papermill's ``-p`` reads a value, except that non-finite floats stay text."""
    if text in _PAPERMILL_WORDS:
        return _PAPERMILL_WORDS[text]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


_READERS: dict[str, Callable[[str], Value]] = {
    "int": _read_int,
    "float": _read_float,
    "bool": _read_bool,
    "str": _read_str,
    "any": _read_untyped,
}
