"""Hostile recipe files: each is refused with a few one-line diagnostics, or is a recipe.

Three parts: a corpus of hostile files run through the real CLI (``envkit validate`` and
``envkit render --out``), regressions for what the corpus and the fuzzers found, and
hypothesis fuzzers that load, plan and render generated and mutated recipes in-process.

The fuzzers run ``ENVKIT_FUZZ_EXAMPLES`` examples each (default 200); a long run:
``ENVKIT_FUZZ_EXAMPLES=5000 python -m pytest tests/test_hostile.py -k fuzz``.
How long each corpus file takes is measured in ``tests/test_bench.py`` (on demand), never
asserted here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import REPO, problems, run_cli
from envkit.checks import CHECKS
from envkit.cli.tasks import MAX_PROBLEMS
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.load.yamlsrc import MAX_BYTES, MAX_NODES, MAX_SCALAR
from envkit.plan import Plan, make_plan
from envkit.render import FORMATS, render
from envkit.steps import REGISTRY

MAX_LINES = MAX_PROBLEMS + 1  # the CLI prints the first problems, then how many more
HEADER = "name: {name}\ndescription: hostile\nversion: 1.0.0\nbase: debian:bookworm-slim\n"
VALID = "(valid)"  # the expected outcome of a file that is a recipe after all


def diag_line(file: str) -> re.Pattern[str]:
    """One diagnostic: the file, LINE:COL when known, a field path and a message."""
    return re.compile(rf"{re.escape(file)}(:[1-9]\d*:[1-9]\d*)?: \S.*: \S.*")


# --- the corpus -----------------------------------------------------------------------------


@dataclass
class Hostile:
    name: str
    path: Path
    expect: str  # a fragment of the one diagnostic that matters, or VALID


def _bomb(width: int, depth: int, indent: str = "", key: str = "l") -> str:
    """Billion laughs: each level is a list of ``width`` aliases of the level below."""
    lines = [f"{indent}{key}0: &{key}0 [{', '.join(['lol'] * width)}]"]
    for i in range(1, depth):
        lines.append(f"{indent}{key}{i}: &{key}{i} [{', '.join([f'*{key}{i - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def _texts(marker: Path) -> dict[str, tuple[bytes | str, str]]:
    """name -> (file content, what its diagnostic says)."""
    h = HEADER.format
    big = "expands to more than"
    deep = "nesting deeper than 64 levels"
    too_big = f"file is larger than {MAX_BYTES // 1024} KiB"
    tag = "is not allowed (plain YAML only)"
    empty = "the file is empty"
    out: dict[str, tuple[bytes | str, str]] = {
        # alias bombs
        "lol-9x9": (_bomb(9, 9), big),
        "lol-2x40": (_bomb(2, 40), big),
        "lol-100x3": (_bomb(100, 3), big),
        "lol-1000x2": (_bomb(1000, 2), big),
        "lol-in-steps": (h(name="lol-in-steps") + "steps:\n" + "".join(
            f"  - apt: &a{i} [{', '.join(['git'] * 9 if i == 0 else [f'*a{i - 1}'] * 9)}]\n"
            for i in range(9)), big),
        "lol-in-params": (h(name="lol-in-params") + "params:\n" + "".join(
            f"  p{i}: {{type: choice, default: x, values: &p{i} "
            f"[{', '.join(['x'] * 10 if i == 0 else [f'*p{i - 1}'] * 10)}]}}\n"
            for i in range(6)), big),
        # nesting
        "nest-flow-seq-5000": ("[" * 5000 + "]" * 5000, deep),
        "nest-flow-seq-100000": ("[" * 100_000 + "]" * 100_000, deep),
        "nest-flow-map-5000": ("{a: " * 5000 + "x" + "}" * 5000, deep),
        "nest-flow-map-50000": ("{a:" * 50_000 + "x" + "}" * 50_000, deep),
        "nest-flow-map-100000": ("{a:" * 100_000 + "x" + "}" * 100_000, too_big),
        "nest-flow-mixed-5000": ("[{a: " * 2500 + "x" + "}]" * 2500, deep),
        "nest-block-seq-5000": ("- " * 5000 + "x\n", deep),
        "nest-block-seq-100000": ("- " * 100_000 + "x\n", deep),
        "nest-block-seq-indented-700": ("".join(" " * i + "-\n" for i in range(700)), deep),
        "nest-block-map-700": ("".join(" " * i + "a:\n" for i in range(700)), deep),
        "nest-block-map-5000": ("".join(" " * i + "a:\n" for i in range(5000)), too_big),
        "nest-in-steps": (h(name="nest-in-steps") + "steps:\n  - run: " + "[" * 5000, deep),
        # size
        "over-limit-by-one": ("#" * MAX_BYTES + "\n", too_big),
        "huge-single-line": ("description: " + "x" * (MAX_BYTES - 100) + "\n",
                             f"value is longer than {MAX_SCALAR} characters"),
        "string-10mb": (h(name="string-10mb") + "env:\n  A: " + "x" * 10_000_000 + "\n",
                        too_big),
        "string-70kb": (h(name="string-70kb") + "env:\n  A: " + "x" * 70_000 + "\n",
                        f"value is longer than {MAX_SCALAR} characters"),
        "string-60kb-name": ("name: " + "x" * 60_000 + "\ndescription: d\nversion: 1.0.0\n"
                             "base: debian:bookworm-slim\n", "a name is up to 100"),
        "string-60kb-version": (h(name="string-60kb-version").replace("1.0.0", "'" + "1" * 60_000
                                                                      + "'"),
                                "not a valid version"),
        "string-60kb-pip": (h(name="string-60kb-pip") + "steps:\n  - venv: {path: /opt/v}\n"
                            "  - pip: ['paddlepaddle==" + "1" * 60_000 + "']\n",
                            "does not exist"),
        "million-item-flow-list": ("steps: [" + "1," * 1_000_000 + "1]\n", too_big),
        "many-items-under-limit": ("steps: [" + "1," * 100_000 + "1]\n",
                                   f"more than {MAX_NODES} nodes"),
        "many-keys-under-limit": ("".join(f"k{i}: 1\n" for i in range(20_000)),
                                  f"more than {MAX_NODES} nodes"),
        "many-mistakes": (h(name="many-mistakes") + "steps:\n" + "  - 1\n" * 2000,
                          "more problems not shown"),
        # duplicate keys
        "duplicate-top": (h(name="duplicate-top") + "name: again\n", "duplicate key"),
        "duplicate-nested": (h(name="duplicate-nested") + "steps:\n  - pip:\n"
                             "      packages: [numpy]\n      packages: [scipy]\n",
                             "duplicate key"),
        "duplicate-param": (h(name="duplicate-param") + "params:\n  p: {type: int, default: 1}"
                            "\n  p: {type: int, default: 2}\n", "duplicate key"),
        "duplicate-many": ("a: 1\n" * 2000, "more problems not shown"),
        # tags
        "tag-python-apply": (h(name="tag-python-apply") + "steps:\n  - run: !!python/object/"
                             f"apply:os.system ['touch {marker}']\n", tag),
        "tag-python-apply-map": (h(name="tag-python-apply-map") + "steps:\n  - run: !!python/"
                                 f"object/apply:os.system {{args: ['touch {marker}']}}\n", tag),
        "tag-python-name": (h(name="tag-python-name") + "x: !!python/name:os.system ''\n", tag),
        "tag-python-module": (h(name="tag-python-module") + "x: !!python/module:os ''\n", tag),
        "tag-python-new": (h(name="tag-python-new") + "x: !!python/object/new:os.system "
                           f"['touch {marker}']\n", tag),
        "tag-python-object": (h(name="tag-python-object") + "x: !!python/object:os.Foo {a: 1}\n",
                              tag),
        "tag-python-tuple": (h(name="tag-python-tuple") + "x: !!python/tuple [1, 2]\n", tag),
        "tag-python-on-key": (h(name="tag-python-on-key").replace(
            "name:", "!!python/name:os.system name:"), tag),
        "tag-verbatim": (h(name="tag-verbatim") + "x: !<tag:yaml.org,2002:python/name:os.system>"
                         " ''\n", tag),
        "tag-directive": (f"%TAG !py! tag:yaml.org,2002:python/\n---\n{h(name='tag-directive')}"
                          "x: !py!name:os.system ''\n", tag),
        "tag-binary": (h(name="tag-binary") + "x: !!binary aGk=\n", tag),
        "tag-set": (h(name="tag-set") + "x: !!set {a: null}\n", tag),
        "tag-omap": (h(name="tag-omap") + "x: !!omap [{a: 1}]\n", tag),
        "tag-custom": (h(name="tag-custom") + "x: !foo bar\n", tag),
        "tag-bad-int": (h(name="tag-bad-int") + "x: !!int one\n", "'one' is not a valid int"),
        # encodings and bytes
        "latin-1": (h(name="latin-1").replace("hostile", "café").encode("latin-1"),
                    "not UTF-8: byte 0xe9"),
        "invalid-continuation": (b"name: a\xc3\x28b\n", "not UTF-8: byte 0xc3"),
        "overlong": (b"name: \xc0\xaf\n", "not UTF-8: byte 0xc0"),
        "truncated-at-eof": (b"name: \xe6\x97", "not UTF-8: byte 0xe6"),
        "surrogate-bytes": (b"name: \xed\xa0\x80\n", "not UTF-8: byte 0xed"),
        "utf-16-bom": (h(name="utf-16-bom").encode("utf-16"), "not UTF-8: byte 0xff"),
        "utf-16-be-bom": (("\ufeff" + h(name="utf-16-be-bom")).encode("utf-16-be"),
                          "not UTF-8: byte 0xfe"),
        "utf-16-no-bom": (h(name="utf-16-no-bom").encode("utf-16-le"),
                          r"control character '\x00' is not allowed"),
        "utf-32": (h(name="utf-32").encode("utf-32"), "not UTF-8: byte 0xff"),
        "nul-byte": (b"name: a\x00b\n", r"control character '\x00' is not allowed"),
        "nul-escaped": (h(name="nul-escaped") + 'env:\n  A: "x\\0y"\n', "NUL characters"),
        "escape-byte": (b"name: a\x1bb\n", "control character"),
        "bom-alone": (b"\xef\xbb\xbf", empty),
        # empty and not a mapping
        "empty": (b"", empty),
        "whitespace": ("   \n\n  \n", empty),
        "comment-only": ("# a recipe\n# and nothing else\n", empty),
        "document-start-only": ("---\n", empty),
        "document-end-only": ("...\n", "invalid YAML"),
        "top-list": ("- name: a\n- name: b\n", "a recipe must be a mapping, got a list"),
        "top-scalar": ("hello\n", "a recipe must be a mapping, got a string"),
        "top-number": ("3.14\n", "a recipe must be a mapping, got a number"),
        "top-bool": ("true\n", "a recipe must be a mapping, got a boolean"),
        "top-null": ("null\n", "a recipe must be a mapping, got nothing"),
        # keys
        "key-mapping": (h(name="key-mapping") + "{a: 1}: 2\n", "a mapping key must be"),
        "key-list": (h(name="key-list") + "[a, b]: 1\n", "a mapping key must be"),
        "key-complex": (h(name="key-complex") + "? [a, b]\n: 1\n", "a mapping key must be"),
        "key-empty": (h(name="key-empty") + "? \n: 1\n", "['']: unknown key ''"),
        "key-blank": (h(name="key-blank") + "' ': 1\n", "[' ']: unknown key ' '"),
        "key-too-long": (h(name="key-too-long") + "k" * 2000 + ": 1\n", "invalid YAML"),
        # anchors
        "anchor-self-list": ("a: &a [*a]\n", deep),
        "anchor-self-map": ("a: &a {b: *a}\n", deep),
        "anchor-undefined": (h(name="anchor-undefined") + "x: *nope\n", "undefined alias"),
        "anchor-duplicate": (h(name="anchor-duplicate") + "x: &a 1\ny: &a 2\n",
                             "duplicate anchor"),
        "merge-key": (h(name="merge-key") + "steps:\n  - &s {apt: [git]}\n  - <<: *s\n",
                      "merge keys"),
        # documents and layout
        "two-documents": (h(name="two-documents") + "---\nname: b\n",
                          "more than one YAML document"),
        "many-documents": ("---\na: 1\n" * 20_000, "more than one YAML document"),
        "tab-indent": (h(name="tab-indent") + "steps:\n\t- apt: [git]\n", "invalid YAML"),
        "unclosed-flow": (h(name="unclosed-flow") + "steps: [a, b\n", "invalid YAML"),
        "unclosed-quote": (h(name="unclosed-quote") + "x: 'abc\n", "invalid YAML"),
        # regexes a recipe brings along
        "redos-pattern": (h(name="redos-pattern") + "params:\n  p: {type: string, pattern: "
                          "'(a+)+$', default: '" + "a" * 40 + "b'}\n", "takes too long"),
        "regex-overflow": (h(name="regex-overflow") + "params:\n  p: {type: string, pattern: "
                           "'a{99999999999}', default: a}\n", "not a valid regular expression"),
        "regex-recursion": (h(name="regex-recursion") + "params:\n  p: {type: string, pattern: '"
                            + "(" * 1000 + ")" * 1000 + "', default: a}\n",
                            "not a valid regular expression"),
        "output-regex-overflow": (h(name="output-regex-overflow") + "verify:\n  - command: "
                                  "{argv: ['true'], output: 'a{99999999999}'}\n",
                                  "not a valid regular expression"),
        # valid after all
        "crlf": (h(name="crlf").replace("\n", "\r\n") + "steps:\r\n  - apt: [git]\r\n", VALID),
        "string-60kb-description": (h(name="string-60kb-description").replace(
            "hostile", "x" * 60_000), VALID),
        "padded-to-the-limit": (h(name="padded-to-the-limit") + "steps:\n  - apt: [git]\n", VALID),
    }
    padded = out["padded-to-the-limit"][0]
    assert isinstance(padded, str)
    out["padded-to-the-limit"] = (padded + "#" * (MAX_BYTES - len(padded) - 1) + "\n", VALID)
    return out


SPECIAL: dict[str, tuple[Callable[[Path], object], str]] = {
    "directory": (Path.mkdir, "Is a directory"),
    "fifo": (os.mkfifo, "not a regular file"),  # must not hang on open
    "symlink-loop": (lambda p: p.symlink_to(p.name), "Too many levels of symbolic links"),
    "dangling-symlink": (lambda p: p.symlink_to("nowhere.yaml"), "No such file"),
    "missing": (lambda p: None, "No such file"),
}
# Unreadable by permissions is left out: the tests run as root, which reads anything.


def make_corpus(folder: Path, marker: Path) -> list[Hostile]:
    """Every hostile file of the corpus, made in ``folder``; ``marker`` is a file that a
    command smuggled into a recipe would create."""
    folder.mkdir(parents=True, exist_ok=True)
    corpus = []
    for name, (content, expect) in _texts(marker).items():
        path = folder / f"{name}.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        corpus.append(Hostile(name, path, expect))
    for name, (make, expect) in SPECIAL.items():
        path = folder / f"{name}.yaml"
        make(path)
        corpus.append(Hostile(name, path, expect))
    corpus.append(Hostile("device", Path("/dev/zero"), "not a regular file"))
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Hostile], Path]:
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "ran"
    return {c.name: c for c in make_corpus(folder / "files", marker)}, marker


NAMES = [*_texts(Path("/unused")), *SPECIAL, "device"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("envkit", *args)


def assert_refused(result: subprocess.CompletedProcess[str], case: Hostile) -> None:
    """Exit 1, no traceback, a few lines, each a diagnostic naming the file, the expected
    one among them. A valid file (CRLF line ends, say) exits 0."""
    assert "Traceback" not in result.stdout + result.stderr
    if case.expect == VALID:
        assert result.returncode == 0, result.stderr[:2000]
        return
    assert result.returncode == 1, result.stderr[:2000]
    lines = result.stderr.splitlines()
    assert 1 <= len(lines) <= MAX_LINES, lines[:3]
    names = [str(case.path), os.path.realpath(case.path)]
    for line in lines:
        assert any(diag_line(n).fullmatch(line) for n in names), repr(line[:300])
        assert len(line) < 2000
    assert case.expect in result.stderr, result.stderr[:2000]


@pytest.mark.parametrize("name", NAMES)
def test_cli_validate_refuses(name: str, corpus: tuple[dict[str, Hostile], Path]) -> None:
    files, marker = corpus
    assert_refused(cli("validate", "--recipe", str(files[name].path)), files[name])
    assert not marker.exists(), "a recipe ran a command"


@pytest.mark.parametrize("name", NAMES)
def test_cli_render_refuses_and_writes_nothing(name: str, tmp_path: Path,
                                              corpus: tuple[dict[str, Hostile], Path]) -> None:
    files, marker = corpus
    out = tmp_path / "out"
    result = cli("render", "--recipe", str(files[name].path), "--out", str(out))
    assert_refused(result, files[name])
    assert not marker.exists(), "a recipe ran a command"
    if files[name].expect == VALID:
        assert (out / "Dockerfile").is_file()
    else:
        assert result.stdout == ""
        assert not out.exists() or not any(out.iterdir())


# --- regressions, in-process ----------------------------------------------------------------


def test_a_tag_on_a_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("!!python/name:os.system " + HEADER.format(name="t"))
    assert [line.split(": ", 1)[1] for line in problems(path)] == [
        "(top): tag 'tag:yaml.org,2002:python/name:os.system' is not allowed (plain YAML only)"]


def test_a_python_of_4400_digits_is_no_crash(tmp_path: Path) -> None:
    # Python refuses to convert more than 4300 digits to an int; packaging's Version tries
    path = tmp_path / "t.yaml"
    path.write_text(HEADER.format(name="t") + "steps:\n  - venv: {path: /opt/v, python: '3."
                    + "1" * 4400 + "'}\n  - pip: ['paddlepaddle==3.3.1']\n")
    assert problems(path) == []


def test_a_base_by_that_is_not_a_name_is_no_crash(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(HEADER.format(name="t").replace("debian:bookworm-slim", "{by: []}"))
    assert [line.split(": ", 1)[1] for line in problems(path)] == [
        "base.by: expected string, got list"]


def test_a_version_on_two_lines_is_refused_on_load(tmp_path: Path) -> None:
    # packaging's Version strips the newline; the Dockerfile label would not take it
    path = tmp_path / "t.yaml"
    path.write_text(HEADER.format(name="t").replace("1.0.0", "|\n  1.0.0"))
    assert [line.split(": ", 1)[1] for line in problems(path)] == [
        "version: must not contain control characters or newlines (PEP 440, e.g. '1.0.0')"]


def test_a_long_value_is_clipped_in_the_message(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("name: " + "X" * 60_000 + "\n")
    lines = [line for line in problems(path) if "a name is" in line]
    assert len(lines) == 1 and len(lines[0]) < 700 and "XXX...XXX" in lines[0]


# --- fuzzing --------------------------------------------------------------------------------

FUZZ = settings(max_examples=int(os.environ.get("ENVKIT_FUZZ_EXAMPLES", "200")),
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

ODD = st.sampled_from([
    "\x00", "\x01", "\x07", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1b", "\x7f", "\x85",
    "\xa0", "\u2028", "\u2029", "\ufeff", "\ud800", "\udfff", "\U0001f600", "日本", "é",
    "'", '"', "\\", "$", "`", "{", "}", "[", "]", ":", ": ", "#", " #", "&", "*", "!", "|",
    ">", "%", "@", ",", "-", "- ", "?", "~", " ", "  ", "{{", "}}", "{%", "<<",
])
# Values a recipe really holds, so that some generated recipes plan.
PLAUSIBLE = st.sampled_from([
    "{{ python }}", "{{ prefix }}", "{{ cache }}", "{{ p }}", "{{ prefix }}/venv", "3.11",
    "3.10", "3.12", "1.0.0", "/opt/envkit/venv", "/opt/envkit/src", "/opt/envkit/a.tar.gz",
    "numpy", "numpy==2.1.3", "paddlepaddle==3.3.1", "torch==2.5.1+cu121", "faiss-cpu>=1",
    "git", "curl", "https://example.com/a.tar.gz", "https://github.com/a/b.git", "main",
    "a" * 64, "0" * 40, "debian:bookworm-slim", "0755", "a.txt", "echo hi", "make -j4",
    "python", "true", "--no-deps", "PATH", "${PATH}:/opt/bin", "$HOME", "$$",
])
# Values that are wrong in some way: placeholders, numbers as text, regexes that explode.
ODDITIES = st.sampled_from([
    "{{ nosuch }}", "{{ a b }}", "{{ p|upper }}", "{% if x %}", "{# c #}", "$(touch PWNED)",
    "`id`", "=>1", "2.7", "yes", "no", "on", "~", "null", "1e3", "0x1F", "0o17", ".inf",
    ".nan", "2024-01-01", "(a+)+$", "a{99999999999}", "[", "*", "-rf", "../../etc/passwd",
]) | st.integers(4301, 4400).map(lambda n: "1" * n) | st.just("9" * 4400 + ".1")
TEXT = st.lists(st.text(max_size=6) | ODD | PLAUSIBLE | ODDITIES, max_size=5).map("".join)
SCALAR = (TEXT | st.integers() | st.floats() | st.booleans() | st.none()
          | st.sampled_from([2**64, -(2**63), 10**30, 1e308, -0.0]))
KEY = TEXT | st.integers(-3, 3) | st.booleans() | st.none()
VALUE = st.recursive(SCALAR, lambda kids: st.lists(kids, max_size=4)
                     | st.dictionaries(KEY, kids, max_size=4), max_leaves=10)


def mostly(sane: st.SearchStrategy[Any], wild: st.SearchStrategy[Any] = VALUE
           ) -> st.SearchStrategy[Any]:
    """``sane`` seven times in eight, else anything (``wild``)."""
    return st.integers(0, 7).flatmap(lambda i: wild if i == 0 else sane)


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that mostly fit a kind's schema fragment, with hostile text in the strings."""
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    if "enum" in schema or "const" in schema:
        return st.sampled_from(schema.get("enum") or [schema["const"]])
    kinds = schema.get("type") or ["string", "integer", "boolean"]
    out: list[st.SearchStrategy[Any]] = []
    for t in [kinds] if isinstance(kinds, str) else kinds:
        if t == "string":
            out.append(mostly(PLAUSIBLE, TEXT))
        elif t in ("integer", "number"):
            out.append(st.integers(-1, 300) | (st.floats(0, 10) if t == "number" else st.nothing()))
        elif t == "boolean":
            out.append(st.booleans())
        elif t == "array":
            out.append(st.lists(from_schema(schema.get("items", {})), min_size=1, max_size=3))
        elif "properties" in schema:
            props, required = schema["properties"], schema.get("required", [])
            out.append(st.fixed_dictionaries(
                {k: from_schema(props[k]) for k in required},
                optional={k: from_schema(v) for k, v in props.items() if k not in required}))
        else:
            out.append(st.dictionaries(st.sampled_from(["A", "PATH", "B_1", "X:BOOL"]) | TEXT,
                                       from_schema(schema.get("additionalProperties", {})),
                                       max_size=3))
    return st.one_of(out)


