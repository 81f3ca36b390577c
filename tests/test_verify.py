"""Running checks and the PASS/FAIL table, with stub runners."""

from __future__ import annotations

import io

from backend_fakes import MakeRecipe
from conftest import plan_of
from envkit.checks import Runner
from envkit.verify import run_checks

CHECKED = """\
    steps:
      - run: "true"
    verify:
      - name: tool runs
        command: {argv: [tool, --version], output: "^tool 1\\\\."}
      - file_exists: /opt/x
      - python_import: {module: json, version: ">=2"}
    """


def stub_runner(answers: dict[str, tuple[int, str]]) -> tuple[Runner, list[list[str]]]:
    seen: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str]:
        seen.append(argv)
        return answers[argv[0]]

    return run, seen


def test_run_checks_all_pass(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe(CHECKED))
    assert len(plan.checks) == 3
    run, seen = stub_runner({"tool": (0, "tool 1.2\n"), "test": (0, ""),
                             "python3": (0, "a warning\nenvkit-version:2.0.9\n")})
    out = io.StringIO()
    assert run_checks(plan.checks, run, "img:1", out) is True
    lines = out.getvalue().splitlines()
    assert lines[0] == "verify img:1: 3 checks"
    assert [ln.split()[0] for ln in lines[1:4]] == ["PASS"] * 3
    assert "tool runs" in lines[1] and "exists /opt/x" in lines[2] and "json 2.0.9" in lines[3]
    assert lines[-1] == "all 3 checks passed"
    assert seen[0] == ["tool", "--version"] and seen[1] == ["test", "-e", "/opt/x"]


def test_run_checks_one_fails(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe(CHECKED))
    run, _ = stub_runner({"tool": (0, "tool 1.2\n"), "test": (1, ""),
                          "python3": (0, "envkit-version:2.0.9\nwarned after\n")})
    out = io.StringIO()
    assert run_checks(plan.checks, run, "/env", out) is False
    lines = out.getvalue().splitlines()
    fail = [ln for ln in lines if ln.startswith("  FAIL")]
    assert len(fail) == 1 and "exists /opt/x" in fail[0] and "/opt/x is missing" in fail[0]
    assert lines[-1] == "1 of 3 checks failed"


def test_run_checks_a_runner_that_cannot_run(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe(CHECKED))

    def run(argv: list[str]) -> tuple[int, str]:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    out = io.StringIO()
    assert run_checks(plan.checks, run, "/env", out) is False
    assert out.getvalue().count("could not run") == 3
    assert out.getvalue().endswith("3 of 3 checks failed\n")


def test_run_checks_without_checks(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe("steps:\n  - run: \"true\"\n"))
    out = io.StringIO()

    def run(argv: list[str]) -> tuple[int, str]:
        raise AssertionError("nothing to run")

    assert plan.checks == []
    assert run_checks(plan.checks, run, "/env", out) is True
    assert out.getvalue() == "verify /env: the recipe declares no checks\n"
