"""envkit.render.quote: each filter checked against the language that reads its output.

Shell words are run through real bash; Dockerfile words are decoded with Docker's
double-quote rules (only ``\\"``, ``\\\\`` and ``\\$`` are escapes, an unescaped
``$`` starts a variable); JSON is decoded with ``json``. The helpers here that
model those readers are shared with test_injection.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from envkit.render import quote
from envkit.render.quote import QuoteError

# --- models of the readers ----------------------------------------------------------------

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # what may show as a line break
# A hostile value some tests hand to bash through the environment: expanding a
# reference to it must never evaluate it.
HOSTILE_ENV = "$(touch PWNED) `touch PWNED` ; touch PWNED"

Parts = list[tuple[str, str]]


def _merge(parts: Parts) -> Parts:
    out: Parts = []
    for kind, text in parts:
        if out and kind == "lit" and out[-1][0] == "lit":
            out[-1] = ("lit", out[-1][1] + text)
        else:
            out.append((kind, text))
    return out


def spec_parts(value: str) -> Parts:
    """An env value as the docs define it, scanned left to right: ``$$`` is a dollar,
    ``${NAME}`` and ``$NAME`` (longest name) are references, everything else is literal."""
    out: Parts = []
    i = 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append(("lit", "$"))
            i += 2
            continue
        m = re.compile(r"\$\{(" + NAME + r")\}").match(value, i) or re.compile(
            r"\$(" + NAME + ")").match(value, i)
        if m:
            out.append(("ref", m.group(1)))
            i = m.end()
        else:
            out.append(("lit", value[i]))
            i += 1
    return _merge(out)


def expand(parts: Parts, env: dict[str, str]) -> str:
    return "".join(text if kind == "lit" else env.get(text, "") for kind, text in parts)


def docker_word_parts(word: str) -> Parts:
    """Decode one double-quoted Dockerfile word (ENV/LABEL) the way Docker's lexer does.

    Fails if the word is not exactly one double-quoted string, or if it holds an
    unescaped ``$`` that is not a ``${NAME}`` reference (Docker would expand it).
    """
    assert len(word) >= 2 and word[0] == '"' and word[-1] == '"', word
    body = word[1:-1]
    out: Parts = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt in ('"', "$", "\\") and nxt:
                out.append(("lit", nxt))
                i += 2
            else:  # Docker keeps a backslash that escapes nothing
                out.append(("lit", "\\"))
                i += 1
        elif ch == '"':
            raise AssertionError(f"unescaped quote inside {word!r}")
        elif ch == "$":
            m = re.compile(r"\$\{(" + NAME + r")\}").match(body, i)
            assert m, f"unescaped $ that Docker would expand in {word!r}"
            out.append(("ref", m.group(1)))
            i = m.end()
        else:
            out.append(("lit", ch))
            i += 1
    return _merge(out)


def bash(command: str, *flags: str, env: dict[str, str] | None = None) -> bytes:
    """stdout of ``bash <flags> -c command`` in a small known environment."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
            "HOME": "/home/envkit test", "REF_A": HOSTILE_ENV}
    done = subprocess.run(["bash", *flags, "-c", command], capture_output=True,
                          env={**base, **(env or {})}, timeout=10, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


# --- strategies ----------------------------------------------------------------------------

# Anything Python can encode, minus NUL (no argv or env can carry it).
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
PLAIN = st.text(st.characters(exclude_categories=["Cs", "Cc"]))  # no control characters
# Pieces that exercise the env-value grammar and the shell's special characters.
TOKENS = st.sampled_from([
    "$$", "$", "${", "}", "$(", ")", "${REF_A}", "$REF_A/", "${UNSET_VAR}", "$UNSET_VAR ",
    "${HOME}", "$HOME:", "$1", "${1}", "${REF_A:-x}", "$$REF_A", "$$$REF_A/", "`", "'", '"',
    "\\", "\\$", "*", "~", "!", ";", "&&", "|", "#", "=", "$(touch PWNED)", "${REF_A",
])
ENV_VALUE = st.lists(st.one_of(PLAIN, TOKENS), max_size=8).map("".join)
KNOWN_REFS = {"REF_A", "HOME", "UNSET_VAR"}


def refs_known(value: str) -> bool:
    return all(text in KNOWN_REFS for kind, text in spec_parts(value) if kind == "ref")


# --- sh ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_sh_round_trips_through_bash(text: str) -> None:
    word = quote.sh(text)
    assert bash("printf %s " + word) == text.encode()


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_sh_never_emits_a_control_character(text: str) -> None:
    # A raw newline would end a Dockerfile line; every control character is escaped.
    assert not CONTROL.search(quote.sh(text))


@pytest.mark.parametrize("text", [
    "", " ", "two words", "it's", "'", "''", '"', "\\", "\\'", "$(touch PWNED)",
    "`touch PWNED`", "; touch PWNED", "&& touch PWNED", "| touch PWNED", "a\nb", "a\tb\r",
    "\x01\x1f\x7f", "*", "?", "[a]", "~", "~root", "{a,b}", "!", "#x", "=x", "-n", "ünï ✓ 日本",
    "\U0001f600", "$'\\n'", "\\x41", "a\\", "\x1b[31m", "a\x01b'c\\d",
])
def test_sh_classic_values_round_trip(text: str) -> None:
    assert bash("printf %s " + quote.sh(text)) == text.encode()
    assert bash("x=" + quote.sh(text) + '; printf %s "$x"') == text.encode()


@pytest.mark.parametrize(("text", "word"), [
    ("numpy==2.1.3", "numpy==2.1.3"),
    ("/opt/envkit/venv", "/opt/envkit/venv"),
    ("-DX=ON", "-DX=ON"),
    ("a@b:c,d%e+f", "a@b:c,d%e+f"),
    ("", "''"),
    ("=x", "'=x'"),  # zsh would expand a leading '='
    ("two words", "'two words'"),
    ("it's", "'it'\\''s'"),
    ("a\nb", "$'a\\nb'"),
    ("t\tr\r", "$'t\\tr\\r'"),
    ("\x01'\\", "$'\\x01\\'\\\\'"),
    (3, "3"),
])
def test_sh_exact_words(text: object, word: str) -> None:
    assert quote.sh(text) == word


def test_sh_rejects_nul() -> None:
    with pytest.raises(QuoteError, match="NUL"):
        quote.sh("a\x00b")


@settings(max_examples=100, deadline=None)
@given(st.lists(TEXT, min_size=1, max_size=5))
def test_sh_words_are_one_argument_each(values: list[str]) -> None:
    out = bash("printf '%s\\0' " + quote.sh_words(values))
    assert out.split(b"\0")[:-1] == [v.encode() for v in values]


def test_sh_words_empty() -> None:
    assert quote.sh_words([]) == ""


# --- sh_env --------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(ENV_VALUE | TEXT)
def test_sh_env_expands_only_references(value: str) -> None:
    assume(refs_known(value))  # other names might be bash's own variables
    env = {"HOME": "/home/envkit test", "REF_A": HOSTILE_ENV}
    expected = expand(spec_parts(value), env).encode()
    word = quote.sh_env(value)
    # as an argument, and as the value of an export (the template's use), under set -u
    assert bash("printf %s " + word, "-u", env=env) == expected
    assert bash("export X=" + word + '; printf %s "$X"', "-u", env=env) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("$$", "$"),
    ("$$HOME", "$HOME"),
    ("a$$$$b", "a$$b"),
    ("${HOME}/x", "/home/envkit test/x"),
    ("$HOME/x", "/home/envkit test/x"),
    ("$HOMEx", ""),  # the longest name: HOMEx, unset
    ("${UNSET_VAR}|$UNSET_VAR", "|"),
    ("$REF_A", HOSTILE_ENV),  # a reference is expanded once, never evaluated
    ("$(touch PWNED)", "$(touch PWNED)"),
    ("`touch PWNED`", "`touch PWNED`"),
    ("${HOME:-x}", "${HOME:-x}"),  # no shell operators: this is not a reference
    ("${HOME", "${HOME"),
    ("$1 $@ $* $? $#", "$1 $@ $* $? $#"),
    ("~", "~"),
    ("*", "*"),
    ("", ""),
])
def test_sh_env_cases(value: str, expected: str, tmp_path) -> None:
    env = {"HOME": "/home/envkit test"}
    got = bash(f"cd {quote.sh(str(tmp_path))}; export X={quote.sh_env(value)}; "
               'printf %s "$X"', "-u", env=env)
    assert got == expected.encode()
    assert not (tmp_path / "PWNED").exists()


