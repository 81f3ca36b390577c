"""Environment values: literal text with ``${NAME}`` (or ``$NAME``) references.

Nothing else in a value is special: no command substitution, no globbing.
``$$`` is a literal dollar. The quoting filters render the parts for each
target (shell, Dockerfile ENV), so a value can never run a command.
"""

from __future__ import annotations

import re
from typing import Any

from envkit import grammar

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PART = re.compile(r"\$\$|\$\{(" + NAME + r")\}|\$(" + NAME + r")")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": f"^{NAME}$"},
    "additionalProperties": {"type": ["string", "number"]},
}


def parts(value: str) -> list[tuple[str, str]]:
    """Split into ('lit', text) and ('ref', NAME) parts."""
    out: list[tuple[str, str]] = []
    pos = 0
    for m in _PART.finditer(value):
        if m.start() > pos:
            out.append(("lit", value[pos : m.start()]))
        if m.group(0) == "$$":
            out.append(("lit", "$"))
        else:
            out.append(("ref", m.group(1) or m.group(2)))
        pos = m.end()
    if pos < len(value):
        out.append(("lit", value[pos:]))
    # merge neighbouring literals so quoting stays short
    merged: list[tuple[str, str]] = []
    for kind, text in out:
        if merged and kind == "lit" and merged[-1][0] == "lit":
            merged[-1] = ("lit", merged[-1][1] + text)
        else:
            merged.append((kind, text))
    return merged


# Variables bash or envkit's own machinery read: a recipe that sets one breaks every later
# step (BASH_ENV loads envkit's helpers in each Dockerfile RUN; IFS splits every word).
RESERVED = frozenset({
    "BASH_ENV", "ENV", "IFS", "PS4", "SHELLOPTS", "BASHOPTS", "CDPATH", "GLOBIGNORE",
    "BASH_XTRACEFD", "POSIXLY_CORRECT", "PROMPT_COMMAND", "BASH_COMPAT", "BASH_ARGV0",
    "SHELL", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "UID", "EUID", "PPID", "BASHPID",
    "RANDOM", "SECONDS", "LINENO", "FUNCNAME", "HOME",
})
RESERVED_PREFIXES = ("ENVKIT_", "BASH_FUNC_")


def reserved(name: str) -> str:
    """Why a recipe may not set ``name``, or ''."""
    if name in RESERVED:
        return f"{name} is a variable bash or envkit relies on: setting it breaks later steps"
    if name.startswith(RESERVED_PREFIXES):
        return f"{name}: names starting {name.split('_', 1)[0]}_ belong to envkit and bash"
    return ""


def check(values: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for key, value in values.items():
        if ((msg := grammar.identifier(key)) or (msg := reserved(key))
                or (msg := grammar.single_line(str(value)))):
            problems.append((key, msg))
        elif key == "PATH" and ("ref", "PATH") not in parts(str(value)):
            problems.append((key, "PATH must keep the one before it: add ${PATH}, as in "
                                  "/opt/tool/bin:${PATH}"))
    return problems


def stringify(values: dict[str, Any]) -> dict[str, str]:
    return {k: v if isinstance(v, str) else str(v) for k, v in values.items()}
