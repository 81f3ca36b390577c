"""Locks: the file, its inputs hash, finding and applying one, making one, the builds that
install exactly the locked set, verify against it, and the catalog's shipped locks.

Resolution runs real uv against a package index served on loopback; apt steps are locked
in the base image (a stand-in simulation here; the ``-m docker`` tests use the engine).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conftest import ENVKIT, FlakyServer, LocalIndex, plan_of
from envkit import paths
from envkit.cli import build as buildmod
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import aptlock, locking, make_plan
from envkit.plan import lock as lockmod
from envkit.plan import resolver as resolve
from envkit.plan.lock import AptPackage, Dist, Entry, LockFile, PipPackage, StepLock
from envkit.render import render, write_outputs
from envkit.verify import lockcheck

SHA = "a" * 64


@pytest.fixture
def index(flaky: FlakyServer) -> LocalIndex:
    return LocalIndex(flaky.root)


@pytest.fixture(autouse=True)
def own_uv_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test resolves with a uv cache of its own (a local index's files change)."""
    real = resolve.uv_env

    def uv_env(*args: Any, **kw: Any) -> dict[str, str]:
        return {**real(*args, **kw), "UV_CACHE_DIR": str(tmp_path / "uv-cache")}

    monkeypatch.setattr(resolve, "uv_env", uv_env)


def entry(**kw: Any) -> Entry:
    steps = [StepLock("apt", "t: curl", apt=[AptPackage("curl", "7.88.1-10+deb12u14"),
                                              AptPackage("libcurl4", "7.88.1-10+deb12u14")]),
             StepLock("pip", "t: pip numpy", pip=[
                 PipPackage("numpy", "2.4.6", [Dist("numpy-2.4.6-cp311-cp311-manylinux_2_28_"
                                                    "x86_64.whl", SHA)])])]
    base = dict(inputs="sha256:" + "b" * 64, params=[{"x": "1"}], python="3.11",
                platform="x86_64-manylinux_2_36", base="debian:bookworm-slim",
                suite="bookworm", uv=lockmod.uv_version(), steps=steps)
    return Entry(**{**base, **kw})


# --- the file -----------------------------------------------------------------------------


