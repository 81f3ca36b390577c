"""A pip step's own inputs: requirements and constraints files, a local project with extras.
Relative to the recipe's folder, put in the build by envkit, read by the lock, resolve and
the compatibility table; a problem inside a file is at that file's line."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import FlakyServer, LocalIndex, plan_of, problems
from envkit.cli.validate import validate
from envkit.plan import lock as lockmod
from envkit.plan import resolver
from envkit.render import render, write_outputs
from envkit.verify import lockcheck

STEPS = "steps:\n  - venv: {path: /opt/v}\n"


@pytest.fixture
def index(flaky: FlakyServer) -> LocalIndex:
    return LocalIndex(flaky.root)


@pytest.fixture(autouse=True)
def own_uv_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test resolves with a uv cache of its own (a local index's files change)."""
    real = resolver.uv_env

    def uv_env(*args: Any, **kw: Any) -> dict[str, str]:
        return {**real(*args, **kw), "UV_CACHE_DIR": str(tmp_path / "uv-cache")}

    monkeypatch.setattr(resolver, "uv_env", uv_env)


def project(folder: Path, name: str = "demo-app", deps: str = '["leaf==1.0"]',
            extras: str = 'fast = ["speedy==2.0"]') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{name}"
        version = "0.1.0"
        dependencies = {deps}

        [project.optional-dependencies]
        {extras}
        """))
    (folder / "demo_app").mkdir(exist_ok=True)
    (folder / "demo_app" / "__init__.py").write_text("VALUE = 1\n")
    return folder


def test_a_bad_line_in_a_requirements_file_is_at_that_file_and_line(recipe, tmp_path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "# pinned\nsix==1.17.0\n\nnumpy=2.1\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("idna==3.10 \\\n  ; python_version >= '3'\n"
                                       "--index-url https://example.org/simple\n")
    found = problems(recipe(STEPS + "  - pip: {requirements: [requirements.txt]}\n"))
    shown = [line.replace(str(tmp_path) + "/", "") for line in found]
    assert len(shown) == 2, found
    assert shown[0] == (
        "more.txt:3:1: steps[1].pip.requirements[0]: --index-url is not read here: an index "
        "is the step's 'index' or the mirror profile's, and an editable install is a "
        "'project' (leave only requirements and -r/-c lines)")
    assert shown[1].startswith("requirements.txt:4:1: steps[1].pip.requirements[0]: not a "
                               "valid pip requirement (PEP 508): ")  # the continuation: one line


def test_a_credential_in_a_requirements_file_is_refused_without_repeating_it(
        recipe, tmp_path) -> None:
    (tmp_path / "req.txt").write_text("pkg @ https://user:s3cret@example.org/pkg.whl\n")
    [line] = problems(recipe(STEPS + "  - pip: {requirements: [req.txt]}\n"))
    assert "req.txt:1:1:" in line and "s3cret" not in line


@pytest.mark.parametrize("rel, why", [
    ("../outside.txt", "a path relative to the recipe's folder, inside it"),
    ("/etc/passwd", "a path relative to the recipe's folder, inside it"),
    ("req$(id).txt", "a path relative to the recipe's folder, inside it"),
    ("missing.txt", "no such file next to the recipe: missing.txt"),
    ("sub", "sub is a folder: a requirements file is a file")])
def test_requirements_paths_stay_in_the_recipes_folder(recipe, tmp_path, rel: str,
                                                       why: str) -> None:
    (tmp_path / "sub").mkdir()
    [line] = problems(recipe(STEPS + f"  - pip: {{requirements: ['{rel}']}}\n"))
    assert "steps[1].pip.requirements[0]" in line and why in line, line


def test_an_include_that_leaves_the_folder_or_is_missing_is_at_its_line(recipe,
                                                                       tmp_path) -> None:
    (tmp_path / "req.txt").write_text("six\n-r ../../etc/x.txt\n-c gone.txt\n")
    found = problems(recipe(STEPS + "  - pip: {requirements: [req.txt]}\n"))
    assert len(found) == 2, found
    assert "req.txt:2:1:" in found[0] and "is not a file inside the recipe's folder" in found[0]
    assert "req.txt:3:1:" in found[1] and "no such file next to the recipe: gone.txt" in found[1]


def test_the_compat_table_reads_a_requirements_file(recipe, tmp_path) -> None:
    (tmp_path / "req.txt").write_text("numpy==2.4.6\npaddlepaddle==2.5.1\n")
    [line] = problems(recipe(STEPS + "  - pip: {requirements: [req.txt]}\n"))
    assert "req.txt:2:1: steps[1].pip.requirements[0]: paddlepaddle==2.5.1 does not exist" in line


def test_files_are_mounted_for_an_unlocked_build_and_put_in_the_context(recipe,
                                                                        tmp_path) -> None:
    (tmp_path / "reqs").mkdir()
    (tmp_path / "reqs" / "base.txt").write_text("six==1.17.0\n-c pins.txt\n")
    (tmp_path / "reqs" / "pins.txt").write_text("six<2\n")
    (tmp_path / "c.txt").write_text("six<3\n")
    project(tmp_path / "app")
    (tmp_path / "app" / ".git").mkdir()
    (tmp_path / "app" / ".git" / "HEAD").write_text("ref: x\n")
    plan = plan_of(recipe(STEPS + "  - pip: {requirements: [reqs/base.txt], constraints: "
                                  "[c.txt], project: app, extras: [fast]}\n"))
    step = plan.steps[1].step
    assert step.title() == "pip -r reqs/base.txt -c c.txt app[fast]"  # type: ignore[attr-defined]
    dockerfile = render(plan, "dockerfile")
    for rel in ("reqs/base.txt", "reqs/pins.txt", "c.txt", "_project/app"):
        assert (f"--mount=type=bind,source=files/t/{rel},target=/run/envkit/input/t/{rel} "
                in dockerfile), rel
    assert ('envkit_uv_pip /opt/v/bin/python install -r "$ENVKIT_INPUTS"/t/reqs/base.txt '
            '-c "$ENVKIT_INPUTS"/t/c.txt' in dockerfile)
    assert ("envkit_uv_project /opt/v/bin/python 'demo-app[fast]' "
            '"$ENVKIT_INPUTS"/t/_project/app -c "$ENVKIT_INPUTS"/t/c.txt' in dockerfile)
    assert "ARG ENVKIT_INPUTS=/run/envkit/input" in dockerfile
    out = tmp_path / "out"
    write_outputs(plan, ["dockerfile", "shell"], out)
    assert (out / "files/t/reqs/pins.txt").read_text() == "six<2\n"
    assert (out / "files/t/_project/app/demo_app/__init__.py").is_file()
    assert not (out / "files/t/_project/app/.git").exists()  # a project's VCS data stays out


def test_a_projects_source_is_in_the_step_hash_but_only_its_pyproject_in_the_lock(
        recipe, tmp_path) -> None:
    app = project(tmp_path / "app")
    path = recipe(STEPS + "  - pip: {project: app}\n")
    first = plan_of(path)
    inputs = lockmod.inputs_of(first, "c").digest
    (app / "demo_app" / "__init__.py").write_text("VALUE = 2\n")
    second = plan_of(path)
    assert second.steps[1].hash != first.steps[1].hash  # a rebuild picks up the new code
    assert lockmod.inputs_of(second, "c").digest == inputs  # the same dependencies
    (app / "pyproject.toml").write_text((app / "pyproject.toml").read_text()
                                        .replace("leaf==1.0", "leaf==2.0"))
    assert lockmod.inputs_of(plan_of(path), "c").digest != inputs
    (app / ".venv").mkdir()
    (app / ".venv" / "junk").write_text("x")
    assert plan_of(path).steps[1].hash == plan_of(path).steps[1].hash


@pytest.mark.parametrize("body, text", [
    ("  - pip: {project: app, extras: [nope]}\n", "demo-app has no extra 'nope' (it has: fast)"),
    ("  - pip: {packages: [six], extras: [fast]}\n", "extras are a project's: give 'project'"),
    ("  - pip: {project: app, installer: pip}\n", "a project is installed with uv"),
    ("  - pip: {project: nothere}\n", "no such file next to the recipe: nothere"),
    ("  - pip: {project: empty}\n", "empty has no pyproject.toml"),
])
def test_project_problems(recipe, tmp_path, body: str, text: str) -> None:
    project(tmp_path / "app")
    (tmp_path / "empty").mkdir()
    [line] = problems(recipe(STEPS + body))
    assert text in line, line


def test_a_pyproject_without_a_name_is_at_that_file(recipe, tmp_path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "pyproject.toml").write_text("[tool.x]\ny = 1\n")
    [line] = problems(recipe(STEPS + "  - pip: {project: app}\n"))
    assert "app/pyproject.toml: steps[1].pip.project: no [project] name (PEP 621)" in line
    (tmp_path / "app" / "pyproject.toml").write_text("[project\nname = 1\n")
    [line] = problems(recipe(STEPS + "  - pip: {project: app}\n"))
    assert "app/pyproject.toml:1:0: steps[1].pip.project: not valid TOML" in line


def test_a_locked_project_is_installed_without_its_dependencies_and_verify_expects_it(
        recipe, tmp_path, index: LocalIndex, flaky: FlakyServer) -> None:
    index.publish("leaf", "1.0")
    index.publish("speedy", "2.0")
    project(tmp_path / "app")
    path = recipe(STEPS + f"  - pip: {{project: app, extras: [fast], index: "
                          f"'{flaky.url}/simple'}}\n")
    env = resolver.uv_env(None)
    [step] = resolver.resolve_plan(plan_of(path), env)
    assert [p.pin for p in step.pip] == ["leaf==1.0", "speedy==2.0"]  # not the project
    from envkit.load.catalog import Catalog
    from envkit.plan import locking

    catalog = Catalog()
    settings = locking.Settings()
    [outcome] = locking.lock_recipe(catalog, catalog.load(path), settings,
                                    locking.Maker(settings))
    assert outcome.state == "locked", outcome
    plan = plan_of(path, locker=locking.Locker(catalog, catalog.load(path), strict=True))
    dockerfile = render(plan, "dockerfile")
    assert "--require-hashes --no-deps" in dockerfile
    assert ("envkit_uv_project /opt/v/bin/python 'demo-app[fast]' "
            '"$ENVKIT_INPUTS"/t/_project/app '
            f"--no-deps --default-index {flaky.url}/simple" in dockerfile)
    assert "source=files/t/_project/app," in dockerfile
    check = lockcheck.for_plan(plan, image=True)
    assert check is not None and "demo-app" in check.extra["/opt/v/bin/python"]


def test_resolve_points_at_the_requirements_line_that_cannot_install(
        recipe, tmp_path, index: LocalIndex, flaky: FlakyServer) -> None:
    index.publish("leaf", "1.0", requires_python=">=3.12")
    (tmp_path / "req.txt").write_text("# app\nleaf==1.0\n")
    path = recipe(STEPS + f"  - pip: {{requirements: [req.txt], index: '{flaky.url}/simple'}}\n")
    report = validate([str(path)], resolve_pins=True, ca_bundle="none")
    lines = [str(d) for d in report.problems if "cannot be resolved" in str(d)]
    assert len(lines) == 1, report.problems
    assert lines[0].startswith(f"{tmp_path}/req.txt:2:1: steps[1].pip.requirements[0] "
                               "[defaults]: cannot be resolved for Python 3.11"), lines[0]
    assert "leaf==1.0 needs Python >=3.12" in lines[0]


def test_the_project_may_be_the_recipes_own_folder(write, tmp_path) -> None:
    project(tmp_path)
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "old.txt").write_text("an earlier render\n")
    path = write(STEPS.replace("steps:", "name: t\ndescription: d\nversion: 1.0.0\n"
                               "base: debian:bookworm-slim\nsteps:") + "  - pip: {project: .}\n")
    plan = plan_of(path)
    dockerfile = render(plan, "dockerfile")
    assert "source=files/t/_project,target=/run/envkit/input/t/_project " in dockerfile
    assert "envkit_uv_project /opt/v/bin/python demo-app \"$ENVKIT_INPUTS\"/t/_project" in (
        dockerfile)
    out = tmp_path / "out-dir"
    write_outputs(plan, ["dockerfile"], out)
    assert (out / "files/t/_project/pyproject.toml").is_file()
    assert not (out / "files/t/_project/build").exists()


def test_hashes_in_a_requirements_file_are_fine(recipe, tmp_path) -> None:
    """pip-compile --generate-hashes output: the lock pins hashes, so they are left aside."""
    (tmp_path / "req.txt").write_text(
        "six==1.17.0 \\\n    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2"
        "be8970586c3274\nidna==3.10 --hash=sha256:00\n")
    plan = plan_of(recipe(STEPS + "  - pip: {requirements: [req.txt]}\n"))
    assert [req for req, _ in plan.steps[1].step.file_pins] == ["six==1.17.0", "idna==3.10"]  # type: ignore[attr-defined]


def test_the_step_hash_does_not_depend_on_where_the_checkout_is(write, tmp_path) -> None:
    hashes = []
    for folder in ("one", "two"):
        root = tmp_path / folder
        project(root / "app")
        (root / "req.txt").write_text("six\n")
        path = root / "t.yaml"
        path.write_text("name: t\ndescription: d\nversion: 1.0.0\nbase: debian:bookworm-slim\n"
                        + STEPS + "  - pip: {requirements: [req.txt], project: app}\n")
        plan = plan_of(path)
        hashes.append((plan.steps[1].hash, plan.hash))
    assert hashes[0] == hashes[1]


def test_a_render_folder_and_env_files_in_the_project_stay_out(write, tmp_path) -> None:
    project(tmp_path)
    (tmp_path / ".env").write_text("TOKEN=secret\n")
    (tmp_path / "demo_app" / "build").mkdir()  # a subpackage called build is the project's
    (tmp_path / "demo_app" / "build" / "__init__.py").write_text("")
    path = write("name: t\ndescription: d\nversion: 1.0.0\nbase: debian:bookworm-slim\n"
                 + STEPS + "  - pip: {project: .}\n")
    first = plan_of(path).steps[1].hash
    out = tmp_path / "rendered"
    write_outputs(plan_of(path), ["dockerfile", "shell"], out)
    assert plan_of(path).steps[1].hash == first  # the render folder is not the project
    copied = out / "files/t/_project"
    assert not (copied / ".env").exists() and not (copied / "rendered").exists()
    assert (copied / "demo_app" / "build" / "__init__.py").is_file()


def test_an_unreadable_file_and_odd_shapes_are_one_line_each(recipe, tmp_path) -> None:
    import os

    project(tmp_path / "app", extras='gpu = 5')
    [line] = problems(recipe(STEPS + "  - pip: {project: app}\n"))
    assert "optional-dependencies a table of lists (PEP 621)" in line
    project(tmp_path / "app")
    (tmp_path / "req.txt").write_text("six\n")
    os.chmod(tmp_path / "req.txt", 0)
    try:
        if os.access(tmp_path / "req.txt", os.R_OK):
            pytest.skip("root reads every file")
        [line] = problems(recipe(STEPS + "  - pip: {requirements: [req.txt]}\n"))
        assert "cannot read req.txt (permissions)" in line
    finally:
        os.chmod(tmp_path / "req.txt", 0o644)


def test_a_requirements_path_ending_in_a_slash(recipe, tmp_path) -> None:
    (tmp_path / "six.txt").write_text("six\n")
    [line] = problems(recipe(STEPS + "  - pip: {requirements: [six.txt/]}\n"))
    assert "'six.txt/' ends in '/': a requirements file is a file" in line


def test_a_project_with_dynamic_dependencies_locks_on_its_whole_tree(recipe, tmp_path) -> None:
    app = project(tmp_path / "app")
    text = (app / "pyproject.toml").read_text().replace(
        'dependencies = ["leaf==1.0"]', 'dynamic = ["dependencies"]')
    (app / "pyproject.toml").write_text(text)
    (app / "requirements.txt").write_text("leaf==1.0\n")
    path = recipe(STEPS + "  - pip: {project: app}\n")
    before = lockmod.inputs_of(plan_of(path), "c").digest
    (app / "requirements.txt").write_text("leaf==2.0\n")  # what setuptools reads them from
    assert lockmod.inputs_of(plan_of(path), "c").digest != before
