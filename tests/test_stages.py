"""Two-stage source builds: the runtime stage a recipe's `runtime:` asks for."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from backend_fakes import step_map
from conftest import problems
from envkit.load.catalog import Catalog
from envkit.plan import RUNTIME, aptlock, make_plan
from envkit.plan.locking import Locker
from envkit.render import render
from envkit.verify import lockcheck

TWO_STAGES = ["lapack-src", "openblas-src", "faiss-src", "paddle-src"]


def _stages(dockerfile: str) -> list[str]:
    return re.findall(r"^FROM \S+ AS (\w+)$", dockerfile, re.MULTILINE)


def _runtime_part(dockerfile: str) -> str:
    return dockerfile[dockerfile.index(" AS runtime\n"):]


@pytest.mark.parametrize("name", TWO_STAGES)
def test_source_builds_render_a_runtime_stage_without_a_compiler(name: str) -> None:
    catalog = Catalog()
    plan = make_plan(catalog.find(name), catalog, locker=Locker(catalog, catalog.find(name)))
    docker = render(plan, "dockerfile")
    assert _stages(docker) == ["build", "runtime"]
    runtime = _runtime_part(docker)
    # the runtime stage installs its own locked packages, none of the toolchain's
    [step] = plan.runtime_steps
    assert step.stage == RUNTIME and step.number == len(plan.steps)
    assert step.step.locked is not None, "the runtime packages are locked like any apt step"
    names = {p.name for p in step.step.locked.step.apt}
    assert not names & {"gcc-12", "g++-12", "gfortran-12", "cmake", "make", "swig",
                        "build-essential", "libc6-dev"}, names
    for word in ("gcc", "gfortran", "cmake", "CC=", "CXX="):
        assert word not in runtime.split("# [envkit] What the image holds")[0].replace(
            "libgfortran5", ""), word
    for path in plan.keep or []:
        assert f'COPY --from=build ["{path}", "{path}"]' in runtime
    assert "/src" not in " ".join(plan.keep or []), "sources stay in the build stage"


def test_what_each_runtime_stage_keeps_and_installs() -> None:
    catalog = Catalog()

    def stage(name: str) -> tuple[list[str] | None, list[str], list[str]]:
        plan = make_plan(catalog.find(name), catalog)
        env = [k for k, _ in plan.runtime_env]
        return plan.keep, [p for ps in plan.runtime_steps for p in ps.step.packages], env

    assert stage("lapack-src") == (
        ["/opt/envkit/include", "/opt/envkit/lib", "/opt/envkit/share/lapack-src"],
        ["libgfortran5"], [])
    assert stage("openblas-src")[1] == ["libgfortran5", "libgomp1"]
    keep, apt, env = stage("faiss-src")  # what it requires adds theirs; the venv is kept
    assert keep == ["/opt/envkit/include", "/opt/envkit/lib", "/opt/envkit/share/lapack-src",
                    "/opt/envkit/share/openblas-src", "/opt/envkit/venv"]
    assert apt == ["libgfortran5", "libgomp1", "python3.11"]
    assert env == ["VIRTUAL_ENV", "PATH"]  # the venv's; not the compilers' CC, CXX, FC
    assert stage("paddle-src")[:2] == (["/opt/envkit/venv"], ["python3.11", "libgomp1"])


def test_one_stage_without_a_runtime_section_and_the_host_script_is_the_same() -> None:
    catalog = Catalog()
    gtest = make_plan(catalog.find("gtest-src"), catalog)  # keeps its toolchain on purpose
    assert gtest.keep is None and gtest.runtime_steps == []
    assert _stages(render(gtest, "dockerfile")) == []
    plan = make_plan(catalog.find("lapack-src"), catalog)
    script = render(plan, "shell")
    assert f"ENVKIT_TOTAL={len(plan.build_steps)}\n" in script
    assert "runtime:" not in script and len(plan.steps) == len(plan.build_steps) + 1
    numbers = re.findall(r"^# \[(\d+)/(\d+)\]", script, re.MULTILINE)
    assert numbers == [(str(i), str(len(plan.build_steps)))
                       for i in range(1, len(plan.build_steps) + 1)]


def test_verify_expects_the_runtime_stages_debian_packages() -> None:
    catalog = Catalog()
    recipe = catalog.find("lapack-src")
    plan = make_plan(recipe, catalog, locker=Locker(catalog, recipe))
    check = lockcheck.for_plan(plan, image=True)
    assert check is not None and check.apt is not None
    [step] = plan.runtime_steps
    assert set(check.apt) == {p.name for p in step.step.locked.step.apt}
    assert "libgfortran5" in check.apt and "gfortran-12" not in check.apt


def test_the_runtime_apt_step_is_simulated_on_the_bare_base() -> None:
    out = ("== suite bookworm\n== base\nbash 5.2\n== job 0\n"
           "Inst libgfortran5 (12.2.0-14 Debian:bookworm)\nInst gcc-12 (12.2.0-14 x)\n"
           "== job 1\nInst libgfortran5 (12.2.0-14 Debian:bookworm)\n")
    sim = aptlock._parse(out, [aptlock.AptJob("build", ["gfortran-12"]),
                               aptlock.AptJob("runtime", ["libgfortran5"], fresh=True)])
    assert [p.name for p in sim.steps[1].apt] == ["libgfortran5"]  # not dropped as seen


@pytest.mark.parametrize(("runtime", "path", "message"), [
    ("{keep: [opt/lib]}", "runtime.keep[0]", "must be an absolute path"),
    ("{keep: [/usr]}", "runtime.keep[0]", "keeps the system's own files"),
    ("{keep: [/usr/lib/]}", "runtime.keep[0]", "keeps the system's own files"),
    ("{keep: ['/opt/$HOME']}", "runtime.keep[0]", "a character COPY --from expands"),
    ("{keep: ['/opt/*.so']}", "runtime.keep[0]", "a character COPY --from expands"),
    ("{keep: [/opt/x/../../usr]}", "runtime.keep[0]", "not a normal path"),
    ("{apt: ['bad name']}", "runtime.apt[0]", ""),
    ("{apt: [libgomp1]}", "runtime", "keeps nothing of the build"),
    ("{keep: ['{{ nope }}/lib']}", "runtime.keep[0]", "unknown param 'nope'"),
    ("[]", "runtime", ""),
])
def test_a_bad_runtime_section_is_a_clear_error(recipe: Callable[..., Path], runtime: str,
                                                path: str, message: str) -> None:
    found = problems(recipe(f"runtime: {runtime}\nsteps: [{{run: 'true'}}]\n"))
    assert any(f": {path}: " in line and message in line for line in found), found


def test_checks_of_a_toolchain_recipe_are_the_build_stages() -> None:
    """build-essentials' checks (gcc, gfortran, ccache) test the build stage's toolchain, which
    the image does not have; a required venv's checks run, since the venv is kept."""
    catalog = Catalog()
    labels = [c.label() for c in make_plan(catalog.find("faiss-src"), catalog).checks]
    assert not any("g++" in label or "ccache" in label for label in labels)
    assert "venv Python is the requested version" in labels
    gtest = [c.label() for c in make_plan(catalog.find("gtest-src"), catalog).checks]
    assert any("ccache" in label for label in gtest)  # one stage: the toolchain is the image's


