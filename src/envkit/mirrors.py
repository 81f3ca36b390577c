"""Mirror profiles, kept as data in ``data/mirrors.yaml`` and loaded once."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from . import grammar, paths
from .diagnostics import EnvkitError, did_you_mean, error
from .yamlsrc import load_file

DEFAULT = "pypi"

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "pip": {"type": "object", "properties": {"index": {"type": "string"}},
                    "required": ["index"], "additionalProperties": False},
        },
        "required": ["description", "pip"],
        "additionalProperties": False,
    },
}


@dataclass(frozen=True)
class Mirror:
    name: str
    description: str
    pip_index: str

    def env(self) -> list[tuple[str, str]]:
        """The tools' own settings: pip and uv read these variables."""
        return [("PIP_INDEX_URL", self.pip_index), ("UV_DEFAULT_INDEX", self.pip_index)]


@functools.cache
def profiles(path: Path | None = None) -> dict[str, Mirror]:
    doc = load_file(path or paths.data_dir() / "mirrors.yaml")
    problems = []
    for err in jsonschema.Draft202012Validator(_SCHEMA).iter_errors(doc.data):
        problems.append(doc.diag(tuple(err.absolute_path), err.message))
    out = {}
    for name, spec in (doc.data or {}).items() if not problems else ():
        if msg := grammar.url(spec["pip"]["index"]):
            problems.append(doc.diag((name, "pip", "index"), msg))
        out[name] = Mirror(name, spec["description"], spec["pip"]["index"])
    if problems:
        raise EnvkitError(problems)
    return out


def get(name: str | None) -> Mirror:
    known = profiles()
    name = name or DEFAULT
    if name not in known:
        raise error(f"unknown mirror profile '{name}'", path="--mirror",
                    hint=did_you_mean(name, known) or "known: " + ", ".join(sorted(known)))
    return known[name]
