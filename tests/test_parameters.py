import ast
import contextlib
import math

import nbformat
import papermill
import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.errors import BrokenNotebook, InvalidParameter
from publisher.parameters import TYPES, Parameter, coerce, read_parameters

P = Parameter

CELLS = [
    ("plain", "year = 2024", [P("year", "int", 2024)]),
    ("float", "rate = 0.5", [P("rate", "float", 0.5)]),
    ("str", "region = 'north'", [P("region", "str", "north")]),
    ("bool is not int", "show = True", [P("show", "bool", True)]),
    ("negative int", "offset = -3", [P("offset", "int", -3)]),
    ("negative float", "low = -1.5e3", [P("low", "float", -1500.0)]),
    ("None is untyped", "start = None", [P("start", "any", None)]),
    ("help comment", "year = 2024  # the year shown", [P("year", "int", 2024, "the year shown")]),
    ("annotation", "n: int = 3", [P("n", "int", 3)]),
    ("annotation wins over default", "n: float = 3", [P("n", "float", 3.0)]),
    ("list annotation", "xs: list[int] = []", [P("xs", "list[int]", [])]),
    ("typing.List annotation", "xs: List[str] = []", [P("xs", "list[str]", [])]),
    ("string annotation", "n: 'int' = None", [P("n", "int", None)]),
    ("string list annotation", 'xs: "list[float]" = [1]', [P("xs", "list[float]", [1.0])]),
    ("Any annotation", "x: Any = 1", [P("x", "any", 1)]),
    ("NoneType annotation", "x: 'NoneType' = None", [P("x", "any", None)]),
    ("type comment", "n = None  # type: int  how many", [P("n", "int", None, "how many")]),
    ("type comment alone", "n = None  #type:float", [P("n", "float", None)]),
    ("type: ignore is no type", "n = 1  # type: ignore", [P("n", "int", 1)]),
    ("list of ints", "xs = [1, 2]", [P("xs", "list[int]", [1, 2])]),
    ("list of bools", "xs = [True]", [P("xs", "list[bool]", [True])]),
    ("mixed list is untyped", "xs = [1, 'a']", [P("xs", "list", [1, "a"])]),
    ("empty list is untyped", "xs = []", [P("xs", "list", [])]),
    ("tuple reads as list", "xs = (1, 2)", [P("xs", "list[int]", [1, 2])]),
    (
        "dict is untyped without default",
        "d = {'a': 1}  # options",
        [P("d", "any", None, "options", injectable=False)],
    ),
    (
        "multi-line list",
        "xs = [\n    1,  # first\n    2,\n]  # the xs\nn = 1",
        [P("xs", "list[int]", [1, 2], "the xs"), P("n", "int", 1)],
    ),
    (
        "multi-line string",
        'doc = """one\ntwo"""  # text\nn = 1',
        [P("doc", "str", "one\ntwo", "text"), P("n", "int", 1)],
    ),
    ("hash inside a string", "s = 'a#b'  # hash", [P("s", "str", "a#b", "hash")]),
    (
        "skipped non-literal lines",
        "import datetime\nstart = datetime.date.today()\nprint(1)\nn = 2\nx = y = 3\na, b = 1, 2",
        [P("n", "int", 2)],
    ),
    ("nested assignment is not top-level", "if True:\n    n = 1", []),
    ("one line, two statements", "a = 1; b = 2  # b", [P("a", "int", 1), P("b", "int", 2, "b")]),
    ("IPython magic", "%matplotlib inline\nn = 1", [P("n", "int", 1)]),
    ("comments only", "# nothing here\n# still nothing", []),
    ("empty cell", "", []),
]


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in CELLS], ids=[c[0] for c in CELLS])
def test_read_parameters(source: str, expected: list[Parameter]) -> None:
    assert read_parameters(source) == tuple(expected)


def test_declared_float_default_is_a_float() -> None:
    (param,) = read_parameters("rate: float = 2")
    assert type(param.default) is float


def test_to_json_has_name_type_default_help() -> None:
    param = P("xs", "list[int]", [1], "the xs")
    assert param.to_json() == {"name": "xs", "type": "list[int]", "default": [1], "help": "the xs"}


def test_syntax_error_is_broken_notebook_naming_line() -> None:
    with pytest.raises(BrokenNotebook, match=r"line 2: invalid syntax") as caught:
        read_parameters("a = 1\nb = = 2\n")
    assert caught.value.details["line"] == 2


