"""The podman backend: what it asks podman (a stand-in that records its argv and answers
as podman 4.3 does; the canned output is taken from real builds), how it reads buildah's
progress, runs checks, settles a base; and, end to end, a real build and verify with
podman on a base `invoke base --target podman` made."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from backend_fakes import step_map
from conftest import REPO, envkit, script, show
from envkit import backends
from envkit.backends import engine, podman
from envkit.cli import build as buildmod
from envkit.diagnostics import EnvkitError, error
from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import render

# what podman 4.3 printed building python-venv (lines cut; steps 1 to 22 are the header)
FRESH = """\
STEP 1/32: FROM envkit/base:bookworm
STEP 2/32: SHELL ["/bin/bash", "-o", "pipefail", "-c"]
--> 313ce8d4045
STEP 26/32: RUN envkit_record_base
--> c5c4c406396
STEP 27/32: RUN --mount=type=cache,target=/var/cache/apt,sharing=locked     --mount=type=c
Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
Setting up python3.11-venv (3.11.2-6+deb12u6) ...
--> 64e11b9264f
STEP 28/32: RUN --mount=type=secret,id=envkit-ca,target=/run/secrets/envkit-ca,mode=0444
--> fce3987b8cd
STEP 29/32: ENV VIRTUAL_ENV="/opt/envkit/venv"     PATH="/opt/envkit/venv/bin:${PATH}"
--> 009c0d86705
STEP 30/32: COPY files/envkit/manifest.json /usr/local/share/envkit/manifest.json
--> fd42172e91e
STEP 31/32: RUN envkit_record_installed
--> d5e15f49f21
STEP 32/32: LABEL org.opencontainers.image.title="python-venv"       org.opencontainers.im
COMMIT envkit/python-venv:1
--> 3190037395c
Successfully tagged localhost/envkit/python-venv:1
"""
CACHED = """\
STEP 26/32: RUN envkit_record_base
--> Using cache c5c4c4063960255c697c92753cf308e3ed42366526396f5587640a2c7a5ba876
--> c5c4c406396
STEP 27/32: RUN --mount=type=cache,target=/var/cache/apt,sharing=locked     --mount=type=c
--> Using cache 64e11b9264f54948fc5f1dac131c7f85ab0a4b78ba00643735602701c7ad3b47
--> 64e11b9264f
STEP 28/32: RUN --mount=type=secret,id=envkit-ca,target=/run/secrets/envkit-ca,mode=0444
usage: venv [-h] [--system-site-packages] [--symlinks | --copies] [--clear]
venv: error: unrecognized arguments: --nope
Error: building at STEP "RUN --mount=type=secret,id=envkit-ca,target=/run/secrets/envkit-
"""


def fake(tmp_path: Path, build_output: str = FRESH, build_code: int = 0,
         run: str = "echo ok", images: dict[str, dict[str, object]] | None = None) -> Path:
    """A podman: argv of each call in calls.txt, one per line (NUL-separated words)."""
    (tmp_path / "build.txt").write_text(build_output)
    (tmp_path / "images.json").write_text(json.dumps(images or {}))
    log = str(tmp_path / "calls.txt")
    return script(tmp_path / "podman", f"""\
        printf '%s\\0' "$@" >> {log!r}; echo >> {log!r}
        case $1 in
          version) echo 4.3.1 ;;
          build) cat {str(tmp_path / 'build.txt')!r}; exit {build_code} ;;
          run) {run} ;;
          image)
            python3 - "$5" {str(tmp_path / 'images.json')!r} <<'EOF'
        import json, sys
        found = json.load(open(sys.argv[2])).get(sys.argv[1])
        if found is None:
            sys.stderr.write("Error: inspecting object: %s: image not known\\n" % sys.argv[1])
            print("[]")
            sys.exit(125)
        print(json.dumps([found]))
        EOF
            ;;
          pull) echo "Error: initializing source $3: reference does not exist" >&2; exit 125 ;;
        esac
        """)


def calls(tmp_path: Path) -> list[list[str]]:
    text = (tmp_path / "calls.txt").read_text() if (tmp_path / "calls.txt").exists() else ""
    return [line.rstrip("\0").split("\0") for line in text.splitlines() if line]


@pytest.fixture
def venv_plan() -> object:
    catalog = Catalog()
    return make_plan(catalog.find("python-venv"), catalog, base="envkit/base:bookworm")


def test_each_instruction_maps_to_its_recipe_step(venv_plan) -> None:
    """buildah counts every instruction (ARG, ENV, LABEL too); the render says whose each
    is."""
    text = render(venv_plan, "dockerfile")
    (stage,) = step_map(venv_plan).every()
    instructions = [ln for ln in text.splitlines() if re.match(r"[A-Z]+ ", ln)]
    assert len(stage) == len(instructions)  # continuation lines are not instructions
    first = stage.index(1)
    assert stage[first:first + 3] == [1, 2, 2]  # apt's RUN; the venv's RUN and ENV
    assert instructions[first].startswith("RUN --mount=type=cache")
    assert instructions[first + 2].startswith("ENV VIRTUAL_ENV=")
    assert {n for i, n in enumerate(stage) if not first <= i < first + 3} == {0}


def test_two_stages_each_count_their_own(catalog: Catalog) -> None:
    plan = make_plan(catalog.find("lapack-src"), catalog)
    build, runtime = step_map(plan).every()
    steps = {ps.number: ps.stage for ps in plan.steps}
    assert {n for n in build if n} == {n for n, s in steps.items() if s == "build"}
    assert {n for n in runtime if n} == {n for n, s in steps.items() if s == "runtime"}


def _progress(plan: object, text: str) -> tuple[podman.Progress, str]:
    out = io.StringIO()
    titles = {ps.number: f"{ps.recipe}: {ps.title}" for ps in plan.steps}  # type: ignore[attr-defined]
    progress = podman.Progress(titles, step_map(plan).every(), out)
    for line in text.splitlines():
        progress.feed(line)
    progress.flush()
    return progress, out.getvalue()


def test_progress_says_each_step_once(venv_plan) -> None:
    progress, said = _progress(venv_plan, FRESH)
    lines = [re.sub(r"[\d.]+s$", "Xs", ln) for ln in said.splitlines()]
    assert lines == ["  step 1/2 python-venv: system Python: running",
                     "  step 1/2 python-venv: system Python: done in Xs",
                     "  step 2/2 python-venv: virtual environment: done in Xs"]
    assert progress.counts() == (0, 2) and progress.failed is None


def test_progress_of_cached_steps_and_a_failure(venv_plan) -> None:
    progress, said = _progress(venv_plan, CACHED)
    assert said.splitlines()[:2] == ["  step 1/2 python-venv: system Python: cached",
                                     "  step 2/2 python-venv: virtual environment: running"]
    assert progress.failed is not None and progress.failed.number == 2
    assert "venv: error: unrecognized arguments: --nope" in progress.failed.lines


def test_a_build_asks_podman_for_the_docker_format_secrets_and_args_by_name(
        tmp_path: Path, venv_plan) -> None:
    exe = fake(tmp_path)
    request = backends.BuildRequest(
        tmp_path / "ctx", step_map(venv_plan), ["envkit/python-venv:1"],
        {"io.envkit.build": "1"}, {1: "a: one", 2: "a: two"}, tmp_path / "build.log",
        io.StringIO(), secrets={"envkit-ca": Path("/ca.pem")}, build_args={"PIP_CERT": "/x"},
        env_args=["HTTPS_PROXY"], no_cache=True)
    outcome = podman.Podman(str(exe), "4.3.1").build(request)
    assert outcome.ok
    (argv,) = calls(tmp_path)
    assert argv == ["build", "--format", "docker", "--layers", "-f",
                    str(tmp_path / "ctx" / "Dockerfile"), "-t", "envkit/python-venv:1",
                    "--label", "io.envkit.build=1", "--secret", "id=envkit-ca,src=/ca.pem",
                    "--build-arg", "PIP_CERT=/x", "--build-arg", "HTTPS_PROXY",
                    "--no-cache", str(tmp_path / "ctx")]
    assert (tmp_path / "build.log").read_text().startswith(f"$ {exe} build --format docker")


def test_a_failed_build_keeps_the_failing_steps_lines(tmp_path: Path, venv_plan) -> None:
    exe = fake(tmp_path, CACHED, 2)
    request = backends.BuildRequest(tmp_path, step_map(venv_plan), ["t:1"], {},
                                    {1: "a: one", 2: "a: two"}, tmp_path / "log", io.StringIO())
    outcome = podman.Podman(str(exe), "4.3.1").build(request)
    assert not outcome.ok
    assert "venv: error: unrecognized arguments: --nope" in outcome.tail


def test_checks_run_the_argv_exactly_without_network(tmp_path: Path) -> None:
    exe = fake(tmp_path, run='echo "out $#"; exit 3')
    image = backends.Image("sha256:abc", {}, 0)
    runner = podman.Podman(str(exe), "4.3.1").checks(image, "t:1", False, io.StringIO())
    assert runner(["python", "-c", "print('x y')"]) == (3, "out 13\n")
    (argv,) = calls(tmp_path)
    assert argv[:2] == ["run", "--rm"] and argv[4:6] == ["--network", "none"]
    assert argv[-5:] == ["--entrypoint", '["python"]', "sha256:abc", "-c", "print('x y')"]
    assert argv[6:8] == ["--label", f"io.envkit.verify={engine.owner()}"]


CDI_SPEC = """\
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: all
  containerEdits:
    deviceNodes: [{path: /dev/nvidia0}]