FITTING = {k: mostly(from_schema(cls.schema())) for k, cls in {**REGISTRY, **CHECKS}.items()}


@st.composite
def items(draw: st.DrawFn, kinds: dict[str, Any]) -> Any:
    """A step or a check: a real kind whose fields mostly fit its schema, sometimes a
    made-up kind, extra keys, a name, a ``when``."""
    kind = draw(mostly(st.sampled_from(sorted(kinds)), KEY))
    item: dict[Any, Any] = {kind: draw(FITTING.get(kind, VALUE))}
    item.update(draw(st.fixed_dictionaries({}, optional={
        "name": mostly(PLAUSIBLE, TEXT),
        "when": mostly(st.dictionaries(st.sampled_from(["p", "python"]) | KEY, SCALAR,
                                       max_size=2))})))
    item.update(draw(mostly(st.just({}), st.dictionaries(
        st.sampled_from(sorted(kinds)) | KEY, VALUE, max_size=1))))
    return draw(mostly(st.just(item)))


PARAM = st.fixed_dictionaries(
    {"type": mostly(st.sampled_from(["string", "int", "bool", "choice"])),
     "default": mostly(PLAUSIBLE | st.integers(0, 9) | st.booleans()) | SCALAR},
    optional={"values": mostly(st.lists(PLAUSIBLE | st.integers(0, 9), max_size=4)),
              "description": TEXT, "pattern": mostly(st.sampled_from(["[a-z0-9.]+", "v[0-9]+"]))
              | TEXT, "x": VALUE})
