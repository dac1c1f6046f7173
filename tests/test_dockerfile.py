"""The container image and the scale-out layout agree with the server they launch.

No Docker engine runs here, so the Dockerfile is read with dockerfile-parse and its
command line is handed to the CLI's own click parser, with the image's ENV as the
environment: what these tests check is what ``publisher serve`` would see in the
container. deploy/docker-compose.yml and deploy/nginx.conf are read as text.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from publisher.cli import main
from publisher.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
PUBLISHERS = ("publisher1", "publisher2")


# --- the Dockerfile, as the container sees it ---------------------------------------------


def _parser() -> DockerfileParser:
    # fileobj, not path: a parser given a path writes to it when its content is set.
    return DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))


def _final_stage() -> list[dict[str, Any]]:
    structure = _parser().structure
    last_from = max(i for i, ins in enumerate(structure) if ins["instruction"] == "FROM")
    return structure[last_from:]


def _last(instruction: str) -> dict[str, Any] | None:
    found = [ins for ins in _final_stage() if ins["instruction"] == instruction]
    return found[-1] if found else None


def _exec_form(ins: dict[str, Any] | None) -> list[str]:
    """An ENTRYPOINT/CMD's argv; only the exec (JSON) form lets `publisher` get SIGTERM."""
    if ins is None:
        return []
    try:
        argv = json.loads(ins["value"])
    except json.JSONDecodeError:
        pytest.fail(f"{ins['instruction']} {ins['value']!r} is in shell form; use a JSON array")
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), ins["value"]
    return argv


def _argv() -> list[str]:
    """ENTRYPOINT + CMD: the command the container runs."""
    return _exec_form(_last("ENTRYPOINT")) + _exec_form(_last("CMD"))


def _image_env() -> dict[str, str]:
    return dict(_parser().envs)


@pytest.fixture
def image_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """os.environ as in the container, for click's envvar lookups: no PUBLISHER_* from here."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.envvar, raising=False)
    monkeypatch.delenv("PUBLISHER_NOTEBOOK_DIR", raising=False)
    env = _image_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _serve_context() -> click.Context:
    """Parse the container's argv with the real CLI; fail as click would at `docker run`."""
    argv = _argv()
    assert argv and Path(argv[0]).name == "publisher", f"the container runs {argv}, not publisher"
    group = main.make_context("publisher", argv[1:], resilient_parsing=False)
    # Click < 9 keeps the sub-command's name apart from the rest (``protected_args``, deprecated).
    tokens = [*getattr(group, "_protected_args", []), *group.args]
    assert tokens, f"{argv} names no sub-command"
    name, command, rest = main.resolve_command(group, tokens)
    assert command is main.commands["serve"], f"the container runs `publisher {name}`, not serve"
    return main.commands["serve"].make_context("serve", rest, parent=group)


def _served_settings() -> Settings:
    """The settings `publisher serve` starts with in the container (CLI over ENV over defaults)."""
    return Settings.from_env(**_serve_context().params)


def _workdir() -> PurePosixPath:
    workdir = PurePosixPath("/")
    for ins in _final_stage():
        if ins["instruction"] == "WORKDIR":
            workdir = workdir / ins["value"]
    return workdir


def _exposed_ports() -> set[int]:
    ports: set[int] = set()
    for ins in _final_stage():
        if ins["instruction"] == "EXPOSE":
            ports |= {int(p.split("/")[0]) for p in ins["value"].split()}
    return ports


def _repo_copies() -> Iterator[tuple[list[str], PurePosixPath]]:
    """(sources, absolute destination) of each COPY/ADD from the build context."""
    workdir = PurePosixPath("/")
    for ins in _final_stage():
        if ins["instruction"] == "WORKDIR":
            workdir = workdir / ins["value"]
        elif ins["instruction"] in ("COPY", "ADD"):
            words = shlex.split(ins["value"])
            if any(w.startswith("--from") for w in words):
                continue  # from another stage, not from the repo
            paths = [w for w in words if not w.startswith("--")]
            yield paths[:-1], workdir / paths[-1]


