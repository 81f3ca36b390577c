"""Error paths: every mistake in a recipe is one line ``FILE:LINE:COL: path: message (hint)``.

Each test runs from the temp folder the recipes are written to, so a diagnostic names its
file as ``t.yaml`` (the display path is relative to the working directory). The standard
header of the ``recipe`` fixture is four lines, so a recipe body starts on line 5.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import problems, run_cli

# FILE:LINE:COL: field.path: message (hint)
DIAG = re.compile(r"^(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+): (?P<path>\S+): (?P<message>.+)$")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def only(lines: list[str]) -> str:
    """The single diagnostic of a file that has exactly one problem."""
    assert len(lines) == 1, lines
    return lines[0]


# --- the file itself ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "where", "detail"), [
    pytest.param("name: [a, b\n", "t.yaml:2:1", "expected ',' or ']'", id="eof"),
    pytest.param("name: t\nsteps:\n  - apt: [git, curl\n  - pip: [numpy]\n",
                 "t.yaml:4:8", "expected ',' or ']', but got ':'", id="mid-file"),
])
def test_unclosed_flow_list_is_invalid_yaml(write, text, where, detail) -> None:
    line = only(problems(write(text)))
    assert line.startswith(f"{where}: (yaml): invalid YAML: ")
    assert detail in line


@pytest.mark.parametrize(("text", "got"), [
    ("- name: a\n- name: b\n", "a list"),
    ("hello\n", "a string"),
    ("42\n", "a number"),
    ("~\n", "nothing"),
])
def test_top_level_must_be_a_mapping(write, text, got) -> None:
    assert problems(write(text)) == [
        f"t.yaml:1:1: (top): a recipe must be a mapping, got {got} "
        "(start with 'name:', 'description:', 'version:')"]


@pytest.mark.parametrize("text", ["", "\n\n", "# only\n# comments\n"],
                         ids=["empty", "blank", "comments"])
def test_empty_file(write, text) -> None:
    assert problems(write(text)) == [
        "t.yaml:1:1: (top): the file is empty "
        "(a recipe is a mapping: name, description, version, steps)"]


def test_two_documents_in_one_file(write) -> None:
    line = only(problems(write("name: a\n---\nname: b\n")))
    assert re.match(r"t\.yaml:[23]:1: \(top\): more than one YAML document \(one recipe", line)


def test_non_utf8_byte_is_located(tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes(b"name: t\ndescription: caf\xe9 au lait\nversion: 1.0.0\n")
    # "description: caf" is 16 characters, so the bad byte is column 17 of line 2
    assert problems(path) == ["t.yaml:2:17: (file): not UTF-8: byte 0xe9"]


def test_non_utf8_byte_after_multibyte_text(tmp_path) -> None:
    path = tmp_path / "t.yaml"
    path.write_bytes("name: t\n# ok: é\n".encode() + b"x: \xff\n")
    assert problems(path) == ["t.yaml:3:4: (file): not UTF-8: byte 0xff"]


# --- unknown keys and kinds -----------------------------------------------------------------


def test_misspelled_top_level_key(recipe) -> None:
    assert problems(recipe("stepz: []\n")) == [
        "t.yaml:5:1: stepz: unknown key 'stepz' (did you mean 'steps'?)"]


def test_unknown_top_level_key_lists_the_allowed_ones(recipe) -> None:
    line = only(problems(recipe("zzz: 1\n")))
    assert line.startswith("t.yaml:5:1: zzz: unknown key 'zzz' (allowed: name, description, ")


def test_unknown_key_inside_a_step_kind(recipe) -> None:
    path = recipe("""\
        steps:
          - pip:
              packages: [numpy]
              indx: https://pypi.org/simple
    """)
    assert problems(path) == [
        "t.yaml:8:7: steps[0].pip.indx: unknown key 'indx' (did you mean 'index'?)"]


def test_unknown_step_kind(recipe) -> None:
    path = recipe("steps:\n  - name: tools\n    aptt: [git]\n")
    assert problems(path) == [
        "t.yaml:7:5: steps[0].aptt: unknown step kind 'aptt' (did you mean 'apt'?)"]


def test_unknown_step_kind_without_a_close_match_lists_the_kinds(recipe) -> None:
    line = only(problems(recipe("steps:\n  - zzzz: 1\n")))
    assert line == ("t.yaml:6:5: steps[0].zzzz: unknown step kind 'zzzz' "
                    "(kinds: apt, cmake, copy, download, env, git, pip, run, uv_python, venv)")


def test_unknown_check_kind(recipe) -> None:
    path = recipe("verify:\n  - python_imprt: numpy\n")
    assert problems(path) == [
        "t.yaml:6:5: verify[0].python_imprt: unknown check kind 'python_imprt' "
        "(did you mean 'python_import'?)"]


# --- wrong types ----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    pytest.param("steps:\n  - venv:\n      path: /opt/v\n      python: 3.10\n",
                 't.yaml:8:15: steps[0].venv.python: expected string, got number '
                 '(quote it: "3.10")', id="float-keeps-its-spelling"),
    pytest.param("steps:\n  - pip: {packages: [numpy], python: 3}\n",
                 't.yaml:6:38: steps[0].pip.python: expected string, got integer '
                 '(quote it: "3")', id="int"),
    pytest.param("requires: python-venv\n",
                 "t.yaml:5:11: requires: expected list, got string", id="string-for-list"),
    pytest.param("steps:\n  - pip: {packages: numpy}\n",
                 "t.yaml:6:21: steps[0].pip.packages: expected list, got string",
                 id="string-for-packages"),
    pytest.param("steps:\n  - apt: git\n",
                 "t.yaml:6:10: steps[0].apt: expected list or mapping, got string"
                 " (write a list: [git])",
                 id="string-for-shorthand"),
    pytest.param("steps: {apt: [git]}\n",
                 "t.yaml:5:8: steps: expected list, got mapping", id="mapping-for-list"),
    pytest.param("steps:\n  - git: {url: 'https://x.org/a.git', ref: main, dest: /src, "
                 "submodules: 'yes'}\n",
                 "t.yaml:6:74: steps[0].git.submodules: expected boolean, got string",
                 id="string-for-bool"),
    pytest.param("env:\n  A: [1]\n",
                 "t.yaml:6:6: env.A: expected string or number, got list",
                 id="list-for-env-value"),
])
def test_wrong_type(recipe, body, expected) -> None:
    assert problems(recipe(body)) == [expected]


def test_number_for_version_hints_the_quoted_spelling(write) -> None:
    path = write("name: t\ndescription: d\nversion: 1.10\nbase: debian:bookworm-slim\n")
    assert problems(path) == [
        't.yaml:3:10: version: expected string, got number (quote it: "1.10")']


# --- required fields and kind keys ----------------------------------------------------------


def test_missing_top_level_version(write) -> None:
    path = write("name: t\ndescription: d\nbase: debian:bookworm-slim\n")
    assert problems(path) == ["t.yaml:1:1: (top): missing required field 'version'"]


def test_download_without_sha256(recipe) -> None:
    path = recipe("""\
        steps:
          - download:
              url: https://example.com/a.tar.gz
              dest: /tmp/a.tar.gz
    """)
    assert problems(path) == ["t.yaml:7:7: steps[0].download: missing required field 'sha256'"]


def test_each_missing_field_is_its_own_line(recipe) -> None:
    path = recipe("steps:\n  - download:\n      url: https://example.com/a\n")
    assert problems(path) == [
        "t.yaml:7:7: steps[0].download: missing required field 'dest'",
        "t.yaml:7:7: steps[0].download: missing required field 'sha256'",
    ]


def test_step_with_two_kind_keys(recipe) -> None:
    path = recipe("steps:\n  - apt: [git]\n    pip: [numpy]\n")
    assert problems(path) == [
        "t.yaml:6:5: steps[0]: a step has exactly one kind key, found 'apt' and 'pip' "
        "(split it into 2 steps)"]


def test_step_with_no_kind_key(recipe) -> None:
    path = recipe("steps:\n  - name: nothing here\n")
    assert problems(path) == [
        "t.yaml:6:5: steps[0]: a step needs one kind key "
        "(one of: apt, cmake, copy, download, env, git, pip, run, uv_python, venv)"]


# --- YAML features that are refused ---------------------------------------------------------


def test_duplicate_top_level_key_points_at_the_second(recipe) -> None:
    path = recipe("description: again\n")
    assert problems(path) == ["t.yaml:5:1: description: duplicate key (first defined at line 2)"]


def test_duplicate_key_inside_a_step(recipe) -> None:
    path = recipe("""\
        steps:
          - pip:
              packages: [numpy]
              index: https://pypi.org/simple
              packages: [scipy]
    """)
    assert problems(path) == [
        "t.yaml:9:7: steps[0].pip.packages: duplicate key (first defined at line 7)"]


def test_python_tag_is_refused_and_never_runs(recipe, tmp_path) -> None:
    marker = tmp_path / "ran"
    path = recipe(f'steps:\n  - run: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert problems(path) == [
        "t.yaml:6:10: steps[0].run: tag 'tag:yaml.org,2002:python/object/apply:os.system' "
        "is not allowed (plain YAML only)"]
    assert not marker.exists()


@pytest.mark.parametrize(("value", "tag"), [
    ("!!python/name:os.system ''", "tag:yaml.org,2002:python/name:os.system"),
    ("!!binary aGk=", "tag:yaml.org,2002:binary"),
    ("!custom x", "!custom"),
    ("!!set {a: null}", "tag:yaml.org,2002:set"),
])
def test_other_non_plain_tags_are_refused(recipe, value, tag) -> None:
    assert problems(recipe(f"steps:\n  - run: {value}\n")) == [
        f"t.yaml:6:10: steps[0].run: tag '{tag}' is not allowed (plain YAML only)"]


def test_merge_key_is_refused(recipe) -> None:
    path = recipe("steps:\n  - &tools {apt: [git]}\n  - <<: *tools\n    name: again\n")
    assert problems(path) == [
        "t.yaml:7:5: steps[1]: merge keys ('<<') are not supported (write the keys out)"]


# --- params given with --set ----------------------------------------------------------------

PARAMS = """\
    params:
      python:
        type: choice
        values: ["3.11", "3.12"]
        default: "3.11"
      jobs:
        type: int
        minimum: 1
        maximum: 64
        default: 4
      torch:
        type: version
        range: ">=2.1,<3"
        default: "2.5.1"
    steps:
      - run: echo {{ python }} {{ jobs }} {{ torch }}