"""


def test_gpus_reach_the_checks_as_cdi_devices_when_a_spec_names_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NVIDIA's Container Toolkit describes the GPUs for podman in a CDI spec (kind
    nvidia.com/gpu); with one, the checks ask for every GPU (--device nvidia.com/gpu=all),
    as Docker's --gpus all; without one, podman gives none and doctor says how to get them."""
    from envkit.verify import doctor

    etc, run_dir = tmp_path / "etc-cdi", tmp_path / "run-cdi"
    etc.mkdir()
    monkeypatch.setattr(podman, "CDI_DIRS", (etc, run_dir))  # run_dir is not there at all
    exe = fake(tmp_path, run='echo "out $#"')
    monkeypatch.setenv("ENVKIT_PODMAN", str(exe))
    backend = podman.connect()
    (etc / "other.yaml").write_text("cdiVersion: 0.5.0\nkind: vendor.com/fpga\ndevices: [x]\n")
    (etc / "broken.yaml").write_text("kind: [\n")
    assert podman.cdi_spec() is None and not backend.gpu()
    ctx = doctor.Context(target="podman", gpu=True)
    found = doctor.check_gpu(ctx)
    assert found.status == doctor.FAIL and "podman gives its containers no GPU" in found.message
    assert found.fix.endswith(podman.GPU_FIX)
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in found.fix
    run_dir.mkdir()
    (run_dir / "nvidia.json").write_text(json.dumps(
        {"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": [{"name": "all"}]}))
    assert podman.cdi_spec() == run_dir / "nvidia.json" and backend.gpu()
    (etc / "nvidia.yaml").write_text(CDI_SPEC)
    assert podman.cdi_spec() == etc / "nvidia.yaml"  # /etc/cdi first, as podman reads them
    assert "podman's GPU devices" in doctor.check_gpu(ctx).message
    image = backends.Image("sha256:abc", {}, 0)
    backend.checks(image, "t:1", True, io.StringIO())(["nvidia-smi", "-L"])
    backend.checks(image, "t:1", False, io.StringIO())(["true"])
    with_gpu, without = [argv for argv in calls(tmp_path) if argv[0] == "run"]
    at = with_gpu.index("--entrypoint")
    assert with_gpu[at - 2:at] == ["--device", "nvidia.com/gpu=all"]
    assert with_gpu[at:] == ["--entrypoint", '["nvidia-smi"]', "sha256:abc", "-L"]
    assert "--device" not in without


