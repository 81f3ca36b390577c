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
import posixpath
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conftest import HEADER, plan_of, problems
from envkit import ca, paths
from envkit import render as render_mod
from envkit.chars import format_char
from envkit.checks import local_runner
from envkit.grammar import credential
from envkit.load.model import PLACEHOLDER, _half_placeholder
from envkit.plan import INERT, mirrors
from envkit.plan import lock as lockmod
from envkit.render import quote, render, write_outputs
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


def make_stubs(root: Path) -> Path:
    """A bin folder of argv-recording stand-ins for the tools that need the network."""
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("apt-get", "python3", "git", "cmake", "curl", "uv"):
        stub = bin_dir / name
        stub.write_text({"curl": CURL_STUB, "git": GIT_STUB}.get(name, STUB))
        stub.chmod(0o755)
    return bin_dir


@pytest.fixture
def stubs(tmp_path: Path) -> Path:
    return make_stubs(tmp_path)


def run_bash(args: list[str], cwd: Path, stubs: Path | None = None) -> list[list[str]]:
    """Run bash in ``cwd`` with HOME=cwd; return the argv of every stub call."""
    return run_bash_err(args, cwd, stubs)[0]


def run_bash_err(args: list[str], cwd: Path,
                 stubs: Path | None = None) -> tuple[list[list[str]], str]:
    """Run bash in ``cwd`` with HOME=cwd; the argv of every stub call, and stderr."""
    log = cwd / ".calls"
    log.unlink(missing_ok=True)
    path = os.environ.get("PATH", "/usr/bin:/bin")
    env = {"HOME": str(cwd), "PATH": f"{stubs}:{path}" if stubs else path,
           "LC_ALL": "C.UTF-8", "ENVKIT_TEST_LOG": str(log), "REF_A": HOSTILE_ENV,
           "BASH_ENV": str(paths.data_dir() / "helpers.sh"),  # as the Dockerfile's ARG does
           # pip steps run this uv, as envkit's own on a host: the stub records its argv
           **({"ENVKIT_UV": str(stubs / "uv")} if stubs else {})}
    done = subprocess.run(["bash", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=30, check=False)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr
    tokens = log.read_bytes().split(b"\0")[:-1] if log.exists() else []
    calls, i = [], 0
    while i < len(tokens):
        n = int(tokens[i])
        calls.append([t.decode() for t in tokens[i + 1 : i + 2 + n]])
        i += 2 + n
    return calls, stderr


def run_shell(path: Path, cwd: Path, settings: dict[str, str] | None = None,
              stubs: Path | None = None) -> list[list[str]]:
    """Plan, render the shell format to cwd/script.sh and run it with ``bash script.sh``."""
    text = render(plan_of(path, {"prefix": str(cwd), **(settings or {})}), "shell")
    (cwd / "script.sh").write_text(text)
    return run_bash(["script.sh"], cwd, stubs)


def pwned(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name == "PWNED"]


def refused_alone(value: str) -> bool:
    """Refused wherever it is written (test_refusals): half a placeholder, an invisible
    format character, a credential in a URL."""
    return bool(_half_placeholder(PLACEHOLDER.sub("", value)) or format_char(value)
                or credential(value))


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
] + [f"ARG {k}" for k in mirrors.RETRY_ENV]
UV_ARGS = ["ARG ENVKIT_UV_REQ=/usr/local/lib/envkit/uv.txt",
           f'ARG ENVKIT_UV_DIR="/root/.cache/envkit/uv-{lockmod.uv_version()}"',
           "ARG ENVKIT_LOCKS=/run/envkit/lock",
           *(f"ARG {k}={quote.df_str(v)}" for k, v in render_mod.UV_ENV)]
HELPERS_ARG = "ARG BASH_ENV=/usr/local/lib/envkit/helpers.sh"
HELPER_COPY = "COPY files/envkit/helpers.sh /usr/local/lib/envkit/helpers.sh"
UV_COPY = "COPY files/envkit/uv.txt /usr/local/lib/envkit/uv.txt"
MANIFEST_COPY = "COPY files/envkit/manifest.json /usr/local/share/envkit/manifest.json"
# envkit's own RUNs, which record what an image holds: never run on this machine
OWN_RUNS = ("RUN envkit_record_base", "RUN envkit_record_installed")


