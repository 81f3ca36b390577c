"""One diagnostic type for every stage: load, plan, render, validate.

A diagnostic prints as one line, ``FILE:LINE:COL: field.path: message (hint)``.
Nothing else reaches the user on error.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .chars import BREAKS

Path_ = tuple[str | int, ...]
_BREAKS = BREAKS


def format_path(path: Path_) -> str:
    """``('steps', 2, 'pip', 'packages', 0)`` -> ``steps[2].pip.packages[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top)"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``did you mean 'x'?`` hint, or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True, order=True)
class Diagnostic:
    file: str
    line: int  # 1-based; 0 when unknown
    col: int  # 1-based; 0 when unknown
    path: str
    message: str
    hint: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return _BREAKS.sub(lambda m: repr(m.group(0))[1:-1], text)  # one line, always


class EnvkitError(Exception):
    """Raised with every diagnostic found; the CLI prints each on one line."""

    def __init__(self, diagnostics: Sequence[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def error(message: str, *, file: str = "envkit", path: str = "(options)",
          hint: str = "") -> EnvkitError:
    """An error that has no source position (a bad command-line option, a missing tool)."""
    return EnvkitError(Diagnostic(file, 0, 0, path, message, hint))
