"""validate --resolve and invoke lock's resolver: uv, for the plan's Python and platform.

Unit tests resolve against a package index served on loopback (real uv, no internet);
``-m network`` ones ask PyPI for real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, FlakyServer, LocalIndex, plan_of, problems
from envkit.load.catalog import Catalog
from envkit.plan import lock as lockmod
from envkit.plan import make_plan
from envkit.plan import resolver as resolve

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture
def index(flaky: FlakyServer) -> LocalIndex:
    return LocalIndex(flaky.root)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """uv's environment, with a cache of this test's own."""
    return {**resolve.uv_env(), "UV_CACHE_DIR": str(tmp_path / "uv-cache")}


def test_each_pip_step_is_a_job_with_its_own_index_and_the_earlier_ones(recipe) -> None:
    plan = plan_of(recipe("""
        steps:
          - venv: {path: /opt/v}
          - pip: ["six==1.17.0"]
          - pip:
              packages: ["idna==3.10"]
              index: https://example.org/simple
              extra_index: [https://example.com/simple]
          - pip: {packages: [certifi], extra_index: [https://example.net/simple]}
        """))
    jobs = resolve.jobs_of(plan)
    assert [(j.number, j.index, j.extra, j.requirements) for j in jobs] == [
        (2, "https://pypi.org/simple", [], ["six==1.17.0"]),
        (3, "https://example.org/simple", ["https://example.com/simple"], ["idna==3.10"]),
        # what step 3 installed came from its indexes: step 4 sees them too
        (4, "https://pypi.org/simple", ["https://example.net/simple",
                                        "https://example.org/simple",
                                        "https://example.com/simple"], ["certifi"]),
    ]
    assert {j.venv for j in jobs} == {"/opt/v/bin/python"}


def test_the_mirror_profile_gives_the_index(recipe) -> None:
    path = recipe("steps:\n  - venv: {path: /opt/v}\n  - pip: [six]\n")
    catalog = Catalog(path.parent)
    plan = make_plan(catalog.load(path), catalog, mirror="ustc")
    assert resolve.jobs_of(plan)[0].index == "https://mirrors.ustc.edu.cn/pypi/simple"


@pytest.mark.parametrize("python, source", [("3.11", "3.11.15"), ("3.12", "3.12.12"),
                                            ("3.8", "3.8.20")])
def test_the_target_python_is_the_recipes_python_param(python: str, source: str) -> None:
    """python means 3.X everywhere: python-src builds its last 3.X.Y source release."""
    catalog = Catalog(REPO / "recipes")
    plan = make_plan(catalog.find("python-src"), catalog, {"python": python})
    assert lockmod.target_python(plan) == python
    download = next(ps.step for ps in plan.steps if ps.kind == "download")
    assert download.url == f"https://www.python.org/ftp/python/{source}/Python-{source}.tar.xz"  # type: ignore[attr-defined]


def test_a_plan_without_a_python_param_targets_the_default(recipe) -> None:
    plan = plan_of(recipe("steps:\n  - run: 'true'\n"))
    assert lockmod.target_python(plan) == lockmod.DEFAULT_PYTHON
    assert lockmod.target_of(plan).platform == "x86_64-manylinux_2_36"  # bookworm's glibc


@pytest.mark.parametrize("base, suite, glibc", [
    ("debian:bookworm-slim", "bookworm", "2.36"), ("debian:bullseye", "bullseye", "2.31"),
    ("debian:trixie-slim", "trixie", "2.41"), ("ubuntu:22.04", "ubuntu22.04", "2.35"),
    ("nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04", "ubuntu22.04", "2.35"),
    ("quay.io/some/image:1", "", "2.28")])
def test_the_platform_comes_from_the_base(base: str, suite: str, glibc: str) -> None:
    assert lockmod.suite_of(base) == suite
    assert lockmod.GLIBC.get(suite, lockmod.DEFAULT_GLIBC) == glibc


# --- resolving against a local index -----------------------------------------------------


def pip_recipe(recipe, index: LocalIndex, flaky: FlakyServer, *steps: str) -> Path:
    body = "steps:\n  - venv: {path: /opt/v}\n" + "".join(
        f"  - pip: {{packages: {s}, index: \"{flaky.url}/simple\"}}\n" for s in steps)
    return recipe(body)


def test_a_step_resolves_its_whole_closure_with_hashes(recipe, index: LocalIndex,
                                                       flaky: FlakyServer,
                                                       env: dict[str, str]) -> None:
    shas = {"leaf": index.publish("leaf", "1.0"),
            "mid": index.publish("mid", "1.0", "leaf>=1"),
            "top": index.publish("top", "1.0", "mid>=1")}
    index.publish("leaf", "0.9")
    plan = plan_of(pip_recipe(recipe, index, flaky, '["top==1.0"]'))
    [step] = resolve.resolve_plan(plan, env)
    assert [(p.name, p.version) for p in step.pip] == [("leaf", "1.0"), ("mid", "1.0"),
                                                       ("top", "1.0")]
    assert {p.name: [(d.file, d.sha256) for d in p.dists] for p in step.pip} == {
        name: [(f"{name}-1.0-py3-none-any.whl", sha)] for name, sha in shas.items()}


def test_a_later_step_installs_only_what_it_adds_or_changes(recipe, index: LocalIndex,
                                                            flaky: FlakyServer,
                                                            env: dict[str, str]) -> None:
    index.publish("leaf", "1.0")
    index.publish("leaf", "2.0")
    index.publish("a", "1.0", "leaf>=1")
    index.publish("b", "1.0", "leaf>=1")
    index.publish("c", "1.0", "leaf>=2")
    plan = plan_of(pip_recipe(recipe, index, flaky, '["a", "leaf==1.0"]', "[b]", "[c]"))
    first, second, third = resolve.resolve_plan(plan, env)
    assert [p.pin for p in first.pip] == ["a==1.0", "leaf==1.0"]
    # leaf 1.0 is installed and b takes it (a preference, as pip keeps what is installed)
    assert [p.pin for p in second.pip] == ["b==1.0"]
    # c needs leaf 2: this step moves it, as pip would
    assert [p.pin for p in third.pip] == ["c==1.0", "leaf==2.0"]


def test_a_pin_that_does_not_exist_fails_naming_it(recipe, index: LocalIndex,
                                                   flaky: FlakyServer,
                                                   env: dict[str, str]) -> None:
    index.publish("good", "1.0")
    plan = plan_of(pip_recipe(recipe, index, flaky, '["good==9.9.9"]'))
    with pytest.raises(resolve.ResolveError) as info:
        resolve.resolve_plan(plan, env)
    assert info.value.number == 2 and info.value.package == "good"
    assert "no release good==9.9.9 exists on the index" in info.value.message


def test_a_pure_python_wheel_is_resolved_beside_a_failing_package(
        recipe, index: LocalIndex, flaky: FlakyServer, env: dict[str, str]) -> None:
    """pip's messages once made a py3-none-any wheel look like 'built from source' when
    another package failed first, and dropped it: now the step fails, naming the other."""
    index.publish("pure", "1.0")
    plan = plan_of(pip_recipe(recipe, index, flaky, '["nosuch==1.0", "pure==1.0"]'))
    with pytest.raises(resolve.ResolveError) as info:
        resolve.resolve_plan(plan, env)
    assert info.value.package == "nosuch" and "pure" not in info.value.message
    assert info.value.message == "nosuch is not on the index"
    ok = plan_of(pip_recipe(recipe, index, flaky, '["pure==1.0"]'))
    [step] = resolve.resolve_plan(ok, env)
    assert [p.pin for p in step.pip] == ["pure==1.0"]
    assert step.pip[0].dists[0].file == "pure-1.0-py3-none-any.whl"


def test_a_requirements_file_is_read(recipe, index: LocalIndex, flaky: FlakyServer,
                                     env: dict[str, str], tmp_path: Path) -> None:
    """The pins of a step's requirements file are resolved with its packages."""
    index.publish("joblib", "1.0")
    (tmp_path / "req.txt").write_text("joblib==9.9.9\n")
    path = recipe(f"""
        steps:
          - venv: {{path: /opt/v}}
          - pip:
              packages: [joblib]
              index: "{flaky.url}/simple"
              requirements: [req.txt]
        """)
    with pytest.raises(resolve.ResolveError) as info:
        resolve.resolve_plan(plan_of(path), env)
    assert info.value.number == 2 and "joblib==9.9.9" in info.value.message
    (tmp_path / "req.txt").write_text("joblib==1.0\n")
    [step] = resolve.resolve_plan(plan_of(path), env)
    assert [p.pin for p in step.pip] == ["joblib==1.0"]


def test_a_requirements_file_that_is_not_there_is_an_error_at_the_step(recipe) -> None:
    path = recipe("""
        steps:
          - venv: {path: /opt/v}
          - pip: {packages: [x], requirements: [nowhere/req.txt]}
        """)
    [line] = problems(path)
    assert ("steps[1].pip.requirements[0]: no such file next to the recipe: nowhere/req.txt"
            in line)


def test_an_earlier_steps_index_is_carried(recipe, index: LocalIndex, flaky: FlakyServer,
                                           env: dict[str, str], tmp_path: Path) -> None:
    """A step whose dependency an earlier step installed from its own index is no conflict
    (pip finds it installed)."""
    other = FlakyServer(tmp_path / "other")
    try:
        (tmp_path / "other").mkdir()
        LocalIndex(other.root).publish("private", "1.0")
        index.publish("app", "1.0", "private>=1")
        path = recipe(f"""
            steps:
              - venv: {{path: /opt/v}}
              - pip: {{packages: ["private==1.0"], index: "{other.url}/simple"}}
              - pip: {{packages: ["app==1.0"], index: "{flaky.url}/simple"}}
            """)
        first, second = resolve.resolve_plan(plan_of(path), env)
        assert [p.pin for p in first.pip] == ["private==1.0"]
        assert [p.pin for p in second.pip] == ["app==1.0"]
    finally:
        other.close()


def test_an_index_that_does_not_answer_is_skipped_not_passed(recipe,
                                                            env: dict[str, str]) -> None:
    path = recipe("""
        steps:
          - venv: {path: /opt/v}
          - pip: {packages: [six], index: "http://127.0.0.1:9/simple"}
        """)
    with pytest.raises(resolve.ResolveError) as info:
        resolve.resolve_plan(plan_of(path), env)
    assert info.value.skipped and "http://127.0.0.1:9/simple does not answer" in str(
        info.value.message)


def test_a_wheel_for_another_python_is_not_one_for_the_target(recipe, index: LocalIndex,
                                                              flaky: FlakyServer,
                                                              env: dict[str, str]) -> None:
    index.publish("fast", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64")
    plan = plan_of(pip_recipe(recipe, index, flaky, '["fast==1.0"]'))
    with pytest.raises(resolve.ResolveError) as info:
        resolve.resolve_plan(plan, env)
    assert info.value.package == "fast" and "fast==1.0" in info.value.message


def test_an_sdist_with_native_code_needs_a_compiler_the_plan_lacks(
        recipe, index: LocalIndex, flaky: FlakyServer, env: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a compiler in the plan, an sdist with C sources that does not build without
    one fails the resolution; pure Python sources, or a plan with gcc, do not."""
    index.publish("native", "1.0", source=True, native=True)
    index.publish("pure", "1.0", source=True)
    tried: list[str] = []

    def build(sdist: Path, target: object, env: dict[str, str]) -> str:
        tried.append(sdist.name)
        return "its source has native code, and it does not build without one"

    monkeypatch.setattr(resolve, "_build_without_compiler", build)
    monkeypatch.setenv("XDG_CACHE_HOME", str(Path(env["UV_CACHE_DIR"]).parent / "xdg"))
    plan = plan_of(pip_recipe(recipe, index, flaky, '["pure==1.0"]'))
    assert [p.pin for p in resolve.resolve_plan(plan, env)[0].pip] == ["pure==1.0"]
    assert tried == []  # pure Python sources are not even tried
    plan = plan_of(pip_recipe(recipe, index, flaky, '["native==1.0"]'))
    with pytest.raises(resolve.ResolveError) as info:
        resolve.resolve_plan(plan, env)
    assert tried == ["native-1.0.tar.gz"]
    assert info.value.package == "native"
    assert ("native==1.0 has no wheel for this Python and platform, and the plan installs no "
            "compiler") in info.value.message
    with_gcc = recipe(f"""
        steps:
          - apt: [build-essential]
          - venv: {{path: /opt/v}}
          - pip: {{packages: ["native==1.0"], index: "{flaky.url}/simple"}}
        """, name="gcc")
    [step] = resolve.resolve_plan(plan_of(with_gcc), env)
    assert [p.pin for p in step.pip] == ["native==1.0"]
    assert step.pip[0].dists[0].file == "native-1.0.tar.gz"


@pytest.mark.parametrize("text, message, package", [
    ("× No solution found when resolving dependencies:\n  ╰─▶ Because there is no version of "
     "joblib==9.9.9 and you require joblib==9.9.9, we can conclude that your requirements are "
     "unsatisfiable.", "no release joblib==9.9.9 exists on the index", "joblib"),
    ("  ╰─▶ Because numpy==2.4.6 has no wheels with a matching Python ABI tag (e.g., `cp38`) "
     "and you require numpy==2.4.6, we can conclude",
     "numpy==2.4.6 has no wheel for this Python (and no source to build)", "numpy"),
    ("  ╰─▶ Because a==1 depends on b<2 and you require b==2, we can conclude that your "
     "requirements are unsatisfiable.",
     "Because a==1 depends on b<2 and you require b==2, we can conclude that your "
     "requirements are unsatisfiable.", "a"),
])
def test_uvs_explanation_becomes_one_line(text: str, message: str, package: str) -> None:
    assert resolve.explain(text) == (message, package)


# --- against PyPI ------------------------------------------------------------------------------


@pytest.mark.network
def test_a_pin_that_exists_for_the_target_resolves(recipe) -> None:
    plan = plan_of(recipe("""
        requires: [python-venv]
        steps:
          - pip: ["faiss-cpu==1.15.1", "numpy==2.4.6"]
        """))
    env = resolve.uv_env(HOST_CA if HOST_CA.exists() else None)
    [step] = resolve.resolve_plan(plan, env)
    assert {"faiss-cpu==1.15.1", "numpy==2.4.6"} <= {p.pin for p in step.pip}
    # one file each: the wheel for cp311 on manylinux x86_64, with its sha256
    assert all(len(p.dists) == 1 and len(p.dists[0].sha256) == 64 for p in step.pip)


@pytest.mark.network
def test_an_sdist_that_needs_a_compiler_fails_without_one(recipe) -> None:
    """psycopg2 publishes only an sdist, which needs a compiler and libpq's headers: a
    plan without gcc cannot install it (pip's messages let this through)."""
    plan = plan_of(recipe("""
        requires: [python-venv]
        steps:
          - pip: ["psycopg2==2.9.10"]
        """))
    env = resolve.uv_env(HOST_CA if HOST_CA.exists() else None)
    with pytest.raises(resolve.ResolveError) as info:
        resolve.resolve_plan(plan, env)
    assert info.value.package == "psycopg2"
    assert "the plan installs no compiler" in info.value.message


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
    line = next(ln for ln in done.stderr.splitlines() if "numpy==1.21.0" in ln)
    assert line.startswith(f"{bad}:7:10: steps[0].pip [defaults]: cannot be resolved for "
                           "Python 3.11 on x86_64-manylinux_2_36: numpy==1.21.0 has no wheel "
                           "for this Python and platform"), line
