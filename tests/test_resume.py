"""Resumable runs: the shell script stamps each finished step with the hash of its text, and a
re-run starts at the first step that failed or changed. Real bash on real rendered scripts;
each step appends its number to a log, so the log shows exactly which steps ran."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ENVKIT, HEADER, plan_of
from envkit.render import render

STEPS = 5


def recipe_text(changed: dict[int, str] | None = None, fault_at: int = 3) -> str:
    """Five run steps; each logs its number, step ``fault_at`` fails while FAULT exists."""
    changed = changed or {}
    lines = [HEADER.format(name="t"), "steps:\n"]
    for n in range(1, STEPS + 1):
        fault = "test ! -e \"$ENVKIT_TEST_DIR/FAULT\"; " if n == fault_at else ""
        extra = changed.get(n, "")
        lines.append(f"  - name: step {n}\n"
                     f"    run: '{fault}echo {n}{extra} >> \"$ENVKIT_TEST_DIR/ran\"'\n")
    return "".join(lines)


class Env:
    """A folder holding the recipe, the rendered script, its state and the run log."""

    def __init__(self, root: Path):
        self.root = root
        self.recipe = root / "t.yaml"
        self.script = root / "out" / "install.sh"

    def write(self, text: str) -> None:
        self.recipe.write_text(text)
        self.script.parent.mkdir(exist_ok=True)
        self.script.write_text(render(plan_of(self.recipe, {"prefix": str(self.root / "p")}),
                                      "shell"))

    def run(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        (self.root / "ran").unlink(missing_ok=True)
        return subprocess.run(["bash", str(self.script), *args], cwd=self.root,
                              env={"PATH": os.environ["PATH"], "HOME": str(self.root),
                                   "ENVKIT_TEST_DIR": str(self.root)},
                              capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]

    def ran(self) -> list[str]:
        log = self.root / "ran"
        return log.read_text().split() if log.exists() else []


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


@pytest.mark.parametrize("k", range(1, STEPS + 1))
def test_a_failure_at_step_k_resumes_at_step_k(env: Env, k: int) -> None:
    env.write(recipe_text(fault_at=k))
    (env.root / "FAULT").touch()
    first = env.run()
    assert first.returncode != 0
    assert f"step {k}/{STEPS} failed" in first.stderr
    assert env.ran() == [str(n) for n in range(1, k)]

    (env.root / "FAULT").unlink()  # the fault is gone; the recipe is the same
    second = env.run()
    assert second.returncode == 0, second.stderr
    assert env.ran() == [str(n) for n in range(k, STEPS + 1)]  # only steps >= k ran
    for n in range(1, k):
        assert f"step {n}/{STEPS}: t: step {n}: finished before, skipped" in second.stderr

    third = env.run()
    assert third.returncode == 0 and env.ran() == []
    assert third.stderr.count("finished before, skipped") == STEPS


def test_a_changed_step_runs_again_with_every_step_after_it(env: Env) -> None:
    env.write(recipe_text())
    assert env.run().returncode == 0 and env.ran() == ["1", "2", "3", "4", "5"]
    env.write(recipe_text({4: "-changed"}))
    assert env.run().returncode == 0
    assert env.ran() == ["4-changed", "5"]
    env.write(recipe_text({2: "-changed", 4: "-changed"}))
    assert env.run().returncode == 0
    assert env.ran() == ["2-changed", "3", "4-changed", "5"]


def test_a_step_is_skipped_only_if_every_step_before_it_is_as_it_was(env: Env) -> None:
    # Stamps chain: step 5's stamp is stale once step 1 changes, even though step 5's own
    # text is the same (it may depend on what step 1 did).
    env.write(recipe_text())
    env.run()
    env.write(recipe_text({1: "-changed"}))
    env.run()
    assert env.ran() == ["1-changed", "2", "3", "4", "5"]


def test_from_step_reruns_from_that_step(env: Env) -> None:
    env.write(recipe_text())
    env.run()
    done = env.run("--from-step", "4")
    assert done.returncode == 0, done.stderr
    assert env.ran() == ["4", "5"]


def test_from_step_refuses_to_skip_a_step_that_never_finished(env: Env) -> None:
    env.write(recipe_text())
    (env.root / "FAULT").touch()
    env.run()  # steps 1 and 2 finish, 3 fails
    done = env.run("--from-step", "5")
    assert done.returncode == 1 and env.ran() == []
    assert ("step 3/5 (t: step 3) has not finished as it is now; cannot start at step 5 "
            "(run without --from-step)") in done.stderr


def test_fresh_runs_everything(env: Env) -> None:
    env.write(recipe_text())
    env.run()
    done = env.run("--fresh")
    assert done.returncode == 0 and env.ran() == ["1", "2", "3", "4", "5"]
    assert "finished before" not in done.stderr


@pytest.mark.parametrize("args", [["--from-step"], ["--from-step", "0"], ["--from-step", "6"],
                                  ["--from-step", "x"], ["--frosh"], ["extra"]])
def test_bad_arguments_get_the_usage(env: Env, args: list[str]) -> None:
    env.write(recipe_text())
    done = env.run(*args)
    assert done.returncode == 2 and env.ran() == []
    assert "(usage: bash install.sh [--fresh | --from-step N], N from 1 to 5)" in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_skipped_steps_variables_are_still_set(recipe, env: Env) -> None:
    env.recipe = recipe("""\
        steps:
          - venv: {path: "{{ prefix }}/venv"}
          - env: {STAGE: one}
          - run: 'printf "%s %s\\n" "$VIRTUAL_ENV" "$STAGE" >> "$ENVKIT_TEST_DIR/ran"'
    """)
    env.script.parent.mkdir(exist_ok=True)
    plan = plan_of(env.recipe, {"prefix": str(env.root / "p")})
    env.script.write_text(render(plan, "shell"))
    assert env.run().returncode == 0
    done = env.run("--from-step", "3")  # venv and env step skipped, their variables set
    assert done.returncode == 0, done.stderr
    assert env.ran() == [str(env.root / "p" / "venv"), "one"]


def test_stamps_live_in_the_state_folder_and_are_written_whole(env: Env) -> None:
    env.write(recipe_text())
    env.run()
    state = env.script.parent / ".envkit-state"
    stamps = sorted(p.name for p in state.iterdir())
    assert stamps == [f"step-{n}" for n in range(1, STEPS + 1)]  # no temp files left
    assert all(len((state / s).read_text().strip()) == 64 for s in stamps)
    other = env.root / "elsewhere"
    done = subprocess.run(["bash", str(env.script)], cwd=env.root, capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"], "ENVKIT_STATE": str(other),
                                          "ENVKIT_TEST_DIR": str(env.root)})
    assert done.returncode == 0 and (other / "step-5").exists()


def test_fresh_never_removes_more_than_the_stamps(env: Env, tmp_path: Path) -> None:
    env.write(recipe_text())
    keep = tmp_path / "state" / "precious"
    keep.parent.mkdir()
    keep.write_text("mine\n")
    subprocess.run(["bash", str(env.script), "--fresh"], cwd=env.root, capture_output=True,
                   env={"PATH": os.environ["PATH"], "ENVKIT_STATE": str(keep.parent),
                        "ENVKIT_TEST_DIR": str(env.root)}, check=True)
    assert keep.read_text() == "mine\n"


def test_an_interrupted_step_runs_again(env: Env) -> None:
    slow = 'if [ -e "$ENVKIT_TEST_DIR/SLOW" ]; then sleep 30; fi; echo 3 >>'
    env.write(recipe_text().replace("echo 3 >>", slow))
    (env.root / "SLOW").touch()
    proc = subprocess.Popen(["bash", str(env.script)], cwd=env.root, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env={"PATH": os.environ["PATH"], "ENVKIT_TEST_DIR": str(env.root)})
    assert proc.stderr is not None
    for line in proc.stderr:
        if "step 3/5: t: step 3" in line:
            break
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert env.ran() == ["1", "2"]
    (env.root / "SLOW").unlink()  # the same script again
    done = env.run()
    assert env.ran() == ["3", "4", "5"], done.stderr


def test_host_runs_resume_through_envkit(tmp_path: Path) -> None:
    """`invoke run` twice: the second run skips every finished step; --fresh reruns them."""
    (tmp_path / "t.yaml").write_text(recipe_text())
    env = {**os.environ, "ENVKIT_TEST_DIR": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "ran").unlink(missing_ok=True)
        return subprocess.run([ENVKIT, "run", "--recipe", "./t.yaml", *args], cwd=tmp_path,
                              capture_output=True, text=True, env=env, timeout=120)

    (tmp_path / "FAULT").touch()
    first = run()
    assert first.returncode == 1 and "at step 3/5" in first.stderr
    (tmp_path / "FAULT").unlink()
    second = run()
    assert second.returncode == 0, second.stdout + second.stderr
    assert (tmp_path / "ran").read_text().split() == ["3", "4", "5"]
    assert "step 1/5: t: step 1: finished before, skipped" in second.stdout
    third = run("--from-step", "5")
    assert third.returncode == 0 and (tmp_path / "ran").read_text().split() == ["5"]
    fresh = run("--fresh")
    assert fresh.returncode == 0 and len((tmp_path / "ran").read_text().split()) == 5
    bad = run("--from-step", "9")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "envkit: --from-step: --from-step 9: t has steps 1 to 5"