TOP = ["name", "description", "version", "base", "params", "requires", "env", "steps",
       "verify"]

RECIPE = st.fixed_dictionaries({
    "name": mostly(st.just("fuzz")),
    "description": mostly(st.just("a fuzzed recipe"), TEXT | VALUE),
    "version": mostly(st.sampled_from(["1.0.0", "2", "0.1.dev1"])),
    "base": mostly(st.just("debian:bookworm-slim") | st.fixed_dictionaries(
        {"by": mostly(st.just("p"))}, optional={"a": PLAUSIBLE, "b": TEXT})),
}, optional={
    "params": mostly(st.dictionaries(mostly(st.sampled_from(["p", "python"]), KEY),
                                     mostly(PARAM), max_size=3)),
    "requires": mostly(st.lists(st.sampled_from(["python-venv", "build-essentials", "fuzz",
                                                 "nosuch"]) | TEXT, max_size=2)),
    "env": mostly(from_schema(REGISTRY["env"].schema())),
    "steps": mostly(st.lists(items(REGISTRY), max_size=5)),
    "verify": mostly(st.lists(items(CHECKS), max_size=3)),
}).flatmap(lambda top: st.tuples(st.dictionaries(KEY, VALUE, max_size=1),
                                 mostly(st.just(()), st.sets(st.sampled_from(TOP)))).map(
    lambda more: {k: v for k, v in {**top, **more[0]}.items() if k not in more[1]}))

