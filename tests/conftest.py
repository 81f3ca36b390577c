"""Shared fixtures: recipes written to a temp folder, the catalog, and rendering helpers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from envkit.catalog import Catalog
from envkit.diagnostics import EnvkitError
from envkit.plan import Plan, make_plan

REPO = Path(__file__).resolve().parents[1]
ENVKIT = str(Path(sys.executable).parent / "envkit")  # the console script of this venv
TEST_BASE = "envkit-test/base:bookworm"

HEADER = """\
name: {name}
description: a test recipe
version: 1.0.0
base: debian:bookworm-slim
"""


def script(path: Path, body: str) -> Path:
    """An executable bash script at ``path`` (a stand-in for a tool)."""
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


@pytest.fixture
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name='t') -> path of tmp/<name>.yaml holding the dedented text."""

    def _write(text: str, name: str = "t") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def recipe(write: Callable[..., Path]) -> Callable[..., Path]:
    """recipe(body, name='t') -> a recipe file: the standard header plus ``body``."""

    def _recipe(body: str, name: str = "t") -> Path:
        return write(HEADER.format(name=name) + textwrap.dedent(body), name)

    return _recipe


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """git with a fixed author, HOME at ``cwd`` and no system config; its stdout."""
    import os
    import subprocess

    base = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env={**base, **(env or {})}, check=True,
                          capture_output=True, text=True).stdout.strip()


def make_repo(folder: Path, text: str = "v1\n") -> str:
    """A new repository in ``folder`` (on branch main) with one commit of a file ``f``
    holding ``text``; that commit."""
    folder.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=folder)
    (folder / "f").write_text(text)
    git("add", "f", cwd=folder)
    git("commit", "-qm", "one", cwd=folder)
    return git("rev-parse", "HEAD", cwd=folder)


def plan_of(path: Path, settings: dict[str, str] | None = None, **kw: object) -> Plan:
    catalog = Catalog()
    return make_plan(catalog.load(path), catalog, settings, **kw)  # type: ignore[arg-type]


def problems(path: Path, settings: dict[str, str] | None = None) -> list[str]:
    """Every diagnostic line that loading and planning ``path`` gives (empty when valid)."""
    try:
        plan_of(path, settings)
    except EnvkitError as exc:
        return [str(d) for d in exc.diagnostics]
    return []


# --- a local HTTP server that misbehaves on purpose -----------------------------------------


class FlakyServer:
    """Serves ``root`` over HTTP on a free port, and can fail on purpose: the first
    ``fail[path]`` requests of a path get ``status``, a path in ``stall`` sends half its body
    and then nothing, and with ``login`` every request needs that Basic-auth user:password.
    ``hits`` counts requests per path; ``host`` 0.0.0.0 lets containers reach it."""

    def __init__(self, root: Path, host: str = "127.0.0.1"):
        import http.server
        import threading

        self.root = root
        self.fail: dict[str, int] = {}
        self.status = 503
        self.stall: set[str] = set()
        self.login = ""
        self.hits: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kw: object) -> None:
                super().__init__(*args, directory=str(root), **kw)  # type: ignore[arg-type]

            def log_message(self, *args: object) -> None:
                pass

            def _misbehave(self) -> bool:
                import base64

                path = self.path.split("?", 1)[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                if server.login:
                    wanted = "Basic " + base64.b64encode(server.login.encode()).decode()
                    if self.headers.get("Authorization") != wanted:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="envkit"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return True
                if server.hits[path] <= server.fail.get(path, 0):
                    self.send_response(server.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return True
                if path in server.stall:
                    import time

                    self.send_response(200)
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    self.wfile.write(b"x" * 100)
                    self.wfile.flush()
                    time.sleep(30)
                    return True
                return False

            def do_GET(self) -> None:
                if not self._misbehave():
                    super().do_GET()

            def do_HEAD(self) -> None:
                if not self._misbehave():
                    super().do_HEAD()

        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FlakyServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = FlakyServer(root)
    yield server
    server.close()


# --- the envkit command, and the Docker engine of the end-to-end tests ---------------


def envkit(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([ENVKIT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def show(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


@pytest.fixture(scope="session")
def client() -> object:
    from envkit import engine

    return engine.connect()  # under -m docker a missing engine is a failure, not a skip


@pytest.fixture(scope="session")
def base(client: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A base made by `invoke base` in this run: no registry, nothing pulled."""
    done = envkit("base", "--tag", TEST_BASE, cwd=tmp_path_factory.mktemp("base"))
    assert done.returncode == 0, show(done)
    assert re.search(r"envkit: envkit-test/base:bookworm \(sha256:\w+, [\d.]+ MB\)", done.stdout)
    return TEST_BASE
