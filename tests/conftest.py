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

from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import Plan, make_plan

REPO = Path(__file__).resolve().parents[1]
# podman stands in for a missing Docker engine when it is installed: the tests of what
# happens without an engine would get it. Its own tests ask for it (ENVKIT_PODMAN="").
os.environ["ENVKIT_PODMAN"] = "off"
ENVKIT = str(Path(sys.executable).parent / "envkit")  # the console script of this venv
# The base `invoke base` makes by default, which a build of debian:bookworm-slim finds: the
# catalog's shipped locks were made on it.
TEST_BASE = "envkit/base:bookworm"

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


def run_cli(program: str, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``envkit ARGS`` or ``invoke ARGS`` run in this process, as the console script runs
    them (the same invoke Program, working directory, environment, exit code, stdout and
    stderr), at a hundredth of a new interpreter's start-up. Commands whose children write
    to the terminal themselves (host runs, builds) and signal tests start a real process."""
    import contextlib
    import io
    import signal

    import invoke.main

    from envkit.cli import program as envkit_program

    runner = envkit_program if program == "envkit" else invoke.main.program
    out, err = io.StringIO(), io.StringIO()
    saved = dict(os.environ)
    here = os.getcwd()
    path = list(sys.path)  # invoke's loader puts the tasks' folder first
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    mask = os.umask(0o022)  # envkit tightens it for the process
    os.umask(mask)
    code = 0
    try:
        os.environ.update(env or {})
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runner.run([program, *args], exit=True)
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else (exc.code is not None)
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
        sys.path[:] = path
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.umask(mask)
    done = subprocess.CompletedProcess([program, *args], int(code), out.getvalue(),
                                       err.getvalue())
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def envkit(*args: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """The console script in a new process: for builds, host runs and signals."""
    done = subprocess.run([ENVKIT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def show(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


@pytest.fixture(scope="session")
def client() -> Iterator[object]:
    """The engine; at the end of the session, every image the session made is removed, and
    a base it made again replaces the old one (bases stay; ENVKIT_KEEP_IMAGES=1 keeps all).
    Catalog builds are gigabytes each and tagged by their hash: without this, every CI run
    would leave its own set behind."""
    from envkit.backends import engine

    docker = engine.connect()  # under -m docker a missing engine is a failure, not a skip
    def is_base(tags: list[str]) -> bool:
        return any(t.startswith("envkit/base:") for t in tags)

    before = {image.id: is_base(image.tags) for image in docker.images.list()}
    yield docker
    if os.environ.get("ENVKIT_KEEP_IMAGES") == "1":
        return
    for image in docker.images.list():
        if is_base(image.tags):
            continue
        # kept: what was there before, but not a base `invoke base` made again (untagged now)
        if image.id in before and not (before[image.id] and not image.tags):
            continue
        try:
            docker.images.remove(image.id, force=True)
        except Exception as exc:  # in use or gone: it only costs disk
            print(f"conftest: could not remove {image.tags or image.id}: {exc}",
                  file=sys.stderr)


@pytest.fixture(scope="session")
def base(client: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A base made by `invoke base` in this run: no registry, nothing pulled."""
    done = envkit("base", cwd=tmp_path_factory.mktemp("base"))
    assert done.returncode == 0, show(done)
    assert re.search(r"envkit: envkit/base:bookworm \(sha256:\w+, [\d.]+ MB\)", done.stdout)
    return TEST_BASE


def bridge_gateway() -> str:
    """The host as a build container sees it: the first address of the bridge network."""
    import ipaddress
    import json

    done = subprocess.run(["docker", "network", "inspect", "bridge"], capture_output=True,
                          text=True, check=True)
    config = json.loads(done.stdout)[0]["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return str(config["Gateway"])
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


# --- a local package index -----------------------------------------------------------------


def _zip(files: dict[str, bytes]) -> bytes:
    """A zip whose bytes depend only on ``files`` (fixed times): the same wheel every run."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def wheel(name: str, version: str, requires: tuple[str, ...] = (),
          requires_python: str = "", tag: str = "py3-none-any") -> tuple[str, bytes]:
    """A minimal wheel whose module reports ``version``, byte for byte the same each time."""
    import base64
    import hashlib

    dist = name.replace("-", "_")
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    meta += f"Requires-Python: {requires_python}\n" if requires_python else ""
    files = {f"{dist}/__init__.py": f"__version__ = {version!r}\n".encode(),
             f"{dist}-{version}.dist-info/METADATA": meta.encode(),
             f"{dist}-{version}.dist-info/WHEEL":
                 f"Wheel-Version: 1.0\nGenerator: envkit-tests\nRoot-Is-Purelib: true\n"
                 f"Tag: {tag}\n".encode()}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}-{version}.dist-info/RECORD,,")
    files[f"{dist}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    return f"{dist}-{version}-{tag}.whl", _zip(files)


def sdist(name: str, version: str, native: bool = False) -> tuple[str, bytes]:
    """A source distribution; with ``native`` its setup.py builds a C extension that needs
    a compiler (and fails without one)."""
    import io
    import tarfile

    dist = name.replace("-", "_")
    root = f"{dist}-{version}"
    setup = (f"from setuptools import setup, Extension\nsetup(name={name!r}, version={version!r}"
             f", packages=[{dist!r}]"
             + (f", ext_modules=[Extension('{dist}._c', ['{dist}/_c.c'])]" if native else "")
             + ")\n")
    files = {f"{root}/setup.py": setup.encode(),
             # 2.2 without Dynamic: resolvers read it as is, building nothing
             f"{root}/PKG-INFO": f"Metadata-Version: 2.2\nName: {name}\nVersion: {version}\n"
                                 .encode(),
             f"{root}/{dist}/__init__.py": f"__version__ = {version!r}\n".encode()}
    if native:
        files[f"{root}/{dist}/_c.c"] = b"#include <Python.h>\n#include <no-such-header.h>\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buf.getvalue()


class LocalIndex:
    """A PEP 503 index under ``root`` (pages in simple/, files in files/) to publish to."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, list[tuple[str, str, str]]] = {}  # name -> (file, sha, pyreq)

    def publish(self, name: str, version: str, *requires: str, requires_python: str = "",
                source: bool = False, native: bool = False, tag: str = "py3-none-any") -> str:
        """Publish a wheel (or, with ``source``, only an sdist); its sha256."""
        import hashlib

        filename, data = (sdist(name, version, native) if source
                          else wheel(name, version, requires, requires_python, tag))
        (self.root / "files").mkdir(parents=True, exist_ok=True)
        (self.root / "files" / filename).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        self.files.setdefault(name, []).append((filename, sha, requires_python))
        self._page(name)
        return sha

    def remove(self, name: str, version: str) -> None:
        """The index no longer has this release (its file stays on disk, unlisted)."""
        self.files[name] = [f for f in self.files[name] if f"-{version}" not in f[0]]
        self._page(name)

    def _page(self, name: str) -> None:
        import html

        page = self.root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{f}#sha256={sha}"'
            + (f' data-requires-python="{html.escape(rp)}"' if rp else "") + f">{f}</a>\n"
            for f, sha, rp in self.files[name])
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")


def simple_index(root: Path, name: str, version: str) -> None:
    """A PEP 503 index of one project under root/simple, its wheel under root/files."""
    LocalIndex(root).publish(name, version)


def uv_bin() -> str:
    """envkit's own uv, which a host run hands the script (ENVKIT_UV): tests that run a
    rendered script by hand do the same, so nothing downloads uv."""
    from envkit.plan import resolver as resolve

    return resolve.uv_bin()


# Retry back-offs in milliseconds: a test of a failing source waits 50 ms, then 100, 200 ...
# instead of 2, 4, 8 s (tests of the back-off itself set their own ENVKIT_RETRY_DELAY).
TEST_RETRY_DELAY = "0.05"


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is imported (and envkit with it): lint findings and envkit's
    other caches (memo) are kept per test session, never in the user's cache, so each run
    lints what it renders at least once; back-offs are short."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="envkit-test-cache-"))
    os.environ["ENVKIT_LINT_CACHE"] = str(folder / "lint")
    os.environ["ENVKIT_CACHE"] = str(folder / "memo")
    os.environ.setdefault("ENVKIT_RETRY_DELAY", TEST_RETRY_DELAY)
    config.add_cleanup(lambda: __import__("shutil").rmtree(folder, ignore_errors=True))


# --- shared by the backend and build tests ---------------------------------------------------


@pytest.fixture
def fresh_choice() -> Iterator[None]:
    """The docker client envkit picks is forgotten before and after the test."""
    from envkit.backends import buildkit

    buildkit.choose.cache_clear()
    yield
    buildkit.choose.cache_clear()


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST at a socket that does not exist; returns that DOCKER_HOST."""
    where = f"unix://{tmp_path / 'nowhere' / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", where)
    for var in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    return where


FULL = """\
    env:
      TOP: "1"
    steps:
      - apt: [curl]
      - env: {A: "x", B: "${A}y"}
      - venv: {path: "{{ prefix }}/venv"}
      - pip: [numpy]
      - copy: {src: data.txt, dest: /opt/data.txt}
      - run: echo hi
    """


@pytest.fixture
def full_plan(recipe: Callable[..., Path], tmp_path: Path) -> Plan:
    """A plan with one step of most kinds (env, apt, venv, pip, copy, run)."""
    (tmp_path / "data.txt").write_text("data\n")
    return plan_of(recipe(FULL))
