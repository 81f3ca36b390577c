"""run: plain shell, as the author wrote it, run by bash with -euo pipefail."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from envkit import grammar
from envkit.steps import Problem, State, Step, checked, kind, strings

_DIST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


@kind
@dataclass
class Run(Step):
    kind = "run"
    summary = "Run a bash script (multi-line); params in it may hold only inert characters."
    properties = {
        "script": {"type": "string", "minLength": 1},
        "workdir": {"type": "string", "description": "Directory to run in (absolute)."},
        "installs": strings(description="Python distributions the script installs into the "
                                        "active venv (a build from source): not locked, but "
                                        "verify expects them beside the locked packages."),
    }
    required = ("script",)
    shorthand = "script"
    cache_mounts = ("/var/cache/envkit",)  # {{ cache }}, where download steps put big files
    shell_fields = ("script",)  # a param here may hold only characters inert to bash

    script: str
    workdir: str = ""
    installs: list[str] = field(default_factory=list)
    python: str = field(default="", metadata={"hashed": False})  # the active venv, by bind

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        if "\x00" in self.script:
            problems.append((("script",), "NUL characters are not allowed"))
        for i, name in enumerate(self.installs):
            if not _DIST.fullmatch(name):
                problems.append((("installs", i), f"not a distribution name: {name!r}"))
        return problems + checked(self, workdir=grammar.abs_path)

    def bind(self, state: State) -> list[Problem]:
        self.python = state.python
        return []

    @property
    def installed(self) -> list[str]:
        return [canonicalize_name(n) for n in self.installs]

    def title(self) -> str:
        lines = [ln.strip() for ln in self.script.splitlines() if ln.strip()]
        first = lines[0] if lines else ""
        return "run " + (first[:60] + "…" if len(first) > 60 or len(lines) > 1 else first)
