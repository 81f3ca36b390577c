"""The YAML loader: positions, and hostile documents refused fast with one line each."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from envkit.diagnostics import EnvkitError
from envkit.load.yamlsrc import MAX_BYTES, load_file, load_text


def one_error(text: str) -> str:
    start = time.perf_counter()
    with pytest.raises(EnvkitError) as exc:
        load_text(text, "h.yaml")
    elapsed = time.perf_counter() - start
    [diag] = exc.value.diagnostics
    line = str(diag)
    assert "\n" not in line and line.startswith("h.yaml:")
    # generous bound: a hostile file must not hang the loader (real figure ~0.1 s)
    assert elapsed < 10
    return line


def test_positions_of_values_and_keys() -> None:
    doc = load_text("a:\n  - x\n  - {b: 2}\n", "p.yaml")
    assert doc.data == {"a": ["x", {"b": 2}]}
    assert doc.where(("a", 1, "b")) == (3, 9)
    assert doc.where(("a", 1, "b"), key=True) == (3, 6)
    assert doc.where(("a", 0)) == (2, 5)
    assert doc.where(("a", 7, "zzz")) == (2, 3)  # nearest known ancestor


def test_alias_bomb() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    assert "expands to more than" in one_error("\n".join(lines) + "\n")


@pytest.mark.parametrize("text", ["[" * 20000 + "]" * 20000,
                                  "".join(" " * i + "- \n" for i in range(500))])
def test_deep_nesting(text: str) -> None:
    assert "nesting deeper than 64 levels" in one_error(text)


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['touch PWNED']",
                                 "!!python/name:os.system", "!!binary aGk=", "!!set {x}",
                                 "!custom x"])
def test_non_plain_tags(tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "is not allowed" in one_error(f"a: {tag}\n")
    assert not (tmp_path / "PWNED").exists()


def test_merge_keys_and_duplicates() -> None:
    assert "merge keys" in one_error("base: &b {x: 1}\nother:\n  <<: *b\n")
    expected = "h.yaml:3:1: a: duplicate key (first defined at line 1)"
    assert one_error("a: 1\nb: 2\na: 3\n") == expected


def test_other_hostile_shapes(tmp_path: Path) -> None:
    assert "NUL" in one_error('a: "x\\0y"\n')
    assert "more than one YAML document" in one_error("a: 1\n---\nb: 2\n")
    assert "longer than" in one_error("a: " + "x" * 70000 + "\n")
    assert "the file is empty" in one_error("# only a comment\n")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: 1\n" * (MAX_BYTES // 5 + 1))
    with pytest.raises(EnvkitError) as exc:
        load_file(big, "big.yaml")
    assert str(exc.value) == f"big.yaml: (file): file is larger than {MAX_BYTES // 1024} KiB"


def test_text_stays_text() -> None:
    doc = load_text("\ufeffday: 2024-01-01\nv: '3.10'\n", "t.yaml")
    assert doc.data == {"day": "2024-01-01", "v": "3.10"}


@pytest.mark.parametrize("text, message", [
    ("version: !!int one\n", "'one' is not a valid int"),
    ("base: !!bool maybe\n", "'maybe' is not a valid bool"),
    ('run: "echo \\ud800"\n', "lone surrogate"),
])
def test_explicit_tags_and_surrogates(text: str, message: str) -> None:
    assert message in one_error(text)


@pytest.mark.parametrize("escape", ["\\U0099999999", "\\U00110000", "\\UFFFFFFFF"])
def test_an_escape_past_the_last_unicode_character_is_a_yaml_error(escape: str) -> None:
    """PyYAML's scanner calls chr() on it and raises ValueError: a line, not a traceback."""
    text = f'name: x\ndescription: "a {escape}"\n'
    assert one_error(text).startswith("h.yaml:2:")
    assert "invalid YAML: an escape names no Unicode character (the last is \\U0010FFFF)" in (
        one_error(text))