def test_sh_env_shapes() -> None:
    assert quote.sh_env("") == "''"
    assert quote.sh_env("${HOME}") == '"${HOME:-}"'
    assert quote.sh_env("a b$HOME") == "'a b'\"${HOME:-}\""
    assert quote.sh_env("$$") == "'$'"


# --- df_str / df_env -----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "word"), [
    ("plain", '"plain"'),
    ("", '""'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("$HOME ${HOME}", '"\\$HOME \\${HOME}"'),
    ("\\$\"", '"\\\\\\$\\""'),
    ("'`;&|*", "\"'`;&|*\""),
    (42, '"42"'),
])
def test_df_str_exact(text: object, word: str) -> None:
    assert quote.df_str(text) == word


@settings(max_examples=200, deadline=None)
@given(PLAIN)
def test_df_str_decodes_back(text: str) -> None:
    assert docker_word_parts(quote.df_str(text)) == ([("lit", text)] if text else [])


@settings(max_examples=200, deadline=None)
@given(PLAIN, st.characters(min_codepoint=0, max_codepoint=0x1F) | st.just("\x7f"), PLAIN)
def test_df_str_and_df_env_reject_control_characters(head: str, ctl: str, tail: str) -> None:
    with pytest.raises(QuoteError, match="control characters"):
        quote.df_str(head + ctl + tail)
    with pytest.raises(QuoteError, match="control characters"):
        quote.df_env(head + ctl + tail)