def kinds(text: str) -> list[str]:
    """Instruction keywords of the recipe's steps, after checking the fixed ARG block (CA,
    mirrors, uv), the helpers' and uv's COPY, and envkit's own records are exactly as
    expected."""
    insts = instructions(text)
    uses_uv = UV_COPY in insts
    assert [i for i in insts if i.startswith("ARG ")] == [
        *FIXED_ARGS, *(UV_ARGS if uses_uv else []), HELPERS_ARG]
    assert insts.count(HELPER_COPY) == 1 and insts.count(MANIFEST_COPY) == 1
    assert insts.count(OWN_RUNS[0]) == 1
    assert len([i for i in insts if i.startswith(OWN_RUNS[1])]) == 1
    own = (HELPER_COPY, UV_COPY, MANIFEST_COPY)
    return [inst.split(None, 1)[0] for inst in insts
            if not inst.startswith(("ARG ", *OWN_RUNS)) and inst not in own]


# The apt partial's first commands keep .debs in the cache mount of an image; run on this
# machine (as root) they would edit its apt settings, so the harness leaves them out.
IMAGE_ONLY_APT = ("rm -f /etc/apt/apt.conf.d/docker-clean  && echo 'Binary::apt::APT::"
                  "Keep-Downloaded-Packages \"true\";' > /etc/apt/apt.conf.d/keep-cache  && ")


def shell_form_runs(text: str) -> list[str]:
    """The command of every shell-form RUN, without its --mount flags."""
    out = []
    for inst in instructions(text):
        if inst.startswith(OWN_RUNS):
            continue
        command = _without_mounts(inst[4:].lstrip()) if inst.startswith("RUN ") else "["
        if "/etc/apt/apt.conf.d" in command:
            assert command.startswith(IMAGE_ONLY_APT), command
            command = command.removeprefix(IMAGE_ONLY_APT)
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
    # refused on their own (test_refusals): a half placeholder, an invisible format
    # character, a credential in a URL
    assume(not refused_alone(value))
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
    if REJECTED.search(value) or format_char(value):
        # (an invisible format character is refused where it is written, YAML or --set)
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
    "pip-extra-index": (lambda v: f"  - pip: {{packages: [numpy], python: python3, "
                                  f"extra_index: [{yq(_url(v))}]}}\n",
                        "steps[0].pip.extra_index[0]"),
    "pip-option": (lambda v: f"  - pip: {{packages: [numpy], python: python3, "
                             f"options: [{yq('--config-settings=' + v)}]}}\n",
                   "steps[0].pip.options[0]"),
    "download-url": (lambda v: f"  - download: {{url: {yq(_url(v))}, sha256: {EMPTY_SHA256}, "
                               "dest: '{{ prefix }}/dl/file.bin'}\n", "steps[0].download.url"),
    "download-dest": (lambda v: "  - download: {url: 'https://example.com/f', "
                                f"sha256: {EMPTY_SHA256}, dest: {yq(_path('dl/' + v))}}}\n",
                      "steps[0].download.dest"),
    "git-url": (lambda v: f"  - git: {{url: {yq(_url(v))}, ref: main, commit: {STUB_COMMIT}, "
                          "dest: '{{ prefix }}/src'}\n", "steps[0].git.url"),
    "git-ref": (lambda v: f"  - git: {{url: 'https://example.com/r.git', ref: {yq(v)}, "
                          f"commit: {STUB_COMMIT}, "
                          "dest: '{{ prefix }}/src'}\n", "steps[0].git.ref"),
    "git-dest": (lambda v: "  - git: {url: 'https://example.com/r.git', ref: main, "
                           f"commit: {STUB_COMMIT}, dest: {yq(_path(v))}}}\n",
                 "steps[0].git.dest"),
    "venv-path": (lambda v: f"  - venv: {{path: {yq(_path(v))}}}\n"
                            "  - run: printf '%s' \"$VIRTUAL_ENV\" > ve.txt\n",
                  "steps[0].venv.path"),
    "cmake-option": (lambda v: "  - cmake: {source: '{{ prefix }}/src', "
                               f"options: {{OPT: {yq(v)}}}}}\n", "steps[0].cmake.options.OPT"),
    "cmake-source": (lambda v: f"  - cmake: {{source: {yq(_path(v))}}}\n",
                     "steps[0].cmake.source"),
    "run-workdir": (lambda v: f"  - run: {{script: 'pwd > \"$HOME/wd.txt\"', "
                              f"workdir: {yq(_path(v))}}}\n", "steps[0].run.workdir"),
    "copy-dest": (lambda v: f"  - copy: {{src: data.txt, dest: {yq(_path(v))}}}\n",
                  "steps[0].copy.dest"),
    "copy-src": (lambda v: f"  - copy: {{src: {yq(v)}, dest: '{{{{ prefix }}}}/out.bin'}}\n",
                 "steps[0].copy.src"),
    "step-name": (lambda v: f"  - name: {yq(v)}\n    run: 'true'\n", "steps[0].name"),
}

