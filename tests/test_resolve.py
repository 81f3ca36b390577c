"""validate --resolve: pip's own resolver, for the recipe's Python, installing nothing.

The unit tests check what envkit asks pip; ``-m network`` ones ask PyPI for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, plan_of
from envkit import resolve
from envkit.catalog import Catalog
from envkit.plan import make_plan

HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def env() -> dict[str, str]:
    return {**os.environ, **({"PIP_CERT": HOST_CA} if os.path.exists(HOST_CA) else {})}


def test_each_pip_step_is_resolved_with_the_pip_steps_before_it(recipe) -> None:
    plan = plan_of(recipe("""
        steps:
          - venv: {path: /opt/v}
          - pip: ["six==1.17.0"]
          - pip:
              packages: ["idna==3.10", "six==1.17.0"]
              index: https://example.org/simple
              extra_index: [https://example.com/simple]
        """))
    jobs = resolve.jobs_of(plan)
    assert [(j.index, j.extra, j.requirements) for j, _, _ in jobs] == [
        ("https://pypi.org/simple", (), ("six==1.17.0",)),
        ("https://example.org/simple", ("https://example.com/simple",),
         ("six==1.17.0", "idna==3.10")),
    ]
    assert [n for _, n, _ in jobs] == [2, 3]


@pytest.mark.parametrize("python, target", [("3.11.15", "3.11"), ("3.12.12", "3.12"),
                                            ("3.8.20", "3.8")])
def test_the_target_python_is_the_recipes_python_param(python: str, target: str) -> None:
    catalog = Catalog(REPO / "recipes")
    plan = make_plan(catalog.find("python-src"), catalog, {"python": python})
    assert resolve.target_python(plan) == target


def test_a_plan_without_a_python_param_targets_the_default(recipe) -> None:
    plan = plan_of(recipe("steps:\n  - run: 'true'\n"))
    assert resolve.target_python(plan) == resolve.DEFAULT_PYTHON


def test_the_mirror_profile_gives_the_index(recipe) -> None:
    path = recipe("steps:\n  - venv: {path: /opt/v}\n  - pip: [six]\n")
    catalog = Catalog(path.parent)
    plan = make_plan(catalog.load(path), catalog, mirror="ustc")
    assert resolve.jobs_of(plan)[0][0].index == "https://mirrors.ustc.edu.cn/pypi/simple"


# --- against PyPI ------------------------------------------------------------------------------


@pytest.mark.network
def test_a_pin_that_exists_for_the_target_resolves() -> None:
    out = resolve.resolve(resolve.Job("3.11", "https://pypi.org/simple", (),
                                      ("faiss-cpu==1.15.1", "numpy==2.4.6")), env())
    assert out.ok and out.installs >= 2, out.message


@pytest.mark.network
def test_a_pin_that_does_not_exist_for_the_target_python_fails_naming_it() -> None:
    # the notes' pin: PyPI no longer serves paddlepaddle 2.5.1 at all
    out = resolve.resolve(resolve.Job("3.11", "https://pypi.org/simple", (),
                                      ("paddlepaddle==2.5.1",)), env())
    assert not out.ok and not out.skipped
    assert "paddlepaddle==2.5.1" in out.message
    # numpy 2.4 has no wheel (and no Requires-Python match) for Python 3.9
    out = resolve.resolve(resolve.Job("3.9", "https://pypi.org/simple", (),
                                      ("numpy==2.4.6",)), env())
    assert not out.ok and "numpy==2.4.6" in out.message


@pytest.mark.network
def test_a_package_with_only_an_sdist_is_checked_on_the_json_api() -> None:
    out = resolve.resolve(resolve.Job("3.11", "https://pypi.org/simple", (),
                                      ("psycopg2==2.9.10", "six==1.17.0")), env())
    assert out.ok, out.message
    assert out.sdists == ["psycopg2-2.9.10.tar.gz"]


@pytest.mark.network
def test_an_index_that_does_not_answer_is_skipped_not_passed() -> None:
    out = resolve.resolve(resolve.Job("3.11", "http://127.0.0.1:9/simple", (),
                                      ("six==1.17.0",)), env())
    assert not out.ok and out.skipped
    assert "http://127.0.0.1:9/simple does not answer" in out.message


@pytest.mark.network
def test_validate_resolve_names_the_recipe_step_and_package(tmp_path: Path) -> None:
    bad = tmp_path / "old-numpy.yaml"
    bad.write_text("name: old-numpy\ndescription: numpy that has no Python 3.11 wheel\n"
                   "version: 1.0.0\nrequires: [python-venv]\nsteps:\n"
                   "  - name: old numpy\n    pip: [\"numpy==1.21.0\"]\n")
    done = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "validate",
                           "--resolve", "--recipe", str(bad)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "old-numpy.yaml: step 3 (old numpy) [defaults]: pip cannot resolve it for " \
           "Python 3.11" in done.stderr
    assert "numpy==1.21.0" in done.stderr