"""


@pytest.mark.parametrize(("settings", "expected"), [
    ({"python": "2.7"}, "--set: python: '2.7' is not one of: 3.11, 3.12"),
    ({"pyton": "3.11"}, "--set: pyton: unknown param 'pyton' (did you mean 'python'?)"),
    ({"zzz": "1"}, "--set: zzz: unknown param 'zzz' (params: cache, jobs, prefix, python, "
                   "torch)"),
    ({"jobs": "abc"}, "--set: jobs: expected an integer, got 'abc'"),
    ({"jobs": "0"}, "--set: jobs: 0 is less than the minimum, 1"),
    ({"jobs": "65"}, "--set: jobs: 65 is more than the maximum, 64"),
    ({"torch": "2.5.1; rm -rf /"}, "--set: torch: not a valid version: '2.5.1; rm -rf /' "
                                   "(PEP 440, e.g. 3.11 or 2.6.2)"),
    ({"torch": "latest"}, "--set: torch: not a valid version: 'latest' (PEP 440, e.g. 3.11 or "
                          "2.6.2)"),
    ({"torch": "1.13.1"}, "--set: torch: 1.13.1 is not >=2.1,<3"),
    ({"torch": "2.6.0\n"}, "--set: torch: must not contain control characters or newlines"),
])
def test_bad_setting(recipe, settings, expected) -> None:
    assert problems(recipe(PARAMS), settings) == [expected]


def test_good_settings_are_taken(recipe) -> None:
    assert problems(recipe(PARAMS), {"python": "3.12", "jobs": "64", "torch": "2.6.0rc1"}) == []


@pytest.mark.parametrize(("spec", "message"), [
    ("{type: string, default: a, minimum: 1}", "params.p.minimum: only an int param has "
                                               "'minimum'"),
    ("{type: int, default: 1, range: '>1'}", "params.p.range: only a version param has 'range'"),
    ("{type: version, default: '1', range: 'two'}", "params.p.range: not a valid version "
                                                    "specifier: 'two'"),
    ("{type: version, default: 'x'}", "params.p.default: not a valid version: 'x'"),
    ("{type: version, default: '1.0', range: '>=2'}", "params.p.default: 1.0 is not >=2"),
    ("{type: int, default: 9, maximum: 8}", "params.p.default: 9 is more than the maximum, 8"),
])
def test_bad_param_declarations(recipe, spec: str, message: str) -> None:
    lines = problems(recipe(f"params:\n  p: {spec}\n"))
    assert any(message in line for line in lines), lines


def test_every_bad_setting_is_reported(recipe) -> None:
    lines = problems(recipe(PARAMS), {"python": "2.7", "pyton": "x", "jobs": "abc"})
    assert [line.split(":")[1].strip() for line in lines] == ["jobs", "python", "pyton"]


def test_bad_int_default(recipe) -> None:
    line = only(problems(recipe("params:\n  jobs: {type: int, default: abc}\n")))
    assert line.startswith("t.yaml:6:30: params.jobs.default: ")
    assert "expected an integer, got 'abc'" in line


# --- placeholders ---------------------------------------------------------------------------


def test_unknown_placeholder(recipe) -> None:
    path = recipe("steps:\n  - run: echo {{ nosuch }}\n")
    assert problems(path) == [
        "t.yaml:6:10: steps[0].run: unknown param 'nosuch' in {{ nosuch }} "
        "(declare it under params)"]


def test_misspelled_placeholder(recipe) -> None:
    path = recipe("params:\n  torch: {type: string, default: '2'}\nsteps:\n"
                  "  - run: echo {{ toch }}\n")
    assert problems(path) == [
        "t.yaml:8:10: steps[0].run: unknown param 'toch' in {{ toch }} (did you mean 'torch'?)"]


def test_unknown_placeholder_in_a_list_value_is_located_at_the_item(recipe) -> None:
    lines = problems(recipe('steps:\n  - pip: [numpy, "scipy=={{ scipy }}"]\n'))
    assert ("t.yaml:6:18: steps[0].pip[1]: unknown param 'scipy' in {{ scipy }} "
            "(declare it under params)") in lines


def test_unknown_placeholder_in_a_checked_value_is_one_line(recipe) -> None:
    only(problems(recipe('steps:\n  - apt: ["{{ nosuch }}"]\n')))


def test_template_logic_is_refused(recipe) -> None:
    path = recipe('steps:\n  - run: "{% if x %}echo hi{% endif %}"\n')
    assert problems(path) == [
        "t.yaml:6:10: steps[0].run: template logic ('{%') is not allowed in recipes "
        "(use params and {{ name }})"]


def test_placeholder_must_be_a_bare_name(recipe) -> None:
    lines = problems(recipe('steps:\n  - run: "echo {{ a b }}"\n'))
    assert ("t.yaml:6:10: steps[0].run: bad placeholder '{{ a b }}' "
            "(only {{ name }} of a param)") in lines


# --- requires -------------------------------------------------------------------------------


def test_requires_unknown_recipe(recipe) -> None:
    path = recipe("requires: [python-venvv]\n")
    assert problems(path) == [
        "t.yaml:5:12: requires[0]: unknown recipe 'python-venvv' (did you mean 'python-venv'?)"]


def test_requires_cycle(recipe) -> None:
    recipe("requires: [b]\n", "a")
    recipe("requires: [a]\n", "b")
    assert problems(Path("a.yaml")) == ["b.yaml:5:12: requires[0]: requires cycle: a -> b -> a"]
    assert problems(Path("b.yaml")) == ["a.yaml:5:12: requires[0]: requires cycle: b -> a -> b"]


def test_requires_cycle_of_three(recipe) -> None:
    recipe("requires: [b]\n", "a")
    recipe("requires: [c]\n", "b")
    recipe("requires: [python-venv, a]\n", "c")
    assert problems(Path("a.yaml")) == [
        "c.yaml:5:25: requires[1]: requires cycle: a -> b -> c -> a"]


def test_recipe_requires_itself(recipe) -> None:
    path = recipe("requires: [t]\n")
    assert problems(path) == ["t.yaml:5:12: requires[0]: a recipe cannot require itself"]


def test_requires_listed_twice(recipe) -> None:
    path = recipe("requires: [python-venv, python-venv]\n")
    assert problems(path) == ["t.yaml:5:25: requires[1]: 'python-venv' is listed twice"]


def test_problems_of_a_required_recipe_name_its_own_file(recipe) -> None:
    recipe("stepz: []\n", "dep")
    path = recipe("requires: [dep]\n")
    assert problems(path) == ["dep.yaml:5:1: stepz: unknown key 'stepz' (did you mean 'steps'?)"]


# --- grammar of values, checked after binding -----------------------------------------------

SHA = "a" * 64


@pytest.mark.parametrize(("body", "where", "message"), [
    pytest.param('steps:\n  - pip: ["numpy=>1"]\n', "t.yaml:6:11: steps[0].pip[0]",
                 "not a valid pip requirement (PEP 508): ", id="pip"),
    pytest.param('steps:\n  - apt: ["Git_Tool"]\n', "t.yaml:6:11: steps[0].apt[0]",
                 "not a Debian package name: 'Git_Tool'", id="apt"),
    pytest.param("steps:\n  - venv: {path: venv}\n", "t.yaml:6:18: steps[0].venv.path",
                 "must be an absolute path: 'venv'", id="venv-path"),
    pytest.param('verify:\n  - python_import: {module: numpy, version: "=>2"}\n',
                 "t.yaml:6:45: verify[0].python_import.version",
                 "not a valid version specifier: '=>2'", id="specifier"),
    pytest.param('verify:\n  - command: {argv: [ls], output: "([a"}\n',
                 "t.yaml:6:35: verify[0].command.output",
                 "not a valid regular expression: ", id="regex"),
    pytest.param(f"steps:\n  - download: {{url: 'ftpx://x', sha256: {SHA}, dest: /a}}\n",
                 "t.yaml:6:21: steps[0].download.url", "not an http(s) URL: 'ftpx://x'",
                 id="url"),
])
def test_grammar_error(recipe, body, where, message) -> None:
    line = only(problems(recipe(body)))
    assert line.startswith(f"{where}: {message}")


def test_grammar_applies_to_a_value_given_with_set(recipe) -> None:
    path = recipe("""\
        params:
          pkg: {type: string, default: numpy}
        steps:
          - venv: {path: /opt/v}
          - pip: ["{{ pkg }}"]
    """)
    assert problems(path) == []
    line = only(problems(path, {"pkg": "numpy=>1"}))
    assert line.startswith("t.yaml:9:11: steps[1].pip[0]: not a valid pip requirement")


# --- all problems at once -------------------------------------------------------------------

FIVE_MISTAKES = """\
name: {name}
description: five mistakes in five places
version: 1.0.0
base: debian:bookworm-slim
stepz: []
steps:
  - aptt: [git]
  - pip:
      packages: [numpy]
      indx: https://pypi.org/simple
  - venv:
      path: venv
