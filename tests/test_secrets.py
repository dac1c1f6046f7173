"""The signing secret: read once, never from argv, never empty, and out of the kernels' reach."""

from __future__ import annotations

import errno
import json
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import publisher.secret
from publisher.secret import MAX_FILE_BYTES, SecretError, forbid_dumping, read_secret
from publisher.signing import Signer, sign_url

from .conftest import IN_CI, free_port, require_program, stop
from .notebooks import IMPORTS, chart, write_notebook

ROOT = Path(__file__).resolve().parents[1]
SECRET = "kernels-must-never-see-this-7f3a"
STARTUP_SECONDS = 60
LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="/proc and prctl are Linux's")

# A chart cell that tries to read its server's environment and arguments, and writes
# down what it got (or the exception's name) beside its notebook.
SPY = """\
import json, os
found = {'ppid': os.getppid()}
for name in ('environ', 'cmdline'):
    try:
        with open(f'/proc/{os.getppid()}/{name}', 'rb') as f:
            found[name] = f.read().decode('utf-8', 'replace')
    except Exception as e:
        found[name] = type(e).__name__
with open('spied.json', 'w') as f:
    json.dump(found, f)
ax.plot([1, 2])"""


def secret_file(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "key"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "secret"),
    [
        (b"k", "k"),
        (b"k\n", "k"),
        (b"k\r\n", "k"),
        (b"k\n\n", "k\n"),  # one newline, the one `echo` adds
        (b" k \n", " k "),
        ("clé".encode(), "clé"),
    ],
)
def test_a_secret_file_loses_one_trailing_newline(
    tmp_path: Path, content: bytes, secret: str
) -> None:
    assert read_secret({}, secret_file(tmp_path, content)) == secret


def test_the_environment_gives_the_secret_as_it_is() -> None:
    assert read_secret({"PUBLISHER_SECRET": " k\n"}, None) == " k\n"


def test_no_secret_anywhere_means_no_signing() -> None:
    assert read_secret({"PUBLISHER_OTHER": "x"}, None) is None


@LINUX_ONLY
def test_a_secret_file_can_be_a_pipe_so_no_key_stays_on_disk() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"k\n")
        os.close(write)
        assert read_secret({}, Path(f"/dev/fd/{read}")) == "k"
    finally:
        os.close(read)


@pytest.mark.parametrize(
    ("environ", "content", "message"),
    [
        ({"PUBLISHER_SECRET": ""}, None, "PUBLISHER_SECRET is empty"),
        ({"PUBLISHER_SECRET": " \t\n"}, None, "PUBLISHER_SECRET is empty"),
        ({"PUBLISHER_SECRET_FILE": ""}, None, "PUBLISHER_SECRET_FILE is set but empty"),
        ({}, b"", "is empty"),
        ({}, b"\n", "is empty"),
        ({}, b"\r\n\t ", "is empty"),
        ({}, b"\xff\xfe", "is not UTF-8 text"),
        ({}, b"k" * (MAX_FILE_BYTES + 1), f"is longer than {MAX_FILE_BYTES} bytes"),
        ({"PUBLISHER_SECRET": "k"}, b"k", "not both"),
    ],
)
def test_an_unusable_secret_is_refused(
    tmp_path: Path, environ: dict[str, str], content: bytes | None, message: str
) -> None:
    path = None if content is None else secret_file(tmp_path, content)
    with pytest.raises(SecretError, match=message):
        read_secret(environ, path)


@pytest.mark.parametrize(("name", "reason"), [("missing", "No such file"), (".", "Is a directory")])
def test_a_secret_file_that_cannot_be_read_is_refused(
    tmp_path: Path, name: str, reason: str
) -> None:
    with pytest.raises(SecretError, match=f"cannot read the secret file .*: {reason}"):
        read_secret({}, tmp_path / name)


@pytest.mark.parametrize("secret", ["", " ", "\n\t"])
def test_an_empty_secret_cannot_turn_signing_off_in_the_app_either(secret: str) -> None:
    with pytest.raises(ValueError, match="empty secret"):
        Signer(secret)
    assert not Signer(None).enabled


@LINUX_ONLY
def test_forbid_dumping_makes_the_process_undumpable() -> None:
    # in a child: the test process itself stays dumpable, for debuggers and py-spy
    code = (
        "import ctypes\nfrom publisher.secret import forbid_dumping\n"
        "assert forbid_dumping()\nprint(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "0"


def test_forbid_dumping_elsewhere_than_linux_only_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="publisher"):
        assert forbid_dumping("darwin") is False
    assert "darwin: no prctl" in caplog.text


def test_forbid_dumping_raises_when_prctl_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(publisher.secret, "_prctl", lambda option, value: (-1, errno.EPERM))
    with pytest.raises(OSError, match=r"prctl\(PR_SET_DUMPABLE, 0\) failed") as raised:
        forbid_dumping("linux")
    assert raised.value.errno == errno.EPERM


# -- a real server, as a user that is not root, against a notebook that snoops


@dataclass(frozen=True)
class User:
    """Who the server runs as: the command prefix that switches to them, and their ids."""

    prefix: tuple[str, ...]
    uid: int
    gid: int