def test_build_progress_follows_each_stage() -> None:
    """BuildKit numbers instructions per stage ('[build 5/8]', '[runtime 4/9]'); the runtime
    stage's first ones are the build's own (one vertex). Each maps to its recipe step."""
    import io

    from envkit.backends import buildkit

    catalog = Catalog()
    plan = make_plan(catalog.find("lapack-src"), catalog)
    stages = step_map(plan).buildkit()
    assert list(stages) == ["build", "runtime"]
    build = [n for n in stages["build"] if n]
    assert build == [1, 3, 4, 5, 6]  # step 2 is an env step: no instruction
    assert [n for n in stages["runtime"] if n] == [7]  # the kept paths are envkit's own
    out = io.StringIO()
    titles = {ps.number: f"{ps.recipe}: {ps.title}" for ps in plan.steps}
    progress = buildkit.Progress(titles, stages, out)
    runtime_apt = stages["runtime"].index(7) + 1
    for line in [f"#8 [runtime {runtime_apt}/9] RUN apt", "#8 0.5 Setting up libgfortran5",
                 "#8 DONE 3.0s", f"#9 [build {stages['build'].index(1) + 1}/8] RUN apt",
                 "#9 0.1 Unpacking gcc", "#9 DONE 20.0s"]:
        progress.feed(line)
    progress.flush()
    text = out.getvalue()
    assert "step 7/7 lapack-src: runtime: apt libgfortran5: done in 3.0s" in text
    assert "step 1/7 build-essentials: compilers and build tools: done in 20.0s" in text


