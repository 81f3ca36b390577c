"""Build orchestration (cli/build.py) with fake backends and no engine: the target chosen,
the plan made and rendered once, the build folder locked, checks under the lock; the tasks
as a user types them."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from backend_fakes import FAILURE, MARKER, SUCCESS, MakeRecipe, docker_with, fake_builder, one_line
from conftest import plan_of
from envkit import backends, ca
from envkit.backends import engine
from envkit.cli import build as buildmod
from envkit.diagnostics import EnvkitError, error
from envkit.load.catalog import Catalog
from envkit.plan import Plan
from envkit.render import Rendered, render, render_all

pytestmark = pytest.mark.usefixtures("fresh_choice")


def test_build_id(recipe: MakeRecipe) -> None:
    one = plan_of(recipe("steps:\n  - run: echo one\n"))
    two = plan_of(recipe("steps:\n  - run: echo two\n", name="u"))
    again = plan_of(recipe("steps:\n  - run: echo one\n", name="v"))
    def bid_of(plan: Plan, base_id: str) -> str:
        return buildmod.build_id(render(plan, "dockerfile"), plan, base_id)

    bid = bid_of(one, "sha256:aaa")
    assert re.fullmatch(r"[0-9a-f]{12}", bid)
    assert bid == bid_of(one, "sha256:aaa")
    assert bid != bid_of(one, "sha256:bbb")
    assert bid != bid_of(two, "sha256:aaa")
    assert one.hash != again.hash and bid != bid_of(again, "sha256:aaa")
    # a template edit changes the Dockerfile, and with it the build
    assert bid != buildmod.build_id(render(one, "dockerfile") + "\n", one, "sha256:aaa")


@pytest.fixture
def no_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    def connect(timeout: float = 300) -> Any:
        raise AssertionError("asked the engine")

    monkeypatch.setattr(buildmod.engine, "connect", connect)


@pytest.mark.usefixtures("no_connect")
def test_build_refuses_an_unknown_target(recipe: MakeRecipe) -> None:
    path = recipe("steps:\n  - run: \"true\"\n")
    with pytest.raises(EnvkitError) as info:
        buildmod.build(buildmod.Options(recipe=str(path), target="nope"), io.StringIO())
    assert "--target: unknown target 'nope' (docker or podman or host)" in one_line(info.value)


@pytest.mark.usefixtures("no_connect")
def test_build_reports_recipe_problems_first() -> None:
    with pytest.raises(EnvkitError, match=r"unknown recipe 'python-vnv'.*did you mean"):
        buildmod.build(buildmod.Options(recipe="python-vnv", target="docker"), io.StringIO())


@pytest.fixture
def host_calls(monkeypatch: pytest.MonkeyPatch) -> list[buildmod.Options]:
    calls: list[buildmod.Options] = []

    def build_host(opts: buildmod.Options, catalog: Any, out: Any,
                   verify: bool | None = None) -> str:
        calls.append(opts)
        return "/somewhere/env"

    monkeypatch.setattr(buildmod, "build_host", build_host)
    return calls


def test_build_falls_back_to_the_host(recipe: MakeRecipe, no_engine: str,
                                      host_calls: list[buildmod.Options]) -> None:
    path = recipe("steps:\n  - run: \"true\"\n")
    out = io.StringIO()
    opts = buildmod.Options(recipe=str(path))
    assert buildmod.build(opts, out) == "/somewhere/env"
    assert host_calls == [opts]
    assert out.getvalue() == (
        f"envkit: no Docker engine answers at {no_engine}: no socket there; provisioning on "
        "this host instead (--target docker insists on an engine)\n")


def test_build_for_docker_insists_on_an_engine(recipe: MakeRecipe, no_engine: str,
                                               host_calls: list[buildmod.Options]) -> None:
    path = recipe("steps:\n  - run: \"true\"\n")
    out = io.StringIO()
    with pytest.raises(EnvkitError) as info:
        buildmod.build(buildmod.Options(recipe=str(path), target="docker"), out)
    text = one_line(info.value)
    assert "no Docker engine answers" in text and "--target host" in text
    assert host_calls == [] and out.getvalue() == ""


@pytest.mark.usefixtures("no_connect")
def test_build_for_the_host_never_asks_the_engine(recipe: MakeRecipe,
                                                  host_calls: list[buildmod.Options]) -> None:
    path = recipe("steps:\n  - run: \"true\"\n")
    assert buildmod.build(buildmod.Options(recipe=str(path), target="host"),
                          io.StringIO()) == "/somewhere/env"
    assert len(host_calls) == 1


@pytest.mark.usefixtures("no_connect")
def test_build_host_provisions_and_verifies(recipe: MakeRecipe, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    path = recipe(MARKER)
    out = io.StringIO()
    target = work / ".envkit/envs/t"
    assert buildmod.build(buildmod.Options(recipe=str(path), target="host"), out) == str(target)
    assert (target / "out/marker").read_text() == "hello world\n"
    text = out.getvalue()
    assert f"envkit: provisioning t on this host into {target}\n" in text
    assert "all 1 checks passed" in text
    buildmod.verify_env(buildmod.Options(recipe=str(path)), target, out)
    (target / "out/marker").unlink()
    with pytest.raises(buildmod.VerifyFailed) as info:
        buildmod.verify_env(buildmod.Options(recipe=str(path)), target, io.StringIO())
    assert f"verify: t: verification failed in {target}" in one_line(info.value)


def test_locked_refuses_a_second_build(tmp_path: Path) -> None:
    folder = tmp_path / "build" / "t"
    with buildmod._locked(folder):
        assert folder.is_dir()
        with pytest.raises(EnvkitError) as info, buildmod._locked(folder):
            pass
        text = one_line(info.value)
        assert f"build: another envkit build is using {folder} (wait for it to finish)" in text
    with buildmod._locked(folder):  # free again once the first is done
        pass


def test_locked_across_processes(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    code = (f"import sys, time; sys.path.insert(0, {str(Path(buildmod.__file__).parents[2])!r})\n"
            "from envkit.cli.build import _locked\n"
            f"with _locked(__import__('pathlib').Path({str(folder)!r})):\n"
            "    print('locked', flush=True); sys.stdin.readline()\n")
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline() == "locked\n"
        with pytest.raises(EnvkitError, match="another envkit build"), buildmod._locked(folder):
            pass
    finally:
        assert other.stdin is not None
        other.stdin.write("\n")
        other.stdin.close()
        other.wait(timeout=10)


def test_run_build_names_the_failing_step(tmp_path: Path, full_plan: Plan,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "lost", lambda: "")  # the engine is still there
    builder = fake_builder(tmp_path, FAILURE, 1)
    context = tmp_path / "ctx"
    context.mkdir()
    opts = buildmod.Options(recipe="t", ca_bundle=Path("/x/ca.pem"))
    out = io.StringIO()
    with pytest.raises(EnvkitError) as info:
        buildmod._run_build(docker_with(builder), full_plan,
                            render_all(full_plan, ["dockerfile"]), context, ["envkit/t:1"],
                            "abc", opts, buildmod.secretmod.Provided(), out)
    text = one_line(info.value)
    assert "build: t: the build failed at step 2/7 t: apt curl after " in text
    assert f"full log: {context / 'build.log'}" in text
    assert "  | E: Unable to locate package curl" in out.getvalue()
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert "id=envkit-ca,src=/x/ca.pem" in argv and f"PIP_CERT={ca.TARGET}" in argv
    assert "--label" in argv and "io.envkit.build=abc" in argv


def test_run_build_counts_steps(tmp_path: Path, full_plan: Plan) -> None:
    builder = fake_builder(tmp_path, SUCCESS, 0)
    out = io.StringIO()
    buildmod._run_build(docker_with(builder), full_plan,
                        render_all(full_plan, ["dockerfile"]), tmp_path, ["envkit/t:1"],
                        "abc", buildmod.Options(recipe="t"),
                        buildmod.secretmod.Provided(), out)
    assert "--secret" not in (tmp_path / "argv.txt").read_text()


def test_run_build_passes_your_retry_settings_and_says_which_it_leaves_out(
        tmp_path: Path, full_plan: Plan, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_RETRY_DELAY", "0.05")
    monkeypatch.setenv("ENVKIT_RETRIES", "many")
    builder = fake_builder(tmp_path, SUCCESS, 0)
    out = io.StringIO()
    buildmod._run_build(docker_with(builder), full_plan,
                        render_all(full_plan, ["dockerfile"]), tmp_path, ["envkit/t:1"],
                        "abc", buildmod.Options(recipe="t"),
                        buildmod.secretmod.Provided(), out)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert "ENVKIT_RETRY_DELAY=0.05" in argv
    assert not [a for a in argv if a.startswith("ENVKIT_RETRIES")]
    assert ("envkit: ENVKIT_RETRIES in your environment is not a number; the build keeps "
            "its default") in out.getvalue()
    assert out.getvalue().splitlines()[-1].startswith("envkit: built envkit/t:1 in ")
    assert out.getvalue().splitlines()[-1].endswith("s (1 steps cached, 4 run)")


ECHO_RECIPE = """\
    steps:
      - run: echo hi
    verify:
      - name: echo
        command:
          argv: [echo, ok]
    """


class FakeBackend:
    """An image backend for the unit tests of build's own logic: no engine, no base to
    settle, no image until a test makes one."""

    name = "docker"

    def about(self) -> str:
        return "fake"

    def ensure_base(self, ref: str, out: Any, registries: list[str]) -> str:
        return ref

    def image(self, ref: str) -> Any:
        return None

    def sweep(self) -> int:
        return 0

    def gpu(self) -> bool:
        return False

    def lock_client(self) -> Any:
        return None


def test_checks_run_under_the_lock_in_the_image_just_built(
        recipe: MakeRecipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second build of the recipe may re-tag the tag once the first lets go: the checks
    and :latest must name the image that was built, by its id, while the lock is held."""
    path = recipe(ECHO_RECIPE)
    plan = plan_of(path)
    context = tmp_path / "build" / plan.name
    built: dict[str, Any] = {}
    tagged: list[tuple[str, str]] = []

    image_id = "sha256:" + "b" * 64

    def assert_locked() -> None:
        with pytest.raises(EnvkitError, match="another envkit build"), \
                buildmod._locked(context):
            pass

    class Fake(FakeBackend):
        def image(self, ref: str) -> Any:
            return built.get(ref)

        def tag(self, image: Any, repo: str, tag: str) -> None:
            assert_locked()
            tagged.append((repo, tag))

        def checks(self, image: Any, name: str, gpu: bool, out: Any) -> Any:
            def run(argv: list[str]) -> tuple[int, str]:
                assert_locked()
                built.setdefault("runs", []).append((image.id, name, argv))
                return 0, "ok\n"
            return run

    def fake_run_build(backend: Any, plan: Plan, rendered: Rendered, context: Path,
                       tags: list[str], *rest: Any) -> None:
        # what was written is built
        assert (context / "Dockerfile").read_text() == rendered.files["Dockerfile"]
        built[tags[0]] = backends.Image(image_id, {}, 1 << 20)

    monkeypatch.setattr(buildmod, "_run_build", fake_run_build)
    opts = buildmod.Options(recipe=str(path), build_dir=tmp_path / "build")
    out = io.StringIO()
    tag = buildmod.build_image(Fake(), opts, Catalog(), plan, out)
    assert tag.startswith("envkit/t:")
    assert built["runs"] == [(image_id, tag, ["echo", "ok"])]
    assert tagged == [("envkit/t", "latest")]
    assert "all 1 checks passed" in out.getvalue()
    with buildmod._locked(context):  # and let go afterwards
        pass