verify:
  - python_import:
      module: numpy
      version: "=>2"
"""


def test_all_problems_of_a_file_at_once_sorted_by_line(write) -> None:
    assert problems(write(FIVE_MISTAKES.format(name="t"))) == [
        "t.yaml:5:1: stepz: unknown key 'stepz' (did you mean 'steps'?)",
        "t.yaml:7:5: steps[0].aptt: unknown step kind 'aptt' (did you mean 'apt'?)",
        "t.yaml:10:7: steps[1].pip.indx: unknown key 'indx' (did you mean 'index'?)",
        "t.yaml:12:13: steps[2].venv.path: must be an absolute path: 'venv'",
        "t.yaml:16:16: verify[0].python_import.version: not a valid version specifier: '=>2' "
        "(e.g. '>=2.6,<3')",
    ]


# --- known gaps (strict: when one starts passing, drop its marker) --------------------------


def test_control_character_is_one_located_line(recipe) -> None:
    line = only(problems(recipe('steps:\n  - run: "echo \x07 hi"\n')))
    assert "\n" not in line
    assert line.startswith("t.yaml:6:16: (yaml): ")


def test_bad_param_name_points_at_the_name(recipe) -> None:
    path = recipe("params:\n  ok: {type: string, default: x}\n"
                  "  Bad-Name: {type: string, default: x}\n")
    line = only(problems(path))
    assert line.startswith("t.yaml:7:3: params.Bad-Name: invalid name 'Bad-Name'")


# --- the command line -----------------------------------------------------------------------


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("invoke", *args)


BROKEN = {
    "five-mistakes": (FIVE_MISTAKES.format(name="broken"), [5, 7, 10, 12, 16]),
    "bad-yaml": ("name: broken\nsteps: [a, b\n", [3]),
    "python-tag": ("name: broken\nx: !!python/object/apply:os.system ['touch {marker}']\n", [2]),
}


@dataclass
class Broken:
    path: Path
    lines: list[int]  # the line of each expected diagnostic, in order
    marker: Path  # a file that exists only if the recipe managed to run a command


@pytest.fixture(params=[*sorted(BROKEN), "not-utf8"])
def broken(request, tmp_path) -> Broken:
    path, marker = tmp_path / "broken.yaml", tmp_path / "ran"
    if request.param == "not-utf8":
        path.write_bytes(b"name: broken\ndescription: caf\xe9\n")
        return Broken(path, [2], marker)
    text, lines = BROKEN[request.param]
    path.write_text(text.format(marker=marker))
    return Broken(path, lines, marker)


def assert_diagnostics(result: subprocess.CompletedProcess[str], broken: Broken) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert not broken.marker.exists()
    found = result.stderr.splitlines()
    for line in found:
        m = DIAG.match(line)
        assert m, f"not FILE:LINE:COL: path: message: {line!r}"
        assert m["file"] == str(broken.path)
    assert [int(DIAG.match(line)["line"]) for line in found] == broken.lines


def test_cli_validate_reports_diagnostics(broken) -> None:
    result = invoke("validate", "--recipe", str(broken.path))
    assert_diagnostics(result, broken)
    assert result.stdout.splitlines() == [f"{broken.path}: invalid"]


@pytest.mark.parametrize("precreate", [True, False], ids=["out-exists", "out-missing"])
def test_cli_render_reports_diagnostics_and_writes_nothing(broken, tmp_path, precreate) -> None:
    out = tmp_path / "out"
    if precreate:
        out.mkdir()
    result = invoke("render", "--recipe", str(broken.path), "--out", str(out))
    assert_diagnostics(result, broken)
    assert result.stdout == ""
    assert not out.exists() or list(out.rglob("*")) == []


def test_cli_render_to_stdout_prints_nothing(broken) -> None:
    result = invoke("render", "--recipe", str(broken.path))
    assert_diagnostics(result, broken)
    assert result.stdout == ""


def test_cli_unknown_set_is_one_line() -> None:
    result = invoke("render", "--recipe", "paddle-cpu", "--set", "nosuch=1")
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    line = only(result.stderr.splitlines())
    assert line.startswith("--set: nosuch: unknown param 'nosuch' (")
