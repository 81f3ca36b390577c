"""run: plain shell, as the author wrote it, run by bash with -euo pipefail."""

from __future__ import annotations

from dataclasses import dataclass

from .. import grammar
from . import Problem, Step, checked, kind


@kind
@dataclass
class Run(Step):
    kind = "run"
    summary = "Run a bash script (multi-line); params in it may hold only inert characters."
    properties = {
        "script": {"type": "string", "minLength": 1},
        "workdir": {"type": "string", "description": "Directory to run in (absolute)."},
    }
    required = ("script",)
    shorthand = "script"
    cache_mounts = ("/var/cache/envkit",)  # {{ cache }}, where download steps put big files
    shell_fields = ("script",)  # a param here may hold only characters inert to bash

    script: str
    workdir: str = ""

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        if "\x00" in self.script:
            problems.append((("script",), "NUL characters are not allowed"))
        return problems + checked(self, workdir=grammar.abs_path)

    def title(self) -> str:
        lines = [ln.strip() for ln in self.script.splitlines() if ln.strip()]
        first = lines[0] if lines else ""
        return "run " + (first[:60] + "…" if len(first) > 60 or len(lines) > 1 else first)
