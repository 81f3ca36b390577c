"""Image backends: the engines a Dockerfile is built and checked on, behind one interface.

A backend is one module that registers a ``connect()`` with :func:`backend`; build,
verify and ``--target`` route through :data:`BACKENDS` (in the order they are tried when
no target is given; the host, which builds no image, is the last resort). ``connect``
raises :class:`NoBackend` when its engine is not there at all, so the next one can stand
in; an engine that is there but refuses is any other error.

What a backend does (``ImageBackend``): say what builds, find an image, settle the base
image (pull it, or make it without a registry), build a rendered context, tag, run checks
in a fresh container, save an image to an archive and load one, sweep the check
containers a killed envkit left, and say whether its engine went away after a failure.
Its module may also register a check for ``invoke doctor`` with :func:`doctor_check`
(whether its engine is there and works, said for the target asked for).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from envkit.checks import Runner
from envkit.diagnostics import EnvkitError
from envkit.render.stepmap import StepMap


class NoBackend(EnvkitError):
    """The engine is not there at all (not installed, nothing listens): another can stand in."""


class Disabled(NoBackend):
    """Turned off on purpose (never tried without --target, and not said)."""


@dataclass(frozen=True)
class Image:
    id: str
    labels: dict[str, str]
    size: int  # bytes


@dataclass
class BuildRequest:
    """One build: a rendered context, the step map of its Dockerfile (from the same
    render), tags and labels, the titles of the recipe's steps (for progress), the log,
    secrets (id -> file), build args, the names of build args the builder reads from its
    environment (proxies: never on a command line), redactions for the log."""

    context: Path
    steps: StepMap
    tags: list[str]
    labels: dict[str, str]
    titles: dict[int, str]
    log: Path
    out: TextIO
    secrets: dict[str, Path] = field(default_factory=dict)
    build_args: dict[str, str] = field(default_factory=dict)
    env_args: list[str] = field(default_factory=list)
    no_cache: bool = False
    redact: list[str] = field(default_factory=list)
    verbose: bool = False
    network: str = ""  # the RUNs' network: "none" for an offline build; "" the default


class ImageBackend(Protocol):
    name: str
    gpu_fix: str  # what gives its containers the GPUs (doctor says it when gpu() is False)

    def about(self) -> str: ...

    def image(self, ref: str) -> Image | None: ...

    def tag(self, image: Image, repo: str, tag: str) -> None: ...

    def ensure_base(self, ref: str, out: TextIO, registries: list[str]) -> str: ...

    def make_base(self, suite: str, tag: str, mirror: str, out: TextIO) -> str: ...

    def build(self, request: BuildRequest) -> Any: ...  # buildkit.Outcome

    def checks(self, image: Image, name: str, gpu: bool, out: TextIO) -> Runner: ...

    def save(self, ref: str, path: Path) -> None: ...  # an image archive (docker save)

    def load(self, path: Path) -> None: ...  # ... and back into the engine's store

    def gpu(self) -> bool: ...  # whether checks can have the GPUs

    def sweep(self) -> int: ...

    def lost(self) -> str: ...

    # locking and export's .debs (plan.aptlock.Containers): where a base came from, and a
    # script in a fresh container of an image
    def provenance(self, ref: str) -> tuple[str, str]: ...

    def run_script(self, ref: str, script: str, files: dict[str, bytes], env: dict[str, str],
                   timeout: float, collect: tuple[str, Path] | None = None
                   ) -> tuple[int, str, str]: ...


def made_by(labels: dict[str, str], created: str, image_id: str, in_registry: bool) -> str:
    """How an image was made, for a lock that pins no registry digest of its base: 'debootstrap
    DATE ID' for a base invoke base made, 'local DATE ID' for another only this engine has,
    '' for one a registry has (its digest says it). Provenance, not a lock input."""
    if str(labels.get("io.envkit.base", "")).startswith("debootstrap-"):
        return f"debootstrap {created[:10]} {image_id}"
    return "" if in_registry else f"local {created[:10]} {image_id}"


BACKENDS: dict[str, tuple[int, Callable[[], ImageBackend]]] = {}


OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"  # a doctor finding's status


@dataclass(frozen=True)
class Health:
    """What a backend's doctor check found: ok, info, warn or fail; one line; its fix."""

    status: str
    message: str
    fix: str = ""


DOCTOR: dict[str, Callable[[str], Health]] = {}  # name -> check(target): doctor runs each


def doctor_check(name: str) -> Callable[[Callable[[str], Health]], Callable[[str], Health]]:
    """Register a backend's check for ``invoke doctor``; it is given the --target asked for
    ('' when none) and says fail only when that target needs it."""
    def register(fn: Callable[[str], Health]) -> Callable[[str], Health]:
        if name in DOCTOR:
            raise ValueError(f"doctor check {name!r} is registered twice")
        DOCTOR[name] = fn
        return fn

    return register


def backend(name: str, order: int
            ) -> Callable[[Callable[[], ImageBackend]], Callable[[], ImageBackend]]:
    """Register a backend's ``connect``; without ``--target``, lower ``order`` is tried first."""
    def register(connect: Callable[[], ImageBackend]) -> Callable[[], ImageBackend]:
        if name in BACKENDS:
            raise ValueError(f"backend {name!r} is registered twice")
        BACKENDS[name] = (order, connect)
        return connect

    return register


def load() -> dict[str, Callable[[], ImageBackend]]:
    """Every backend's connect, in the order they are tried (each module registers itself)."""
    from envkit.backends import docker, podman  # noqa: F401

    return {name: c for name, (_, c) in sorted(BACKENDS.items(), key=lambda kv: kv[1][0])}


def tool(argv: list[str], timeout: float = 10.0) -> tuple[int, str]:
    """Exit status and output of a quick command (a doctor check's); a hang (124) or a
    missing program (127) is a status too, never an exception."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              errors="replace", stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return 124, f"no answer within {timeout:.0f}s"
    except OSError as exc:
        return 127, str(exc.strerror or exc)
    return done.returncode, (done.stdout + done.stderr).strip()


def doctor_checks() -> dict[str, Callable[[str], Health]]:
    """Every backend's doctor check (each module registers its own), in their order."""
    load()
    return dict(DOCTOR)


def targets() -> tuple[str, ...]:
    return (*load(), "host")
