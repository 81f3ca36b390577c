"""One diagnostic type for every stage: load, plan, render, validate.

A diagnostic prints as one line, ``FILE:LINE:COL: field.path: message (hint)``.
Nothing else reaches the user on error.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from envkit.chars import BREAKS, FORMAT

Path_ = tuple[str | int, ...]
_BREAKS = re.compile(f"{BREAKS.pattern}|{FORMAT.pattern}")  # shown escaped
_PLAIN_KEY = re.compile(r"[^\s'\"\[\]]+")
MAX_SHOWN = 500  # characters of a path, message or hint: a 60 KB value echoed back is noise


def _clip(text: str) -> str:
    """The start and the end: what is wrong may follow the value it quotes."""
    half = MAX_SHOWN // 2
    return text if len(text) <= MAX_SHOWN else f"{text[:half]}...{text[-half:]}"


def format_path(path: Path_) -> str:
    """``('steps', 2, 'pip', 'packages', 0)`` -> ``steps[2].pip.packages[0]``; a key that is
    empty or has spaces is quoted (``env['a b']``), so that it still shows."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _PLAIN_KEY.fullmatch(part):
            out += f"[{part!r}]"
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
        text = f"{where}: {_clip(self.path)}: {_clip(self.message)}"
        if self.hint:
            text += f" ({_clip(self.hint)})"
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