def test_a_lock_file_round_trips_sorted_and_diff_friendly(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    two = entry(inputs="sha256:" + "c" * 64, params=[{"x": "2"}, {"x": "0"}])
    lock = LockFile(path, "t", [two, entry()])
    text = lockmod.dump(lock)
    assert lockmod.dump(lockmod.parse(text, path)) == text  # parse(dump) is the identity
    lines = text.splitlines()
    assert lines[2:4] == ["envkit-lock 1", "recipe t"]
    # entries sorted by their params, params sorted in an entry, one fact a line
    assert [ln for ln in lines if ln.startswith("  params ")] == [
        '  params {"x":"0"}', '  params {"x":"2"}', '  params {"x":"1"}']
    assert "    numpy 2.4.6" in lines
    assert f"      numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl sha256:{SHA}" in lines
    parsed = lockmod.parse(text, path)
    numpy = parsed.entries[0].steps[1].pip[0]
    assert lines[numpy.line - 1] == "    numpy 2.4.6"  # each package knows its line


def test_a_lock_without_files_or_edited_by_hand_is_refused_at_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.lock"
    text = lockmod.dump(LockFile(path, "t", [entry()]))
    bad = text.replace(f" sha256:{SHA}", " sha256:123").replace("  python 3.11\n",
                                                                   "  pyton 3.11\n")
    with pytest.raises(EnvkitError) as info:
        lockmod.parse(bad, path)
    messages = [str(d) for d in info.value.diagnostics]
    assert any(":8:1: lock: unexpected line 'pyton 3.11'" in m for m in messages), messages
    assert any("a file line is FILENAME sha256:HEX" in m for m in messages), messages
    assert any("numpy 2.4.6 has no file to install" in m for m in messages), messages
    assert all("invoke lock --recipe t" in m for m in messages)
    # nothing in a lock can be more than a name and a version where it is rendered
    for good, hostile in (("    numpy 2.4.6", "    --index-url=http://evil 2.4.6"),
                          ("    numpy 2.4.6", "    numpy 2.4.6;os_name!='x'"),
                          ("    curl 7.88.1-10+deb12u14", "    curl 7.88$(touch.x)"),
                          ("    curl 7.88.1-10+deb12u14", "    -o 7.88"),
                          ("      numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl",
                           "      ../../etc/passwd")):
        with pytest.raises(EnvkitError) as info:
            lockmod.parse(text.replace(good, hostile), path)
        assert any(("not a" in str(d) or "a file line" in str(d))
                   for d in info.value.diagnostics), (hostile, info.value)
    with pytest.raises(EnvkitError, match="not an envkit lock"):
        lockmod.parse("recipe t\n", path)
    with pytest.raises(EnvkitError, match="this envkit reads format 1"):
        lockmod.parse("envkit-lock 7\nrecipe t\n", path)


def test_a_lock_is_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.lock"
    path.write_text("old\n")

    def boom(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        lockmod.write(LockFile(path, "t", [entry()]))
    assert path.read_text() == "old\n" and list(tmp_path.iterdir()) == [path]


# --- the inputs hash ----------------------------------------------------------------------

RECIPE = """\
# a comment
params:
  v: {type: choice, values: ["1", "2"], default: "1"}
steps:
  - apt: [curl]
  - venv: {path: "{{ prefix }}/venv"}
  - pip: ["leaf=={{ v }}"]
  - run: echo hi
"""


def test_the_inputs_hash_is_what_decides_the_lock(recipe, write) -> None:
    path = recipe(RECIPE)
    catalog = Catalog(path.parent)

    def digest(text: str = RECIPE, settings: dict[str, str] | None = None, **kw: Any) -> str:
        path.write_text(textwrap.dedent("""\
            name: t
            description: a test recipe
            version: 1.0.0
            base: debian:bookworm-slim
            """) + text)
        catalog._cache.clear()
        plan = make_plan(catalog.load(path), catalog, settings, **kw)
        return lockmod.inputs_of(plan, "c").digest

    first = digest()
    assert first == digest(RECIPE.replace("# a comment", "# another comment"))
    assert first == digest(RECIPE.replace("- run: echo hi", "- run: echo bye"))  # not locked
    assert first == digest(settings={"prefix": "/elsewhere"})  # host and image share it
    assert first == digest(mirror="tuna")  # the same from every mirror profile
    assert first != digest(settings={"v": "2"})
    assert first != digest(RECIPE.replace("default: \"1\"", "default: \"2\""))
    assert first != digest(RECIPE.replace("[curl]", "[curl, git]"))
    assert first != digest(base="debian:trixie-slim")
    plan = plan_of(path)
    assert lockmod.inputs_of(plan, "c").digest != lockmod.inputs_of(plan, "d").digest
    assert lockmod.inputs_of(plan, "c").params == {"v": "1"}


def test_a_requirements_files_content_is_an_input(recipe, tmp_path: Path) -> None:
    (tmp_path / "req.txt").write_text("leaf==1.0\n")
    path = recipe("""
        steps:
          - venv: {path: /opt/v}
          - pip: {packages: [leaf], requirements: [req.txt]}
        """)
    one = lockmod.inputs_of(plan_of(path), "c")
    assert one.files == {2: [("-r", (tmp_path / "req.txt").resolve())]}
    (tmp_path / "req.txt").write_text("leaf==2.0\n")
    assert lockmod.inputs_of(plan_of(path), "c").digest != one.digest


# --- finding and applying -----------------------------------------------------------------


def locked_recipe(recipe, index: LocalIndex, flaky: FlakyServer) -> Path:
    index.publish("leaf", "1.0")
    index.publish("top", "1.0", "leaf>=1")
    return recipe(f"""
        params:
          v: {{type: choice, values: ["1.0"], default: "1.0"}}
        steps:
          - venv: {{path: "{{{{ prefix }}}}/venv"}}
          - pip: {{packages: ["top=={{{{ v }}}}"], index: "{flaky.url}/simple"}}
        """)


def lock_it(path: Path, **kw: Any) -> list[locking.Outcome]:
    catalog = Catalog()  # as invoke lock --recipe PATH: the catalog's compatibility data
    settings = locking.Settings(**kw)
    return locking.lock_recipe(catalog, catalog.load(path), settings,
                               locking.Maker(settings))


def test_invoke_lock_writes_a_lock_a_plan_then_installs(recipe, index: LocalIndex,
                                                        flaky: FlakyServer) -> None:
    path = locked_recipe(recipe, index, flaky)
    [outcome] = lock_it(path)
    assert (outcome.state, outcome.params) == ("locked", {"v": "1.0"})
    lock = lockmod.load(lockmod.path_for(path))
    assert lock is not None and [s.kind for s in lock.entries[0].steps] == ["pip"]
    assert [p.pin for p in lock.entries[0].steps[0].pip] == ["leaf==1.0", "top==1.0"]
    catalog = Catalog()
    recipe_ = catalog.load(path)
    plan = make_plan(recipe_, catalog, locker=locking.Locker(catalog, recipe_))
    assert plan.lock.state == "locked"
    unlocked = plan_of(path)
    assert plan.hash != unlocked.hash  # the image tag follows the locked content
    docker = render(plan, "dockerfile")
    assert ("--mount=type=bind,source=files/envkit/lock/step-2.txt,"
            "target=/run/envkit/lock/step-2.txt") in docker
    assert ("envkit_uv_pip /opt/envkit/venv/bin/python install --require-hashes --no-deps "
            f"--default-index {flaky.url}/simple -r \"$ENVKIT_LOCKS\"/step-2.txt") in docker
    requirements = plan.generated["files/envkit/lock/step-2.txt"]
    assert f"leaf==1.0 \\\n    --hash=sha256:{lock.entries[0].steps[0].pip[0].dists[0].sha256}" \
        in requirements
    assert f"# leaf 1.0: line {lock.entries[0].steps[0].pip[0].line}" in requirements
    # a second run with the same inputs keeps the entry as it is
    [again] = lock_it(path)
    assert again.state == "kept"


def test_a_stale_lock_is_refused_naming_the_lock_and_the_fix(recipe, index: LocalIndex,
                                                             flaky: FlakyServer) -> None:
    path = locked_recipe(recipe, index, flaky)
    lock_it(path)
    path.write_text(path.read_text().replace('packages: ["top==', 'packages: [leaf, "top=='))
    catalog = Catalog()
    with pytest.raises(EnvkitError) as info:
        make_plan(catalog.load(path), catalog,
                  locker=locking.Locker(catalog, catalog.load(path)))
    [diag] = info.value.diagnostics
    assert str(diag).startswith(f"{lockmod.display(lockmod.path_for(path))}:6:1: lock: stale "
                                "for v=1.0: t (or a recipe it requires, the compatibility "
                                "data or envkit's uv) changed since it was locked")
    assert "invoke lock --recipe t" in str(diag) and "--no-lock" in str(diag)


def test_dep_of_dep_stays_locked_after_a_newer_release(recipe, index: LocalIndex,
                                                       flaky: FlakyServer, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Host builds, real uv: locked while only leaf 1.0 existed, a build still installs 1.0
    after 1.1 is published (it is no top-level pin); --no-lock gets 1.1."""
    path = locked_recipe(recipe, index, flaky)
    lock_it(path)
    index.publish("leaf", "1.1")
    for flags, want in (({}, "1.0"), ({"no_lock": True}, "1.1")):
        work = tmp_path / ("unlocked" if flags else "locked")
        work.mkdir()
        monkeypatch.chdir(work)
        out = io.StringIO()
        target = buildmod.build(buildmod.Options(recipe=str(path), target="host", **flags), out)
        python = Path(target) / "venv" / "bin" / "python"
        got = subprocess.run([str(python), "-c", "import leaf; print(leaf.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert got == want, out.getvalue()
        assert ("installed packages match the lock" in out.getvalue()) == (not flags)
    manifest = json.loads((tmp_path / "locked/.envkit/envs/t/envkit.json").read_text())
    assert manifest["lock"]["state"] == "locked" and manifest["lock"]["file"] == "t.lock"
    assert "leaf==1.0" in manifest["installed"][f"pip {tmp_path}/locked/.envkit/envs/t/venv/"
                                                "bin/python"]


def test_a_tampered_hash_fails_the_step_naming_the_package_and_lock_line(
        recipe, index: LocalIndex, flaky: FlakyServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = locked_recipe(recipe, index, flaky)
    lock_it(path)
    file = lockmod.path_for(path)
    lock = lockmod.load(file)
    assert lock is not None
    leaf = lock.entries[0].steps[0].pip[0]
    file.write_text(file.read_text().replace(leaf.dists[0].sha256, "0" * 64))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EnvkitError) as info:
        buildmod.build(buildmod.Options(recipe=str(path), target="host"), io.StringIO())
    text = str(info.value)
    assert "at step 2/2 t: pip top==1.0" in text
    assert f"leaf 1.0 ({lockmod.display(file)}:{leaf.line}): its file's sha256 differs " \
           "from the lock" in text


def test_a_locked_version_the_index_dropped_fails_naming_it(recipe, index: LocalIndex,
                                                           flaky: FlakyServer,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    path = locked_recipe(recipe, index, flaky)
    lock_it(path)
    index.remove("leaf", "1.0")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EnvkitError) as info:
        buildmod.build(buildmod.Options(recipe=str(path), target="host"), io.StringIO())
    assert "leaf 1.0 (" in str(info.value) and "the index does not have it" in str(info.value)


def test_upgrade_package_moves_only_that_package(recipe, index: LocalIndex,
                                                 flaky: FlakyServer) -> None:
    path = locked_recipe(recipe, index, flaky)
    index.publish("other", "1.0")
    path.write_text(path.read_text().replace('["top==', '[other, "top=='))
    lock_it(path)
    index.publish("leaf", "1.1")
    index.publish("other", "1.1")
    lock_it(path, upgrade_packages=["leaf"])  # inputs unchanged: kept, unless upgrading
    lock = lockmod.load(lockmod.path_for(path))
    assert lock is not None
    assert [p.pin for p in lock.entries[0].steps[0].pip] == ["leaf==1.1", "other==1.0",
                                                             "top==1.0"]
    lock_it(path, upgrade=True)
    lock = lockmod.load(lockmod.path_for(path))
    assert lock is not None
    assert [p.pin for p in lock.entries[0].steps[0].pip] == ["leaf==1.1", "other==1.1",
                                                             "top==1.0"]


def test_exclude_newer_locks_as_of_a_date(recipe, index: LocalIndex, flaky: FlakyServer,
                                          tmp_path: Path) -> None:
    """uv reads upload times from the index (PEP 700); a release after the date is out."""
    path = locked_recipe(recipe, index, flaky)
    [outcome] = lock_it(path, exclude_newer="2000-01-01T00:00:00Z")
    assert outcome.state == "failed" and "top" in outcome.detail
    lock = lockmod.load(lockmod.path_for(path))
    assert lock is not None and lock.entries == []  # nothing half-made is written


def test_an_index_that_does_not_answer_is_recorded_as_unlocked(recipe) -> None:
    path = recipe("""
        steps:
          - venv: {path: /opt/v}
          - pip: {packages: [six], index: "http://127.0.0.1:9/simple"}
        """)
    [outcome] = lock_it(path)
    assert outcome.state == "unlocked"
    assert outcome.detail == "http://127.0.0.1:9/simple does not answer from here"
    text = lockmod.path_for(path).read_text()
    assert "\nunlocked sha256:" in text and "  why http://127.0.0.1:9/simple does not" in text
    catalog = Catalog()
    plan = make_plan(catalog.load(path), catalog,
                     locker=locking.Locker(catalog, catalog.load(path)))
    assert plan.lock.state == "unlocked" and all(ps.step.locked is None for ps in plan.steps)


def test_apt_steps_need_the_base_image_so_an_engine(recipe) -> None:
    path = recipe("steps:\n  - apt: [curl]\n")
    [outcome] = lock_it(path)
    assert outcome.state == "failed"
    assert "its apt steps are locked in the base image (debian:bookworm-slim), and no image " \
           "engine (Docker or podman) answers here" in outcome.detail


def test_a_recipe_with_nothing_to_lock_gets_no_lock(recipe) -> None:
    path = recipe("steps:\n  - run: echo hi\n")
    [outcome] = lock_it(path)
    assert outcome.state == "nothing" and not lockmod.path_for(path).exists()
    catalog = Catalog(path.parent)
    plan = make_plan(catalog.load(path), catalog,
                     locker=locking.Locker(catalog, catalog.load(path)))
    assert plan.lock.state == "none"


# --- apt, with apt's answers given -----------------------------------------------------------

SIMULATION = """\
== base
base-files 12.4+deb12u12
libc6 2.36-9+deb12u10
== job 0
Inst libc6 [2.36-9+deb12u10] (2.36-9+deb12u13 Debian-Security:12/stable-security [amd64])
Inst libcurl4 (7.88.1-10+deb12u14 Debian:12.12/stable [amd64])
Inst curl (7.88.1-10+deb12u14 Debian:12.12/stable [amd64])
== job 1
Inst libc6 [2.36-9+deb12u10] (2.36-9+deb12u13 Debian-Security:12/stable-security [amd64])
Inst libcurl4 (7.88.1-10+deb12u14 Debian:12.12/stable [amd64])
Inst curl (7.88.1-10+deb12u14 Debian:12.12/stable [amd64])
Inst git-man (1:2.39.5-0+deb12u2 Debian:12.12/stable [all])
Inst git (1:2.39.5-0+deb12u2 Debian:12.12/stable [amd64])
"""


def test_each_apt_step_locks_what_it_adds_to_the_base_and_the_steps_before() -> None:
    jobs = [aptlock.AptJob("t: curl", ["curl"]), aptlock.AptJob("t: git", ["git"])]
    sim = aptlock._parse(SIMULATION, jobs)
    assert sim.base == {"base-files": "12.4+deb12u12", "libc6": "2.36-9+deb12u10"}
    assert [(a.name, a.version) for a in sim.steps[0].apt] == [
        ("curl", "7.88.1-10+deb12u14"), ("libc6", "2.36-9+deb12u13"),
        ("libcurl4", "7.88.1-10+deb12u14")]
    assert [(a.name, a.version) for a in sim.steps[1].apt] == [
        ("git", "1:2.39.5-0+deb12u2"), ("git-man", "1:2.39.5-0+deb12u2")]


class Containers:
    """An engine's containers (aptlock.Containers) whose script runs are ``run``."""

    def __init__(self, run: Any):
        self.run_script = run


def test_the_simulation_asks_for_every_apt_step_so_far() -> None:
    seen: dict[str, Any] = {}

    def run_script(image: str, script: str, files: dict[str, bytes],
                   env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        seen.update(script=script, files=files, env=env, image=image)
        return 0, SIMULATION, ""

    jobs = [aptlock.AptJob("t: curl", ["curl"]), aptlock.AptJob("t: git", ["git", "curl"])]
    aptlock.simulate(Containers(run_script), "envkit/base:bookworm", jobs,
                     {"ENVKIT_MIRROR_APT": "-"}, prefer={"curl": "7.88.1-10+deb12u12"})
    assert seen["script"].startswith("set -- curl 'curl git'\n")
    assert seen["env"]["ENVKIT_APT_PREFER"] == "curl=7.88.1-10+deb12u12"
    assert "/usr/local/lib/envkit/helpers.sh" in seen["files"]


def test_apt_saying_a_package_does_not_exist_is_one_line() -> None:
    engine = Containers(lambda *a: (
        100, "== base\n", "Reading package lists...\nE: Unable to locate package nosuch\n"))
    with pytest.raises(EnvkitError) as info:
        aptlock.simulate(engine, "img", [aptlock.AptJob("t", ["nosuch"])], {})
    assert str(info.value) == "envkit: apt: apt in img: Unable to locate package nosuch"


def test_locked_apt_steps_install_exact_versions(recipe) -> None:
    path = recipe("steps:\n  - apt: [curl]\n")
    plan = plan_of(path)
    match = lockmod.Match("locked", entry(steps=[entry().steps[0]],
                                          apt_snapshot="20261201T000000Z"),
                          LockFile(path.with_suffix(".lock"), "t"))
    lockmod.apply(plan, match)
    docker = render(plan, "dockerfile")
    assert ("ENVKIT_APT_SNAPSHOT=20261201T000000Z envkit_apt_sources \\\n"
            " && envkit_apt_get update \\\n"
            " && envkit_apt_locked t curl=7.88.1-10+deb12u14 libcurl4=7.88.1-10+deb12u14"
            in docker)
    assert "ARG ENVKIT_APT_VANISHED=fail" in docker
    shell = render(plan, "shell")
    assert "elif [ \"$(envkit_os_suite)\" = bookworm ]; then" in shell


# --- verify against the lock ------------------------------------------------------------


def test_verify_names_each_package_added_missing_or_at_another_version(recipe) -> None:
    path = recipe("""
        steps:
          - apt: [curl]
          - venv: {path: /opt/v}
          - pip: [numpy]
          - run: {script: "pip install .", installs: [mine]}
        """)
    plan = plan_of(path)
    lockmod.apply(plan, lockmod.Match("locked", entry(), LockFile(path.with_suffix(".lock"),
                                                                  "t")))
    check = lockcheck.for_plan(plan, image=True)
    assert check is not None and check.command()[-1] == "/opt/v/bin/python"
    same = ("# /opt/v/bin/python\nnumpy==2.4.6\npip==23.0.1\nsetuptools==66.1.1\nmine==0.1\n"
            "# dpkg\nbase-files 12.4\ncurl 7.88.1-10+deb12u14\nlibcurl4 7.88.1-10+deb12u14\n"
            "# base\nbase-files 12.4\n")
    assert check.judge(0, same) == (True, "3 locked packages as locked")
    drifted = (same.replace("numpy==2.4.6", "numpy==2.3.0").replace("mine==0.1\n", "six==1.17\n")
               .replace("libcurl4 7.88.1-10+deb12u14\n", "vim 9.0\n"))
    ok, detail = check.judge(0, drifted)
    assert not ok
    assert detail.split("; ") == [
        "pip /opt/v/bin/python: numpy is 2.3.0, locked 2.4.6 (the lock made for this build)"
        .replace("the lock made for this build", lockmod.display(path.with_suffix(".lock"))),
        "pip /opt/v/bin/python: added six 1.17 (not in the lock)",
        f"apt: missing libcurl4 7.88.1-10+deb12u14 ({lockmod.display(path.with_suffix('.lock'))})",
        "apt: added vim 9.0 (not in the lock)"]
    replaced = same.replace("curl 7.88.1-10+deb12u14\n", "curl 7.88.1-10+deb12u15\n") + (
        "# replaced\ncurl 7.88.1-10+deb12u14 7.88.1-10+deb12u15\n")
    ok, detail = check.judge(0, replaced)
    assert ok and "apt curl 7.88.1-10+deb12u15 instead of the locked 7.88.1-10+deb12u14" in detail
    assert lockcheck.for_plan(plan_of(path), image=True) is None  # no lock, no check


def test_verify_runs_the_listing_on_the_host(recipe, tmp_path: Path) -> None:
    """The check's own script, through the helpers, lists a real venv."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    check = lockcheck.LockCheck(pip={str(venv / "bin" / "python"): {}}, apt=None,
                                helpers=str(paths.data_dir() / "helpers.sh"))
    from envkit.checks import local_runner

    result = check.run(local_runner(env={"PATH": os.environ["PATH"]}))
    assert result.ok, result.detail


# --- the lock in the commands ------------------------------------------------------------


def test_invoke_lock_refuses_bad_options_in_one_line(tmp_path: Path) -> None:
    for args, message in [
        (["lock"], "envkit: --recipe: which recipe?"),
        (["lock", "--all", "--recipe", "faiss-cpu"], "envkit: --all: --all locks every recipe"),
        (["lock", "--recipe", "faiss-cpu", "--upgrade", "--upgrade-package", "numpy"],
         "envkit: --upgrade: --upgrade moves every package"),
        (["lock", "--recipe", "faiss-cpu", "--exclude-newer", "last week"],
         "envkit: --exclude-newer: expected a date, YYYY-MM-DD"),
        (["lock", "--recipe", "faiss-cpu", "--apt-snapshot", "2026-02-30"],
         "envkit: --apt-snapshot: '2026-02-30' is not a date"),
        (["lock", "--all", "--set", "faiss=1.14.3"], "envkit: --set: --set locks one"),
    ]:
        done = subprocess.run([ENVKIT, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(message) and len(done.stderr.splitlines()) == 1, (
            done.stderr)
    assert list(tmp_path.iterdir()) == []


def test_render_says_when_a_recipe_has_no_lock(recipe, tmp_path: Path) -> None:
    path = recipe("steps:\n  - venv: {path: /opt/v}\n  - pip: [six]\n")
    done = subprocess.run([ENVKIT, "render", "--recipe", str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"envkit: rendered from the recipe alone (no lock for no params; "
                           f"invoke lock --recipe {path} makes one)\n")
    assert "envkit_uv_pip /opt/v/bin/python install six" in done.stdout


# --- the catalog ----------------------------------------------------------------------------


def test_the_rendered_faiss_cpu_dockerfile_installs_through_uv_with_hashes(catalog) -> None:
    recipe_ = catalog.find("faiss-cpu")
    plan = make_plan(recipe_, catalog, locker=locking.Locker(catalog, recipe_))
    assert plan.lock.state == "locked"
    docker = render(plan, "dockerfile")
    assert "COPY files/envkit/uv.txt /usr/local/lib/envkit/uv.txt" in docker
    assert ("envkit_uv_pip /opt/envkit/venv/bin/python install --require-hashes --no-deps -r "
            "\"$ENVKIT_LOCKS\"/step-4.txt") in docker
    requirements = plan.generated["files/envkit/lock/step-4.txt"]
    for name in ("faiss-cpu==1.15.1", "numpy==2.4.6"):
        assert f"\n{name} \\\n    --hash=sha256:" in requirements
    assert "envkit_apt_locked faiss-cpu libgomp1=" in docker


def test_every_catalog_lock_is_current_or_recorded_as_unlockable(catalog) -> None:
    """What validate checks, in-process: each variant validate covers has a current lock
    entry, or one saying why it cannot be locked here; the uv pin is the one envkit uses."""
    from importlib.metadata import version

    from envkit.plan.variants import variants

    assert version("uv") == lockmod.uv_version()
    states: dict[str, int] = {}
    for path in catalog.all():
        recipe_ = catalog.load(path)
        for variant in variants(recipe_, catalog):
            if variant.mirror != "default":
                continue
            plan = make_plan(recipe_, catalog, variant.settings,
                             locker=locking.Locker(catalog, recipe_, strict=False))
            assert plan.lock.state in ("locked", "unlocked"), (path.stem, variant.label())
            states[plan.lock.state] = states.get(plan.lock.state, 0) + 1
            if plan.lock.state == "unlocked":  # only where an index or a base does not answer
                assert path.stem in ("cuda-toolkit", "paddle-gpu", "pytorch-cpu",
                                     "pytorch-gpu"), (path.stem, variant.label())
    assert states["locked"] >= 70, states


def test_validate_fails_on_a_stale_or_missing_lock_of_a_catalog_recipe(tmp_path: Path) -> None:
    """A copy of the catalog where one recipe's default changed without locking again, and
    one recipe's lock is gone."""
    from envkit.cli.validate import validate

    root = tmp_path / "recipes"
    shutil.copytree(paths.catalog_dir(), root)
    faiss = root / "faiss-cpu.yaml"
    faiss.write_text(faiss.read_text().replace('default: "1.15.1"', 'default: "1.14.3"')
                     .replace("numpy==2.4.6", "numpy==2.4.5"))
    (root / "jupyter.lock").unlink()
    catalog = Catalog(root)
    report = validate(["faiss-cpu", "jupyter", "paddle-gpu"], catalog)
    problems = [str(d) for d in report.problems if "lint" not in str(d)]
    assert any(p.startswith("recipes/faiss-cpu.lock:") and "lock: stale for faiss=1.14.3"
               in p and "invoke lock --recipe faiss-cpu" in p
               for p in (x.replace(str(tmp_path) + "/", "") for x in problems)), problems
    assert any("jupyter.lock: lock: missing: jupyter has no lock file (invoke lock --recipe "
               "jupyter)" in p for p in problems), problems
    assert any(w.startswith("paddle-gpu: not locked here (") and
               "https://www.paddlepaddle.org.cn/packages/stable/cu126/ does not answer" in w
               for w in report.warnings), report.warnings
    # a default that moves to a value never locked: no entry for it, naming the lock
    faiss.write_text(faiss.read_text().replace('values: ["1.15.1", "1.14.3"]',
                                               'values: ["1.15.0", "1.15.1", "1.14.3"]')
                     .replace('default: "1.14.3"', 'default: "1.15.0"')
                     .replace("numpy==2.4.5", "numpy==2.4.6"))
    report = validate(["faiss-cpu"], Catalog(root))
    problems = [str(d).replace(str(tmp_path) + "/", "") for d in report.problems]
    assert problems == ["recipes/faiss-cpu.lock: lock: no entry for faiss=1.15.0, python=3.11; "
                        "faiss=1.15.0, python=3.12; faiss=1.15.0, python=3.13 "
                        "(invoke lock --recipe faiss-cpu)"], problems


def test_write_outputs_writes_the_locked_steps_files(catalog, tmp_path: Path) -> None:
    recipe_ = catalog.find("faiss-cpu")
    plan = make_plan(recipe_, catalog, locker=locking.Locker(catalog, recipe_))
    write_outputs(plan, ["shell", "dockerfile"], tmp_path)
    assert (tmp_path / "files/envkit/lock/step-4.txt").read_text() == plan.generated[
        "files/envkit/lock/step-4.txt"]
    assert (tmp_path / "files/envkit/uv.txt").read_text().startswith("# The uv that")
    manifest = json.loads((tmp_path / "files/envkit/manifest.json").read_text())
    assert manifest["lock"]["state"] == "locked" and manifest["lock"]["file"] == "faiss-cpu.lock"


def test_a_host_build_without_an_engine_locks_its_pip_steps(recipe, index: LocalIndex,
                                                            flaky: FlakyServer, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """On a host apt steps only check packages: with no engine to lock them in the base,
    the build locks its pip steps, says the apt steps are not, and verify holds pip to it."""
    index.publish("leaf", "1.0")
    path = recipe(f"""
        steps:
          - apt: [bash]
          - venv: {{path: "{{{{ prefix }}}}/venv"}}
          - pip: {{packages: [leaf], index: "{flaky.url}/simple"}}
        """)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    target = Path(buildmod.build(buildmod.Options(recipe=str(path), target="host"), out))
    text = out.getvalue()
    assert "envkit: t.lock does not exist; locking it for this build" in text
    assert "(1 pip package; apt steps not locked: no image engine answers here" in text
    assert "PASS  installed packages match the lock" in text
    made = lockmod.load(target / "envkit.lock")
    assert made is not None and made.entries[0].apt_free and made.entries[0].steps[0].kind == "pip"


def test_a_lock_failure_for_a_certificate_says_pass_ca_bundle() -> None:
    maker = locking.Maker(locking.Settings())
    plan = plan_of(paths.catalog_dir() / "faiss-cpu.yaml")
    inputs = lockmod.inputs_of(plan, "c")
    err = maker._failed(plan, inputs, "Request failed: invalid peer certificate: UnknownIssuer")
    assert "pass --ca-bundle" in str(err)


def test_an_entry_not_made_here_is_tried_again_by_the_next_lock(
        recipe, index: LocalIndex, flaky: FlakyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = locked_recipe(recipe, index, flaky)
    with monkeypatch.context() as m:
        m.setattr(resolve, "answers", lambda index, env: False)  # the index is away
        [first] = lock_it(path)
    assert first.state == "unlocked" and "does not answer from here" in first.detail
    [second] = lock_it(path)  # back again: locked, not kept as unlocked
    assert second.state == "locked"
    lock = lockmod.load(lockmod.path_for(path))
    assert lock is not None and [e.unlocked for e in lock.entries] == [""]


# --- what review found ----------------------------------------------------------------------


def test_an_apt_snapshot_is_what_the_simulation_sees() -> None:
    seen: dict[str, Any] = {}

    def run_script(image: str, script: str, files: dict[str, bytes],
                   env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        seen.update(env)
        return 0, "== suite bookworm\n" + SIMULATION, ""

    sim = aptlock.simulate(Containers(run_script), "img", [aptlock.AptJob("t", ["curl"]),
                                             aptlock.AptJob("t", ["git"])], {},
                           snapshot="20261201T000000Z")
    assert seen["ENVKIT_APT_SNAPSHOT"] == "20261201T000000Z" and sim.suite == "bookworm"


def test_another_base_is_no_stale_lock_but_a_missing_one(recipe) -> None:
    path = recipe("steps:\n  - venv: {path: /opt/v}\n  - pip: [six]\n")
    plan = plan_of(path)
    inputs = lockmod.inputs_of(plan, "c")
    lock = LockFile(path.with_suffix(".lock"), "t",
                    [entry(inputs="sha256:" + "d" * 64, params=[inputs.params],
                           base="debian:bookworm-slim")])
    assert lock.find(inputs).state == "stale"
    other = lockmod.inputs_of(plan_of(path, base="envkit/base:bookworm"), "c")
    assert lock.find(other).state == "missing"  # locked on the fly, not refused


def test_a_requirements_file_under_the_prefix_is_one_lock_for_host_and_image(
        recipe, tmp_path: Path) -> None:
    (tmp_path / "req.txt").write_text("leaf==1.0\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("mid==1.0\n")
    path = recipe("""
        steps:
          - venv: {path: "{{ prefix }}/venv"}
          - pip: {packages: [leaf], requirements: [req.txt]}
        """)
    image = lockmod.inputs_of(plan_of(path), "c").digest
    assert image == lockmod.inputs_of(plan_of(path, {"prefix": "/host/env"}), "c").digest
    (tmp_path / "more.txt").write_text("mid==2.0\n")  # a file the file names is an input too
    assert lockmod.inputs_of(plan_of(path), "c").digest != image


def test_a_venv_made_with_another_python_is_the_target(recipe) -> None:
    path = recipe("steps:\n  - venv: {path: /opt/v, python: '3.12'}\n  - pip: [six]\n")
    assert lockmod.target_python(plan_of(path)) == "3.12"


def test_a_lock_that_cannot_be_read_is_made_anew(recipe, index: LocalIndex,
                                                 flaky: FlakyServer) -> None:
    path = locked_recipe(recipe, index, flaky)
    lockmod.path_for(path).write_text("envkit-lock 1\nrecipe t\ngarbage here\n")
    [outcome] = lock_it(path)
    assert outcome.state == "locked"
    assert lockmod.load(lockmod.path_for(path)) is not None


def test_a_direct_url_cannot_be_pinned_by_hash(recipe, index: LocalIndex,
                                               flaky: FlakyServer) -> None:
    index.publish("leaf", "1.0")
    path = recipe(f"""
        steps:
          - venv: {{path: /opt/v}}
          - pip: ["leaf @ {flaky.url}/files/leaf-1.0-py3-none-any.whl"]
        """)
    [outcome] = lock_it(path)
    assert outcome.state == "failed"
    assert "leaf comes from a direct URL or VCS reference, which a lock cannot pin by hash" \
        in outcome.detail


def test_verify_alone_does_not_hold_a_result_to_another_lock(recipe, tmp_path: Path) -> None:
    path = recipe("steps:\n  - apt: [curl]\n  - venv: {path: /opt/v}\n  - pip: [numpy]\n")
    plan = plan_of(path)
    plan.lock = lockmod.Match("locked", entry(), LockFile(path.with_suffix(".lock"), "t"))
    lockmod.apply(plan, plan.lock)
    out = io.StringIO()
    ran: list[list[str]] = []

    def runner(argv: list[str]) -> tuple[int, str]:
        ran.append(argv)
        return 0, ""

    buildmod._verify(plan, runner, "img", out, image=True, built_with="sha256:" + "e" * 64)
    assert "img was built from another lock (sha256:eeeeeeeeeeee…) than the recipe's now" \
        in out.getvalue()
    assert ran == [] and "the recipe declares no checks" in out.getvalue()


def test_the_helpers_install_uv_once_and_replace_a_broken_install(tmp_path: Path) -> None:
    """A stand-in python3 whose pip puts a uv in --target: installed once, reused, and a
    folder a stopped install left without bin/uv is replaced."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(textwrap.dedent("""\
        #!/bin/bash
        echo "$*" >> "$HOME/pip-calls"
        while [ "$#" -gt 0 ]; do
          if [ "$1" = --target ]; then
            mkdir -p "$2/bin"
            printf '#!/bin/sh\\necho uv "$@"\\n' > "$2/bin/uv"
            chmod +x "$2/bin/uv"
          fi
          shift
        done
        """))
    (bin_dir / "python3").chmod(0o755)
    helpers = paths.data_dir() / "helpers.sh"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "ENVKIT_MIRRORS_PICKED": "1", "ENVKIT_UV_REQ": "/req.txt",
           "ENVKIT_UV_DIR": str(tmp_path / "cache" / "uv-0.13.9")}

    def uv_pip(*args: str) -> str:
        done = subprocess.run(["bash", "-c", '. "$0"; envkit_uv_pip python3 "$@"',
                               str(helpers), *args], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def installs() -> list[str]:
        return [c for c in (tmp_path / "pip-calls").read_text().splitlines()
                if c.startswith("-m pip install ")]

    assert uv_pip("install", "six") == "uv pip install --no-config --python python3 six\n"
    assert uv_pip("install", "six") == "uv pip install --no-config --python python3 six\n"
    assert len(installs()) == 1  # installed once
    assert "--require-hashes --target" in installs()[0]
    shutil.rmtree(tmp_path / "cache" / "uv-0.13.9" / "bin")  # a stopped install's leftovers
    assert uv_pip("list") == "uv pip list --no-config --python python3\n"
    assert len(installs()) == 2


def test_a_python_without_pip_installs_uv_through_a_throwaway_venv(tmp_path: Path) -> None:
    """Debian's python3 has no pip (a uv-managed Python's bootstrap): the helper makes a venv
    with it (ensurepip) and installs uv with that venv's pip, then removes the venv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(textwrap.dedent("""\
        #!/bin/bash
        echo "python3 $*" >> "$HOME/calls"
        [ "$1 $2" = "-m pip" ] && exit 1  # no pip here
        if [ "$1 $2" = "-m venv" ]; then
          mkdir -p "$3/bin"
          cat > "$3/bin/python" <<'PY'
        #!/bin/bash
        echo "venv-python $*" >> "$HOME/calls"
        while [ "$#" -gt 0 ]; do
          if [ "$1" = --target ]; then
            mkdir -p "$2/bin"
            printf '#!/bin/sh\\necho uv "$@"\\n' > "$2/bin/uv"
            chmod +x "$2/bin/uv"
          fi
          shift
        done
        PY
          chmod +x "$3/bin/python"
          echo "$3" > "$HOME/venv-at"
        fi
        """))
    (bin_dir / "python3").chmod(0o755)
    helpers = paths.data_dir() / "helpers.sh"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "ENVKIT_MIRRORS_PICKED": "1", "ENVKIT_UV_REQ": "/req.txt",
           "ENVKIT_UV_DIR": str(tmp_path / "cache" / "uv-0.13.9")}
    done = subprocess.run(["bash", "-c", '. "$0"; envkit_uv_bin python3', str(helpers)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == str(tmp_path / "cache" / "uv-0.13.9" / "bin" / "uv")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == "python3 -m pip --version"
    assert calls[1].startswith("python3 -m venv /")
    assert calls[2].startswith("venv-python -m pip install --disable-pip-version-check "
                               "--no-input --quiet --no-deps --require-hashes --target ")
    assert not Path((tmp_path / "venv-at").read_text().strip()).exists()  # removed


@pytest.mark.parametrize("policy, code", [("fail", 100), ("newer", 0)])
def test_a_newer_debian_package_in_the_base_is_said_not_downgraded(tmp_path: Path, policy: str,
                                                                    code: int) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {"dpkg-query": 'echo -n "installed 2.0-2"',
             "apt-cache": 'echo "Package: libx"',
             "apt-get": 'echo "apt-get $*" >> "$HOME/apt-calls"'}
    for name, body in stubs.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    helpers = paths.data_dir() / "helpers.sh"
    done = subprocess.run(
        ["bash", "-c", '. "$0"; envkit_apt_locked t libx=2.0-1', str(helpers)],
        env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
             "ENVKIT_MIRRORS_PICKED": "1", "ENVKIT_APT_VANISHED": policy},
        capture_output=True, text=True)
    assert done.returncode == code, done.stderr
    if policy == "fail":
        assert done.stderr == ("[envkit] apt: libx 2.0-1 is locked, but the base has 2.0-2, "
                               "newer: run invoke lock --recipe t --upgrade-package libx\n")
        locked = lockmod.Locked(StepLock("apt", "t", apt=[AptPackage("libx", "2.0-1", 9)]),
                                "t", "t.lock:7")
        assert lockmod.explain_failure(locked, done.stderr.splitlines()) == (
            "libx 2.0-1 (t.lock:9): the base has 2.0-2 now")
    else:
        assert "keeping it (ENVKIT_APT_VANISHED=newer)" in done.stderr


def test_a_lock_write_that_fails_leaves_the_old_lock_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock goes through the one atomic writer (envkit.files): a failure between the
    temp file and the rename keeps the lock that was there, whole."""
    from envkit import files

    path = tmp_path / "r.lock"
    path.write_text("old\n")
    lock = lockmod.LockFile(path, "r")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(OSError):
        lockmod.write(lock)
    monkeypatch.undo()
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.lock"]
    lockmod.write(lock)
    assert lockmod.load(path) is not None


def test_lock_picks_its_engine_from_the_backends_and_says_when_there_is_none(
        recipe, tmp_path: Path) -> None:
    from conftest import run_cli

    path = recipe("steps:\n  - apt: [curl]\n")
    bad = run_cli("envkit", "lock", "--recipe", str(path), "--target", "host", cwd=tmp_path)
    assert bad.returncode != 0
    assert "--target: unknown target 'host' (docker or podman)" in bad.stderr
    none = run_cli("envkit", "lock", "--recipe", str(path), cwd=tmp_path,
                   env={"DOCKER_HOST": "unix:///nonexistent/docker.sock",
                        "ENVKIT_PODMAN": "off"})
    assert "apt steps cannot be locked here" in none.stderr
    assert "no image engine (Docker or podman) answers here" in none.stdout + none.stderr
