"""The step map: which recipe step each Dockerfile instruction belongs to, from the render
itself (render.stepmap), never read back from the file's comments."""

from __future__ import annotations

import re

import pytest

from backend_fakes import step_map
from envkit.load.catalog import Catalog
from envkit.plan import Plan, make_plan
from envkit.render import FORMATS, render, render_all, stepmap
from envkit.render.quote import QuoteError

_INSTRUCTION = re.compile(r"[A-Z]+( |$)")


def test_cut_takes_the_marks_out_and_keeps_each_piece() -> None:
    text = f"FROM x\n{stepmap.mark(1)}# one\nRUN a\n{stepmap.mark(0)}# ours\nRUN b\n"
    clean, pieces = stepmap.cut(text)
    assert clean == "FROM x\n# one\nRUN a\n# ours\nRUN b\n"
    assert pieces == [(0, "FROM x\n"), (1, "# one\nRUN a\n"), (0, "# ours\nRUN b\n")]


def test_a_nul_the_quoting_let_through_is_never_emitted() -> None:
    with pytest.raises(QuoteError, match="NUL"):
        stepmap.cut("RUN echo \x00x\n")


def test_continuations_and_their_comments_belong_to_their_instruction() -> None:
    pieces = [(0, "FROM debian AS build\nRUN a \\\n# RUN not one\n\n && b \\\n && c\n"),
              (4, "copy x /y\nENV A=1 \\\n    B=2\n"),
              (0, "FROM debian\nLABEL a=b\n")]
    step_map = stepmap.dockerfile(pieces)
    assert step_map.every() == [[0, 0, 4, 4], [0, 0]]
    assert step_map.buildkit() == {"build": [0, 0, 4], "stage-1": [0]}


def _plan(name: str) -> Plan:
    catalog = Catalog()
    return make_plan(catalog.find(name), catalog, base="envkit/base:bookworm")


@pytest.mark.parametrize("name", ["paddle-full", "lapack-src", "jupyter", "faiss-cpu"])
def test_every_instruction_is_in_the_map_and_each_step_where_its_comment_says(
        name: str) -> None:
    """The comments are for people; they still agree with the map (an independent count:
    the file's instruction lines, each under the last '# [n/N]' or '# [envkit]' above)."""
    plan = _plan(name)
    text = render(plan, "dockerfile")
    expected: list[list[int]] = []
    current = 0
    for line in text.splitlines():
        if m := re.match(r"# \[(\d+)/\d+\] ", line):
            current = int(m[1])
        elif line.startswith("# [envkit] "):
            current = 0
        elif _INSTRUCTION.match(line):
            if line.startswith("FROM "):
                expected.append([])
            expected[-1].append(current)
    assert step_map(plan).every() == expected
    assert "\x00" not in text


def test_a_step_title_that_looks_like_a_mark_changes_nothing(tmp_path) -> None:
    """A comment in a step's title or script is text, not a boundary."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nversion: 1.0.0\ndescription: d\nbase: debian:bookworm-slim\nsteps:\n"
        "  - name: '[envkit] not ours'\n    run: |\n      echo one\n      # [9/9] x: y\n"
        "      echo two\n"
        "  - name: second\n    run: echo three\n")
    catalog = Catalog()
    plan = make_plan(catalog.find(str(recipe)), catalog, base="envkit/base:bookworm")
    assert [n for n in step_map(plan).buildkit()["stage-0"] if n] == [1, 2]


def test_only_a_format_with_instructions_has_a_map() -> None:
    plan = _plan("python-venv")
    rendered = render_all(plan, list(FORMATS))
    assert set(rendered.step_maps) == {"Dockerfile"}
    assert all("\x00" not in text for text in rendered.files.values())