def test_image_runs_as_a_non_root_user() -> None:
    user = _last("USER")
    assert user is not None, "no USER in the final stage: the server would run as root"
    name = user["value"].split(":")[0].strip()
    assert name not in ("root", "0", ""), f"USER {user['value']} is root"


def test_container_command_is_a_publisher_serve_that_click_accepts(image_env: dict) -> None:
    ctx = _serve_context()  # raises click.UsageError/BadParameter on a bad option or value
    assert ctx.command is main.commands["serve"]
    assert isinstance(ctx.params["port"], int | None)


def test_exposed_port_is_the_port_serve_listens_on(image_env: dict) -> None:
    port = _serve_context().params["port"]
    listens_on = Settings().port if port is None else port
    assert listens_on == _served_settings().port
    assert _exposed_ports() == {listens_on}


def test_server_listens_on_all_interfaces_in_the_container(image_env: dict) -> None:
    # The default host, 127.0.0.1, would be unreachable from outside the container.
    assert _served_settings().host == "0.0.0.0"


def test_served_notebook_dir_is_where_the_repo_notebooks_are_copied(image_env: dict) -> None:
    served = _workdir() / PurePosixPath(_served_settings().notebook_dir)
    copied_there = [
        sources for sources, dest in _repo_copies() if dest == served and len(sources) == 1
    ]
    assert [[s.rstrip("/") for s in src] for src in copied_there] == [["notebooks"]], (
        f"the server reads {served}, but the repo's notebooks/ is not COPYed there"
    )
    assert any((ROOT / "notebooks").rglob("*.ipynb")), "the repo has no notebooks to bundle"


# --- HEALTHCHECK: run its probe against a fake server ---------------------------------------


def _healthcheck_code() -> str:
    ins = _last("HEALTHCHECK")
    assert ins is not None, "no HEALTHCHECK"
    match = re.fullmatch(r"\s*(?:--\S+\s+)*CMD\s+(?P<cmd>.+)", ins["value"], re.DOTALL)
    assert match, f"HEALTHCHECK {ins['value']!r} runs no command"
    argv = json.loads(match["cmd"])
    assert Path(argv[0]).name.startswith("python") and argv[1] == "-c", (
        f"HEALTHCHECK runs {argv}; the slim image has python's urllib, not curl"
    )
    return argv[2]


def _run_probe(
    monkeypatch: pytest.MonkeyPatch, answer: Callable[[str], int]
) -> tuple[int, list[str]]:
    """Run the probe's Python with urlopen faked; return its exit status and the URLs it asked."""
    asked: list[str] = []

    class Response:
        def __init__(self, status: int) -> None:
            self.status = self.code = status

        def getcode(self) -> int:
            return self.status

        def read(self, *_: Any) -> bytes:
            return b'{"ok": true}'

        def __enter__(self) -> Response:
            return self

        def __exit__(self, *_: Any) -> None:
            return None

    def urlopen(url: Any, *args: Any, **kwargs: Any) -> Response:
        url = getattr(url, "full_url", url)
        asked.append(url)
        return Response(answer(url))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    try:
        exec(compile(_healthcheck_code(), "<HEALTHCHECK>", "exec"), {"__name__": "__main__"})
    except SystemExit as e:
        status = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    except Exception:
        status = 1  # python -c exits 1 on an uncaught exception
    else:
        status = 0
    return status, asked


def test_healthcheck_polls_healthz_on_the_served_port(
    image_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, asked = _run_probe(monkeypatch, lambda url: 200)
    assert status == 0
    assert len(asked) == 1, asked
    url = urlsplit(asked[0])
    assert url.hostname in ("127.0.0.1", "localhost")
    assert (url.port or 80) == _served_settings().port
    assert url.path == "/healthz"


def _unhealthy(url: str) -> int:
    raise urllib.error.HTTPError(url, 503, "Service Unavailable", Message(), None)


def _down(url: str) -> int:
    raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))