# Values that look hostile but are valid for the field, so they must be accepted.
EXTRA = {
    "pip": ["pkg[extra]>=1.0; python_version > '3' and os_name != \"$(touch PWNED)\"",
            "pkg @ https://example.com/a;touch$IFS'PWNED'`x`.whl"],
    "pip-index": ["a;touch${IFS}PWNED", "$(touch${IFS}PWNED)", "`touch${IFS}PWNED`",
                  "a'b\"c&&d|e>PWNED"],
    "pip-extra-index": ["a;touch${IFS}PWNED", "$(touch${IFS}PWNED)"],
    "download-url": ["a;touch${IFS}PWNED", "$(touch${IFS}PWNED)", "a'b\"c&&d|e>PWNED"],
    "git-url": ["a;touch${IFS}PWNED", "$(touch${IFS}PWNED)", "a'b\"c&&d|e>PWNED"],
    "git-ref": ["v1.0+build/x-y_z"],
}


def _field_cases() -> list[object]:
    cases = []
    for field in FIELDS:
        values = [value_of(p) for p in PAYLOADS] + EXTRA.get(field, [])
        for i, value in enumerate(values):
            if not _fits(field, value):
                continue
            label = PAYLOADS[i].id if i < len(PAYLOADS) else f"extra{i - len(PAYLOADS)}"
            cases.append(pytest.param(field, value, id=f"{field}-{label}"))
    return cases


def _fits(field: str, value: str) -> bool:
    """Whether the harness can place ``value`` in ``field`` at all (a file name must be one)."""
    if field == "copy-src":
        return value not in {"", ".", ".."} and "/" not in value and "\x00" not in value
    if field in PATH_FIELDS:  # prefix/VALUE must be a new path below the prefix
        normal = posixpath.normpath(value.strip("/") or ".")
        return normal != "." and not normal.startswith("..")
    return True


PATH_FIELDS = {"download-dest", "git-dest", "venv-path", "cmake-source", "run-workdir",
               "copy-dest"}


APT_OPTIONS = ["-o", "Acquire::Retries=5", "-o", "Acquire::http::Timeout=60",
               "-o", "Acquire::https::Timeout=60"]
CURL_OPTIONS = ["-sSL", "--fail", "--connect-timeout", "20", "--speed-limit", "1024",
                "--speed-time", "60", "-w", "%{http_code}"]


def _git_calls(url: str, ref: str, src: str) -> list[list[str]]:
    return [["git", "clone", "--", url, src.rstrip("/") + ".part"],  # DEST/ is DEST
            ["git", "-C", src, "rev-parse", "--verify", "--quiet", f"origin/{ref}^{{commit}}"],
            ["git", "-C", src, "checkout", "-q", "--detach", STUB_COMMIT],
            ["git", "-C", src, "rev-parse", "HEAD"]]


def _pip_calls(*args: str) -> list[list[str]]:
    return [["uv", "pip", "install", "--no-config", "--python", "python3", *args]]


def _expected_calls(field: str, value: str, cwd: Path) -> list[list[str]]:
    """The argv of every stubbed tool the step runs, ``cwd`` being the prefix."""
    src = f"{cwd}/src"
    jobs = str(len(os.sched_getaffinity(0)))  # what "$(nproc)" prints
    build = f"{cwd}/{value}".rstrip("/") + "/build"  # the source's build/, however spelled
    cmake = [["cmake", "-S", src, "-B", f"{src}/build", "-DCMAKE_BUILD_TYPE=Release",
              f"-DOPT={value}"], ["cmake", "--build", f"{src}/build", "--parallel", jobs]]
    return {
        "apt": [["apt-get", *APT_OPTIONS, "update"],
                ["apt-get", *APT_OPTIONS, "install", "-y", "--no-install-recommends", value]],
        "pip": _pip_calls(value),
        "pip-index": _pip_calls("--default-index", _url(value), "numpy"),
        "pip-extra-index": _pip_calls("--extra-index-url", _url(value),
                                      "--index-strategy=unsafe-best-match", "numpy"),
        "pip-option": _pip_calls(f"--config-settings={value}", "numpy"),
        "download-url": [["curl", *CURL_OPTIONS, "-o", f"{cwd}/dl/file.bin.part", "--",
                          _url(value)]],
        "download-dest": [["curl", *CURL_OPTIONS, "-o", f"{cwd}/dl/{value}.part", "--",
                           "https://example.com/f"]],
        "git-url": _git_calls(_url(value), "main", src),
        "git-ref": _git_calls("https://example.com/r.git", value, src),
        "git-dest": _git_calls("https://example.com/r.git", "main", f"{cwd}/{value}"),
        "venv-path": [["python3", "-m", "venv", f"{cwd}/{value}"]],
        "cmake-option": cmake,
        "cmake-source": [["cmake", "-S", f"{cwd}/{value}", "-B", build,
                          "-DCMAKE_BUILD_TYPE=Release"],
                         ["cmake", "--build", build, "--parallel", jobs]],
        "run-workdir": [], "copy-dest": [], "copy-src": [], "step-name": [],
    }[field]


