"""venv: a virtual environment that later pip steps and the image use."""

from __future__ import annotations

from dataclasses import dataclass

from envkit import grammar
from envkit.steps import Problem, State, Step, checked, kind


@kind
@dataclass
class Venv(Step):
    kind = "venv"
    summary = "Create a Python virtual environment and make it the active one."
    properties = {
        "path": {"type": "string", "description": "Where the venv goes (absolute)."},
        "python": {"type": "string",
                   "description": "Python version ('3.11') or interpreter to create it with."},
        "system_site_packages": {"type": "boolean"},
    }
    required = ("path",)

    path: str
    python: str = "3"
    system_site_packages: bool = False

    def check(self) -> list[Problem]:
        return checked(self, path=grammar.abs_path, python=grammar.path)

    @property
    def interpreter(self) -> str:
        """'3.11' -> 'python3.11'; anything else is taken as a command or path."""
        head = self.python.split(".")[0]
        return f"python{self.python}" if head.isdigit() else self.python

    def bind(self, state: State) -> list[Problem]:
        state.python = f"{self.path.rstrip('/')}/bin/python"
        state.venv = self.path
        return []

    def env(self) -> list[tuple[str, str]]:
        literal = self.path.replace("$", "$$")  # env values expand $NAME; a path must not
        return [("VIRTUAL_ENV", literal), ("PATH", f"{literal.rstrip('/')}/bin:${{PATH}}")]

    def title(self) -> str:
        return f"venv {self.path} ({self.interpreter})"