COMPAT = Catalog().compat_table()  # parsing compat.yaml takes 0.2 s; the table is read-only


def outcome(path: Path) -> Plan | EnvkitError:
    """Load, plan and render ``path``: a Plan, or an EnvkitError whose every line is a
    diagnostic naming the file. Anything else (a traceback) fails the test."""
    catalog = Catalog()
    catalog._compat = COMPAT
    try:
        plan = make_plan(catalog.load(path), catalog)
        for fmt in FORMATS:
            render(plan, fmt)
        return plan
    except EnvkitError as exc:
        assert exc.diagnostics, "an EnvkitError without a diagnostic"
        for diag in exc.diagnostics:
            line = str(diag)
            assert "\n" not in line and "\r" not in line, repr(line)
            assert diag_line(str(path)).fullmatch(line), repr(line[:500])
        return exc


def check_bytes(data: bytes, name: str = "fuzz") -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp).resolve() / f"{name}.yaml"
        path.write_bytes(data)
        (path.parent / "a.txt").write_text("for copy steps\n")
        result = outcome(path)
    # --hypothesis-show-statistics tells how many were recipes, and the first problems
    if isinstance(result, Plan):
        event("a plan")
    else:
        first = result.diagnostics[0]
        gist = re.sub(r"'.*|[0-9]+|[(].*", "", first.message)[:40]
        event(ascii(f"refused: {first.path[:20]} {gist}"))  # a lone surrogate breaks pytest


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate makes invalid UTF-8


