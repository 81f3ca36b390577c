"""Verify checks, judged on real commands run on this host."""

from __future__ import annotations

import signal
import sys

import pytest

from conftest import plan_of
from envkit import checks, grammar
from envkit.checks import Command, FileExists, PythonImport, local_runner

RUN = local_runner()


def test_command_exit_code_and_output() -> None:
    ok = Command(argv=[sys.executable, "-c", "print('hello 42')"], output=r"hello \d+")
    assert ok.run(RUN).ok
    wrong = Command(argv=[sys.executable, "-c", "print('bye')"], output="hello")
    result = wrong.run(RUN)
    assert not result.ok and "does not match /hello/" in result.detail and "bye" in result.detail
    code = Command(argv=[sys.executable, "-c", "raise SystemExit(3)"], exit_code=3)
    assert code.run(RUN).ok
    assert not Command(argv=[sys.executable, "-c", "raise SystemExit(3)"]).run(RUN).ok


def test_an_output_regex_that_backtracks_for_ever_fails_the_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks, "OUTPUT_SECONDS", 0.2)
    hang = Command(argv=["x"], output="(a+)+$")
    ok, detail = hang.judge(0, "a" * 40 + "b")
    assert not ok
    assert detail == ("pattern '(a+)+$' takes too long to match 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaab' (nested repeats such as (a+)+ backtrack)")
    ok, detail = hang.judge(0, "a" * 100 + "b")
    assert not ok and "takes too long to match 101 characters of text" in detail
    # a search that returns keeps working, and no alarm is left set
    assert Command(argv=["x"], output="^b$").judge(0, "a\nb\n") == (True, "exit 0")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_time_limited_match_leaves_the_alarm_as_it_was() -> None:
    before = signal.getsignal(signal.SIGALRM)
    assert grammar.matches("a", "xa") and signal.getsignal(signal.SIGALRM) is before
    with pytest.raises(grammar.TooSlow):
        grammar.matches("(a+)+$", "a" * 40 + "b", seconds=0.1)
    assert signal.getsignal(signal.SIGALRM) is before
    # a timer someone else set runs on untouched (the match then has no limit of its own)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        assert grammar.matches("b$", "ab", whole=False)
        assert 55 < signal.getitimer(signal.ITIMER_REAL)[0] <= 60
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def test_command_that_cannot_start() -> None:
    result = Command(argv=["/nonexistent/program"]).run(RUN)
    assert not result.ok and "could not run" in result.detail


def test_python_import_checks_the_version_with_packaging() -> None:
    import yaml

    ok = PythonImport(module="yaml", version=f">={yaml.__version__}", python=sys.executable)
    assert ok.run(RUN).ok, ok.run(RUN).detail
    too_new = PythonImport(module="yaml", version=">=999", python=sys.executable)
    result = too_new.run(RUN)
    assert not result.ok and "expected >=999" in result.detail
    missing = PythonImport(module="no_such_module_xyz", python=sys.executable).run(RUN)
    assert not missing.ok and "ModuleNotFoundError" in missing.detail


def test_python_import_falls_back_to_distribution_metadata() -> None:
    # jinja2 has __version__; 'invoke' too; 'packaging' too. 'docker' has one as well,
    # so use a module without __version__: 'jsonschema_specifications'.
    check = PythonImport(module="jsonschema_specifications", version=">=2023.1",
                         python=sys.executable)
    assert check.run(RUN).ok, check.run(RUN).detail


def test_file_exists(tmp_path) -> None:
    (tmp_path / "x").write_text("")
    assert FileExists(path=str(tmp_path / "x")).run(RUN).ok
    assert not FileExists(path=str(tmp_path / "y")).run(RUN).ok


def test_checks_bind_to_the_last_venv(recipe) -> None:
    path = recipe("""
        steps:
          - venv: {path: /opt/a}
          - venv: {path: /opt/b}
        verify:
          - python_import: json
          - file_exists: /opt/b/bin/python
          - name: named
            command: [python, -V]
    """)
    checks = plan_of(path).checks
    assert checks[0].command()[0] == "/opt/b/bin/python"
    assert checks[1].command() == ["test", "-e", "/opt/b/bin/python"]
    assert checks[2].label() == "named" and checks[2].command() == ["python", "-V"]