def test_a_runtime_apt_error_is_reported_where_it_is_written(write: Callable[..., Path]
                                                             ) -> None:
    write("name: dep\ndescription: d\nversion: '1'\nbase: debian:bookworm-slim\n"
          "runtime: {apt: [libgomp1, 'bad name'], keep: [/opt/dep]}\nsteps: [{run: 'true'}]\n",
          "dep")
    top = write("name: top\ndescription: d\nversion: '1'\nrequires: [dep]\n"
                "runtime: {apt: [libgfortran5], keep: [/opt/top]}\nsteps: [{run: 'true'}]\n",
                "top")
    found = problems(top)
    assert len(found) == 1 and "dep.yaml:5:" in found[0], found
    assert ": runtime.apt[1]: not a Debian package name" in found[0]


def test_a_kept_venv_must_be_a_path_copy_can_take(recipe: Callable[..., Path]) -> None:
    found = problems(recipe("runtime: {apt: [python3]}\n"
                            "steps: [{venv: {path: '/opt/v$HOME'}}]\n"))
    assert any(": steps[0].venv.path: " in line and "COPY --from expands" in line
               for line in found), found


def test_the_lock_tells_a_runtime_apt_step_from_a_build_one(recipe: Callable[..., Path]) -> None:
    """The same packages locked on the bare base (runtime) or after the build's steps are
    not the same lock: moving them between the two makes the lock stale."""
    from envkit.plan import lock as lockmod

    catalog = Catalog()
    as_step = recipe("runtime: {keep: [/opt/x]}\nsteps: [{apt: [libgomp1]}]\n", "a")
    as_runtime = recipe("runtime: {apt: [libgomp1], keep: [/opt/x]}\nsteps: [{run: 'true'}]\n",
                        "b")
    digests = [lockmod.inputs_of(make_plan(catalog.load(p), catalog), "c").data["steps"]
               for p in (as_step, as_runtime)]
    assert digests == [[{"kind": "apt", "packages": ["libgomp1"]}],
                       [{"kind": "apt", "packages": ["libgomp1"], "stage": "runtime"}]]


def test_a_host_runs_the_toolchain_checks_the_image_leaves_out(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from envkit.cli import build

    catalog = Catalog()
    plan = make_plan(catalog.find("lapack-src"), catalog)
    assert [c.label() for c in plan.build_checks] == [
        "CXX is g++ 12 and builds a C++17 program that runs",
        "FC builds a Fortran program that runs", "ccache and patchelf run"]
    ran: dict[bool, list[str]] = {}

    def fake(checks: list, runner: object, where: str, out: object) -> bool:
        ran[where == "host"] = [c.label() for c in checks]
        return True

    monkeypatch.setattr(build, "run_checks", fake)
    for image in (True, False):
        build._verify(plan, None, "image" if image else "host", io.StringIO(), image=image)
    assert "ccache and patchelf run" in ran[True] and "ccache and patchelf run" not in ran[False]