def test_a_container_that_cannot_get_its_rlimits_is_one_line_with_the_fix(
        tmp_path: Path) -> None:
    exe = fake(tmp_path, run="echo 'Error: runc: runc create failed: unable to start "
               "container process: error during container init: error setting rlimits for "
               "ready process: error setting rlimit type 7: operation not permitted' >&2; "
               "exit 126")
    runner = podman.Podman(str(exe), "4.3.1").checks(backends.Image("sha256:abc", {}, 0),
                                                     "t:1", False, io.StringIO())
    with pytest.raises(EnvkitError) as info:
        runner(["true"])
    text = str(info.value)
    assert "podman cannot start a container of t:1 here: Error: runc" in text
    assert "default_ulimits = []" in text


def test_image_reads_id_labels_and_size_and_none_when_missing(tmp_path: Path) -> None:
    exe = fake(tmp_path, images={"t:1": {"Id": "abc", "Labels": {"a": "b"}, "Size": 7}})
    backend = podman.Podman(str(exe), "4.3.1")
    assert backend.image("t:1") == backends.Image("abc", {"a": "b"}, 7)
    assert backend.image("t:2") is None


def test_a_base_podman_has_is_used_as_is(tmp_path: Path) -> None:
    exe = fake(tmp_path, images={"debian:bookworm-slim": {"Id": "abc", "Size": 1}})
    out = io.StringIO()
    assert podman.Podman(str(exe), "4.3.1").ensure_base("debian:bookworm-slim", out, []) == \
        "debian:bookworm-slim"
    assert [c[0] for c in calls(tmp_path)] == ["image"]