def test_unclosed_bracket_is_broken_notebook() -> None:
    with pytest.raises(BrokenNotebook, match=r"line 1: '\[' was never closed"):
        read_parameters("xs = [1,\n")


PIECES = [*"x=[],:()%!\\'", "-2.5", "\n", "#h", '"""', "int"]
PYTHONISH = st.lists(st.sampled_from(PIECES)).map(" ".join)


@pytest.mark.filterwarnings("ignore:`make_tokens_by_line`")  # IPython, on U+2028 and the like
@given(st.one_of(st.text(), PYTHONISH))
def test_any_text_reads_or_is_broken_notebook(source: str) -> None:
    with contextlib.suppress(BrokenNotebook):
        read_parameters(source)


# --- papermill cross-check ------------------------------------------------------------------


def _papermill_inspect(tmp_path, source: str) -> dict[str, dict]:
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
            "language_info": {"name": "python"},
        }
    )
    nb.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]})]
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return papermill.inspect_notebook(path)


AGREED_CELLS = [
    "year = 2024  # the year\nrate = 0.5\nregion = 'north'  # which region\nshow = False",
    "n: int = 3  # count\nxs: list[str] = ['a', 'b']\nf: 'float' = 1.5",
    "n = None  # type: int  how many\nm = 2  # type: float",
    "offset = -3\nlow = -1.5e3  # lower bound\nstart = None",
    "xs = [\n    1,  # first\n    2,\n]  # the xs\nn = 1",
    "x: Any = None\n# a comment line\n\ny = [True, False]",
]


@pytest.mark.parametrize("source", AGREED_CELLS)
def test_agrees_with_papermill_inspect(tmp_path, source: str) -> None:
    theirs = _papermill_inspect(tmp_path, source)
    ours = {p.name: p for p in read_parameters(source)}
    assert list(ours) == list(theirs)
    for name, their in theirs.items():
        assert ours[name].help == their["help"]
        assert ours[name].default == ast.literal_eval(their["default"])
        if their["inferred_type_name"] != "None":  # papermill names a type only when declared
            declared = their["inferred_type_name"]
            assert ours[name].type == (declared if declared in TYPES else "any")


# Deliberate differences: papermill reads the cell line by line with a regex, we read it with
# Python's grammar. Each row is (cell, our parameters, the names papermill lists).
DIFFERENCES = [
    # papermill cuts the value at the first '#', even inside a string
    ("s = 'a#b'  # hash", [P("s", "str", "a#b", "hash")], ["s"]),
    # papermill skips any line holding two '='
    ("s = 'a=b'", [P("s", "str", "a=b")], []),
    # papermill lists computed values too; we declare literals only, as the spec says
    ("start = date.today()", [], ["start"]),
    # papermill lists assignments nested in blocks; only top-level ones are declarations
    ("if True:\n    n = 1", [], ["n"]),
]


@pytest.mark.parametrize(("source", "ours", "their_names"), DIFFERENCES)
def test_differs_from_papermill_where_it_misreads(tmp_path, source, ours, their_names) -> None:
    assert list(_papermill_inspect(tmp_path, source)) == their_names
    assert read_parameters(source) == tuple(ours)


def test_multiline_string_keeps_newlines_papermill_drops(tmp_path) -> None:
    source = 'doc = """one\ntwo"""'
    assert _papermill_inspect(tmp_path, source)["doc"]["default"] == '"""onetwo"""'
    (param,) = read_parameters(source)
    assert param.default == "one\ntwo"


# --- coerce ---------------------------------------------------------------------------------

