"""Hostile values in recipes: rejected with a one-line diagnostic, or delivered literally.

A value is either refused by validation (every diagnostic one line, naming the field),
or the rendered shell script, run by real bash, hands it over byte for byte and runs
nothing else. Tools that would need the network (apt-get, pip's python3, git, cmake,
curl) are stubs on PATH that only record their argv, so the recorded argv shows
exactly which words arrived. The Dockerfile is parsed back with Docker's rules.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings

from conftest import HEADER, plan_of, problems
from envkit import ca, mirrors, paths, quote
from envkit.model import PLACEHOLDER
from envkit.plan import INERT
from envkit.render import render, write_outputs
from test_quote import (
    CONTROL,
    ENV_VALUE,
    HOSTILE_ENV,
    NAME,
    TEXT,
    Parts,
    docker_word_parts,
    expand,
    spec_parts,
)

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
STUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"  # what the git stub reports
# Characters Python's str.splitlines() breaks on that are not ASCII control characters.
LINE_SEPARATORS = "\x85\u2028\u2029"
# What validation refuses in a one-line value (env values, string params): C0 and C1
# controls and the Unicode line separators.
REJECTED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
HYPOTHESIS = settings(max_examples=100, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

PAYLOADS = [
    pytest.param("plain", id="plain"),
    pytest.param("two words", id="space"),
    pytest.param("it's", id="squote"),
    pytest.param('say "hi"', id="dquote"),
    pytest.param("$(touch PWNED)", id="subst"),
    pytest.param("`touch PWNED`", id="backtick"),
    pytest.param("; touch PWNED", id="semicolon"),
    pytest.param("&& touch PWNED", id="and"),
    pytest.param("| touch PWNED", id="pipe"),
    pytest.param(">PWNED", id="redirect"),
    pytest.param("a\ntouch PWNED", id="newline"),
    pytest.param("a\rtouch PWNED", id="cr"),
    pytest.param("a\tb", id="tab"),
    pytest.param("\x1b[31mred", id="esc"),
    pytest.param("back\\slash", id="backslash"),
    pytest.param("\\$(touch PWNED)", id="escaped-subst"),
    pytest.param("*", id="glob"),
    pytest.param("~", id="tilde"),
    pytest.param("{a,b}", id="brace"),
    pytest.param("#x", id="hash"),
    pytest.param("!!", id="bang"),
    pytest.param("-rf", id="dash"),
    pytest.param("$'\\x41'", id="ansi-c"),
    pytest.param("${HOME}", id="ref-braced"),
    pytest.param("$HOME", id="ref-bare"),
    pytest.param("cost $$5", id="dollars"),
    pytest.param("'; touch PWNED; echo '", id="break-squote"),
    pytest.param('"; touch PWNED; echo "', id="break-dquote"),
    pytest.param("ünïcødé ✓ 日本 \U0001f600", id="unicode"),
]
PLACEHOLDER_PAYLOAD = pytest.param("{{ prefix }}", id="placeholder")


def value_of(param: object) -> str:
    return param.values[0]  # type: ignore[attr-defined]  # a pytest.param


def yq(text: str) -> str:
    """A YAML double-quoted scalar holding exactly ``text`` (all on one ASCII line)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        elif ord(ch) > 0xFFFF:
            out.append(f"\\U{ord(ch):08x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out) + '"'


# --- running scripts -----------------------------------------------------------------------

STUB = """#!/bin/bash
printf '%s\\0' "$#" "${0##*/}" "$@" >> "$ENVKIT_TEST_LOG"
"""
CURL_STUB = STUB + """while [ "$#" -gt 0 ]; do
  if [ "$1" = -o ]; then : > "$2"; fi
  shift
done
"""
# git: a clone makes its folder, rev-parse answers with the pinned commit.
GIT_STUB = STUB + f"""case "$1" in
  clone) mkdir -p -- "${{@: -1}}" ;;
  -C) [ "$3" != rev-parse ] || echo {STUB_COMMIT} ;;
esac
"""


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    """A bin folder of argv-recording stand-ins for the tools that need the network."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("apt-get", "python3", "git", "cmake", "curl"):
        stub = bin_dir / name
        stub.write_text({"curl": CURL_STUB, "git": GIT_STUB}.get(name, STUB))
        stub.chmod(0o755)
    return bin_dir


def run_bash(args: list[str], cwd: Path, stubs: Path | None = None) -> list[list[str]]:
    """Run bash in ``cwd`` with HOME=cwd; return the argv of every stub call."""
    log = cwd / ".calls"
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = {"HOME": str(cwd), "PATH": f"{stubs}:{path}" if stubs else path,
           "LC_ALL": "C.UTF-8", "ENVKIT_TEST_LOG": str(log), "REF_A": HOSTILE_ENV,
           "BASH_ENV": str(paths.data_dir() / "helpers.sh")}  # as the Dockerfile's ARG does
    done = subprocess.run(["bash", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    tokens = log.read_bytes().split(b"\0")[:-1] if log.exists() else []
    calls, i = [], 0
    while i < len(tokens):
        n = int(tokens[i])
        calls.append([t.decode() for t in tokens[i + 1 : i + 2 + n]])
        i += 2 + n
    return calls


def run_shell(path: Path, cwd: Path, settings: dict[str, str] | None = None,
              stubs: Path | None = None) -> list[list[str]]:
    """Plan, render the shell format to cwd/script.sh and run it with ``bash script.sh``."""
    text = render(plan_of(path, {"prefix": str(cwd), **(settings or {})}), "shell")
    (cwd / "script.sh").write_text(text)
    return run_bash(["script.sh"], cwd, stubs)


def pwned(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name == "PWNED"]


def assert_rejected(diags: list[str], *fields: str) -> None:
    assert diags, "expected a diagnostic"
    for line in diags:
        assert "\n" not in line and "\r" not in line, f"diagnostic is not one line: {line!r}"
        assert any(f": {f}: " in line for f in fields), f"{line!r} does not name {fields}"


# --- parsing a Dockerfile back --------------------------------------------------------------

_CONTINUATION = re.compile(r"\\[ \t]*$")
_PAIR = re.compile(r"\s*(" + NAME + r')=("(?:[^"\\]|\\.)*")(?=\s|$)')


def instructions(text: str) -> list[str]:
    """Dockerfile instructions the way Docker splits them: on \\n, with \\ continuations."""
    out, current = [], ""
    for line in text.split("\n"):
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if _CONTINUATION.search(line):
            current += _CONTINUATION.sub("", line)
            continue
        out.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continuation"
    return out


def env_pairs(instruction: str) -> list[tuple[str, Parts]]:
    """``ENV A="..." B="..."`` -> [(name, parts)]; fails unless every value is one
    double-quoted word in which only ${NAME} is left for Docker to expand."""
    assert instruction.startswith("ENV "), instruction
    body, pairs = instruction[4:], []
    pos = 0
    while pos < len(body.rstrip()):
        m = _PAIR.match(body, pos)
        assert m, f"not NAME=\"...\" at {body[pos:]!r}"
        pairs.append((m.group(1), docker_word_parts(m.group(2))))
        pos = m.end()
    return pairs


def dockerfile_env(text: str) -> dict[str, Parts]:
    return {name: parts for inst in instructions(text) if inst.startswith("ENV ")
            for name, parts in env_pairs(inst)}


def docker_env_values(text: str) -> dict[str, str]:
    """Values after every ENV, with Docker's rule that the references in one ENV
    instruction all see the environment from before that instruction."""
    env: dict[str, str] = {}
    for inst in instructions(text):
        if inst.startswith("ENV "):
            before = dict(env)
            for name, parts in env_pairs(inst):
                env[name] = expand(parts, before)
    return env


def _without_mounts(command: str) -> str:
    while m := re.match(r"--mount=\S+\s+", command):
        command = command[m.end():]
    return command


def run_argv(text: str) -> list[str]:
    """The exec-form array of the only RUN ["..."] instruction."""
    runs = [_without_mounts(inst[4:].lstrip()) for inst in instructions(text)
            if inst.startswith("RUN ")]
    runs = [r for r in runs if r.startswith("[")]
    assert len(runs) == 1, runs
    argv = json.loads(runs[0])
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


FIXED_ARGS = [f"ARG {v}" for v in ca.VARS] + [
    f"ARG {k}={quote.df_str(v)}" for k, v in [*mirrors.get(None).env(), *mirrors.NETWORK_ENV]
] + ["ARG BASH_ENV=/usr/local/lib/envkit/helpers.sh"]
HELPER_COPY = "COPY files/envkit/helpers.sh /usr/local/lib/envkit/helpers.sh"


def kinds(text: str) -> list[str]:
    """Instruction keywords, after checking the fixed ARG block (CA, mirrors) and the
    mirror helper's COPY are exactly as expected."""
    insts = instructions(text)
    assert [i for i in insts if i.startswith("ARG ")] == FIXED_ARGS
    assert insts.count(HELPER_COPY) == 1
    return [inst.split(None, 1)[0] for inst in insts
            if not inst.startswith("ARG ") and inst != HELPER_COPY]


def shell_form_runs(text: str) -> list[str]:
    """The command of every shell-form RUN, without its --mount flags."""
    out = []
    for inst in instructions(text):
        command = _without_mounts(inst[4:].lstrip()) if inst.startswith("RUN ") else "["
        if not command.startswith("["):
            out.append(command)
    return out


# --- (a) env values ------------------------------------------------------------------------

ENV_RECIPE = """\
env:
  TOP: {value}
steps:
  - env:
      STEP: {value}
  - run: |
      printf '%s' "$TOP" > top.txt
      printf '%s' "$STEP" > step.txt
"""


def check_env_value(recipe: Callable[..., Path], root: Path, value: str) -> None:
    path = recipe(ENV_RECIPE.format(value=yq(value)))
    diags = problems(path)
    if REJECTED.search(value):
        assert_rejected(diags, "env.TOP", "steps[0].env.STEP")
        assert any(": env.TOP: " in d for d in diags)
        assert any(": steps[0].env.STEP: " in d for d in diags)
        return
    assert diags == []
    cwd = Path(tempfile.mkdtemp(dir=root))
    run_shell(path, cwd)
    expected = expand(spec_parts(value), {"HOME": str(cwd), "REF_A": HOSTILE_ENV})
    assert (cwd / "top.txt").read_bytes() == expected.encode()
    assert (cwd / "step.txt").read_bytes() == expected.encode()
    assert pwned(root) == []

    docker = render(plan_of(path), "dockerfile")
    assert kinds(docker) == ["FROM", "SHELL", "ENV", "ENV", "RUN", "LABEL"]
    env = dockerfile_env(docker)
    assert env["TOP"] == spec_parts(value)
    assert env["STEP"] == spec_parts(value)


@pytest.mark.parametrize("value", PAYLOADS)
def test_env_value_payloads(recipe: Callable[..., Path], tmp_path: Path, value: str) -> None:
    check_env_value(recipe, tmp_path, value)


@HYPOTHESIS
@given(value=ENV_VALUE | TEXT)
def test_env_values_property(recipe: Callable[..., Path], tmp_path: Path, value: str) -> None:
    assume(not PLACEHOLDER.search(value) and "{%" not in value)
    # other names could be bash's own variables, whose values the test cannot predict
    assume(all(t in {"HOME", "REF_A", "UNSET_VAR"} for k, t in spec_parts(value) if k == "ref"))
    check_env_value(recipe, tmp_path, value)


# --- (b) a string param in a run script ----------------------------------------------------

RUN_RECIPE = """\
params:
  p:
    type: string
    default: {default}
steps:
  - run: printf '%s' {{{{ p }}}} > out.txt
"""


def check_run_param(recipe: Callable[..., Path], root: Path, value: str, source: str) -> None:
    if source == "yaml":
        path = recipe(RUN_RECIPE.format(default=yq(value)))
        overrides, field = {}, "params.p.default"
    else:
        path = recipe(RUN_RECIPE.format(default='"x"'))
        overrides, field = {"p": value}, "p"
    diags = problems(path, overrides)
    if REJECTED.search(value):
        assert_rejected(diags, field)
        return
    if not INERT.fullmatch(value):  # the author's quoting around it is unknown: refused
        assert len(diags) == 1, diags
        assert ": steps[0].run: param 'p' is " in diags[0]
        assert "in a run script a param may hold only" in diags[0]
        return
    assert diags == []
    cwd = Path(tempfile.mkdtemp(dir=root))
    run_shell(path, cwd, overrides)
    assert (cwd / "out.txt").read_bytes() == value.encode()

    # Dockerfile: one exec-form RUN whose script is the bound script, byte for byte ...
    plan = plan_of(path, overrides)
    script = plan.steps[-1].step.script
    assert script == f"printf '%s' {value} > out.txt"
    docker = render(plan, "dockerfile")
    assert kinds(docker) == ["FROM", "SHELL", "RUN", "LABEL"]
    argv = run_argv(docker)
    assert argv == ["/bin/bash", "-euo", "pipefail", "-c", script]
    # ... and which, run as Docker would run it, writes the value literally too
    cwd2 = Path(tempfile.mkdtemp(dir=root))
    run_bash(argv[1:], cwd2)
    assert (cwd2 / "out.txt").read_bytes() == value.encode()
    assert pwned(root) == []


def _run_param_cases() -> list[object]:
    cases = []
    for param in [*PAYLOADS, PLACEHOLDER_PAYLOAD]:
        value = value_of(param)
        for source in ("yaml", "set"):
            if source == "yaml" and value == "{{ prefix }}":
                continue  # in YAML this is the recipe's own placeholder syntax
            cases.append(pytest.param(value, source, id=f"{param.id}-{source}"))
    return cases


@pytest.mark.parametrize(("value", "source"), _run_param_cases())
def test_run_param_payloads(recipe: Callable[..., Path], tmp_path: Path, value: str,
                            source: str) -> None:
    check_run_param(recipe, tmp_path, value, source)


@HYPOTHESIS
@given(value=TEXT)
def test_run_param_property(recipe: Callable[..., Path], tmp_path: Path, value: str) -> None:
    check_run_param(recipe, tmp_path, value, "set")


# --- (c) every other field that takes a free-form value ------------------------------------


def _path(payload: str) -> str:
    return "{{ prefix }}/" + payload


def _url(payload: str) -> str:
    return "https://example.com/" + payload


FIELDS: dict[str, tuple[Callable[[str], str], str]] = {
    # field: (value -> recipe body, diagnostic path)
    "apt": (lambda v: f"  - apt: [{yq(v)}]\n", "steps[0].apt[0]"),
    "pip": (lambda v: f"  - pip: {{packages: [{yq(v)}], python: python3}}\n",
            "steps[0].pip.packages[0]"),
    "pip-index": (lambda v: f"  - pip: {{packages: [numpy], python: python3, "
                            f"index: {yq(_url(v))}}}\n",
                  "steps[0].pip.index"),
    "download-url": (lambda v: f"  - download: {{url: {yq(_url(v))}, sha256: {EMPTY_SHA256}, "
                               "dest: '{{ prefix }}/dl/file.bin'}\n", "steps[0].download.url"),
    "git-url": (lambda v: f"  - git: {{url: {yq(_url(v))}, ref: main, commit: {STUB_COMMIT}, "
                          "dest: '{{ prefix }}/src'}\n", "steps[0].git.url"),
    "git-ref": (lambda v: f"  - git: {{url: 'https://example.com/r.git', ref: {yq(v)}, "
                          f"commit: {STUB_COMMIT}, "
                          "dest: '{{ prefix }}/src'}\n", "steps[0].git.ref"),
    "venv-path": (lambda v: f"  - venv: {{path: {yq(_path(v))}}}\n"
                            "  - run: printf '%s' \"$VIRTUAL_ENV\" > ve.txt\n",
                  "steps[0].venv.path"),
    "cmake-option": (lambda v: "  - cmake: {source: '{{ prefix }}/src', "
                               f"options: {{OPT: {yq(v)}}}}}\n", "steps[0].cmake.options.OPT"),
    "copy-dest": (lambda v: f"  - copy: {{src: data.txt, dest: {yq(_path(v))}}}\n",
                  "steps[0].copy.dest"),
    "copy-src": (lambda v: f"  - copy: {{src: {yq(v)}, dest: '{{{{ prefix }}}}/out.bin'}}\n",
                 "steps[0].copy.src"),
}

# Values that look hostile but are valid for the field, so they must be accepted.
EXTRA = {
    "pip": ["pkg[extra]>=1.0; python_version > '3' and os_name != \"$(touch PWNED)\"",
            "pkg @ https://example.com/a;touch$IFS'PWNED'`x`.whl"],
    "pip-index": ["a;touch${IFS}PWNED", "$(touch${IFS}PWNED)", "`touch${IFS}PWNED`",
                  "a'b\"c&&d|e>PWNED"],
    "download-url": ["a;touch${IFS}PWNED", "$(touch${IFS}PWNED)", "a'b\"c&&d|e>PWNED"],
    "git-url": ["a;touch${IFS}PWNED", "$(touch${IFS}PWNED)", "a'b\"c&&d|e>PWNED"],
    "git-ref": ["v1.0+build/x-y_z"],
}
def _field_cases() -> list[object]:
    cases = []
    for field in FIELDS:
        values = [value_of(p) for p in PAYLOADS] + EXTRA.get(field, [])
        for i, value in enumerate(values):
            marks: list[object] = []
            if field == "copy-src" and (value in {"", ".", ".."} or "/" in value):
                continue  # not a file name
            label = PAYLOADS[i].id if i < len(PAYLOADS) else f"extra{i - len(PAYLOADS)}"
            cases.append(pytest.param(field, value, marks=marks, id=f"{field}-{label}"))
    return cases


APT_OPTIONS = ["-o", "Acquire::Retries=5", "-o", "Acquire::http::Timeout=60",
               "-o", "Acquire::https::Timeout=60"]
CURL_OPTIONS = ["-sSL", "--fail", "--connect-timeout", "20", "--speed-limit", "1024",
                "--speed-time", "60", "-w", "%{http_code}"]


def _git_calls(url: str, ref: str, src: str) -> list[list[str]]:
    return [["git", "clone", "--", url, f"{src}.part"],
            ["git", "-C", src, "rev-parse", "--verify", "--quiet", f"origin/{ref}^{{commit}}"],
            ["git", "-C", src, "checkout", "-q", "--detach", STUB_COMMIT],
            ["git", "-C", src, "rev-parse", "HEAD"]]


def _expected_calls(field: str, value: str, cwd: Path) -> list[list[str]]:
    src = f"{cwd}/src"
    jobs = str(len(os.sched_getaffinity(0)))  # what "$(nproc)" prints
    return {
        "apt": [["apt-get", *APT_OPTIONS, "update"],
                ["apt-get", *APT_OPTIONS, "install", "-y", "--no-install-recommends", value]],
        "pip": [["python3", "-m", "pip", "install", "--no-input", value]],
        "pip-index": [["python3", "-m", "pip", "install", "--no-input", "--index-url",
                       _url(value), "numpy"]],
        "download-url": [["curl", *CURL_OPTIONS, "-o", f"{cwd}/dl/file.bin.part", "--",
                          _url(value)]],
        "git-url": _git_calls(_url(value), "main", src),
        "git-ref": _git_calls("https://example.com/r.git", value, src),
        "venv-path": [["python3", "-m", "venv", f"{cwd}/{value}"]],
        "cmake-option": [["cmake", "-S", src, "-B", f"{src}/build",
                          "-DCMAKE_BUILD_TYPE=Release", f"-DOPT={value}"],
                         ["cmake", "--build", f"{src}/build", "--parallel", jobs]],
        "copy-dest": [],
        "copy-src": [],
    }[field]


@pytest.mark.parametrize(("field", "value"), _field_cases())
def test_field_payloads(recipe: Callable[..., Path], tmp_path: Path, stubs: Path, field: str,
                        value: str) -> None:
    body, diag_path = FIELDS[field]
    (tmp_path / "data.txt").write_bytes(b"data\n")
    if field == "copy-src":
        (tmp_path / value).write_bytes(b"data\n")
    path = recipe("steps:\n" + body(value))
    cwd = tmp_path / "run"
    cwd.mkdir()
    diags = problems(path, {"prefix": str(cwd)})
    if value == "plain":
        assert diags == [], "the harness itself must build a valid recipe"
    if CONTROL.search(value) or diags:
        assert_rejected(diags, diag_path)
        return

    plan = plan_of(path, {"prefix": str(cwd)})
    if field.startswith("copy"):  # the script takes its files from files/ next to it
        out = tmp_path / "out"
        write_outputs(plan, ["shell", "dockerfile"], out)
        calls = run_bash([str(out / "install.sh")], cwd, stubs)
        dest = cwd / (value if field == "copy-dest" else "out.bin")
        assert dest.read_bytes() == b"data\n"
        src = value if field == "copy-src" else "data.txt"
        docker = (out / "Dockerfile").read_text()
        copies = [inst for inst in instructions(docker)
                  if inst.startswith("COPY ") and inst != HELPER_COPY]
        assert [json.loads(c[5:]) for c in copies] == [[f"files/t/{src}", str(dest)]]
    else:
        calls = run_shell(path, cwd, stubs=stubs)
    assert calls == _expected_calls(field, value, cwd)
    if field == "venv-path":
        assert (cwd / "ve.txt").read_bytes() == f"{cwd}/{value}".encode()
    if not field.startswith("copy"):
        # The Dockerfile: nothing but the expected instructions, and its shell-form RUN,
        # run as SHELL ["/bin/bash", "-o", "pipefail", "-c"] would, makes the same calls.
        docker = render(plan, "dockerfile")
        steps = ["RUN", "ENV", "RUN"] if field == "venv-path" else ["RUN"]
        assert kinds(docker) == ["FROM", "SHELL", *steps, "LABEL"]
        docker_cwd = tmp_path / "docker"
        docker_cwd.mkdir()
        # the script's download and clone are there now: they would not be fetched again
        (cwd / "dl" / "file.bin").unlink(missing_ok=True)
        shutil.rmtree(cwd / "src", ignore_errors=True)
        docker_calls = []
        for command in shell_form_runs(docker):
            docker_calls += run_bash(["-o", "pipefail", "-c", command], docker_cwd, stubs)
        assert docker_calls == _expected_calls(field, value, cwd)
        if field == "venv-path":
            assert dockerfile_env(docker)["VIRTUAL_ENV"] == [("lit", f"{cwd}/{value}")]
    if field == "download-url":
        assert (cwd / "dl" / "file.bin").read_bytes() == b""
    assert pwned(tmp_path) == []


# --- once bugs, now contracts ------------------------------------------------------------


@pytest.mark.parametrize("sep", list(LINE_SEPARATORS))
def test_line_separators_in_env_value_are_rejected(recipe: Callable[..., Path],
                                                   tmp_path: Path, sep: str) -> None:
    check_env_value(recipe, tmp_path, f"a  {sep}RUN touch /PWNED")


def test_line_separator_in_param_cannot_end_a_heredoc(recipe: Callable[..., Path]) -> None:
    path = recipe("""\
        params:
          p: {type: string, default: "x"}
        steps:
          - run: |
              cat > out.txt <<EOF
              {{ p }}
              EOF
        """)
    assert problems(path, {"p": "x\u2028EOF\u2028touch PWNED\u2028#"}) == [
        "--set: p: must not contain control characters or newlines"]


def test_line_separator_in_a_run_script_keeps_run_one_instruction(
        recipe: Callable[..., Path], tmp_path: Path) -> None:
    path = recipe("steps:\n  - run: " + yq("printf '%s' 'a\u2028RUN touch /PWNED #' > out.txt")
                  + "\n")
    docker = render(plan_of(path), "dockerfile")
    assert kinds(docker) == ["FROM", "SHELL", "RUN", "LABEL"]
    cwd = tmp_path / "run"
    cwd.mkdir()
    run_shell(path, cwd)
    assert (cwd / "out.txt").read_text() == "a\u2028RUN touch /PWNED #"


def test_reference_within_one_env_step_means_the_same_in_both_formats(
        recipe: Callable[..., Path], tmp_path: Path) -> None:
    path = recipe("""\
        steps:
          - env:
              A: one
              B: "${A}-two"
          - run: printf '%s' "$B" > b.txt
        """)
    cwd = tmp_path / "run"
    cwd.mkdir()
    run_shell(path, cwd)
    assert (cwd / "b.txt").read_text() == "one-two"
    assert docker_env_values(render(plan_of(path), "dockerfile"))["B"] == "one-two"


def test_description_with_control_character_is_rejected_or_rendered(
        write: Callable[..., Path]) -> None:
    path = write(HEADER.format(name="t").replace("a test recipe", '"a\\x01b"')
                 + "steps:\n  - run: 'true'\n")
    if problems(path):
        return
    docker = render(plan_of(path), "dockerfile")
    assert "LABEL" in kinds(docker)


def test_run_script_heredoc_arrives_byte_for_byte(recipe: Callable[..., Path],
                                                 tmp_path: Path) -> None:
    body = "steps:\n  - run: " + yq("cat > out.txt <<'EOF'\na  \n\n\n\nb\nEOF\n") + "\n"
    path = recipe(body)
    docker_cwd = tmp_path / "docker"
    docker_cwd.mkdir()
    run_bash(run_argv(render(plan_of(path), "dockerfile"))[1:], docker_cwd)
    assert (docker_cwd / "out.txt").read_text() == "a  \n\n\n\nb\n"  # the Dockerfile keeps it
    cwd = tmp_path / "run"
    cwd.mkdir()
    run_shell(path, cwd)
    assert (cwd / "out.txt").read_text() == "a  \n\n\n\nb\n"
