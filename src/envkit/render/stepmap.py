"""Which recipe step each instruction of a rendered Dockerfile belongs to, known while
rendering: the template says where each step's text begins (``{{ step(n) }}``, 0 for
envkit's own), render cuts its output at those places, and the instructions of each
piece are the step's. Nothing reads the ``# [n/N]`` comments back: they are for people.

BuildKit shows a stage's FROM and its RUN, COPY, ADD and WORKDIR as ``[stage k/M]``;
buildah counts every instruction (``STEP k/M``). A StepMap answers both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envkit.render.quote import QuoteError

_MARK = "\x00"  # never in a value: every quoting refuses control characters
_MARKS = re.compile("\x00([0-9]+)\x00")
_KEYWORD = re.compile(r"([A-Za-z]+)(?:\s|$)")
_FROM_AS = re.compile(r"FROM\s.*\sAS\s+([\w.-]+)\s*$", re.IGNORECASE)
BUILDKIT_VERTICES = frozenset({"FROM", "RUN", "COPY", "ADD", "WORKDIR"})


def mark(number: int) -> str:
    """What the template writes where step ``number``'s text begins (the template global
    ``step``); render takes it out again."""
    return f"{_MARK}{int(number)}{_MARK}"


def cut(text: str) -> tuple[str, list[tuple[int, str]]]:
    """The text without its marks, and its pieces as (step, text) in order (text before
    the first mark is step 0's)."""
    pieces: list[tuple[int, str]] = []
    current, start = 0, 0
    for m in _MARKS.finditer(text):
        pieces.append((current, text[start:m.start()]))
        current, start = int(m[1]), m.end()
    pieces.append((current, text[start:]))
    clean = "".join(piece for _, piece in pieces)
    if _MARK in clean:  # a value the quoting let through: never emit it
        raise QuoteError("a NUL character reached the rendered text")
    return clean, [(n, piece) for n, piece in pieces if piece]


@dataclass(frozen=True)
class Stage:
    name: str  # FROM ... AS name, else stage-I as BuildKit calls it
    instructions: tuple[tuple[str, int], ...]  # (keyword, step) of each, FROM first


@dataclass(frozen=True)
class StepMap:
    stages: tuple[Stage, ...] = ()

    def buildkit(self) -> dict[str, list[int]]:
        """Each stage's name -> the step of each instruction BuildKit shows as [k/M]."""
        return {stage.name: [step for keyword, step in stage.instructions
                             if keyword in BUILDKIT_VERTICES]
                for stage in self.stages}

    def every(self) -> list[list[int]]:
        """Each stage's steps of every instruction (buildah's STEP k/M)."""
        return [[step for _, step in stage.instructions] for stage in self.stages]


def dockerfile(pieces: list[tuple[int, str]]) -> StepMap:
    """The StepMap of a Dockerfile cut into pieces: each instruction is its piece's step.
    A line continued with a backslash, and the comments and blank lines inside it, belong
    to the instruction it continues."""
    stages: list[tuple[str, list[tuple[str, int]]]] = []
    continued = False
    for step, piece in pieces:
        for line in piece.split("\n"):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if continued:
                continued = text.endswith("\\")
                continue
            continued = text.endswith("\\")
            m = _KEYWORD.match(text)
            if m is None:
                continue
            keyword = m[1].upper()
            if keyword == "FROM":
                named = _FROM_AS.match(text)
                stages.append((named[1] if named else f"stage-{len(stages)}", []))
            if stages:
                stages[-1][1].append((keyword, step))
    return StepMap(tuple(Stage(name, tuple(instructions)) for name, instructions in stages))