def envkit(*args: str, cwd: Path, where: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "envkit"
    env = {**os.environ, "DOCKER_HOST": where}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize(("args", "expected"), [
    (["verify", "--recipe", "python-venv"],
     "envkit: --image: verify what? pass --image TAG or --env PATH (one of them)"),
    (["verify", "--recipe", "python-venv", "--image", "x:1", "--env", "/tmp"],
     "envkit: --image: verify what? pass --image TAG or --env PATH (one of them)"),
    (["build", "--recipe", "python-venv", "--tag", "Bad Tag"],
     "envkit: --tag: not a Docker image reference: 'Bad Tag'"),
    (["build", "--recipe", "python-venv", "--ca-bundle", "/nonexistent"],
     "envkit: --ca-bundle: cannot read the CA bundle /nonexistent: No such file or directory"),
    (["build", "--recipe", "nope"], "envkit: --recipe: unknown recipe 'nope' (see: "),
    (["build", "--recipe", "python-vnv", "--target", "host"],
     "envkit: --recipe: unknown recipe 'python-vnv' (did you mean 'python-venv'?)"),
    (["run", "--recipe", "python-venv", "--set", "oops"],
     "envkit: --set: expected KEY=VALUE, got 'oops'"),
    (["build", "--recipe", "python-venv", "--tag", f"x@sha256:{'a' * 64}"],
     "envkit: --tag: a tag names an image; "),
    (["base", "--suite", "Bookworm!"],
     "envkit: --suite: 'Bookworm!' is not a Debian suite name"),
    (["base", "--target", "host"],
     "envkit: --target: a base image is for an engine, not 'host' (docker or podman)"),
    (["base", "--target", "podman"],  # conftest turns podman off
     "envkit: engine: podman is off (ENVKIT_PODMAN=off) (unset ENVKIT_PODMAN)"),
    (["base"], "envkit: engine: no Docker engine or podman here to import the base into"),
    (["bake", "--recipe", "nope"], "envkit: --recipe: unknown recipe 'nope' (see: "),
    (["verify", "--recipe", "python-venv", "--image", "x:1", "--target", "host"],
     "envkit: --target: unknown target 'host' (docker or podman)"),
])
def test_tasks_refuse_bad_options(tmp_path: Path, no_engine: str, args: list[str],
                                  expected: str) -> None:
    done = envkit(*args, cwd=tmp_path, where=no_engine)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written: no build/, no .envkit/


def test_fallback_names_the_options_it_ignores(recipe: MakeRecipe, no_engine: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = recipe("steps:\n  - run: echo hi\n")
    monkeypatch.setattr(buildmod, "build_host", lambda opts, catalog, out: "host")
    out = io.StringIO()
    buildmod.build(buildmod.Options(recipe=str(path), tag="a/b:c", no_cache=True), out)
    assert "envkit: --tag, --no-cache only apply to images; ignored here" in out.getvalue()


def test_build_id_covers_the_ca_switch(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe("steps:\n  - run: echo one\n"))
    text = render(plan, "dockerfile")
    assert buildmod.build_id(text, plan, "sha256:a") != buildmod.build_id(text, plan, "sha256:a",
                                                                           True)


@pytest.mark.parametrize("name", ["foo-", "a..b", "x.", "a_-b"])
def test_a_recipe_name_docker_cannot_use_asks_for_a_tag(name: str) -> None:
    with pytest.raises(EnvkitError) as info:
        buildmod.default_repo(name)
    assert "pass --tag REPO:TAG" in one_line(info.value)
    assert buildmod.default_repo("paddle-cpu") == "envkit/paddle-cpu"
    assert buildmod.default_repo("a.b_c--d") == "envkit/a.b_c--d"


@pytest.mark.parametrize(("exc", "text", "bug"), [
    (PermissionError(13, "Permission denied", "build/x/.lock"),
     "build/x/.lock: Permission denied", False),
    (requests.ConnectionError("Connection aborted."),
     "engine: Connection aborted. (is the Docker engine still running?)", False),
    (ValueError("boom\nmore"), "internal error: ValueError: boom more (please report", True),
])
def test_unexpected_failures_are_one_line(exc: Exception, text: str, bug: bool) -> None:
    from envkit.cli import tasks

    assert tasks._one_line(exc).startswith(text)
    assert "\n" not in tasks._one_line(exc)
    assert tasks._is_bug(exc) is bug


def test_verify_ignores_a_broken_ssl_cert_file(tmp_path: Path, no_engine: str) -> None:
    exe = Path(sys.executable).parent / "envkit"
    done = subprocess.run([str(exe), "verify", "--recipe", "python-venv", "--env",
                           str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "DOCKER_HOST": no_engine,
                               "SSL_CERT_FILE": "/etc/passwd"})
    assert done.returncode == 1
    assert "--ca-bundle" not in done.stderr and "envkit.json" in done.stderr, done.stderr


def test_a_build_plans_once_and_renders_once(recipe: MakeRecipe, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One plan, one render: the Dockerfile that is hashed is the one written and built,
    and the base the engine finds is only the FROM line's image, not a second plan."""
    from envkit import render as rendermod

    path = recipe("steps:\n  - run: echo hi\n")
    calls = {"plan": 0, "render": 0}
    real_plan, real_render = buildmod.make_plan, rendermod._render

    def counted_plan(*args: Any, **kw: Any) -> Plan:
        calls["plan"] += 1
        return real_plan(*args, **kw)

    def counted_render(*args: Any, **kw: Any) -> Any:
        calls["render"] += 1
        return real_render(*args, **kw)

    built: dict[str, Any] = {}

    def fake_run_build(builder: Any, plan: Plan, rendered: Rendered, context: Path,
                       tags: list[str], *rest: Any) -> None:
        dockerfile = rendered.files["Dockerfile"]
        assert "\nFROM envkit/base:bookworm\n" in dockerfile
        assert (context / "Dockerfile").read_text() == dockerfile
        built[tags[0]] = backends.Image("sha256:" + "c" * 64, {}, 0)

    class Fake(FakeBackend):
        def ensure_base(self, ref: str, out: Any, registries: list[str]) -> str:
            return "envkit/base:bookworm"

        def image(self, ref: str) -> Any:
            return built.get(ref)

        def tag(self, image: Any, repo: str, tag: str) -> None:
            pass

    monkeypatch.setattr(buildmod, "make_plan", counted_plan)
    monkeypatch.setattr(rendermod, "_render", counted_render)  # every render goes through it
    monkeypatch.setattr(buildmod, "connect", lambda target, cli, out: (Fake(), None))
    monkeypatch.setattr(buildmod, "_run_build", fake_run_build)
    opts = buildmod.Options(recipe=str(path), build_dir=tmp_path / "build", verify=False)
    tag = buildmod.build(opts, io.StringIO())
    assert tag in built
    assert calls == {"plan": 1, "render": 1}


def test_a_base_the_lock_pins_by_digest_is_built_from_that_digest(
        recipe: MakeRecipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envkit.plan import lock as lockmod

    path = recipe("steps:\n  - venv: {path: /opt/v}\n  - pip: [six]\n")
    plan = plan_of(path)
    digest = "debian@sha256:" + "d" * 64
    entry = lockmod.Entry("sha256:" + "e" * 64, [{}], base="debian:bookworm-slim",
                          base_digest=digest,
                          steps=[lockmod.StepLock("pip", "t", pip=[lockmod.PipPackage(
                              "six", "1.17.0", [lockmod.Dist("six-1.17.0-py2.py3-none-any.whl",
                                                             "a" * 64)])])])
    plan.lock = lockmod.Match("locked", entry, lockmod.LockFile(path.with_suffix(".lock"), "t"))
    lockmod.apply(plan, plan.lock)
    asked: list[str] = []

    class Fake(FakeBackend):
        def ensure_base(self, ref: str, out: Any, registries: list[str]) -> str:
            asked.append(ref)
            return ref

    def stop(*args: Any) -> None:
        raise EnvkitError(error("stop here", path="test").diagnostics)

    monkeypatch.setattr(buildmod, "_run_build", stop)
    with pytest.raises(EnvkitError, match="stop here"):
        buildmod.build_image(Fake(), buildmod.Options(recipe=str(path),
                                                        build_dir=tmp_path / "b"),
                             Catalog(), plan, io.StringIO())
    assert asked == [digest]
    assert f"\nFROM {digest}\n" in (tmp_path / "b" / "t" / "Dockerfile").read_text()


def test_a_third_engine_is_one_module_and_a_registry_line(
        recipe: MakeRecipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new engine's module does: register its connect() and, if it likes, a doctor
    check. build (--target, the base, the one render's step map, progress, checks, tags)
    and doctor then route to it with nothing else changed."""
    from envkit.backends import buildkit
    from envkit.verify import doctor

    monkeypatch.setattr(backends, "BACKENDS", dict(backends.BACKENDS))
    monkeypatch.setattr(backends, "DOCTOR", dict(backends.DOCTOR))
    images: dict[str, backends.Image] = {}
    seen: dict[str, Any] = {}

    class Third(FakeBackend):
        name = "third"

        def build(self, request: backends.BuildRequest) -> buildkit.Outcome:
            seen["steps"] = request.steps
            progress = buildkit.Progress(request.titles, request.steps.buildkit(), request.out)
            images[request.tags[0]] = backends.Image("sha256:" + "3" * 64, request.labels, 1)
            return buildkit.Outcome(True, 0.5, progress, [])

        def image(self, ref: str) -> Any:
            return images.get(ref)

        def tag(self, image: backends.Image, repo: str, tag: str) -> None:
            images[f"{repo}:{tag}"] = image

        def checks(self, image: backends.Image, name: str, gpu: bool, out: Any) -> Any:
            return lambda argv: (0, "ok\n")

        def lost(self) -> str:
            return ""

    @backends.backend("third", order=30)  # the registry line; the module is the class above
    def connect() -> Third:
        return Third()

    @backends.doctor_check("third")
    def health(target: str) -> backends.Health:
        return backends.Health(backends.FAIL if target == "third" else backends.INFO,
                               "third is not set up", "set it up")

    path = recipe(ECHO_RECIPE)
    out = io.StringIO()
    tag = buildmod.build(buildmod.Options(recipe=str(path), target="third",
                                          build_dir=tmp_path / "b"), out)
    assert tag in images and "envkit/t:latest" in images
    assert "all 1 checks passed" in out.getvalue()
    assert [n for n in seen["steps"].buildkit()["stage-0"] if n] == [1]
    assert "third" in backends.targets()
    found = doctor.all_checks()["third"](doctor.Context(target="third"))
    assert (found.status, found.line()) == ("fail", "FAIL  third: third is not set up "
                                                    "(fix: set it up)")