@pytest.mark.parametrize(("value", "word"), [
    ("plain", '"plain"'),
    ("${HOME}/x", '"${HOME}/x"'),
    ("$HOME/x", '"${HOME}/x"'),
    ("$$HOME", '"\\$HOME"'),
    ('a"b\\c$(x)', '"a\\"b\\\\c\\$(x)"'),
    ("", '""'),
])
def test_df_env_exact(value: str, word: str) -> None:
    assert quote.df_env(value) == word


@settings(max_examples=200, deadline=None)
@given(ENV_VALUE)
def test_df_env_keeps_references_and_escapes_the_rest(value: str) -> None:
    assert docker_word_parts(quote.df_env(value)) == spec_parts(value)


def test_df_env_pairs() -> None:
    text = quote.df_env_pairs([("A", 'x"$y'), ("C", "${Z}")])
    assert text == 'ENV A="x\\"${y}" \\\n    C="${Z}"'
    # Docker expands a reference with the environment from before the ENV: split there
    text = quote.df_env_pairs([("A", "one"), ("B", "${A}-two"), ("C", "3")])
    assert text == 'ENV A="one"\nENV B="${A}-two" \\\n    C="3"'
    assert quote.df_env_pairs([]) == ""
    with pytest.raises(QuoteError, match="not a variable name"):
        quote.df_env_pairs([("A B", "x")])


# --- df_json, df_run -----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(TEXT, max_size=6))
def test_df_json_is_valid_json(values: list[str]) -> None:
    text = quote.df_json(values)
    assert json.loads(text) == values
    assert "\n" not in text and "\r" not in text


def test_df_json_stringifies_and_rejects_nul() -> None:
    assert json.loads(quote.df_json(["a", 1, "ü"])) == ["a", "1", "ü"]
    with pytest.raises(QuoteError, match="NUL"):
        quote.df_json(["ok", "a\x00b"])


def test_df_run_joins_lines_and_checks_mounts() -> None:
    assert quote.df_run("\n  a\n\n b \n") == "RUN a \\\n &&  b"
    assert quote.df_run("  \n") == ""
    assert quote.df_run("a", ["/root/.cache/pip"]) == (
        "RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \\\n    a")
    with pytest.raises(QuoteError, match="unsafe cache mount"):
        quote.df_run("a", ["/x,target=/etc"])


# --- comment, ident, image -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(TEXT | st.binary().map(lambda b: b.decode("latin-1")))
def test_comment_never_yields_a_line_break(text: str) -> None:
    out = quote.comment(text)
    assert "\n" not in out and "\r" not in out
    assert not BREAKS.search(out)
    # only control characters and line separators change, one for one
    assert len(out) == len(text)
    assert all(o == t or (o == " " and BREAKS.match(t)) for o, t in zip(out, text, strict=True))


def test_comment_examples() -> None:
    assert quote.comment("a\nRUN touch /PWNED\r\tb") == "a RUN touch /PWNED  b"
    assert quote.comment(7) == "7"


@pytest.mark.parametrize("name", ["A", "_x", "PATH", "a1_B2"])
def test_ident_accepts_names(name: str) -> None:
    assert quote.ident(name) == name


@pytest.mark.parametrize("name", ["", "1A", "A B", "A=B", "A;touch", "A\n", "é", "$A"])
def test_ident_rejects_others(name: str) -> None:
    with pytest.raises(QuoteError, match="not a variable name"):
        quote.ident(name)


def test_image() -> None:
    assert quote.image("debian:bookworm-slim") == "debian:bookworm-slim"
    for bad in ("debian:bookworm\nRUN touch /PWNED", "Debian", "debian bookworm", ""):
        with pytest.raises(QuoteError, match="not a Docker image reference"):
            quote.image(bad)


def test_filters_table_names_every_filter() -> None:
    assert quote.FILTERS["sh"] is quote.sh
    assert set(quote.FILTERS) >= {"sh", "sh_words", "sh_env", "df_str", "df_env", "df_json",
                                  "comment", "ident", "image", "df_run", "df_env_pairs"}


def test_sh_cmd_never_reads_as_an_assignment() -> None:
    assert quote.sh_cmd("python3") == "python3"
    assert quote.sh_cmd("/opt/venv/bin/python") == "/opt/venv/bin/python"
    assert quote.sh_cmd("X=1") == "'X=1'"
    done = subprocess.run(["bash", "-c", quote.sh_cmd("X=1") + " 2>&1; echo rc=$?"],
                          capture_output=True, text=True)
    assert "X=1: command not found" in done.stdout  # run as a command, not assigned