def below(root: Path, *parts: str) -> Path:
    """``root/part/...`` as the rendered script spells it (text joined with '/'), checked to be
    inside ``root``: a hostile value like '/' or '../..' must never make the harness touch
    anything else on this machine (tests run as root)."""
    path = Path(os.path.normpath("/".join([str(root), *parts])))
    if path == root or not path.is_relative_to(root):
        raise AssertionError(f"refusing to touch {path}: not below {root}")
    return path


def _prepare(field: str, value: str, tmp_path: Path, cwd: Path) -> None:
    """What must exist before the step runs: the file to copy, the folder to run in."""
    (tmp_path / "data.txt").write_bytes(b"data\n")
    if field == "copy-src":
        below(tmp_path, value).write_bytes(b"data\n")
    if field == "run-workdir":
        below(cwd, value).mkdir(parents=True, exist_ok=True)


def _clean(field: str, value: str, cwd: Path) -> None:
    """Undo what the script made that the Dockerfile's run would find and reuse."""
    made = [below(cwd, "dl", "file.bin"), below(cwd, "src")]
    if field == "download-dest":
        made.append(below(cwd, "dl", value))
    if field == "git-dest":
        made.append(below(cwd, value))
    for path in made:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_file() or path.is_symlink():
            path.unlink()


def check_field(recipe: Callable[..., Path], tmp_path: Path, stubs: Path, field: str,
                value: str) -> None:
    body, diag_path = FIELDS[field]
    cwd = tmp_path / "run"
    cwd.mkdir(exist_ok=True)
    try:
        _prepare(field, value, tmp_path, cwd)
    except (OSError, ValueError):
        assume(False)  # not a name this file system takes: nothing to test
    path = recipe("steps:\n" + body(value))
    diags = problems(path, {"prefix": str(cwd)})
    if value == "plain":
        assert diags == [], "the harness itself must build a valid recipe"
    if CONTROL.search(value) or diags:
        assert_rejected(diags, diag_path)
        return

    plan = plan_of(path, {"prefix": str(cwd)})
    out = tmp_path / "out"
    write_outputs(plan, ["shell", "dockerfile"], out)
    calls, stderr = run_bash_err([str(out / "install.sh")], cwd, stubs)
    assert calls == _expected_calls(field, value, cwd)
    docker = (out / "Dockerfile").read_text()
    if field.startswith("copy"):  # the script takes its files from files/ next to it
        written = f"{cwd}/{value}" if field == "copy-dest" else f"{cwd}/out.bin"  # as rendered
        src = value if field == "copy-src" else "data.txt"
        dest = below(cwd, value if field == "copy-dest" else "out.bin")
        if written.endswith("/"):  # cp and COPY agree: DEST/ is a folder to copy into
            dest = dest / src
        assert dest.read_bytes() == b"data\n"
        copies = [inst for inst in instructions(docker)
                  if inst.startswith("COPY ") and inst not in (HELPER_COPY, MANIFEST_COPY)]
        assert [json.loads(c[5:]) for c in copies] == [[f"files/t/{src}", written]]
    if field == "venv-path":
        assert (cwd / "ve.txt").read_bytes() == f"{cwd}/{value}".encode()
    if field == "run-workdir":
        assert (cwd / "wd.txt").read_bytes() == f"{below(cwd, value)}\n".encode()  # as pwd says
    if field == "step-name":
        assert f"[envkit] step 1/1: t: {' '.join(value.split())}\n" in stderr
    if field == "download-dest":
        assert below(cwd, "dl", value).read_bytes() == b""
    if not field.startswith("copy"):
        # The Dockerfile: nothing but the expected instructions, and its RUNs, run as
        # SHELL ["/bin/bash", "-o", "pipefail", "-c"] (or exec form) would, make the same calls.
        steps = ["RUN", "ENV", "RUN"] if field == "venv-path" else ["RUN"]
        assert kinds(docker) == ["FROM", "SHELL", *steps, "LABEL"]
        _clean(field, value, cwd)
        docker_cwd = tmp_path / "docker"
        docker_cwd.mkdir(exist_ok=True)
        docker_calls = []
        for command in shell_form_runs(docker):
            docker_calls += run_bash(["-o", "pipefail", "-c", command], docker_cwd, stubs)
        if field == "run-workdir":
            below(cwd, value).mkdir(parents=True, exist_ok=True)
            run_bash(run_argv(docker)[1:], docker_cwd)
            assert (docker_cwd / "wd.txt").read_bytes() == f"{below(cwd, value)}\n".encode()
        assert docker_calls == _expected_calls(field, value, cwd)
        if field == "venv-path":
            assert dockerfile_env(docker)["VIRTUAL_ENV"] == [("lit", f"{cwd}/{value}")]
    assert pwned(tmp_path) == []


