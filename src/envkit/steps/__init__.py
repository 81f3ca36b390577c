"""Step kinds. Each kind is one module here plus one partial, ``templates/steps/<kind>.j2``.

A kind module defines a dataclass subclass of :class:`Step` decorated with
:func:`kind`. The class carries its JSON Schema fragment, its grammar checks,
what it does to the plan state (the active venv, files to copy) and what the
Dockerfile needs from it (cache mounts, environment). Adding a kind touches its
module and its partial, nothing else: modules here are discovered at import.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from envkit.diagnostics import Path_
from envkit.secrets import Secret
from envkit.unit import Unit

Problem = tuple[Path_, str]  # (path inside the step's fields, message)
LOCKS_DIR = "files/envkit/lock"  # locked pip steps' requirements files, in the build context

REGISTRY: dict[str, type[Step]] = {}


@dataclass
class State:
    """What earlier steps leave for later ones while a plan is built."""

    python: str = "python3"  # the interpreter pip steps use; a venv step changes it
    venv: str = ""  # the active venv's path
    recipe: str = ""
    recipe_dir: Path = field(default_factory=Path)
    recipe_file: str = ""  # the recipe as messages name it, e.g. recipes/x.yaml
    step_path: str = ""  # the step being bound, e.g. steps[1].pip
    files: list[tuple[Path, str]] = field(default_factory=list)  # (source, context path)
    # problems found in a file a step reads (a requirements file), at that file's line
    problems: list[Any] = field(default_factory=list)


@dataclass
class Step(Unit):
    cache_mounts: ClassVar[tuple[str, ...]] = ()  # BuildKit cache mounts for its RUN
    runs: ClassVar[bool] = True  # runs commands (so it may use secrets)
    slow: ClassVar[bool] = False  # its rebuild costs minutes: it belongs before a copy step
    secrets: list[Secret] = field(default_factory=list, kw_only=True)  # set by the plan
    # what the lock says this step installs (a lock.Locked), set by the plan's locker; in
    # the step's hash through the chain, not through its fields
    locked: Any = field(default=None, kw_only=True, metadata={"hashed": False})
    # where the step is written (a Diagnostic with no message), for problems found later
    origin: Any = field(default=None, kw_only=True, metadata={"hashed": False})

    @property
    def bind_mounts(self) -> list[tuple[str, str]]:
        """Files of the build context its RUN reads without a layer keeping them."""
        return []

    @property
    def secret_mounts(self) -> list[tuple[str, str, str]]:
        """BuildKit secret mounts (id, target, mode) for its RUN: root may read them."""
        return [(s.id, s.target, "0400") for s in self.secrets]

    def check(self) -> list[Problem]:
        """Grammar problems of the bound values."""
        return []

    def bind(self, state: State) -> list[Problem]:
        """Read or update the plan state (the venv in use, files to copy)."""
        return []

    def env(self) -> list[tuple[str, str]]:
        """Variables this step sets for every later step and for the image."""
        return []

    def title(self) -> str:
        return self.kind

    def content_digest(self) -> str:
        """A hash of what the step reads besides its fields (files it copies)."""
        return ""

    def lock_inputs(self) -> dict[str, Any] | None:
        """The fields that decide what the step installs, for a kind the lock pins (its
        packages, its index); None for a kind the lock leaves alone."""
        return None

    def fields(self) -> dict[str, Any]:
        """What the step hash covers: every field but machine-local ones."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("hashed", True)}


def kind(cls: type[Step]) -> type[Step]:
    REGISTRY[cls.kind] = cls
    return cls


def strings(**extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "minLength": 1}, **extra}


def each(values: list[str], checker: Any, base: Path_) -> list[Problem]:
    return [((*base, i), msg) for i, v in enumerate(values) if (msg := checker(v))]


def checked(step: Step, **checkers: Any) -> list[Problem]:
    """Each named field, when set, through its grammar check."""
    return [((name,), msg) for name, checker in checkers.items()
            if (value := getattr(step, name)) and (msg := checker(value))]


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{info.name}")


_discover()
