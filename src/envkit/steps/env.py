"""env: environment variables for every later step and for the image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envkit import envvalue
from envkit.diagnostics import Path_
from envkit.steps import Problem, Step, kind


@kind
@dataclass
class Env(Step):
    kind = "env"
    summary = "Set environment variables; ${NAME} refers to another variable."
    runs = False  # nothing runs: no secrets
    properties = {}
    verbatim_fields = ("vars",)  # numbers keep their written form
    env_fields = ("vars",)

    vars: dict[str, str]

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return {**envvalue.SCHEMA, "description": cls.summary}

    @classmethod
    def normalize(cls, value: Any) -> dict[str, Any]:
        return {"vars": value}

    @classmethod
    def field_path(cls, value: Any, name: str) -> Path_:
        return ()

    def check(self) -> list[Problem]:
        return [(("vars", key), msg) for key, msg in envvalue.check(self.vars)]

    def env(self) -> list[tuple[str, str]]:
        return list(self.vars.items())

    def title(self) -> str:
        return "env " + " ".join(self.vars)