@pytest.mark.parametrize("answer", [_unhealthy, _down], ids=["503", "refused"])
def test_healthcheck_fails_when_the_server_is_unhealthy_or_down(
    answer: Callable[[str], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _ = _run_probe(monkeypatch, answer)
    assert status != 0


# --- .dockerignore ----------------------------------------------------------------------------


def _ignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; a match on a folder covers its files."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            pattern = line.lstrip("!").strip("/")
            regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
            regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            rules.append((negate, re.compile(regex)))
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, rule in rules:
        if any(rule.fullmatch(c) for c in candidates):
            ignored = not negate
    return ignored


def test_build_context_keeps_every_file_the_image_copies() -> None:
    for sources, _ in _repo_copies():
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file in the repo"
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" in relative or ".ipynb_checkpoints" in relative:
                    continue
                assert not _ignored(relative), f".dockerignore drops {relative}, which is COPYed"


def test_build_context_leaves_out_local_state() -> None:
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "publisher/__pycache__/x.pyc",
        "test-artifacts/a",
    ):
        assert _ignored(path), f".dockerignore sends {path} to the build"


# --- deploy/: docker compose and nginx --------------------------------------------------------


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_builds_both_publishers_from_the_repo_dockerfile() -> None:
    services = _compose()["services"]
    for name in PUBLISHERS:
        build = services[name]["build"]
        if isinstance(build, str):
            build = {"context": build}
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, f"{name} builds from {context}"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE


def test_compose_publishers_share_the_redis_service_as_cache() -> None:
    services = _compose()["services"]
    for name in PUBLISHERS:
        url = urlsplit(_environment(services[name]).get("PUBLISHER_REDIS_URL", ""))
        assert url.scheme == "redis", f"{name}: PUBLISHER_REDIS_URL is not a redis:// URL"
        assert url.hostname in services, f"{name}: {url.hostname} is no compose service"
        assert services[url.hostname]["image"].startswith("redis:")
        assert (url.port or 6379) == 6379


def test_compose_redis_is_a_bounded_cache_without_persistence() -> None:
    command = _compose()["services"]["redis"]["command"]
    words = shlex.split(command) if isinstance(command, str) else [str(w) for w in command]
    options = dict(zip(words[1::2], words[2::2], strict=False))
    assert options.get("--maxmemory") == "256mb"
    assert options.get("--maxmemory-policy") == "allkeys-lru"
    assert options.get("--save") == "" and options.get("--appendonly") == "no"


def test_compose_mounts_nginx_conf_into_nginx() -> None:
    volumes = _compose()["services"]["nginx"]["volumes"]
    sources = [str(v).split(":")[0] if isinstance(v, str) else v["source"] for v in volumes]
    assert any((COMPOSE.parent / s).resolve() == NGINX_CONF for s in sources), volumes


def _nginx() -> str:
    return re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())


def _upstreams() -> dict[str, list[str]]:
    blocks = re.findall(r"\bupstream\s+(\S+)\s*\{([^}]*)\}", _nginx())
    return {
        name: re.findall(r"^\s*server\s+([^\s;]+)", body, re.MULTILINE) for name, body in blocks
    }


def test_nginx_upstream_names_both_publishers_on_the_container_port() -> None:
    (port,) = _exposed_ports()
    servers = {server for servers in _upstreams().values() for server in servers}
    assert servers == {f"{name}:{port}" for name in PUBLISHERS}


def test_nginx_proxies_every_request_to_the_upstream() -> None:
    passes = re.findall(r"\bproxy_pass\s+([^;\s]+)\s*;", _nginx())
    locations = re.findall(r"\blocation\s+[^{]+\{", _nginx())
    assert passes and len(passes) == len(locations)
    assert {urlsplit(p).hostname for p in passes} <= set(_upstreams())
    assert re.search(r"\blocation\s+/\s*\{", _nginx()), "no catch-all location /"


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h)?", value).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600}[unit]


def test_nginx_waits_longer_than_a_render_may_take() -> None:
    timeouts = re.findall(r"\bproxy_read_timeout\s+(\S+)\s*;", _nginx())
    assert timeouts, "proxy_read_timeout is nginx's default 60 s; set it explicitly"
    assert all(_seconds(t) > Settings().timeout for t in timeouts)
    locks = re.findall(r"\bproxy_cache_lock_timeout\s+(\S+)\s*;", _nginx())
    assert all(_seconds(t) > Settings().timeout for t in locks), "waiters would render too"