def dump(data: Any, flow: bool, unicode: bool, width: int) -> str:
    return yaml.safe_dump(data, default_flow_style=flow, allow_unicode=unicode, width=width,
                          sort_keys=False)


@FUZZ
@given(RECIPE, st.booleans(), st.booleans(), st.integers(20, 200))
def test_fuzz_dumped_recipes(data: dict[Any, Any], flow: bool, unicode: bool,
                             width: int) -> None:
    check_bytes(encode(dump(data, flow, unicode, width)))


@st.composite
def emitted(draw: st.DrawFn, value: Any, indent: int = 0) -> str:
    """YAML written by hand, in spellings safe_dump never uses: plain text that YAML may
    read as something else, single and double quotes, block scalars, flow and block
    collections, odd indentation, anchors, comments."""
    pad = " " * indent
    step = draw(st.integers(1, 4))
    if isinstance(value, dict) and value and draw(st.booleans()):
        lines = []
        for k, v in value.items():
            key = draw(emitted(k if isinstance(k, str) else str(k), indent))
            body = draw(emitted(v, indent + step))
            sep = "\n" if body.startswith((" ", "-")) or "\n" in body else " "
            lines.append(f"{pad}{key.strip()}:{sep}{body}")
        return "\n".join(lines)
    if isinstance(value, list) and value and draw(st.booleans()):
        return "\n".join(f"{pad}- {draw(emitted(v, indent + 2)).lstrip()}" for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=draw(st.booleans()), default=str)
    text = value if isinstance(value, str) else json.dumps(value)
    style = draw(st.sampled_from(["plain", "single", "double", "literal", "anchor"]))
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    if style == "double":
        return json.dumps(text, ensure_ascii=draw(st.booleans()))
    if style == "literal" and indent:
        return "|\n" + "\n".join(pad + line for line in text.split("\n"))
    if style == "anchor":
        return f"&a{draw(st.integers(0, 3))} {text}"
    return text + draw(st.sampled_from(["", "", " # c", "  ", "\t"]))


