"""uv_python: a CPython from python-build-standalone, installed by the pinned uv."""

from __future__ import annotations

import re
from dataclasses import dataclass

from envkit import grammar
from envkit.steps import Problem, Step, checked, kind

_VERSION = re.compile(r"3\.\d{1,2}(\.\d{1,3})?")


@kind
@dataclass
class UvPython(Step):
    kind = "uv_python"
    summary = ("Install a CPython build of python-build-standalone with envkit's pinned uv "
               "(the uv version fixes which build and its sha256, which uv checks), through "
               "the mirror profile's python_standalone mirror; DIR/VERSION/bin/python3 runs "
               "it. For a Python the base's Debian suite does not ship.")
    properties = {
        "version": {"type": "string",
                    "description": "3.X (the newest 3.X.Y the pinned uv knows) or 3.X.Y."},
        "dir": {"type": "string", "description": "Absolute folder uv installs into."},
    }
    required = ("version", "dir")
    # uv (installed once into envkit's cache) and its downloads
    cache_mounts = ("/root/.cache/pip", "/root/.cache/uv", "/root/.cache/envkit")
    installer = "uv"  # the plan ships uv's pinned requirement for it, as for a pip step

    version: str
    dir: str

    def check(self) -> list[Problem]:
        problems = checked(self, dir=grammar.abs_path)
        if not _VERSION.fullmatch(self.version):
            problems.append((("version",), f"'{self.version}' is not a CPython version such "
                             "as 3.12 or 3.12.8"))
        return problems

    @property
    def interpreter(self) -> str:
        """What a venv step after it names as its ``python``."""
        minor = ".".join(self.version.split(".")[:2])
        return f"{self.dir.rstrip('/')}/{self.version}/bin/python{minor}"

    def title(self) -> str:
        return f"CPython {self.version} (uv-managed) in {self.dir}"
