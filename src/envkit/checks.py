"""Verify checks: what proves an environment works.

A check turns into an argv to run inside the result (an image or a host
environment) and judges what came back. Running is the backend's business; a
runner is any callable ``argv -> (exit code, output)``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from envkit import grammar
from envkit.diagnostics import Path_
from envkit.unit import Unit

Runner = Callable[[list[str]], tuple[int, str]]
Problem = tuple[Path_, str]

CHECKS: dict[str, type[Check]] = {}

# Prints the module's version: __version__, else its distribution's metadata.
_PROBE = (
    "import importlib, importlib.metadata as md, sys\n"
    "m = importlib.import_module(sys.argv[1])\n"
    "v = getattr(m, '__version__', None)\n"
    "if not isinstance(v, str):\n"
    "    dists = md.packages_distributions().get(sys.argv[1].split('.')[0], [])\n"
    "    v = md.version(dists[0]) if dists else ''\n"
    "print('envkit-version:' + v, flush=True)\n"
)
# ... and compares it with a specifier (argv[2]) where envkit is not there to judge.
_COMPARE = (
    "if sys.argv[2:] and sys.argv[2]:\n"
    "    try:\n"
    "        from packaging.specifiers import SpecifierSet\n"
    "    except ImportError:\n"
    "        try:\n"
    "            from pip._vendor.packaging.specifiers import SpecifierSet\n"
    "        except ImportError:\n"
    "            sys.exit('no packaging module to compare ' + v + ' with ' + sys.argv[2])\n"
    "    if not SpecifierSet(sys.argv[2]).contains(v, prereleases=True):\n"
    "        sys.exit(sys.argv[1] + ' ' + v + ', expected ' + sys.argv[2])\n"
)
# A module may warn on import (transformers without torch); in a container's log stderr and
# stdout interleave in any order, so the version is found by its marker, not its position.
_MARKER = "envkit-version:"


@dataclass
class Result:
    name: str
    ok: bool
    detail: str


@dataclass
class Check(Unit):
    name: str = field(default="", kw_only=True)

    def check(self) -> list[Problem]:
        return []

    def bind(self, python: str) -> None:
        """Learn the interpreter of the environment (the last venv)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def judge(self, code: int, output: str) -> tuple[bool, str]:
        raise NotImplementedError

    def label(self) -> str:
        return self.name or self.kind

    def standalone(self) -> tuple[list[str], int, str]:
        """The check as it runs where envkit is not (an Apptainer image's %test): an argv,
        the exit status it must give and a regex its output must contain ('' for none)."""
        return self.command(), 0, ""

    def run(self, runner: Runner) -> Result:
        try:
            code, output = runner(self.command())
        except OSError as exc:
            return Result(self.label(), False, f"could not run: {exc}")
        ok, detail = self.judge(code, output)
        return Result(self.label(), ok, detail)


def check_kind(cls: type[Check]) -> type[Check]:
    CHECKS[cls.kind] = cls
    return cls


def _tail(output: str, lines: int = 3) -> str:
    return " | ".join(ln for ln in output.strip().splitlines()[-lines:])


OUTPUT_SECONDS = 5.0  # a plain regex searches megabytes in far less


@check_kind
@dataclass
class Command(Check):
    kind = "command"
    properties = {
        "argv": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                 "description": "Program and arguments; no shell is involved."},
        "exit_code": {"type": "integer", "minimum": 0, "maximum": 255},
        "output": {"type": "string", "description": "Regex the output must contain."},
    }
    required = ("argv",)
    shorthand = "argv"

    argv: list[str] = field(default_factory=list)
    exit_code: int = 0
    output: str = ""

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        for i, arg in enumerate(self.argv):
            if "\x00" in arg:
                problems.append((("argv", i), "NUL characters are not allowed"))
        if self.output and (msg := grammar.regex(self.output)):
            problems.append((("output",), msg))
        return problems

    def command(self) -> list[str]:
        return list(self.argv)

    def standalone(self) -> tuple[list[str], int, str]:
        return self.command(), self.exit_code, self.output

    def judge(self, code: int, output: str) -> tuple[bool, str]:
        if code != self.exit_code:
            return False, f"exit {code}, expected {self.exit_code}: {_tail(output)}"
        try:
            found = not self.output or grammar.matches(self.output, output, flags=re.MULTILINE,
                                                       seconds=OUTPUT_SECONDS)
        except grammar.TooSlow as exc:
            return False, str(exc)
        if not found:
            return False, f"output does not match /{self.output}/: {_tail(output)}"
        return True, f"exit {code}"

    def label(self) -> str:
        return self.name or " ".join(self.argv)[:60]


@check_kind
@dataclass
class PythonImport(Check):
    kind = "python_import"
    properties = {
        "module": {"type": "string", "pattern": r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$",
                   "errorMessage": "a module name is dotted identifiers, e.g. 'paddle'"},
        "version": {"type": "string", "description": "Version specifier, e.g. '==3.3.1'."},
        "python": {"type": "string", "description": "Interpreter (default: the last venv's)."},
    }
    required = ("module",)
    shorthand = "module"

    module: str = ""
    version: str = ""
    python: str = ""

    def check(self) -> list[Problem]:
        if self.version and (msg := grammar.specifier(self.version)):
            return [(("version",), msg)]
        return []

    def bind(self, python: str) -> None:
        self.python = self.python or python

    def command(self) -> list[str]:
        return [self.python or "python3", "-c", _PROBE, self.module]

    def standalone(self) -> tuple[list[str], int, str]:
        """The probe, judging the version itself: with packaging, else pip's copy of it."""
        return [self.python or "python3", "-c", _PROBE + _COMPARE, self.module, self.version], 0, ""

    def judge(self, code: int, output: str) -> tuple[bool, str]:
        if code != 0:
            return False, f"import {self.module} failed: {_tail(output)}"
        marked = [ln.split(_MARKER, 1)[1].strip() for ln in output.splitlines() if _MARKER in ln]
        found = marked[-1] if marked else ""
        if not self.version:
            return True, f"{self.module} {found}".strip()
        try:
            ok = SpecifierSet(self.version).contains(Version(found), prereleases=True)
        except InvalidVersion:
            return False, f"{self.module} reports no usable version ({found!r})"
        verdict = "" if ok else f", expected {self.version}"
        return ok, f"{self.module} {found}{verdict}"

    def label(self) -> str:
        return self.name or f"import {self.module}{self.version}"


@check_kind
@dataclass
class FileExists(Check):
    kind = "file_exists"
    properties = {"path": {"type": "string"}}
    required = ("path",)
    shorthand = "path"

    path: str = ""

    def check(self) -> list[Problem]:
        msg = grammar.abs_path(self.path)
        return [(("path",), msg)] if msg else []

    def command(self) -> list[str]:
        return ["test", "-e", self.path]

    def judge(self, code: int, output: str) -> tuple[bool, str]:
        return (True, "present") if code == 0 else (False, f"{self.path} is missing")

    def label(self) -> str:
        return self.name or f"exists {self.path}"


def local_runner(env: dict[str, str] | None = None, timeout: float = 600) -> Runner:
    """Run argvs on this host (the host backend; also used by tests)."""

    def run(argv: list[str]) -> tuple[int, str]:
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {timeout:.0f}s"
        # bytes, decoded as a container's log is: text mode would turn a \r into \n
        return done.returncode, done.stdout.decode("utf-8", "replace")

    return run


def sections(output: str) -> dict[str, list[str]]:
    """envkit_installed's output (the helpers; in an image, on a host): each '# TITLE'
    line starts a section of lines."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith("# "):
            current = out.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return out
