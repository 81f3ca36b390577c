"""cmake: configure, build and install a CMake project."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from envkit import grammar
from envkit.steps import Problem, Step, checked, kind

_OPTION = r"^[A-Za-z_][A-Za-z0-9_]*(:(BOOL|STRING|PATH|FILEPATH|INTERNAL))?$"


@kind
@dataclass
class Cmake(Step):
    kind = "cmake"
    summary = "Configure, build and (with 'install_prefix') install a CMake project."
    slow = True  # fetches or builds: minutes, not seconds
    properties = {
        "source": {"type": "string", "description": "Source directory (absolute)."},
        "build_dir": {"type": "string", "description": "Default: <source>/build."},
        "options": {"type": "object", "propertyNames": {"pattern": _OPTION},
                    "additionalProperties": {"type": ["string", "integer", "boolean"]},
                    "description": "-D options; booleans become ON/OFF."},
        "build_type": {"enum": ["Release", "Debug", "RelWithDebInfo", "MinSizeRel"]},
        "jobs": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}],
                 "description": "Parallel jobs; 'auto' uses every core."},
        "install_prefix": {"type": "string"},
        "generator": {"enum": ["Unix Makefiles", "Ninja"]},
        "targets": {"type": "array", "items": {"type": "string", "minLength": 1}},
    }
    required = ("source",)
    verbatim_fields = ("options",)  # numbers keep their written form

    source: str
    build_dir: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    build_type: str = "Release"
    jobs: Any = "auto"
    install_prefix: str = ""
    generator: str = ""
    targets: list[str] = field(default_factory=list)

    def check(self) -> list[Problem]:
        problems = checked(self, source=grammar.abs_path, build_dir=grammar.abs_path,
                           install_prefix=grammar.abs_path)
        for key, value in self.options.items():
            if msg := grammar.single_line(str(value)):
                problems.append((("options", key), msg))
        for i, target in enumerate(self.targets):
            if not re.fullmatch(r"[A-Za-z0-9_.+-]+", target):
                problems.append((("targets", i), f"not a target name: {target!r}"))
        return problems

    @property
    def build(self) -> str:
        return self.build_dir or f"{self.source.rstrip('/')}/build"

    @property
    def defines(self) -> list[str]:
        """``-DKEY=VALUE`` words, prefix and build type first, then options in order."""
        out = [f"-DCMAKE_BUILD_TYPE={self.build_type}"]
        if self.install_prefix:
            out.append(f"-DCMAKE_INSTALL_PREFIX={self.install_prefix}")
        for key, value in self.options.items():
            text = ("ON" if value else "OFF") if isinstance(value, bool) else str(value)
            out.append(f"-D{key}={text}")
        return out

    def title(self) -> str:
        return f"cmake {self.source}"
