"""pip: Python packages into the active venv (or the system python3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import grammar
from . import Problem, State, Step, checked, each, kind, strings


@kind
@dataclass
class Pip(Step):
    kind = "pip"
    summary = "Install Python packages with pip into the active venv."
    slow = True  # fetches or builds: minutes, not seconds
    properties = {
        "packages": strings(minItems=1, description="PEP 508 requirements, e.g. numpy==2.1.3."),
        "index": {"type": "string", "description": "Index URL for this step only."},
        "extra_index": strings(description="Extra index URLs for this step."),
        "options": strings(description="Extra pip arguments, e.g. --no-deps."),
        "python": {"type": "string",
                   "description": "Interpreter to run pip with (default: the active venv)."},
    }
    required = ("packages",)
    shorthand = "packages"
    cache_mounts = ("/root/.cache/pip",)

    packages: list[str]
    index: str = ""
    extra_index: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    python: str = ""

    def check(self) -> list[Problem]:
        return (each(self.packages, grammar.requirement, ("packages",))
                + checked(self, index=grammar.url, python=grammar.path)
                + each(self.extra_index, grammar.url, ("extra_index",))
                + each(self.options, _option, ("options",)))

    def bind(self, state: State) -> list[Problem]:
        if not self.python and not state.venv:
            # Debian's own python3 refuses pip installs (PEP 668, externally managed)
            return [(("packages",), "pip needs a venv step before it, or an explicit 'python'")]
        self.python = self.python or state.python
        return []

    def title(self) -> str:
        return "pip " + " ".join(self.packages)


def _option(value: str) -> str:
    if not value.startswith("-"):
        return f"an option starts with '-': {value!r} (packages go in 'packages')"
    return grammar.single_line(value)