GOOD = [
    ("int", ["42"], 42),
    ("int", [" -7 "], -7),
    ("int", ["+3"], 3),
    ("int", ["007"], 7),
    ("float", ["1"], 1.0),
    ("float", ["-2.5"], -2.5),
    ("float", ["1e3"], 1000.0),
    ("float", [".5"], 0.5),
    ("float", ["5."], 5.0),
    ("bool", ["true"], True),
    ("bool", ["FALSE"], False),
    ("bool", ["1"], True),
    ("bool", ["0"], False),
    ("bool", ["Yes"], True),
    ("bool", ["no"], False),
    ("bool", ["on"], True),
    ("bool", ["off"], False),
    ("str", [""], ""),
    ("str", ["  spaced, with comma  "], "  spaced, with comma  "),
    ("str", ["a\nb\0'\"\\"], "a\nb\0'\"\\"),
    ("list[int]", ["1,2,3"], [1, 2, 3]),
    ("list[int]", ["1", "2"], [1, 2]),
    ("list[int]", [" 1 , 2 "], [1, 2]),
    ("list[int]", [""], []),
    ("list[int]", [], []),
    ("list[float]", ["1,2.5"], [1.0, 2.5]),
    ("list[bool]", ["on,off"], [True, False]),
    ("list[str]", ["a,b"], ["a", "b"]),
    ("list[str]", ["a, b"], ["a", " b"]),
    ("list[str]", ["Washington, D.C.", "Paris"], ["Washington, D.C.", "Paris"]),
    ("list[str]", [""], []),
    ("list", ["1,x,2.5,True"], [1, "x", 2.5, True]),
    ("any", ["True"], True),
    ("any", ["False"], False),
    ("any", ["None"], None),
    ("any", ["12"], 12),
    ("any", ["1.5"], 1.5),
    ("any", ["true"], "true"),
    ("any", ["2024-01-01"], "2024-01-01"),
    ("any", ["nan"], "nan"),  # papermill would make a float nan; a chart cannot use one
    ("any", [""], ""),
]


@pytest.mark.parametrize(("kind", "raw", "expected"), GOOD)
def test_coerce_reads_value(kind: str, raw: list[str], expected: object) -> None:
    value = coerce(P("p", kind, None), raw)
    assert value == expected
    assert type(value) is type(expected)


def test_coerce_list_float_items_are_floats() -> None:
    value = coerce(P("p", "list[float]", None), ["1,2"])
    assert isinstance(value, list) and [type(v) for v in value] == [float, float]


BAD = [
    ("int", ["abc"]),
    ("int", ["1.5"]),
    ("int", ["3.0"]),
    ("int", [""]),
    ("int", ["0x10"]),
    ("int", ["1_000"]),
    ("int", ["١٢"]),
    ("int", ["9" * 5000]),
    ("int", ["1", "2"]),
    ("int", []),
    ("float", ["nan"]),
    ("float", ["inf"]),
    ("float", ["-inf"]),
    ("float", ["1e999"]),
    ("float", ["abc"]),
    ("float", [""]),
    ("float", ["1_0"]),
    ("bool", ["maybe"]),
    ("bool", [""]),
    ("bool", ["2"]),
    ("str", ["a", "b"]),
    ("any", ["a", "b"]),
    ("list[int]", ["1,x"]),
    ("list[int]", ["1,2,"]),
    ("list[float]", ["1,nan"]),
    ("list[bool]", ["yes,perhaps"]),
]


@pytest.mark.parametrize(("kind", "raw"), BAD)
def test_coerce_rejects_value(kind: str, raw: list[str]) -> None:
    with pytest.raises(InvalidParameter):
        coerce(P("p", kind, None), raw)


def test_error_names_parameter_type_and_value() -> None:
    with pytest.raises(InvalidParameter) as caught:
        coerce(P("year", "int", 2024), ["abc"])
    assert caught.value.message == "parameter 'year' expects int, got 'abc'"
    assert caught.value.details == {"parameter": "year", "expected": "int"}


def test_list_error_names_bad_item() -> None:
    with pytest.raises(InvalidParameter, match=r"'years' expects list\[int\], got 'x'"):
        coerce(P("years", "list[int]", []), ["2020,x"])


def test_repeated_key_error_names_parameter_and_type() -> None:
    with pytest.raises(InvalidParameter, match=r"'n' expects one float value, got 2"):
        coerce(P("n", "float", 1.0), ["1", "2"])


def test_error_shortens_a_long_value() -> None:
    with pytest.raises(InvalidParameter) as caught:
        coerce(P("n", "int", 0), ["x" * 10_000])
    assert len(caught.value.message) < 200


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"])))
def test_str_is_exactly_the_text(text: str) -> None:
    assert coerce(P("s", "str", ""), [text]) == text


@given(st.integers(min_value=-(10**4299) + 1, max_value=10**4299 - 1))
def test_int_round_trips(number: int) -> None:
    assert coerce(P("n", "int", 0), [str(number)]) == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_round_trips_via_repr(number: float) -> None:
    value = coerce(P("x", "float", 0.0), [repr(number)])
    assert value == number and math.copysign(1, value) == math.copysign(1, number)