@pytest.mark.parametrize(("field", "value"), _field_cases())
def test_field_payloads(recipe: Callable[..., Path], tmp_path: Path, stubs: Path, field: str,
                        value: str) -> None:
    check_field(recipe, tmp_path, stubs, field, value)


# Hostile text for the property tests: shell syntax, quotes, control characters, NUL,
# Unicode line separators and arbitrary Unicode, in any mix.
SHELL_BITS = st.sampled_from([
    "$(touch PWNED)", "`touch PWNED`", "; touch PWNED", "&& touch PWNED", "| touch PWNED",
    ">PWNED", "'", '"', "\\", "$", "${HOME}", "$HOME", "$$", "*", "~", "#", "!", "{a,b}",
    "\n", "\r", "\t", "\x00", "\x1b", "\x85", "\u2028", " ", "-", "=", "%", "@", ":", "/",
])
HOSTILE = st.lists(st.one_of(SHELL_BITS, st.text(st.characters(exclude_categories=["Cs"]),
                                                  max_size=4)), max_size=6).map("".join)
FIELD_EXAMPLES = int(os.environ.get("ENVKIT_FUZZ_EXAMPLES", "0")) or 12


@pytest.mark.parametrize("field", list(FIELDS))
@settings(max_examples=FIELD_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(value=HOSTILE)
def test_field_property(recipe: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory,
                        field: str, value: str) -> None:
    assume(_fits(field, value))
    root = tmp_path_factory.mktemp("field")
    bin_dir = make_stubs(root)
    check_field(lambda text, name="t": _write_recipe(root, text, name), root, bin_dir, field,
                value)


def _write_recipe(root: Path, body: str, name: str = "t") -> Path:
    path = root / f"{name}.yaml"
    path.write_text(HEADER.format(name=name) + body)
    return path


# --- verify checks: argv goes to the program as it is, never through a shell -------------


@pytest.mark.parametrize("value", [*PAYLOADS, PLACEHOLDER_PAYLOAD])
def test_check_argv_arrives_literally(recipe: Callable[..., Path], tmp_path: Path,
                                      value: str) -> None:
    check_argv(recipe, tmp_path, value)


@settings(max_examples=FIELD_EXAMPLES * 4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_check_argv_property(recipe: Callable[..., Path], tmp_path: Path, value: str) -> None:
    assume("{{" not in value and "{%" not in value)
    check_argv(recipe, tmp_path, value)


def check_argv(recipe: Callable[..., Path], tmp_path: Path, value: str) -> None:
    literal = value if value == "{{ prefix }}" else re.escape(value)  # prefix: a plain path
    pattern = yq("^" + literal + "$")
    path = recipe(f"steps: [{{run: 'true'}}]\nverify:\n  - command:\n      argv: "
                  f"[printf, '%s', {yq(value)}]\n      output: {pattern}\n")
    diags = problems(path)
    if ("\x00" in value or (PLACEHOLDER.search(value) and value != "{{ prefix }}")
            or refused_alone(value)):
        assert_rejected(diags, "verify[0].command.argv[2]", "verify[0].command.output")
        return
    assert diags == [], diags
    plan = plan_of(path, {"prefix": str(tmp_path)})
    [check] = plan.checks
    expected = value.replace("{{ prefix }}", str(tmp_path))
    assert check.command() == ["printf", "%s", expected]
    result = check.run(local_runner(env={"PATH": os.environ["PATH"]}))
    assert result.ok, result.detail
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
