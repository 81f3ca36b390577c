"""The lint pipeline validate uses: pieces, line numbers, the cache, the helpers once."""

from __future__ import annotations

from pathlib import Path

import pytest

from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import lint, render

HELPERS = lint.helpers_text()


def _script(steps: int, bad: int = 0, helpers: bool = True) -> str:
    """A script shaped as envkit renders one: preamble, helpers, numbered steps."""
    out = ["#!/usr/bin/env bash", "set -Eeuo pipefail", f"export ENVKIT_TOTAL={steps}"]
    if helpers:
        out.append(HELPERS.rstrip("\n"))
    for n in range(1, steps + 1):
        body = 'rm -rf $1/*' if n == bad else f"echo {n}"
        out += ["", f"# [{n}/{steps}] t: step {n}",
                f"if envkit_begin {n} {'ab' * 32} 'step {n}'; then", body, "envkit_end", "fi"]
    return "\n".join(out) + "\n"


def _line_of(text: str, needle: str) -> int:
    return text.splitlines().index(needle) + 1


def test_a_finding_deep_in_a_long_script_keeps_its_line() -> None:
    text = _script(450, bad=333)
    parts = lint.pieces(lint.SHELL, text, HELPERS)
    assert len(parts) == 1 + 3  # before the steps, then 200 + 200 + 50 steps
    assert "".join(p.text for p in parts).count("\n") == text.count("\n")  # nothing dropped
    [findings] = lint.lint_texts([(lint.SHELL, text)], use_cache=False)
    codes = {(f.code, f.line) for f in findings if f.tool == "shellcheck"}
    assert ("SC2115", _line_of(text, "rm -rf $1/*")) in codes, findings


def test_the_helpers_are_linted_once_and_blanked_in_each_script(
        monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [(lint.SHELL, _script(3)), (lint.SHELL, _script(4, bad=2))]
    seen: list[str] = []
    real = lint.shellcheck

    def reading(files: list[Path]) -> list[lint.Finding]:
        seen.extend(f.read_text() for f in files)
        return real(files)

    monkeypatch.setattr(lint, "shellcheck", reading)
    found = lint.lint_texts(texts, use_cache=False, jobs=1)
    assert len(seen) == 2 + 2 + 1  # each script's preamble and steps, the helpers once
    assert sum(HELPERS.rstrip("\n") in text for text in seen) == 1
    assert found[0] == [] and [(f.code, f.line) for f in found[1]] == [
        ("SC2115", _line_of(texts[1][1], "rm -rf $1/*"))]


def test_a_dockerfile_piece_is_read_after_its_from_and_shell() -> None:
    plan = make_plan(Catalog().find("python-venv"), Catalog())
    text = render(plan, "dockerfile")
    parts = lint.pieces(lint.DOCKERFILE, text)
    # the header, its mirror block, the rest of it, the steps, the trailer (manifest, labels)
    assert len(parts) == 5 and [p.prelude for p in parts] == [0, 2, 2, 2, 2]
    assert parts[1].text.splitlines()[2].startswith("# Mirror profile ")
    assert parts[2].text.splitlines()[2].startswith("# pip and uv retry")
    assert parts[4].text.splitlines()[2].startswith("# [envkit] What the image holds")
    for part in parts[1:]:
        assert part.text.startswith("FROM ") and "SHELL [" in part.text.splitlines()[1]
    bad = text.replace("RUN envkit_record_installed", "RUN cd /tmp && envkit_record_installed")
    [findings] = lint.lint_texts([(lint.DOCKERFILE, bad)], use_cache=False)
    assert [(f.code, f.line) for f in findings] == [
        ("DL3003", _line_of(bad, "RUN cd /tmp && envkit_record_installed"))]


def test_findings_are_cached_by_content_and_linter(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "#!/usr/bin/env bash\nrm -rf $1/*\n"
    first = lint.lint_texts([(lint.SHELL, bad)], cache=tmp_path)
    assert any(f.code == "SC2115" for f in first[0])

    def no_linter(files: list[Path]) -> list[lint.Finding]:
        raise AssertionError("linted again")

    monkeypatch.setattr(lint, "shellcheck", no_linter)
    monkeypatch.setattr(lint, "bash_n", no_linter)
    assert lint.lint_texts([(lint.SHELL, bad)], cache=tmp_path) == first  # from the cache
    with pytest.raises(AssertionError, match="linted again"):  # new content: linted
        lint.lint_texts([(lint.SHELL, bad + "echo\n")], cache=tmp_path)
    with pytest.raises(AssertionError, match="linted again"):  # no cache: linted
        lint.lint_texts([(lint.SHELL, bad)], use_cache=False)


def test_a_changed_linter_config_is_a_cache_miss(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = lint._tools_key()
    rc = tmp_path / ".shellcheckrc"
    rc.write_text("shell=bash\ndisable=SC2115\n")
    real = lint.config
    monkeypatch.setattr(lint, "config", lambda name: rc if name == ".shellcheckrc" else real(name))
    assert lint._tools_key() != before


def test_identical_pieces_are_linted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two mirror variants differ before their steps only: their steps are linted once."""
    catalog = Catalog()
    recipe = catalog.find("faiss-cpu")
    texts = [(lint.SHELL, render(make_plan(recipe, catalog, {}, m), "shell"))
             for m in ("default", "tuna")]
    a, b = (lint.pieces(k, t, HELPERS) for k, t in texts)
    differ = [(p, q) for p, q in zip(a, b, strict=True) if p.key != q.key]
    assert len(differ) == 1 and differ[0][0].text.startswith("# Mirror profile default")
    assert differ[0][1].text.startswith("# Mirror profile tuna")
    # Dockerfiles: the mirror block and the trailer (the labels name the mirror and hash)
    docker = [lint.pieces(lint.DOCKERFILE, render(make_plan(recipe, catalog, {}, m),
                                                  "dockerfile")) for m in ("default", "tuna")]
    assert [p.key == q.key for p, q in zip(*docker, strict=True)] == [True, False, True, True,
                                                                      False]


def test_a_two_stage_dockerfile_shares_its_pieces_and_reads_each_in_its_stage() -> None:
    """The runtime stage repeats the header's mirror block: cut there too, so mirror
    variants differ only in their mirror blocks and trailers; a piece of the runtime stage
    is read after both stages' FROM and SHELL (COPY --from=build names an earlier stage)."""
    catalog = Catalog()
    recipe = catalog.find("faiss-src")
    docker = [lint.pieces(lint.DOCKERFILE, render(make_plan(recipe, catalog, {}, m),
                                                  "dockerfile")) for m in ("default", "tuna")]
    differ = [p.text.splitlines()[p.prelude] for p, q in zip(*docker, strict=True)
              if p.key != q.key]
    assert [line.split(":")[0] for line in differ] == [
        "# Mirror profile default", "# Mirror profile default",
        "# [envkit] What the image holds"]
    copies = next(p for p in docker[0] if "COPY --from=build" in p.text)
    assert [line.split(" AS ")[-1] for line in copies.text.splitlines()[:copies.prelude]
            if line.startswith("FROM ")] == ["build", "runtime"]
    [findings] = lint.lint_texts([(lint.DOCKERFILE, render(make_plan(recipe, catalog),
                                                          "dockerfile"))], use_cache=False)
    assert findings == []