@FUZZ
@given(RECIPE.flatmap(emitted), st.booleans())
def test_fuzz_hand_written_yaml(text: str, crlf: bool) -> None:
    check_bytes(encode(text.replace("\n", "\r\n") if crlf else text + "\n"))


SNIPPETS = st.sampled_from([
    "&a ", "*a", "&a [*a, *a]", "!!python/name:os.system ", "!!python/object/apply:os.system ",
    "!!binary ", "!foo ", "<<: *a\n", "\t", "{", "}", "[", "]", "? ", "- ", ": ", "---\n",
    "...\n", "%TAG ! tag:x,2002:\n", "%YAML 1.1\n", "\x00", "\ufeff", "'", '"', "#", "|", ">",
    "\\", "\r", "\x85", "\u2028", "~", "null", "{{ nosuch }}", "{% x %}", "[" * 70,
    "name: again\n",
]) | ODDITIES


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few lines deleted, repeated, swapped, re-indented or spliced."""
    lines = text.split("\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "repeat", "swap", "indent", "dedent", "splice"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = " " * draw(st.integers(1, 5)) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip()
        else:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(SNIPPETS) + lines[i][at:]
    return "\n".join(lines)


@FUZZ
@given(st.tuples(RECIPE, st.booleans()).flatmap(
    lambda a: mutated(dump(a[0], a[1], True, 80))))
def test_fuzz_mutated_yaml_text(text: str) -> None:
    check_bytes(encode(text))


RECIPES = {p.stem: p.read_bytes() for p in sorted((REPO / "recipes").glob("*.yaml"))
           if p.name != "compat.yaml"}
BYTES = st.sampled_from([b"\x00", b"\xff", b"\xc3", b"\t", b"\r", b"\n", b"\r\n", b" ", b"{",
                         b"[", b"&a ", b"*a", b"!", b"'", b'"', b":", b"- ", b"#", b"\xef\xbb\xbf"])


@st.composite
def corrupted(draw: st.DrawFn) -> tuple[str, bytes]:
    """A catalog recipe with bytes flipped, inserted, deleted or repeated."""
    name = draw(st.sampled_from(sorted(RECIPES)))
    data = bytearray(RECIPES[name])
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "repeat"]))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[i:i] = draw(BYTES | st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 40))]
        else:
            data[i:i] = data[i:i + draw(st.integers(1, 80))]
        if not data:
            data = bytearray(b"x")
    return name, bytes(data)


@FUZZ
@given(corrupted())
def test_fuzz_corrupted_catalog_recipes(recipe: tuple[str, bytes]) -> None:
    name, data = recipe
    check_bytes(data, name)
