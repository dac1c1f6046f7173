"""The README's error table and the code name the same error codes, with the same statuses."""

from __future__ import annotations

import re
from pathlib import Path

from publisher import errors

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _codes_in_code() -> dict[str, int]:
    found: dict[str, int] = {}
    pending = [errors.PublisherError]
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls is not errors.PublisherError:
            found[cls.code] = cls.status
    return found


def _codes_in_readme() -> dict[str, int]:
    table = README[README.index("Errors are JSON") :].split("\n\n")[1]
    found = {}
    for line in table.splitlines():
        status = re.match(r"\| (\d{3}) \|", line)
        if status:
            for code in re.findall(r"`([a-z_]+)`", line.split("|")[2]):
                found[code] = int(status.group(1))
    return found


def test_every_error_code_is_in_the_readme_with_its_status() -> None:
    readme = _codes_in_readme()
    for code, status in _codes_in_code().items():
        assert readme.get(code) == status, code


def test_the_readme_lists_no_code_the_server_never_sends() -> None:
    code = _codes_in_code()
    assert set(_codes_in_readme()) - set(code) <= {"not_found", "method_not_allowed"}
