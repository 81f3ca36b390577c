"""BuildKit builds through the docker CLI, with progress in the recipe's own terms.

The Docker SDK cannot build with BuildKit (docker/docker-py#2230), and the
Dockerfiles need it for cache mounts and secrets. So a build runs
``docker buildx build`` where the buildx plugin exists, else
``DOCKER_BUILDKIT=1 docker build`` with a client older than 23.0 (whose
``build`` still has BuildKit inside; Debian 12's docker.io is one). The plain
progress output is read line by line: every vertex ``[k/M]`` maps back to the
recipe step whose instruction it is.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from envkit.backends import logged
from envkit.diagnostics import error

_FIX = ("install Debian's docker.io (its client builds with DOCKER_BUILDKIT=1) or the "
        "buildx plugin; set envkit.docker in invoke.yaml to pick a client")


@dataclass(frozen=True)
class Builder:
    client: str
    args: tuple[str, ...]  # ("buildx", "build", "--load") or ("build",)
    env: tuple[tuple[str, str], ...]
    about: str


def _clients() -> list[str]:
    found = [shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"]
    out: list[str] = []
    for path in found:
        if path and os.access(path, os.X_OK) and os.path.realpath(path) not in map(
                os.path.realpath, out):
            out.append(path)
    return out


def _output(argv: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, (done.stdout + done.stderr).strip()


def probe(client: str) -> tuple[Builder | None, str]:
    """A builder on this client, or why it cannot build with BuildKit."""
    code, text = _output([client, "buildx", "version"])
    if code == 0:
        return Builder(client, ("buildx", "build", "--load"), (),
                       f"{client} buildx ({(text.splitlines() or ['?'])[0][:60]})"), ""
    code, text = _output([client, "--version"])
    m = re.search(r"version (\d+)\.(\d+)\.?(\d*)", text)
    if code != 0 or not m:
        return None, f"{client} does not run ({text[:80]})"
    version = ".".join(g for g in m.groups() if g)
    if (18, 9) <= (int(m[1]), int(m[2])) < (23, 0):
        return Builder(client, ("build",), (("DOCKER_BUILDKIT", "1"),),
                       f"{client} {version} with DOCKER_BUILDKIT=1"), ""
    return None, f"{client} {version} has no buildx plugin"


@functools.cache
def choose(preferred: str = "") -> Builder:
    """The first client that can build with BuildKit; once per process."""
    clients = [preferred] if preferred else _clients()
    if not clients:
        raise error("no docker client on PATH", path="builder", hint=_FIX)
    reasons = []
    for client in clients:
        builder, why = probe(client)
        if builder:
            return builder
        reasons.append(why)
    raise error("no docker client here builds with BuildKit: " + "; ".join(reasons),
                path="builder", hint=_FIX)


# --- progress ---------------------------------------------------------------------------

_HEAD = re.compile(r"#(\d+) \[(?:([\w.-]+) +)? *(\d+)/(\d+)\] ")  # '[stage-0  2/10]' pads
_STATUS = re.compile(r"#(\d+) (CACHED|DONE ([\d.]+)s|ERROR:? ?(.*)|CANCELED)$")
_OUTPUT = re.compile(r"#(\d+) [\d.]+ (.*)$")
@dataclass
class StepLog:
    number: int
    title: str
    state: str = ""  # "", running, cached, done, failed
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)


@dataclass
class Progress:
    """Turns BuildKit's plain progress into one line per recipe step."""

    titles: dict[int, str]  # step number -> "recipe: title"
    steps_of: dict[str, list[int]]  # StepMap.buildkit() of the rendered Dockerfile
    out: TextIO
    verbose: bool = False
    vertex_step: dict[str, int] = field(default_factory=dict)
    logs: dict[int, StepLog] = field(default_factory=dict)
    failed: StepLog | None = None
    held: list[tuple[int, str]] = field(default_factory=list)  # lines not yet in order
    said: set[int] = field(default_factory=set)  # steps that have had a line

    def _say(self, log: StepLog, text: str) -> None:
        """One line about a recipe step. BuildKit reports cached steps in any order: a
        'cached' line waits until every earlier step that has instructions has had its
        line; a line of a step that runs goes out at once, after the held ones before it."""
        if log.number not in self.titles:  # the base image, envkit's own: not a recipe step
            return
        line = f"  step {log.number}/{max(self.titles)} {log.title}: {text}"
        if text != "cached":
            self._release(below=log.number)
            self._print(log.number, line)
            return
        self.held.append((log.number, line))
        self._release()

    def _print(self, number: int, line: str) -> None:
        self.said.add(number)
        print(line, file=self.out, flush=True)

    def _release(self, below: int | None = None) -> None:
        """Held lines in step order: those below ``below``, or (None) those whose earlier
        steps have all been said."""
        shown = sorted({n for steps in self.steps_of.values() for n in steps
                        if n in self.titles})
        for number, line in sorted(self.held):
            waiting = [n for n in shown if n < number and n not in self.said]
            if (below is None and waiting) or (below is not None and number >= below):
                break
            self.held.remove((number, line))
            self._print(number, line)

    def flush(self) -> None:
        """Whatever is still held back (a build that stopped early)."""
        self._release(below=max(self.titles, default=0) + 1)

    def feed(self, line: str) -> None:
        if self.verbose:
            print(line, file=self.out, flush=True)
        if m := _HEAD.match(line):
            k = int(m[3])
            # one stage: BuildKit names none; several: each vertex under its stage's name
            steps = self.steps_of.get(m[2] or "", next(iter(self.steps_of.values()), []))
            if m[1] not in self.vertex_step and 1 < k <= len(steps):
                number = steps[k - 1]
                self.vertex_step[m[1]] = number
                self.logs.setdefault(number, StepLog(number, self.titles.get(number, "")))
            return
        if m := _STATUS.match(line):
            log = self._log(m[1])
            if log is None:
                return
            if m[2] == "CACHED":
                if log.state != "cached":
                    log.state = "cached"
                    self._say(log, "cached")
            elif m[3] is not None:
                log.seconds += float(m[3])
                if log.state != "cached":
                    log.state = "done"
                    self._say(log, f"done in {log.seconds:.1f}s")
            elif m[2] != "CANCELED":
                log.state = "failed"
                log.lines.append(m[4] or m[2])
                self.failed = self.failed or log
            return
        if m := _OUTPUT.match(line):
            log = self._log(m[1])
            if log is None:
                return
            log.lines = [*log.lines[-199:], m[2]]
            if not log.state:
                log.state = "running"
                self._say(log, "running")

    def _log(self, vertex: str) -> StepLog | None:
        number = self.vertex_step.get(vertex)
        return self.logs.get(number) if number is not None else None

    def counts(self) -> tuple[int, int]:
        """(cached, run) of the recipe's steps; envkit's own instructions are not steps."""
        steps = [log for log in self.logs.values() if log.number in self.titles]
        cached = sum(1 for log in steps if log.state == "cached")
        return cached, len(steps) - cached


