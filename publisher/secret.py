"""The signing secret: read once at start, never from argv, out of the kernels' reach.

Every local user can read a process's arguments (``ps``), and every process
of the same user can read its environment (``/proc/PID/environ``) unless the
process is not dumpable. Kernels run notebook code as the server's user, so
the secret comes from the environment or a file, and ``serve`` makes itself
not dumpable before its first kernel starts.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("publisher")

ENVVAR, FILE_ENVVAR = "PUBLISHER_SECRET", "PUBLISHER_SECRET_FILE"
MAX_FILE_BYTES = 4096  # a key, not a document: /dev/urandom by mistake must not hang the start
PR_SET_DUMPABLE = 4


class SecretError(ValueError):
    """The secret was asked for but cannot be used; signing must not silently turn off."""


def read_secret(environ: Mapping[str, str], secret_file: Path | None) -> str | None:
    """The key from ``PUBLISHER_SECRET`` or ``secret_file``; None when neither is set.

    Set-but-empty is an error rather than "no signing": a deployment whose
    secret went missing must not start serving every URL unsigned. A file
    loses one trailing newline, since ``echo key > file`` adds one.
    """
    from_env = environ.get(ENVVAR)
    if secret_file is None and environ.get(FILE_ENVVAR) == "":
        raise SecretError(f"{FILE_ENVVAR} is set but empty: name the file that holds the key")
    if from_env is not None and secret_file is not None:
        raise SecretError(f"give the key once: {ENVVAR} or --secret-file, not both")
    if secret_file is not None:
        secret, source = _read_file(secret_file), f"the secret file {secret_file}"
    elif from_env is not None:
        secret, source = from_env, ENVVAR
    else:
        return None
    if not secret.strip():
        raise SecretError(f"{source} is empty: an empty key would turn signing off")
    return secret


def _read_file(path: Path) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise SecretError(f"cannot read the secret file {path}: {e.strerror or e}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SecretError(f"the secret file {path} is longer than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretError(f"the secret file {path} is not UTF-8 text") from None
    for newline in ("\r\n", "\n"):
        if text.endswith(newline):
            return text[: -len(newline)]
    return text


def forbid_dumping(platform: str = sys.platform) -> bool:
    """Close this process's ``/proc/PID/environ``, ``mem`` and ``fd`` to its own user's processes.

    A kernel is a child of the server running as the same user, so without
    this a chart cell could read the secret (and a Redis password) from
    ``/proc/<ppid>/environ``. A kernel is dumpable again after its ``exec``, so
    this changes nothing for the kernels. Root's processes can still read
    anything; so can a debugger run by root. Elsewhere than Linux, nothing
    is done. Returns whether the process is now not dumpable.
    """
    if platform != "linux":
        log.debug("%s: no prctl, so the server stays readable by its own user", platform)
        return False
    result, errno = _prctl(PR_SET_DUMPABLE, 0)
    if result != 0:
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(errno)}")
    return True


def _prctl(option: int, value: int) -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    result = libc.prctl(option, value, 0, 0, 0)
    return int(result), ctypes.get_errno()
