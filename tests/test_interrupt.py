"""Concurrency and interruption, for real: two builds at once, Ctrl-C / SIGTERM mid-build,
and the Docker engine going away mid-build.

The CLI runs as a user's terminal runs it: ``envkit ...`` in a session of its own, so that
``os.killpg`` sends a signal the way Ctrl-C does (to the whole foreground process group).
"Going away" is a Unix-socket proxy to the engine that the test closes (every connection
dropped), with ``DOCKER_HOST`` pointing at it: the shared dockerd is never touched.

``-m docker`` tests need the engine; host runs (``--target host``) and the unit tests need
none and are in the fast suite.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests

from backend_fakes import docker_with
from conftest import ENVKIT, script
from envkit.backends import buildkit, engine, logged
from envkit.cli import build as buildmod
from envkit.cli import tasks
from envkit.diagnostics import EnvkitError
from envkit.render import render_all

BASE = "envkit/base:bookworm"
INTERRUPTED = "[envkit] interrupted\n"
STOPPED = ("(no output file is ever half-written, and no image is tagged by an interrupted "
           "build)")


# --- a CLI run, as a terminal runs it ------------------------------------------------------


class Cli:
    """``envkit ARGS`` in a new session (its pid is its process group); stdout read as it
    comes, so a test can wait for a line and then act."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen([ENVKIT, *args], cwd=cwd, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, **(env or {})})
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.stderr = ""
        self.code: int | None = None
        self.seconds = 0.0
        self._eof = False
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._out, daemon=True),
                         threading.Thread(target=self._err, daemon=True),
                         threading.Thread(target=self._wait, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def _err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()

    def _wait(self) -> None:
        self.proc.wait()
        self.seconds = time.monotonic() - self.started

    def wait_for(self, pattern: str, timeout: float = 120) -> str:
        """The first stdout line matching ``pattern``; fails if the CLI ends without one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if re.search(pattern, line):
                        return line
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    break
                self._changed.wait(left)
        self.finish(timeout=30)
        raise AssertionError(f"no line matching {pattern!r}\n{self.show()}")

    def signal(self, sig: int, group: bool) -> None:
        (os.killpg if group else os.kill)(self.proc.pid, sig)

    def finish(self, timeout: float = 60) -> int:
        if self.code is None:
            self.code = self.proc.wait(timeout=timeout)
            for reader in self._readers:
                reader.join(timeout=10)
        assert "Traceback" not in self.stderr + self.stdout, self.show()
        return self.code

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    def errors(self) -> list[str]:
        return self.stderr.strip().splitlines()

    def show(self) -> str:
        return (f"$ envkit {' '.join(self.args)}\nexit {self.proc.poll()} after "
                f"{time.monotonic() - self.started:.1f}s\n--- stdout\n{self.stdout}\n"
                f"--- stderr\n{self.stderr}")


@pytest.fixture
def clis() -> Iterator[list[Cli]]:
    """Every CLI a test starts; any still running at the end is stopped (SIGINT first, so it
    stops its own docker CLI), then killed."""
    started: list[Cli] = []
    yield started
    for cli in started:
        if cli.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                cli.signal(signal.SIGINT, group=True)
            try:
                cli.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(cli.proc.pid, signal.SIGKILL)
                cli.proc.wait()


def start(clis: list[Cli], *args: str, cwd: Path, env: dict[str, str] | None = None) -> Cli:
    cli = Cli(*args, cwd=cwd, env=env)
    clis.append(cli)
    return cli


def processes(text: str) -> list[str]:
    """Every process (on this host, containers' included) whose command line holds text."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8",
                                                                                 "replace")
        except OSError:
            continue
        if text in cmdline:  # a zombie's is empty
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


def gone(text: str) -> None:
    """No process holds ``text`` any more. SIGKILL is sent by the time envkit exits; the
    kernel ends the process a moment later (it never runs again): allow that moment."""
    deadline = time.monotonic() + 1
    while (left := processes(text)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


def eventually(what: str, ok: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def sleepy_recipe(folder: Path, name: str, marker: str, seconds: float = 30,
                  background: bool = True) -> Path:
    """Step 1 quick; step 2 says "sleeping MARKER", then sleeps ``seconds`` in the foreground,
    and 30 s in the background, ignoring SIGINT (argv[0] fg-MARKER / bg-MARKER, to be found
    in /proc). A background job keeps the output open: a host run ends only when it does."""
    path = folder / f"{name}.yaml"
    # ignoring SIGINT, as a plain `cmd &` does in a script (bash sets that for async jobs)
    bg = f"(trap '' INT; exec -a \"bg-{marker}\" sleep 30) &" if background else "true"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        description: a step that sleeps
        version: 1.0.0
        base: {BASE}
        steps:
          - name: quick
            run: mkdir -p "{{{{ prefix }}}}" && echo quick > "{{{{ prefix }}}}/quick"
          - name: sleeps
            run: |
              echo "sleeping {marker}"
              {bg}
              (exec -a "fg-{marker}" sleep {seconds})
              echo slept > "{{{{ prefix }}}}/slept-{marker}"
        verify:
          - file_exists: "{{{{ prefix }}}}/slept-{marker}"
        """))
    return path


def rendered(cwd: Path, *args: str) -> str:
    done = subprocess.run([ENVKIT, "render", *args], cwd=cwd, capture_output=True, text=True,
                          check=True)
    return done.stdout


def temp_files(folder: Path) -> list[Path]:
    """Anything a write in progress leaves: render's .NAME.*.tmp, staging folders, .part."""
    return [p for p in folder.rglob("*")
            if p.name.endswith((".tmp", ".part")) or re.fullmatch(r"\..+\.\w{8}", p.name)]


def assert_lock_free(folder: Path) -> None:
    with buildmod._locked(folder):
        pass


# --- docker: the engine and images ---------------------------------------------------------


@pytest.fixture(scope="session")
def client() -> Any:
    return engine.connect()


@pytest.fixture(scope="session")
def base(client: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The engine's envkit/base:bookworm; made with `envkit base` only if it is missing."""
    if engine.image(client, BASE) is None:
        done = subprocess.run([ENVKIT, "base", "--tag", BASE], capture_output=True, text=True,
                              cwd=tmp_path_factory.mktemp("base"), timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
    return BASE


@pytest.fixture
def images(client: Any) -> Iterator[list[str]]:
    """Image references a test may create: their containers and the images go afterwards."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        for container in client.containers.list(all=True, filters={"ancestor": ref}):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        with contextlib.suppress(Exception):
            client.images.remove(ref, force=True)


def has_image(client: Any, ref: str) -> bool:
    return engine.image(client, ref) is not None


# --- an engine that can go away ------------------------------------------------------------


class EngineProxy:
    """A Unix socket at ``path`` forwarding to the real engine's; ``close()`` drops every
    connection at once, as an engine that stops does. With ``unlink=False`` the socket file
    stays behind (a crashed engine): connecting is then refused."""

    def __init__(self, path: Path, upstream: str = "/var/run/docker.sock") -> None:
        self.path, self.upstream = path, upstream
        self.requests: list[bytes] = []  # the first bytes each client sent
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                up.connect(self.upstream)
            except OSError:
                down.close()
                continue
            with self._lock:
                if self._closed:
                    down.close()
                    up.close()
                    return
                self._open |= {down, up}
            threading.Thread(target=self._pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, first: bool) -> None:
        try:
            while data := src.recv(65536):
                if first:
                    self.requests.append(data[:200])
                    first = False
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self, unlink: bool = True) -> None:
        with self._lock:
            self._closed = True
            connections, self._open = self._open, set()
        if unlink:
            self.path.unlink()
        with contextlib.suppress(OSError):  # else a thread blocked in accept() keeps it open
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[EngineProxy]:
    p = EngineProxy(tmp_path / "docker.sock")
    yield p
    if not p._closed:
        p.close()


# --- two builds at once ----------------------------------------------------------------------

LOCKED = "envkit: build: another envkit build is using {} (wait for it to finish)"


def two_at_once(clis: list[Cli], tmp_path: Path, *args: str, tags: tuple[str, str] | None
                ) -> tuple[Cli, Cli]:
    """The same command twice at the same moment (a tag each, when given): (winner, loser)."""
    both = [start(clis, *args, *(("--tag", tag) if tag else ()), cwd=tmp_path)
            for tag in (tags or ("", ""))]
    for cli in both:
        cli.finish(timeout=300)
    codes = sorted(cli.code for cli in both)
    assert codes == [0, 1], "\n\n".join(cli.show() for cli in both)
    winner, loser = sorted(both, key=lambda cli: cli.code or 0)
    return winner, loser


@pytest.mark.docker
def test_two_builds_of_one_recipe_at_once(base: str, client: Any, images: list[str],
                                          clis: list[Cli], tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    sleepy_recipe(tmp_path, "slow", marker, seconds=4, background=False)
    tags = (f"envkit-test/slow:a-{marker[:8]}", f"envkit-test/slow:b-{marker[:8]}")
    images.extend(tags)
    winner, loser = two_at_once(clis, tmp_path, "build", "--recipe", "./slow.yaml",
                                "--base", base, tags=tags)
    assert loser.errors() == [LOCKED.format("build/slow")], loser.show()
    assert loser.seconds < winner.seconds - 3, (loser.seconds, winner.seconds)  # at once
    assert "envkit: building" not in loser.stdout
    assert "all 1 checks passed" in winner.stdout, winner.show()
    won, lost = (tags if winner is clis[0] else tags[::-1])
    assert has_image(client, won) and not has_image(client, lost)

    folder = tmp_path / "build/slow"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".dockerignore", ".lock", "Dockerfile", "build.log", "files"]
    assert (folder / "Dockerfile").read_text() == rendered(tmp_path, "--recipe", "./slow.yaml",
                                                           "--base", base)
    log = (folder / "build.log").read_text()
    assert log.splitlines()[0].startswith("$ ") and f"-t {won} " in log.splitlines()[0]
    assert lost not in log
    assert len(re.findall(rf"^#\d+ [\d.]+ sleeping {marker}$", log, re.MULTILINE)) == 1
    assert temp_files(tmp_path / "build") == []


@pytest.mark.docker
def test_two_builds_of_different_recipes_at_once(base: str, client: Any, images: list[str],
                                                 clis: list[Cli], tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    names = ("slow-a", "slow-b")
    tags = [f"envkit-test/{name}:{marker[:8]}" for name in names]
    images.extend(tags)
    for name in names:
        sleepy_recipe(tmp_path, name, f"{marker}-{name}", seconds=2, background=False)
    both = [start(clis, "build", "--recipe", f"./{name}.yaml", "--base", base, "--tag", tag,
                  cwd=tmp_path) for name, tag in zip(names, tags, strict=True)]
    for cli, name, tag in zip(both, names, tags, strict=True):
        assert cli.finish(timeout=300) == 0, cli.show()
        assert "all 1 checks passed" in cli.stdout
        assert has_image(client, tag)
        folder = tmp_path / "build" / name
        assert (folder / "Dockerfile").read_text() == rendered(
            tmp_path, "--recipe", f"./{name}.yaml", "--base", base)
        assert f"sleeping {marker}-{name}" in (folder / "build.log").read_text()
    assert temp_files(tmp_path / "build") == []


def test_two_host_runs_of_one_recipe_at_once(clis: list[Cli], tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    sleepy_recipe(tmp_path, "slow", marker, seconds=2, background=False)
    winner, loser = two_at_once(clis, tmp_path, "build", "--recipe", "./slow.yaml",
                                "--target", "host", tags=None)
    env = tmp_path / ".envkit/envs/slow"
    assert loser.errors() == [LOCKED.format(env)], loser.show()
    assert loser.seconds < winner.seconds - 1.5, (loser.seconds, winner.seconds)
    assert "all 1 checks passed" in winner.stdout, winner.show()
    assert sorted(p.name for p in env.iterdir()) == [
        ".envkit-state", ".lock", "envkit.json", "files", "install.log", "install.sh", "quick",
        f"slept-{marker}"]
    assert (env / "install.sh").read_text() == rendered(
        tmp_path, "--recipe", "./slow.yaml", "--format", "shell",
        "--set", f"prefix={env}", "--set", f"cache={env / 'cache'}")
    assert (env / "install.log").read_text().count(f"\nsleeping {marker}\n") == 1
    assert temp_files(env) == []


def test_a_second_host_run_waits_for_the_first_ones_checks(clis: list[Cli],
                                                           tmp_path: Path) -> None:
    """The checks run in the folder a second run rewrites: the lock covers them too.
    (Before: the second run re-provisioned under the first one's checks, which failed.)"""
    (tmp_path / "checked.yaml").write_text(textwrap.dedent("""\
        name: checked
        description: a check that reads what the step wrote
        version: 1.0.0
        base: debian:bookworm-slim
        steps:
          - run: |
              rm -f "{{ prefix }}/data"
              sleep 3
              echo ok > "{{ prefix }}/data"
        verify:
          - name: data survives
            command:
              argv: [bash, -c, "sleep 2; cat \\"$0/data\\"", "{{ prefix }}"]
              output: ^ok$
        """))
    first = start(clis, "build", "--recipe", "./checked.yaml", "--target", "host",
                  cwd=tmp_path)
    first.wait_for(r"^verify .*: 1 check$", timeout=60)
    second = start(clis, "build", "--recipe", "./checked.yaml", "--target", "host",
                   cwd=tmp_path)
    assert second.finish() == 1
    assert second.errors() == [LOCKED.format(tmp_path / ".envkit/envs/checked")]
    assert first.finish() == 0, first.show()
    assert "all 1 checks passed" in first.stdout


# --- Ctrl-C, SIGTERM -------------------------------------------------------------------------

# How a build is stopped: (signal, to the whole process group as a terminal does?, how many
# times, exit code, the one line on stderr).
STOPS = {
    "ctrl-c": (signal.SIGINT, True, 1, 130, f"envkit: interrupted {STOPPED}"),
    "sigint": (signal.SIGINT, False, 1, 130, f"envkit: interrupted {STOPPED}"),
    "ctrl-c-twice": (signal.SIGINT, True, 2, 130, f"envkit: interrupted {STOPPED}"),
    "sigterm": (signal.SIGTERM, False, 1, 143, f"envkit: stopped by SIGTERM {STOPPED}"),
}


def stop_it(cli: Cli, how: str) -> float:
    """Stop ``cli`` as ``how`` says; check its exit and message; the seconds it took."""
    sig, group, times, code, message = STOPS[how]
    sent = time.monotonic()
    for _ in range(times):
        cli.signal(sig, group)
        time.sleep(0.05)
    assert cli.finish(timeout=30) == code, cli.show()
    assert cli.errors() == [message], cli.show()
    return time.monotonic() - sent


@pytest.mark.docker
@pytest.mark.parametrize("how", list(STOPS))
def test_stopping_a_build(how: str, base: str, client: Any, images: list[str],
                          clis: list[Cli], tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    seconds = 3
    sleepy_recipe(tmp_path, "slow", marker, seconds=seconds)
    tag = f"envkit-test/slow:{marker[:12]}"
    images.append(tag)
    args = ("build", "--recipe", "./slow.yaml", "--base", base, "--tag", tag)
    cli = start(clis, *args, cwd=tmp_path)
    cli.wait_for(r"step 2/2 slow: sleeps: running")
    eventually("the step runs on the engine", lambda: processes(f"fg-{marker}"))
    step_started = time.monotonic()
    took = stop_it(cli, how)
    assert took < 10, took

    gone(tag)  # the docker CLI has gone with envkit
    eventually("BuildKit stops the step", lambda: not processes(marker))
    folder = tmp_path / "build/slow"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".dockerignore", ".lock", "Dockerfile", "build.log", "files"]
    assert temp_files(folder) == []
    assert (folder / "Dockerfile").read_text() == rendered(tmp_path, "--recipe", "./slow.yaml",
                                                           "--base", base)
    assert (folder / "build.log").read_text().endswith(INTERRUPTED)

    # Once the step would have finished, had it gone on: the lock is free, nothing of it is
    # cached, and no image was made.
    time.sleep(max(0.0, step_started + seconds + 1 - time.monotonic()))
    again = start(clis, *args, cwd=tmp_path)
    line = again.wait_for(r"step 2/2 slow: sleeps: (running|cached|done)")
    assert line.endswith("running"), again.show()
    stop_it(again, "sigint")
    assert not has_image(client, tag)
    eventually("BuildKit stops the step", lambda: not processes(marker))


@pytest.mark.docker
def test_ctrl_c_during_the_checks(base: str, client: Any, images: list[str],
                                  clis: list[Cli], tmp_path: Path) -> None:
    name = f"ek-checks-{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        description: a check that sleeps
        version: 1.0.0
        base: {BASE}
        steps:
          - run: echo {name} > /here
        verify:
          - name: sleepy
            command: [bash, -c, "sleep 30"]
        """))
    images.append(f"envkit/{name}:latest")
    cli = start(clis, "build", "--recipe", f"./{name}.yaml", cwd=tmp_path)
    tag = cli.wait_for(r"^envkit: image envkit/").split()[2].rstrip(":")
    images.append(tag)
    cli.wait_for(r"^verify .*: 1 check$")
    eventually("the check runs", lambda: client.containers.list(filters={"ancestor": tag}))
    stop_it(cli, "ctrl-c")
    assert client.containers.list(all=True, filters={"ancestor": tag}) == []
    assert not has_image(client, f"envkit/{name}:latest")  # :latest only after the checks


def base_mounts() -> list[str]:
    """What is mounted in a root that `envkit base` is making (debootstrap mounts /proc)."""
    return [line.split(" ")[1] for line in Path("/proc/mounts").read_text().splitlines()
            if "/envkit-base-" in line.split(" ")[1]]


@pytest.mark.docker
@pytest.mark.skipif(os.geteuid() != 0, reason="debootstrap needs root")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_stopping_envkit_base_mid_debootstrap(how: str, client: Any, images: list[str],
                                              clis: list[Cli], tmp_path: Path) -> None:
    """debootstrap has mounted the host's /proc in the root it makes: stopping must stop it
    with its dpkg and chroot, unmount that, and remove the folder without reaching through
    the mount. (Before: its children ran on, /proc stayed mounted, the removal failed.)"""
    before = set(base_mounts())  # another `envkit base` may be running
    tag = f"envkit-test/base-stop:{uuid.uuid4().hex[:8]}"
    images.append(tag)
    cli = start(clis, "base", "--tag", tag, cwd=tmp_path)
    eventually("debootstrap mounts /proc in the root",
               lambda: set(base_mounts()) - before, timeout=240)
    mounted = sorted(set(base_mounts()) - before)
    folder = mounted[0].split("/rootfs/")[0]
    assert processes(folder), "debootstrap runs"
    stop_it(cli, how)  # exactly the one line on stderr: nothing was left in place
    assert "left" not in cli.stdout, cli.show()
    gone(folder)  # debootstrap, dpkg, chroot: nothing of it runs on
    assert [m for m in base_mounts() if m.startswith(f"{folder}/")] == []
    assert not Path(folder).exists()
    assert not has_image(client, tag)


@pytest.mark.parametrize("how", list(STOPS))
def test_stopping_a_host_run(how: str, clis: list[Cli], tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    sleepy_recipe(tmp_path, "slow", marker)
    env = tmp_path / ".envkit/envs/slow"
    cli = start(clis, "build", "--recipe", "./slow.yaml", "--target", "host", "--verbose",
                cwd=tmp_path)
    cli.wait_for(rf"^  sleeping {marker}$", timeout=60)
    eventually("the script sleeps", lambda: len(processes(marker)) == 2)  # fg and bg
    assert stop_it(cli, how) < 5
    gone(marker)  # the background job too: it ignores SIGINT
    time.sleep(1)
    assert processes(marker) == []  # and nothing was left to start another
    gone(str(env / "install.sh"))
    assert sorted(p.name for p in env.iterdir()) == [
        ".envkit-state", ".lock", "files", "install.log", "install.sh",
        "quick"]  # no envkit.json
    assert (env / "install.log").read_text().endswith(INTERRUPTED)
    assert (env / "install.sh").read_text() == rendered(
        tmp_path, "--recipe", "./slow.yaml", "--format", "shell",
        "--set", f"prefix={env}", "--set", f"cache={env / 'cache'}")
    assert temp_files(env) == []
    again = start(clis, "run", "--recipe", "./slow.yaml", "--verbose", cwd=tmp_path)
    again.wait_for(rf"^  sleeping {marker}$", timeout=60)  # the lock is free
    eventually("the script sleeps", lambda: len(processes(marker)) == 2)
    stop_it(again, "ctrl-c")
    gone(marker)


# --- the engine goes away --------------------------------------------------------------------

GONE = {"stopped": (True, "no socket there"), "crashed": (False, "connection refused")}


@pytest.mark.docker
@pytest.mark.parametrize("how", list(GONE))
def test_the_engine_goes_away_during_a_step(how: str, base: str, client: Any,
                                            images: list[str], proxy: EngineProxy,
                                            clis: list[Cli], tmp_path: Path) -> None:
    unlink, reason = GONE[how]
    marker = uuid.uuid4().hex
    sleepy_recipe(tmp_path, "slow", marker)
    tag = f"envkit-test/slow:{marker[:12]}"
    images.append(tag)
    cli = start(clis, "build", "--recipe", "./slow.yaml", "--base", base, "--tag", tag,
                cwd=tmp_path, env={"DOCKER_HOST": proxy.docker_host})
    cli.wait_for(r"step 2/2 slow: sleeps: running")
    eventually("the step runs on the engine", lambda: processes(f"fg-{marker}"))
    # the docker CLI builds through the proxy too (DOCKER_HOST), with its BuildKit session
    assert any(first.startswith(b"POST /session ") and b"Docker-Client/" in first
               for first in proxy.requests), proxy.requests
    proxy.close(unlink=unlink)
    assert cli.finish(timeout=30) == 1, cli.show()
    [line] = cli.errors()
    assert re.fullmatch(
        r"envkit: engine: slow: the Docker engine went away during the build, at step 2/2 "
        rf"slow: sleeps, after [\d.]+s: no Docker engine answers at {proxy.docker_host}: "
        rf"{reason} \(start it again and rerun; log: "
        r"build/slow/build.log\)", line), line
    assert "  | " not in cli.stdout  # no log tail: it is not the step that failed
    gone(tag)
    eventually("the engine cancels the build", lambda: not processes(marker))
    folder = tmp_path / "build/slow"
    assert temp_files(folder) == []
    assert (folder / "Dockerfile").read_text() == rendered(tmp_path, "--recipe", "./slow.yaml",
                                                           "--base", base)
    assert_lock_free(folder)
    assert not has_image(client, tag)


@pytest.mark.docker
def test_the_engine_goes_away_during_a_check(base: str, client: Any, images: list[str],
                                             proxy: EngineProxy, clis: list[Cli],
                                             tmp_path: Path) -> None:
    name = f"ek-gone-{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        description: a check that sleeps
        version: 1.0.0
        base: {BASE}
        steps:
          - run: echo {name} > /here
        verify:
          - file_exists: /here
          - name: sleepy
            command: [bash, -c, "sleep 30"]
        """))
    images.append(f"envkit/{name}:latest")
    cli = start(clis, "build", "--recipe", f"./{name}.yaml", cwd=tmp_path,
                env={"DOCKER_HOST": proxy.docker_host})
    tag = cli.wait_for(r"^envkit: image envkit/").split()[2].rstrip(":")
    images.append(tag)
    cli.wait_for(r"^  PASS  exists /here")
    eventually("the check runs", lambda: client.containers.list(
        filters={"ancestor": tag, "status": "running"}))
    proxy.close()
    assert cli.finish(timeout=30) == 1, cli.show()
    assert cli.errors() == [
        f"envkit: engine: the Docker engine went away while a check ran in {tag} (bash -c "
        f"sleep 30): no Docker engine answers at {proxy.docker_host}: no socket there (start "
        "it again and rerun)"], cli.show()
    assert "FAIL" not in cli.stdout  # the check did not fail: it could not finish
    assert not has_image(client, f"envkit/{name}:latest")
    assert_lock_free(tmp_path / "build" / name)
    # its check container sleeps on, orphaned; the next verify or build removes it
    left = client.containers.list(all=True, filters={"ancestor": tag})
    assert [c.labels[engine.CHECK_LABEL].rpartition(":")[0] for c in left] == [
        f"{engine._here()}:{cli.proc.pid}"]
    assert engine.sweep_checks(client) >= 1  # only orphans of this host's envkits go
    assert client.containers.list(all=True, filters={"ancestor": tag}) == []


@pytest.mark.parametrize("how", list(GONE))
def test_the_engine_gone_before_the_build(how: str, proxy: EngineProxy, clis: list[Cli],
                                          tmp_path: Path) -> None:
    unlink, reason = GONE[how]
    proxy.close(unlink=unlink)
    sleepy_recipe(tmp_path, "slow", uuid.uuid4().hex, seconds=0, background=False)
    env = {"DOCKER_HOST": proxy.docker_host}
    insisted = start(clis, "build", "--recipe", "./slow.yaml", "--target", "docker",
                     cwd=tmp_path, env=env)
    assert insisted.finish() == 1
    assert insisted.errors() == [
        f"envkit: engine: no Docker engine answers at {proxy.docker_host}: {reason} (start it "
        "(dockerd, or systemctl start docker), set DOCKER_HOST, or use --target host)"]
    assert not (tmp_path / "build").exists()
    fallback = start(clis, "build", "--recipe", "./slow.yaml", cwd=tmp_path, env=env)
    assert fallback.finish() == 0, fallback.show()
    assert fallback.lines[0] == (
        f"envkit: no Docker engine answers at {proxy.docker_host}: {reason}; provisioning on "
        "this host instead (--target docker insists on an engine)")
    assert "all 1 checks passed" in fallback.stdout


# --- without an engine: the pieces ------------------------------------------------------------


def test_stopping_a_command_kills_what_ignores_sigint(tmp_path: Path) -> None:
    """logged.run on Ctrl-C: SIGINT to the group, then SIGKILL to whatever is left of it (a
    script's background jobs ignore SIGINT)."""
    marker = uuid.uuid4().hex
    cmd = script(tmp_path / "cmd", f"""\
        (trap '' INT; exec -a "bg-{marker}" sleep 30) &
        echo started
        exec -a "fg-{marker}" sleep 30
        """)

    def on_line(line: str) -> None:
        eventually("both run", lambda: len(processes(marker)) == 2, timeout=5)
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        logged.run([str(cmd)], tmp_path / "log", on_line, env=os.environ)
    assert time.monotonic() - started < 5
    gone(marker)
    assert (tmp_path / "log").read_text().endswith(INTERRUPTED)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_stopping_a_command_that_ignores_sigint_altogether(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    marker = uuid.uuid4().hex
    cmd = script(tmp_path / "cmd", f"trap '' INT\necho started\nexec -a {marker} sleep 30\n")

    def on_line(line: str) -> None:
        eventually("it sleeps", lambda: processes(marker), timeout=5)
        raise KeyboardInterrupt

    monkeypatch.setattr(logged, "GRACE", 1.0)  # how long SIGINT is given before SIGKILL
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        logged.run([str(cmd)], tmp_path / "log", on_line, env=os.environ)
    assert 1.0 <= time.monotonic() - started < 5
    gone(marker)


def test_a_second_signal_does_not_cut_the_stopping_short() -> None:
    seen = []
    with logged.shielded():
        seen += [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
        os.kill(os.getpid(), signal.SIGINT)  # ignored: no KeyboardInterrupt here
        time.sleep(0.1)
    assert seen == [signal.SIG_IGN] * 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


TASK = """\
import os, signal, sys, time
from envkit.cli.tasks import _reports_errors
{before}
@_reports_errors
def task():
    os.kill(os.getpid(), signal.{sig})
    time.sleep(5)
    print("went on")
try:
    task()
except BaseException as exc:
    print(type(exc).__name__, getattr(exc, "code", ""))
print(signal.getsignal(signal.{sig}).name)
"""


@pytest.mark.parametrize(("sig", "code"), [("SIGTERM", 143), ("SIGHUP", 129)])
def test_sigterm_and_sighup_stop_a_task_as_ctrl_c_does(sig: str, code: int) -> None:
    done = subprocess.run([sys.executable, "-c", TASK.format(before="", sig=sig)],
                          capture_output=True, text=True, timeout=30)
    # exiting, envkit ignores any further signal: a second one cannot cut its exit short
    assert done.stdout.splitlines() == [f"Exit {code}", "SIG_IGN"], done
    assert done.stderr == f"envkit: stopped by {sig} {STOPPED}\n"


def test_a_task_leaves_the_signal_handlers_as_they_were() -> None:
    @tasks._reports_errors
    def task() -> list[Any]:
        return [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)]

    before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    assert task() == [tasks._terminate] * 2 or before[1:] != [signal.SIG_DFL] * 2
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            ] == before


def test_an_ignored_sighup_stays_ignored() -> None:
    """nohup envkit build ...: SIGHUP is SIG_IGN, and envkit leaves it so."""
    done = subprocess.run([sys.executable, "-c", TASK.format(
        before="signal.signal(signal.SIGHUP, signal.SIG_IGN)", sig="SIGHUP").replace(
        "time.sleep(5)", "time.sleep(0.2)")], capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines() == ["went on", "SIG_IGN"], done
    assert done.stderr == ""


class FakeContainer:
    def __init__(self, wait_error: Exception) -> None:
        self.wait_error = wait_error
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def wait(self, timeout: float) -> dict[str, int]:
        raise self.wait_error

    def kill(self) -> None:
        self.calls.append("kill")

    def remove(self, force: bool) -> None:
        self.calls.append("remove")


def fake_client(container: FakeContainer) -> Any:
    return SimpleNamespace(containers=SimpleNamespace(create=lambda *a, **kw: container))


def listing_client(listing: Any) -> Any:
    """A client whose containers.list is ``listing``."""
    return SimpleNamespace(containers=SimpleNamespace(list=listing))


ANSWERS_NOT = "no Docker engine answers at unix:///x/docker.sock: no socket there"


def test_a_check_whose_engine_went_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "lost", lambda: ANSWERS_NOT)
    container = FakeContainer(requests.ConnectionError("('Connection aborted.', "
                                                       "FileNotFoundError(2, 'No such file'))"))
    run = engine.container_runner(fake_client(container), "envkit/x:1")
    with pytest.raises(EnvkitError) as info:
        run(["bash", "-c", "sleep 30"])
    assert str(info.value) == (
        "envkit: engine: the Docker engine went away while a check ran in envkit/x:1 (bash -c "
        f"sleep 30): {ANSWERS_NOT} (start it again and rerun)")
    assert container.calls == ["start", "remove"]


class Leftover:
    def __init__(self, owner: str, removable: bool = True) -> None:
        self.labels = {engine.CHECK_LABEL: owner}
        self.removable = removable
        self.removed = False

    def remove(self, force: bool) -> None:
        import docker

        assert force
        if not self.removable:
            raise docker.errors.APIError("removal of container is already in progress")
        self.removed = True


def test_sweeping_the_check_containers_a_stopped_envkit_left() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    here, me = engine._here(), os.getpid()
    assert "?" not in here and engine._started(me)
    containers = {
        "a running verify's (this process)": Leftover(engine.owner()),
        "a stopped envkit's": Leftover(f"{here}:{dead.pid}:12345"),
        "a stopped envkit's, its pid reused (by this process)": Leftover(f"{here}:{me}:1"),
        "another host's": Leftover(f"elsewhere/{here.split('/', 1)[1]}:{dead.pid}:1"),
        "another boot's": Leftover(f"{here.split('/')[0]}/00000000/{here.split('/')[2]}:"
                                   f"{dead.pid}:1"),
        "another PID namespace's": Leftover(f"{here.rsplit('/', 1)[0]}/1:{dead.pid}:1"),
        "an older envkit's label": Leftover("1"),
        "an odd pid": Leftover(f"{here}:²:1"),
        "a huge pid": Leftover(f"{here}:{'9' * 30}:1"),
        "no start time": Leftover(f"{here}:{dead.pid}:"),
        "being removed already": Leftover(f"{here}:{dead.pid}:1", removable=False),
    }
    seen: list[dict[str, Any]] = []

    def listing(**kw: Any) -> list[Leftover]:
        seen.append(kw)
        return list(containers.values())

    client = listing_client(listing)
    assert engine.sweep_checks(client) == 2
    assert seen == [{"all": True, "filters": {"label": engine.CHECK_LABEL},
                     "ignore_removed": True}]
    assert [what for what, c in containers.items() if c.removed] == [
        "a stopped envkit's", "a stopped envkit's, its pid reused (by this process)"]


def test_no_sweep_where_a_pid_cannot_be_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_here", lambda: "?")

    def listing(**kw: Any) -> list[Leftover]:
        raise AssertionError("listed")

    assert engine.sweep_checks(listing_client(listing)) == 0


def test_a_check_whose_container_someone_removed() -> None:
    import docker

    container = FakeContainer(docker.errors.NotFound("No such container: 1234"))
    run = engine.container_runner(fake_client(container), "envkit/x:1")
    assert run(["sleep", "30"]) == (125, engine.GONE)


def test_sweeping_with_the_engine_gone_is_quiet() -> None:
    def listing(**kw: Any) -> list[Leftover]:
        raise requests.ConnectionError("Connection aborted.")

    assert engine.sweep_checks(listing_client(listing)) == 0


def test_a_check_that_timed_out_is_still_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "lost", lambda: "")  # requests says ConnectionError for both
    container = FakeContainer(requests.ConnectionError("Read timed out."))
    run = engine.container_runner(fake_client(container), "envkit/x:1", timeout=3)
    assert run(["sleep", "30"]) == (124, "timed out after 3s")
    assert container.calls == ["start", "kill", "remove"]


GONE_MID_STEP = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s

#4 [1/7] FROM docker.io/library/debian:bookworm-slim
#4 DONE 0.0s

#6 [2/7] COPY files/envkit/helpers.sh /usr/local/lib/envkit/helpers.sh
#6 CACHED

#5 [3/7] RUN envkit_record_base
#5 CACHED

#7 [4/7] RUN echo quick
#7 DONE 0.1s

#8 [5/7] RUN sleep 30
#8 0.465 sleeping
unexpected EOF
"""


@pytest.mark.parametrize(("output", "where"), [
    (GONE_MID_STEP, "at step 2/2 t: sleeps"),
    ("Cannot connect to the Docker daemon at unix:///x/docker.sock.\n",
     "before any recipe step ran"),
])
def test_a_build_whose_engine_went_away(output: str, where: str, recipe: Any, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import plan_of

    plan = plan_of(recipe("""\
        steps:
          - run: echo quick
          - name: sleeps
            run: sleep 30
        """))
    monkeypatch.setattr(engine, "lost", lambda: ANSWERS_NOT)
    context = tmp_path / "ctx"
    context.mkdir()
    rendered = render_all(plan, ["dockerfile"])
    (context / "Dockerfile").write_text(rendered.files["Dockerfile"])
    (tmp_path / "out.txt").write_text(output)
    client = script(tmp_path / "docker", f"cat {str(tmp_path / 'out.txt')!r}; exit 1\n")
    builder = buildkit.Builder(str(client), ("build",), (), "fake")
    out = io.StringIO()
    with pytest.raises(EnvkitError) as info:
        buildmod._run_build(docker_with(builder), plan, rendered, context, ["x:1"], "abc",
                            buildmod.Options("t"), buildmod.secretmod.Provided(), out)
    assert re.fullmatch(
        rf"envkit: engine: t: the Docker engine went away during the build, {where}, after "
        rf"[\d.]+s: {ANSWERS_NOT} \(start it again and rerun; log: "
        rf"{context}/build.log\)", str(info.value)), str(info.value)
    assert "  | " not in out.getvalue()


def test_an_engine_call_whose_engine_went_away_is_one_clear_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///x/docker.sock")
    exc = requests.ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such "
                                   "file or directory'))")
    assert tasks._one_line(exc) == ("engine: the Docker engine at unix:///x/docker.sock went "
                                    "away: no socket there (is it still running?)")