@dataclass
class Outcome:
    ok: bool
    seconds: float
    progress: Progress
    tail: list[str]  # the failing step's last lines, or the log's


def build(builder: Builder, context: Path, tags: list[str], labels: dict[str, str],
          progress: Progress, log_path: Path, *, secrets: dict[str, Path] | None = None,
          build_args: dict[str, str] | None = None, env_args: list[str] | None = None,
          no_cache: bool = False, redact: list[str] | None = None,
          network: str = "") -> Outcome:
    """``env_args`` are build arguments the client reads from its environment (``--build-arg
    NAME``): their values, a proxy's login say, are never on a command line."""
    argv = [builder.client, *builder.args, "--progress=plain",
            "-f", str(context / "Dockerfile")]
    for tag in tags:
        argv += ["-t", tag]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    for sid, src in sorted((secrets or {}).items()):
        argv += ["--secret", _csv(f"id={sid}", f"src={src}")]
    for key, value in sorted((build_args or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    for key in sorted(env_args or []):
        argv += ["--build-arg", key]
    if no_cache:
        argv.append("--no-cache")
    if network:
        argv += ["--network", network]
    argv.append(str(context))
    env = {**os.environ, **dict(builder.env)}
    started = time.monotonic()
    code, recent = logged.run(argv, log_path, progress.feed, env=env, redact=redact or [])
    progress.flush()
    seconds = time.monotonic() - started
    if code == 0:
        return Outcome(True, seconds, progress, [])
    tail = progress.failed.lines[-20:] if progress.failed else recent[-20:]
    return Outcome(False, seconds, progress, tail)


def _csv(*fields: str) -> str:
    """Docker reads --secret as one CSV record: a field with , or " goes in quotes."""
    return ",".join('"' + f.replace('"', '""') + '"' if any(c in f for c in ',"') else f
                    for f in fields)