def test_a_debian_base_falls_back_to_the_envkit_base(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")  # no Docker engine
    exe = fake(tmp_path, images={"envkit/base:bookworm": {"Id": "abc", "Size": 1}})
    out = io.StringIO()
    backend = podman.Podman(str(exe), "4.3.1")
    assert backend.ensure_base("debian:bookworm-slim", out, ["mirror.example"]) == \
        "envkit/base:bookworm"
    pulls = [c[2] for c in calls(tmp_path) if c[0] == "pull"]
    assert pulls == ["mirror.example/library/debian:bookworm-slim", "debian:bookworm-slim"]
    assert "using envkit/base:bookworm (made by invoke base)" in out.getvalue()


def test_a_base_that_cannot_be_had_says_how_to_make_one(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    exe = fake(tmp_path)
    with pytest.raises(EnvkitError, match="pass --base IMAGE"):
        podman.Podman(str(exe), "4.3.1").ensure_base("quay.io/x/y:1", io.StringIO(), [])


# --- choosing the backend -----------------------------------------------------------------


def test_podman_off_not_installed_and_there(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_PODMAN", "off")
    with pytest.raises(backends.Disabled):
        podman.connect()
    monkeypatch.setenv("ENVKIT_PODMAN", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(backends.NoBackend, match="podman is not installed"):
        podman.connect()
    monkeypatch.setenv("ENVKIT_PODMAN", str(fake(tmp_path)))
    assert podman.connect().version == "4.3.1"


def test_podman_stands_in_for_a_missing_docker_engine(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    monkeypatch.setenv("ENVKIT_PODMAN", str(fake(tmp_path)))
    out = io.StringIO()
    backend, refused = buildmod.connect("", "", out)
    assert refused is None and backend is not None and backend.name == "podman"
    assert out.getvalue() == (f"envkit: no Docker engine answers at unix://{tmp_path}/no.sock: "
                              "no socket there; building with podman\n")
    # asked for by name, docker is not tried
    out = io.StringIO()
    assert buildmod.connect("podman", "", out)[0].name == "podman"  # type: ignore[union-attr]
    assert out.getvalue() == ""


def test_without_docker_or_podman_the_host_stands_in(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    monkeypatch.setenv("ENVKIT_PODMAN", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    out = io.StringIO()
    assert buildmod.connect("", "", out) == (None, None)
    assert out.getvalue() == (
        f"envkit: no Docker engine answers at unix://{tmp_path}/no.sock: no socket there; "
        "podman is not installed; provisioning on this host instead (--target docker or "
        "--target podman insists on an engine)\n")
    backend, refused = buildmod.connect("podman", "", io.StringIO())
    assert backend is None and refused is not None
    assert "podman is not installed" in str(refused)


# --- end to end ---------------------------------------------------------------------------

PODMAN = {"ENVKIT_PODMAN": ""}  # conftest turns it off for every other test


@pytest.fixture(scope="session")
def podman_base(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`invoke base --target podman`: debootstrap, then podman import; no registry. The
    base it replaces is removed (CI makes one per run)."""
    def base_id() -> str:
        done = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}",
                               "localhost/envkit/base:bookworm"], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    old = base_id()
    done = envkit("base", "--target", "podman", cwd=tmp_path_factory.mktemp("pbase"),
                  env=PODMAN)
    assert done.returncode == 0, show(done)
    assert "envkit: debootstrap bookworm (minbase) for podman" in done.stdout
    assert re.search(r"envkit: envkit/base:bookworm \(\w+, [\d.]+ MB\)", done.stdout)
    assert base_id() not in ("", old)
    if old:
        subprocess.run(["podman", "rmi", old], capture_output=True)
    return "envkit/base:bookworm"


@pytest.mark.docker
def test_python_venv_builds_and_verifies_with_podman(podman_base: str, tmp_path: Path) -> None:
    from test_e2e import HOST_CA

    done = envkit("build", "--recipe", "python-venv", "--target", "podman", "--ca-bundle",
                  HOST_CA, cwd=tmp_path, env=PODMAN)
    try:
        assert done.returncode == 0, show(done)
        out = done.stdout
        assert "envkit: builder " in out and "podman build --format docker" in out
        assert "step 1/2 python-venv: system Python: done in" in out
        assert "step 2/2 python-venv: virtual environment: done in" in out
        assert "all 3 checks passed" in out
        tag = re.search(r"envkit: built (envkit/python-venv:[0-9a-f]{12}) in", out)[1]  # type: ignore[index]
        inspect = json.loads(subprocess.run(["podman", "image", "inspect", "--format", "json",
                                             tag], capture_output=True, text=True,
                                            check=True).stdout)[0]
        assert inspect["Labels"]["io.envkit.recipe"] == "python-venv"
        assert inspect["Labels"]["io.envkit.build"] == tag.rsplit(":", 1)[1]
        history = subprocess.run(["podman", "history", "--no-trunc", tag],
                                 capture_output=True, text=True, check=True).stdout
        assert "BEGIN CERTIFICATE" not in history
        again = envkit("build", "--recipe", "python-venv", "--target", "podman",
                       cwd=tmp_path, env=PODMAN)
        assert again.returncode == 0, show(again)
        assert f"envkit: {tag} is already built from this recipe; skipping the build" in \
            again.stdout
        assert "all 3 checks passed" in again.stdout
        verified = envkit("verify", "--recipe", "python-venv", "--image", tag, cwd=tmp_path,
                          env=PODMAN)  # no Docker engine has it: podman's store does
        assert verified.returncode == 0, show(verified)
    finally:
        subprocess.run(["podman", "rmi", "--force", "envkit/python-venv:latest",
                        *re.findall(r"envkit/python-venv:[0-9a-f]{12}", done.stdout)],
                       capture_output=True)


@pytest.mark.docker
def test_podman_alone_locks_apt_steps_and_fetches_the_debs(
        podman_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no Docker engine, podman runs the containers a lock and an export need: the
    apt set it locks is the one Docker locks, and apt in a podman container downloads
    those .debs with their index."""
    from envkit.cli import export
    from envkit.plan import lock as lockmod
    from test_e2e import HOST_CA

    def lock_with(engine: str, env: dict[str, str]) -> Path:
        folder = tmp_path / engine
        folder.mkdir()
        recipe = folder / "python-venv.yaml"
        recipe.write_text((REPO / "recipes" / "python-venv.yaml").read_text())
        done = envkit("lock", "--recipe", str(recipe), "--set", "python=3.11", cwd=folder,
                      env=env)
        assert done.returncode == 0, show(done)
        assert "python-venv [python=3.11]: locked: 0 pip packages, 29 Debian packages" in \
            done.stdout
        return recipe.with_suffix(".lock")

    def apt_of(path: Path) -> tuple[Any, list[Any]]:
        lock = lockmod.load(path)
        assert lock is not None
        entry = next(e for e in lock.entries if {"python": "3.11"} in e.params)
        return entry, [(s.title, [(p.name, p.version) for p in s.apt])
                       for s in entry.steps if s.kind == "apt"]

    made, steps = apt_of(lock_with("podman", {
        **PODMAN, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}))
    assert steps == apt_of(lock_with("docker", {}))[1]  # the same archive, the same set
    assert made.base_made.startswith("debootstrap ") and made.base_digest == ""
    catalog = Catalog()
    plan = make_plan(catalog.find("python-venv"), catalog)
    monkeypatch.setenv("ENVKIT_PODMAN", "")
    debs = export.fetch_debs(podman.connect(), podman_base, plan, made, tmp_path / "apt",
                             Path(HOST_CA), io.StringIO())
    assert len(debs) == 29 and "python3.11_3.11.2-6+deb12u9_amd64.deb" in debs
    assert (tmp_path / "apt" / "Packages").read_text().count("\nFilename: ./") == 29


def test_verify_finds_the_engine_that_has_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    class Has:
        def __init__(self, name: str, images: set[str]):
            self.name, self.images = name, images

        def image(self, ref: str) -> backends.Image | None:
            seen.append(self.name)
            return backends.Image("sha256:1", {"io.envkit.recipe": "other"}, 0) \
                if ref in self.images else None

    def absent() -> object:
        raise backends.NoBackend(error("no Docker engine answers", path="engine").diagnostics)

    monkeypatch.setattr(backends, "load", lambda: {"docker": lambda: Has("docker", set()),
                                                   "podman": lambda: Has("podman", {"t:1"})})
    opts = buildmod.Options(recipe="python-venv")
    with pytest.raises(EnvkitError, match="was built from recipe 'other'"):
        buildmod.verify_image(opts, "t:1", io.StringIO())  # found in podman's store
    assert seen == ["docker", "podman", "podman"]
    monkeypatch.setattr(backends, "load", lambda: {"docker": absent, "podman": absent})
    with pytest.raises(EnvkitError, match="engine: no Docker engine answers; no Docker"):
        buildmod.verify_image(opts, "t:1", io.StringIO())
    with pytest.raises(EnvkitError, match="unknown target 'host'"):
        buildmod.verify_image(buildmod.Options(recipe="python-venv", target="host"), "t:1",
                              io.StringIO())


def test_sweep_removes_only_the_check_containers_of_an_envkit_that_is_gone(
        tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    here = engine.owner().rsplit(":", 2)[0]
    gone, alive = f"{here}:{dead.pid}:1", engine.owner()
    exe = fake(tmp_path)
    text = exe.read_text().replace(
        "  version) echo 4.3.1 ;;",
        f"  version) echo 4.3.1 ;;\n  ps) echo 'aaa map[io.envkit.verify:{gone}]'; "
        f"echo 'bbb map[io.envkit.verify:{alive} other:x]' ;;")
    exe.write_text(text)
    assert podman.Podman(str(exe), "4.3.1").sweep() == 1
    assert [c[:3] for c in calls(tmp_path) if c[0] == "rm"] == [["rm", "--force", "aaa"]]


def test_a_script_in_a_podman_container_gets_its_environment_by_name_only(
        tmp_path: Path) -> None:
    """create (env by name), cp the files in, start --attach, the exit code from inspect,
    rm: a proxy's login in the environment is on no podman command line."""
    log = str(tmp_path / "calls.txt")
    exe = script(tmp_path / "podman", f"""\
        printf '%s\\0' "$@" >> {log!r}; echo >> {log!r}
        case $1 in
          create) [ "$https_proxy" = "http://u:secret@p:3128" ] || exit 9 ;;
          cp) cat > {str(tmp_path / 'in.tar')!r} ;;
          start) echo out; echo err >&2; exit 3 ;;
          inspect) echo 7 ;;
        esac
        """)
    code, out, err = podman.Podman(str(exe), "4.3.1").run_script(
        "img", "echo hi", {"/etc/x": b"data"}, {"https_proxy": "http://u:secret@p:3128"}, 60)
    assert (code, out, err) == (7, "out\n", "err\n")
    argv = calls(tmp_path)
    assert [a[0] for a in argv] == ["create", "cp", "start", "inspect", "rm"]
    assert argv[0][-4:] == ["-e", "https_proxy", "img", "echo hi"]
    assert not any("secret" in word for a in argv for word in a)
    with tarfile.open(tmp_path / "in.tar") as tar:
        assert tar.getnames() == ["etc/x"]