def unprivileged_user(env: dict[str, str], cwd: Path) -> User:
    """This user when it is not root; else nobody, whose kernels cannot read everything.

    Root's kernels are root too and can read any process's /proc files, so the
    test would prove nothing as root. Nobody must be able to run this virtualenv:
    if it cannot (a Python under /root, say), the test skips, or fails in CI.
    """
    if os.geteuid() != 0:
        return User((), os.getuid(), os.getgid())
    nobody = pwd.getpwnam("nobody")
    user = User(
        (
            *_python_outside_root(),
            require_program("setpriv"),
            f"--reuid={nobody.pw_uid}",
            f"--regid={nobody.pw_gid}",
            "--clear-groups",
            "--inh-caps=-all",
        ),
        nobody.pw_uid,
        nobody.pw_gid,
    )
    probe = subprocess.run(
        [*user.prefix, sys.executable, "-c", "import sys, publisher.app; print(sys.version)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    if probe.returncode != 0 or probe.stdout.strip() != sys.version:
        seen = (probe.stderr.strip().splitlines() or [probe.stdout.strip()])[-1]
        reason = (
            f"user nobody cannot run {sys.executable} (it is {os.path.realpath(sys.executable)}):"
            f" make the virtualenv and its base Python readable by other users. As nobody: {seen}"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return user


def _python_outside_root() -> tuple[str, ...]:
    """A command prefix that lets nobody reach a Python installed under /root (pyenv's).

    /root is closed to other users. In a private mount namespace of the test's
    server only, a world-readable tmpfs covers /root and the Python's folder is
    bound back into it: nothing on the machine changes, nothing is copied.
    """
    python = Path(os.path.realpath(sys.executable))
    if not python.is_relative_to("/root") or python == Path("/root"):
        return ()
    keep = Path("/root", python.relative_to("/root").parts[0])
    moved = tempfile.mkdtemp(prefix="publisher-python-")
    script = (
        f"set -e; mount --bind {keep} {moved}; mount -t tmpfs -o mode=0755 tmpfs /root;"
        f' mkdir -p {keep}; mount --move {moved} {keep}; exec "$@"'
    )
    unshare = require_program("unshare")
    return (unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh")


@dataclass(frozen=True)
class Server:
    origin: str
    pid: int
    notebooks: Path


@pytest.fixture(scope="module")
def snooped_server() -> Iterator[Server]:
    """``publisher serve`` with PUBLISHER_SECRET in its environment, as an unprivileged user."""
    if sys.platform != "linux":
        pytest.skip("/proc and prctl are Linux's")
    # not pytest's tmp_path: its parents are closed to other users
    tmp = Path(tempfile.mkdtemp(prefix="publisher-secret-"))
    try:
        home, notebooks, cache = tmp / "home", tmp / "notebooks", tmp / "cache"
        write_notebook(notebooks / "spy.ipynb", [IMPORTS, chart(SPY)])
        cache.mkdir()
        (home / "matplotlib").mkdir(parents=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PUBLISHER_", "XDG_", "JUPYTER_", "IPYTHONDIR", "MPLCONFIGDIR"))
        }
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.update(HOME=str(home), MPLCONFIGDIR=str(home / "matplotlib"))
        user = unprivileged_user(env, tmp)
        for path in (tmp, *tmp.rglob("*")):
            os.chown(path, user.uid, user.gid)
        port = free_port()
        command = [
            *user.prefix, sys.executable, "-m", "publisher", "serve", str(notebooks),
            "--port", str(port), "--cache-dir", str(cache), "--kernels", "1",
            "--preload", "matplotlib.pyplot",
        ]  # fmt: skip
        log = tmp / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                cwd=tmp,
                env={**env, "PUBLISHER_SECRET": SECRET},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            origin = f"http://127.0.0.1:{port}"
            _wait_ready(process, origin, log)
            yield Server(origin, process.pid, notebooks)
        finally:
            stop(process)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 60) -> tuple[int, bytes]:
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(process: subprocess.Popen[bytes], origin: str, log: Path) -> None:
    """Until /healthz says a kernel is ready; a readiness probe, as a load balancer runs one."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            status, body = _get(f"{origin}/healthz", timeout=2)
            if status == 200 and json.loads(body)["ready"]:
                return
        except OSError:
            pass
        time.sleep(0.1)  # the retry interval of the probe, not a wait for an outcome
    pytest.fail(f"the server was not ready within {STARTUP_SECONDS}s:\n{log.read_text()}")


def test_a_notebook_cannot_read_the_secret_from_its_server(snooped_server: Server) -> None:
    status, body = _get(snooped_server.origin + sign_url("/charts/spy.png", SECRET))
    assert status == 200 and body.startswith(b"\x89PNG"), body[:300]
    found = json.loads((snooped_server.notebooks / "spied.json").read_text())
    assert found["ppid"] == snooped_server.pid  # it looked at the server, not some other process
    assert "serve" in found["cmdline"]  # which anyone may read: hence no secret in argv
    # booleans, so that a failure does not print the server's whole environment into a CI log
    assert (SECRET in found["cmdline"]) is False, "the kernel read the secret in /proc/PPID/cmdline"
    leaked = SECRET in found["environ"] or "PUBLISHER_SECRET" in found["environ"]
    assert leaked is False, "the kernel read the secret in /proc/PPID/environ"


def test_the_secret_is_not_in_the_servers_arguments(snooped_server: Server) -> None:
    arguments = Path(f"/proc/{snooped_server.pid}/cmdline").read_bytes()  # what ps shows
    assert b"serve" in arguments and SECRET.encode() not in arguments


def test_the_server_still_checks_signatures_with_the_secret(snooped_server: Server) -> None:
    assert _get(snooped_server.origin + "/charts/spy.png")[0] == 403
    assert _get(snooped_server.origin + sign_url("/charts/spy.png", "another key"))[0] == 403
    assert _get(snooped_server.origin + sign_url("/charts/spy.png", SECRET))[0] == 200
