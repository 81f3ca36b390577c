"""CI templates: envkit's own workflow and the one `invoke ci` writes, checked against
GitHub's workflow schema by check-jsonschema (offline: its vendored schema)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_cli
from envkit.diagnostics import EnvkitError
from envkit.render import workflows

RECIPE = """\
name: {name}
description: a venv with six
version: 1.0.0
requires: [python-venv]
steps:
  - pip:
      packages: ["six==1.17.0"]
"""


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent /
                                                  "check-jsonschema")
    return subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)


def repo_with(tmp_path: Path, *names: str) -> Path:
    (tmp_path / "recipes").mkdir()
    for name in names:
        (tmp_path / "recipes" / f"{name}.yaml").write_text(RECIPE.format(name=name))
    return tmp_path


def test_envkits_own_workflow_passes_the_schema() -> None:
    done = schema_check(REPO / ".github" / "workflows" / "ci.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_fails_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    assert schema_check(bad).returncode != 0


def test_invoke_ci_writes_a_workflow_for_every_recipe(tmp_path: Path) -> None:
    root = repo_with(tmp_path, "alpha", "beta")
    done = run_cli("invoke", "ci", "--out", str(root))
    assert done.returncode == 0, done.stderr
    target = root / ".github" / "workflows" / "envkit.yml"
    assert schema_check(target).returncode == 0, schema_check(target).stdout
    flow = yaml.safe_load(target.read_text())
    assert flow["jobs"]["build"]["strategy"]["matrix"]["recipe"] == [
        "recipes/alpha.yaml", "recipes/beta.yaml"]
    runs = [s.get("run", "") for job in flow["jobs"].values() for s in job["steps"]]
    assert "envkit validate --recipe recipes/alpha.yaml --recipe recipes/beta.yaml" in runs
    assert any(r.startswith("envkit validate --resolve") for r in runs)
    assert f"python -m pip install envkit=={workflows.__version__}" in runs
    build = flow["jobs"]["build"]["steps"][-1]
    assert build["run"] == 'envkit build --recipe "$RECIPE"'
    assert build["env"] == {"RECIPE": "${{ matrix.recipe }}"}
    assert not any("${{" in r for r in runs)  # no expression is ever spliced into a script
    # the same recipes, the same bytes; run again, nothing to do
    again = run_cli("invoke", "ci", "--out", str(root))
    assert again.returncode == 0 and target.read_text() == workflows.user_workflow(
        ["recipes/alpha.yaml", "recipes/beta.yaml"])


def test_a_workflow_that_differs_is_kept_unless_forced(tmp_path: Path) -> None:
    root = repo_with(tmp_path, "alpha")
    target = root / workflows.WORKFLOW
    target.parent.mkdir(parents=True)
    target.write_text("# mine\n")
    done = run_cli("invoke", "ci", "--out", str(root), "--recipe", "recipes/alpha.yaml")
    assert done.returncode == 1 and "is already there and differs" in done.stderr
    assert "Traceback" not in done.stderr and target.read_text() == "# mine\n"
    done = run_cli("invoke", "ci", "--out", str(root), "--recipe", "recipes/alpha.yaml",
                   "--force", "--envkit", "envkit @ git+https://example.com/envkit@v1")
    assert done.returncode == 0, done.stderr
    assert "pip install 'envkit @ git+https://example.com/envkit@v1'" in target.read_text()


@pytest.mark.parametrize("path", ["../x.yaml", "/etc/x.yaml", "recipes/$(id).yaml",
                                  "recipes/${{ github.token }}.yaml", "recipes/a b.yaml",
                                  "recipes/x.txt"])
def test_a_recipe_path_that_would_land_in_a_script_is_refused(tmp_path: Path,
                                                              path: str) -> None:
    root = repo_with(tmp_path, "alpha")
    with pytest.raises(EnvkitError) as caught:
        workflows.recipe_paths(root, [path])
    assert "--recipe" in str(caught.value.diagnostics[0])


def test_a_bad_recipe_or_requirement_is_refused_and_nothing_written(tmp_path: Path) -> None:
    root = repo_with(tmp_path, "alpha")
    (root / "recipes" / "broken.yaml").write_text("name: broken\nsteps: 3\n")
    done = run_cli("invoke", "ci", "--out", str(root))
    assert done.returncode == 1 and "broken.yaml" in done.stderr
    assert not (root / ".github").exists()
    with pytest.raises(EnvkitError):
        workflows.user_workflow(["recipes/alpha.yaml"], "envkit ${{ secrets.X }}")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_cli("invoke", "ci", "--out", str(empty))
    assert done.returncode == 1 and "no recipes in" in done.stderr
