"""The build backends without a Docker engine: fake docker clients, canned BuildKit progress,
fake SDK clients, and the host backend run for real on tiny recipes."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pytest
import requests

from conftest import plan_of, script
from envkit import backends, ca
from envkit.backends import baseimage, buildkit, engine, host
from envkit.backends import docker as dockerbackend
from envkit.checks import Runner
from envkit.cli import build as buildmod
from envkit.diagnostics import EnvkitError, error
from envkit.load.catalog import Catalog
from envkit.plan import Plan
from envkit.render import render
from envkit.verify import run_checks

MakeRecipe = Callable[..., Path]


def one_line(exc: EnvkitError) -> str:
    text = str(exc)
    assert "\n" not in text and len(exc.diagnostics) == 1, text
    return text


@pytest.fixture(autouse=True)
def _fresh_choice() -> Iterator[None]:
    buildkit.choose.cache_clear()
    yield
    buildkit.choose.cache_clear()


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST at a socket that does not exist; returns that DOCKER_HOST."""
    where = f"unix://{tmp_path / 'nowhere' / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", where)
    for var in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    return where


# --- fake docker clients ------------------------------------------------------------------


def fake_docker(tmp_path: Path, *, buildx: str | None, version: str, version_code: int = 0,
                name: str = "docker") -> Path:
    """A docker CLI: ``buildx version`` prints ``buildx`` (exit 0) or fails when None;
    ``--version`` prints ``version`` and exits ``version_code``. Each call is counted."""
    calls = tmp_path / f"{name}.calls"
    bx = (f"echo {buildx!r}; exit 0" if buildx is not None
          else "echo \"docker: 'buildx' is not a docker command.\" >&2; exit 1")
    return script(tmp_path / name, f"""\
        echo "$*" >> {str(calls)!r}
        case "$1" in
          buildx) {bx} ;;
          --version) echo {version!r}; exit {version_code} ;;
        esac
        exit 1
        """)


OLD = "Docker version 20.10.24+dfsg1, build 297e128"
NEW = "Docker version 28.2.2, build e6534b4"


def test_probe_buildx_present(tmp_path: Path) -> None:
    client = fake_docker(tmp_path, buildx="github.com/docker/buildx v0.14.1 59582b4",
                         version=NEW)
    builder, why = buildkit.probe(str(client))
    assert why == ""
    assert builder is not None
    assert builder.client == str(client)
    assert builder.args == ("buildx", "build", "--load")
    assert builder.env == ()
    assert "buildx" in builder.about and "v0.14.1" in builder.about


def test_probe_old_client_builds_with_the_env_switch(tmp_path: Path) -> None:
    client = fake_docker(tmp_path, buildx=None, version=OLD)
    builder, why = buildkit.probe(str(client))
    assert why == ""
    assert builder == buildkit.Builder(str(client), ("build",), (("DOCKER_BUILDKIT", "1"),),
                                       f"{client} 20.10.24 with DOCKER_BUILDKIT=1")


@pytest.mark.parametrize("version", [NEW, "Docker version 23.0.0, build e92dd87",
                                     "Docker version 18.06.1-ce, build e68fc7a"])
def test_probe_refuses_a_client_without_buildkit(tmp_path: Path, version: str) -> None:
    client = fake_docker(tmp_path, buildx=None, version=version)
    builder, why = buildkit.probe(str(client))
    assert builder is None
    number = re.search(r"(\d+\.\d+\.\d+)", version)
    assert number is not None
    assert why == f"{client} {number[1]} has no buildx plugin"


def test_probe_garbage_and_failing_clients(tmp_path: Path) -> None:
    garbage = fake_docker(tmp_path, buildx=None, version="garbage", name="garbage")
    builder, why = buildkit.probe(str(garbage))
    assert builder is None and why == f"{garbage} does not run (garbage)"
    failing = fake_docker(tmp_path, buildx=None, version=OLD, version_code=2, name="failing")
    builder, why = buildkit.probe(str(failing))
    assert builder is None and why.startswith(f"{failing} does not run (")


def test_probe_a_client_that_cannot_run(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-docker"
    builder, why = buildkit.probe(str(missing))
    assert builder is None and why.startswith(f"{missing} does not run (")
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/bash\necho 'Docker version 20.10.24'\n")
    plain.chmod(0o644)
    builder, why = buildkit.probe(str(plain))  # not even root may run a file without x bits
    assert builder is None and why.startswith(f"{plain} does not run (")


def test_probe_a_silent_buildx(tmp_path: Path) -> None:
    client = script(tmp_path / "docker", 'case "$1" in buildx) exit 0;; esac\nexit 1\n')
    builder, _ = buildkit.probe(str(client))
    assert builder is not None and builder.args == ("buildx", "build", "--load")


def test_choose_picks_the_preferred_client_once(tmp_path: Path) -> None:
    client = fake_docker(tmp_path, buildx=None, version=OLD)
    first = buildkit.choose(str(client))
    second = buildkit.choose(str(client))
    assert first is second
    assert first.env == (("DOCKER_BUILDKIT", "1"),)
    # probed once: one buildx call and one --version call
    assert (tmp_path / "docker.calls").read_text().splitlines() == ["buildx version",
                                                                    "--version"]


def test_choose_refuses_a_new_client_without_buildx(tmp_path: Path) -> None:
    client = fake_docker(tmp_path, buildx=None, version=NEW)
    with pytest.raises(EnvkitError) as info:
        buildkit.choose(str(client))
    text = one_line(info.value)
    assert "builder: no docker client here builds with BuildKit" in text
    assert f"{client} 28.2.2 has no buildx plugin" in text
    assert "docker.io" in text and "DOCKER_BUILDKIT=1" in text and "buildx plugin" in text


def test_choose_refuses_a_client_that_does_not_run(tmp_path: Path) -> None:
    with pytest.raises(EnvkitError) as info:
        buildkit.choose(str(tmp_path / "nothing-here"))
    text = one_line(info.value)
    assert "does not run" in text and "docker.io" in text


def test_choose_tries_each_client_in_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    new = fake_docker(tmp_path, buildx=None, version=NEW, name="new")
    old = fake_docker(tmp_path, buildx=None, version=OLD, name="old")
    monkeypatch.setattr(buildkit, "_clients", lambda: [str(new), str(old)])
    assert buildkit.choose().client == str(old)
    buildkit.choose.cache_clear()
    monkeypatch.setattr(buildkit, "_clients", lambda: [str(new)])
    with pytest.raises(EnvkitError, match=r"28\.2\.2 has no buildx plugin"):
        buildkit.choose()
    buildkit.choose.cache_clear()
    monkeypatch.setattr(buildkit, "_clients", list)
    with pytest.raises(EnvkitError) as info:
        buildkit.choose()
    assert "no docker client on PATH" in one_line(info.value)


# --- the Dockerfile's vertices and the progress they make ------------------------------------

FULL = """\
    env:
      TOP: "1"
    steps:
      - apt: [curl]
      - env: {A: "x", B: "${A}y"}
      - venv: {path: "{{ prefix }}/venv"}
      - pip: [numpy]
      - copy: {src: data.txt, dest: /opt/data.txt}
      - run: echo hi
    """


@pytest.fixture
def full_plan(recipe: MakeRecipe, tmp_path: Path) -> Plan:
    (tmp_path / "data.txt").write_text("data\n")
    return plan_of(recipe(FULL))


def test_instruction_steps_of_a_rendered_dockerfile(full_plan: Plan) -> None:
    kinds = [ps.kind for ps in full_plan.steps]
    assert kinds == ["env", "apt", "env", "venv", "pip", "copy", "run"]
    steps = buildkit.instruction_steps(render(full_plan, "dockerfile"))
    # FROM, the helpers' and uv's COPY and the base's record, then one vertex per
    # apt/venv/pip/copy/run step (env steps make none), then the manifest's COPY and RUN
    assert steps == {"stage-0": [0, 0, 0, 0, 2, 4, 5, 6, 7, 0, 0]}


def test_instruction_steps_counts_workdir_and_add() -> None:
    text = ("FROM debian\n# [1/3] a: one\nWORKDIR /x\nENV A=1\n# [2/3] a: two\n"
            "ADD x /x\nrun echo\n# [3/3] a: three\nLABEL a=b\n")
    assert buildkit.instruction_steps(text) == {"stage-0": [0, 1, 2, 2]}


def progress_of(plan: Plan, verbose: bool = False) -> tuple[buildkit.Progress, io.StringIO]:
    out = io.StringIO()
    titles = {ps.number: f"{ps.recipe}: {ps.title}" for ps in plan.steps}
    steps = buildkit.instruction_steps(render(plan, "dockerfile"))
    return buildkit.Progress(titles, steps, out, verbose), out


SUCCESS = """\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 2.41kB done
#1 DONE 0.0s

#2 [internal] load metadata for docker.io/library/debian:bookworm-slim
#2 DONE 0.6s

#3 [internal] load .dockerignore
#3 transferring context: 93B done
#3 DONE 0.0s

#4 [1/11] FROM docker.io/library/debian:bookworm-slim@sha256:0a1b2c
#4 DONE 0.0s

#5 [internal] load build context
#5 transferring context: 120B done
#5 DONE 0.0s

#6 [5/11] RUN --mount=type=cache,target=/var/cache/apt,sharing=locked rm -f /etc/apt/apt
#6 CACHED

#7 [6/11] RUN --mount=type=secret,id=envkit-ca python3 -m venv /opt/envkit/venv
#7 0.158 some output
#7 DONE 2.5s

#8 [7/11] RUN --mount=type=cache,target=/root/.cache/pip /opt/envkit/venv/bin/python -m pip
#8 0.512 Collecting numpy
#8 1.234   Downloading numpy-2.1.0.whl (16.3 MB)

#9 [8/11] COPY files/t/data.txt /opt/data.txt
#9 DONE 0.1s

#8 [7/11] RUN --mount=type=cache,target=/root/.cache/pip /opt/envkit/venv/bin/python -m pip
#8 11.90 Successfully installed numpy-2.1.0
#8 DONE 12.3s

#10 [9/11] RUN /bin/bash -euo pipefail -c echo hi
#10 0.101 hi
#10 DONE 0.2s

#11 exporting to image
#11 exporting layers 0.5s done
#11 writing image sha256:5d8f done
#11 naming to docker.io/envkit/t:latest done
#11 DONE 0.6s
"""


def test_progress_of_a_successful_build(full_plan: Plan) -> None:
    progress, out = progress_of(full_plan)
    for line in SUCCESS.splitlines():
        progress.feed(line)
    t = {ps.number: f"{ps.recipe}: {ps.title}" for ps in full_plan.steps}
    assert out.getvalue().splitlines() == [
        f"  step 2/7 {t[2]}: cached",
        f"  step 4/7 {t[4]}: running",
        f"  step 4/7 {t[4]}: done in 2.5s",
        f"  step 5/7 {t[5]}: running",
        f"  step 6/7 {t[6]}: done in 0.1s",
        f"  step 5/7 {t[5]}: done in 12.3s",
        f"  step 7/7 {t[7]}: running",
        f"  step 7/7 {t[7]}: done in 0.2s",
    ]
    assert progress.counts() == (1, 4)
    assert progress.failed is None
    assert progress.logs[5].lines == ["Collecting numpy", "  Downloading numpy-2.1.0.whl (16.3 MB)",
                                      "Successfully installed numpy-2.1.0"]
    assert progress.logs[5].seconds == pytest.approx(12.3)
    assert set(progress.vertex_step) == {"6", "7", "8", "9", "10"}


def test_progress_with_stage_names(full_plan: Plan) -> None:
    progress, out = progress_of(full_plan)
    for line in ["#5 [stage-0 1/11] FROM docker.io/library/debian:bookworm-slim",
                 "#5 DONE 0.1s", "#6 [stage-0 5/11] RUN apt-get update", "#6 0.3 Get:1 x",
                 "#6 DONE 4.0s", "#7 [stage-0 6/11] RUN python3 -m venv", "#7 CACHED"]:
        progress.feed(line)
    assert out.getvalue().splitlines() == [
        "  step 2/7 t: apt curl: running",
        "  step 2/7 t: apt curl: done in 4.0s",
        f"  step 4/7 t: {full_plan.steps[3].title}: cached",
    ]
    assert progress.counts() == (1, 1)


def test_progress_of_a_failure_old_format(full_plan: Plan) -> None:
    progress, out = progress_of(full_plan)
    for line in ["#1 [internal] load build definition from Dockerfile", "#1 DONE 0.0s",
                 "#4 [1/11] FROM docker.io/library/debian:bookworm-slim", "#4 CACHED",
                 "#5 [5/11] RUN rm -f /etc/apt/apt.conf.d/docker-clean && apt-get update",
                 "#5 0.311 Reading package lists...",
                 "#5 0.402 E: Unable to locate package curl",
                 "#5 ERROR: executor failed running [/bin/bash -o pipefail -c rm -f x]: "
                 "exit code: 100",
                 "#6 [6/11] RUN python3 -m venv /opt/envkit/venv", "#6 CANCELED",
                 "------", " > [5/11] RUN rm -f /etc/apt/apt.conf.d/docker-clean:", "------",
                 "error: failed to solve: executor failed running [/bin/bash]: exit code: 100"]:
        progress.feed(line)
    failed = progress.failed
    assert failed is not None and failed.number == 2 and failed.state == "failed"
    assert failed.title == "t: apt curl"
    assert failed.lines == ["Reading package lists...", "E: Unable to locate package curl",
                            "executor failed running [/bin/bash -o pipefail -c rm -f x]: "
                            "exit code: 100"]
    assert progress.logs[4].state == ""  # canceled: neither done nor failed
    assert out.getvalue().splitlines() == ["  step 2/7 t: apt curl: running"]


def test_progress_of_a_failure_new_format(full_plan: Plan) -> None:
    progress, _ = progress_of(full_plan)
    for line in ["#6 [5/11] RUN apt-get update", "#6 CACHED",
                 "#7 [9/11] RUN /bin/bash -euo pipefail -c echo hi", "#7 0.200 hi",
                 '#7 ERROR process "/bin/bash -euo pipefail -c echo hi" did not complete '
                 "successfully: exit code: 1"]:
        progress.feed(line)
    assert progress.failed is not None and progress.failed.number == 7
    assert progress.failed.lines == ["hi", 'process "/bin/bash -euo pipefail -c echo hi" did '
                                     "not complete successfully: exit code: 1"]
    assert progress.counts() == (1, 1)


def test_progress_blames_the_first_error(full_plan: Plan) -> None:
    progress, _ = progress_of(full_plan)
    for line in ["#6 [5/11] RUN apt-get update", "#7 [7/11] RUN pip install numpy",
                 "#6 0.100 E: broken", "#6 ERROR: exit code: 100",
                 "#7 ERROR: context canceled"]:
        progress.feed(line)
    assert progress.failed is not None and progress.failed.number == 2
    assert progress.logs[5].state == "failed" and progress.logs[5].lines == ["context canceled"]


def test_progress_keeps_the_last_200_lines_and_verbose_echoes(full_plan: Plan) -> None:
    progress, out = progress_of(full_plan, verbose=True)
    lines = ["#5 [7/11] RUN pip install"] + [f"#5 {i}.0 line {i}" for i in range(250)]
    for line in lines:
        progress.feed(line)
    assert progress.logs[5].lines[0] == "line 50" and len(progress.logs[5].lines) == 200
    assert out.getvalue().splitlines()[:3] == [lines[0], lines[1],
                                               "  step 5/7 t: pip numpy: running"]


# --- buildkit.build with a fake client --------------------------------------------------------

FAILURE = """\
#1 [internal] load build definition from Dockerfile
#1 DONE 0.0s
#4 [1/11] FROM docker.io/library/debian:bookworm-slim
#4 CACHED
#6 [5/11] RUN apt-get update
#6 0.100 Get:1 http://deb.debian.org/debian bookworm InRelease
#6 0.200 E: Unable to locate package curl
#6 ERROR: process "/bin/bash -o pipefail -c apt-get update" did not complete successfully: exit code: 100
------
 > [5/11] RUN apt-get update:
0.200 E: Unable to locate package curl
------
ERROR: failed to solve: process "/bin/bash -o pipefail -c apt-get update" did not complete successfully: exit code: 100
"""  # noqa: E501


def docker_with(builder: buildkit.Builder) -> dockerbackend.Docker:
    """The Docker backend building with ``builder`` (no engine asked)."""
    backend = dockerbackend.Docker(object())
    backend._builder = builder
    return backend


def fake_builder(tmp_path: Path, output: str, code: int) -> buildkit.Builder:
    (tmp_path / "canned.txt").write_text(output)
    client = script(tmp_path / "fake-docker", f"""\
        printf '%s\\n' "$@" > {str(tmp_path / 'argv.txt')!r}
        echo "DOCKER_BUILDKIT=${{DOCKER_BUILDKIT:-unset}}" > {str(tmp_path / 'env.txt')!r}
        cat {str(tmp_path / 'canned.txt')!r}
        echo "a line on stderr" >&2
        exit {code}
        """)
    return buildkit.Builder(client=str(client), args=("build",),
                            env=(("DOCKER_BUILDKIT", "1"),), about="fake")


def test_build_passes_every_option(tmp_path: Path, full_plan: Plan) -> None:
    builder = fake_builder(tmp_path, SUCCESS, 0)
    context = tmp_path / "ctx"
    context.mkdir()
    progress, out = progress_of(full_plan)
    log = context / "build.log"
    outcome = buildkit.build(builder, context, ["envkit/t:abc", "envkit/t:latest"],
                             {"io.envkit.build": "abc", "a.first": "1"}, progress, log,
                             secrets={ca.SECRET_ID: Path("/certs/ca.crt")},
                             build_args={"PIP_CERT": ca.TARGET, "ENVKIT_CA": ca.TARGET},
                             no_cache=True)
    assert outcome.ok and outcome.tail == [] and outcome.seconds > 0
    assert outcome.progress is progress
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv == ["build", "--progress=plain", "-f", str(context / "Dockerfile"),
                    "-t", "envkit/t:abc", "-t", "envkit/t:latest",
                    "--label", "a.first=1", "--label", "io.envkit.build=abc",
                    "--secret", "id=envkit-ca,src=/certs/ca.crt",
                    "--build-arg", f"ENVKIT_CA={ca.TARGET}",
                    "--build-arg", f"PIP_CERT={ca.TARGET}",
                    "--no-cache", str(context)]
    assert (tmp_path / "env.txt").read_text() == "DOCKER_BUILDKIT=1\n"
    text = log.read_text()
    assert text.startswith(f"$ {builder.client} build --progress=plain -f ")
    assert text.endswith(SUCCESS + "a line on stderr\n")
    assert progress.counts() == (1, 4)
    assert "done in 12.3s" in out.getvalue()


def test_build_minimal_argv(tmp_path: Path, full_plan: Plan) -> None:
    builder = fake_builder(tmp_path, "", 0)
    progress, _ = progress_of(full_plan)
    outcome = buildkit.build(builder, tmp_path, ["x:1"], {}, progress, tmp_path / "build.log")
    assert outcome.ok
    assert (tmp_path / "argv.txt").read_text().splitlines() == [
        "build", "--progress=plain", "-f", str(tmp_path / "Dockerfile"), "-t", "x:1",
        str(tmp_path)]


def test_build_failure_gives_the_failing_steps_lines(tmp_path: Path, full_plan: Plan) -> None:
    builder = fake_builder(tmp_path, FAILURE, 1)
    progress, out = progress_of(full_plan)
    log = tmp_path / "build.log"
    outcome = buildkit.build(builder, tmp_path, ["x:1"], {}, progress, log)
    assert not outcome.ok
    assert outcome.tail == [
        "Get:1 http://deb.debian.org/debian bookworm InRelease",
        "E: Unable to locate package curl",
        'process "/bin/bash -o pipefail -c apt-get update" did not complete successfully: '
        "exit code: 100"]
    assert progress.failed is not None and progress.failed.number == 2
    assert FAILURE in log.read_text()
    assert out.getvalue().splitlines() == ["  step 2/7 t: apt curl: running"]


def test_build_interrupted_stops_the_client(tmp_path: Path, full_plan: Plan) -> None:
    pid_file = tmp_path / "pid"
    client = script(tmp_path / "slow-docker", f"""\
        echo $$ > {str(pid_file)!r}
        echo "#1 [internal] load build definition from Dockerfile"
        sleep 30
        """)
    builder = buildkit.Builder(str(client), ("build",), (), "slow")

    class Interrupting(buildkit.Progress):
        def feed(self, line: str) -> None:
            raise KeyboardInterrupt

    progress = Interrupting({}, [], io.StringIO())
    log = tmp_path / "build.log"
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        buildkit.build(builder, tmp_path, ["x:1"], {}, progress, log)
    assert time.monotonic() - started < 10
    assert log.read_text().endswith("[envkit] interrupted\n")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_build_failure_before_any_step_gives_the_log_tail(tmp_path: Path, full_plan: Plan
                                                          ) -> None:
    output = "".join(f"noise {i}\n" for i in range(30)) + (
        "ERROR: failed to solve: debian:bookworm-slim: not found\n")
    builder = fake_builder(tmp_path, output, 1)
    progress, _ = progress_of(full_plan)
    outcome = buildkit.build(builder, tmp_path, ["x:1"], {}, progress, tmp_path / "build.log")
    assert not outcome.ok and progress.failed is None
    assert len(outcome.tail) == 20
    assert outcome.tail[-2:] == ["ERROR: failed to solve: debian:bookworm-slim: not found",
                                 "a line on stderr"]


# --- engine ----------------------------------------------------------------------------------

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(("ref", "expected"), [
    ("debian", ("debian", "latest")),
    ("debian:bookworm-slim", ("debian", "bookworm-slim")),
    ("envkit/base:bookworm", ("envkit/base", "bookworm")),
    ("localhost:5000/team/img", ("localhost:5000/team/img", "latest")),
    ("localhost:5000/team/img:1.2", ("localhost:5000/team/img", "1.2")),
    ("registry.example.com:443/debian:12", ("registry.example.com:443/debian", "12")),
])
def test_split_ref(ref: str, expected: tuple[str, str]) -> None:
    assert engine.split_ref(ref) == expected


def test_split_ref_with_a_digest() -> None:
    ref = f"debian@sha256:{HEX}"
    images = FakeImages()
    engine.pull(fake_client(images), ref)
    # what docker-py's images.pull(repo, tag=...) needs to fetch exactly this image
    assert images.pulled == [("debian", f"sha256:{HEX}")]
    assert engine.split_ref(ref) == ("debian", f"sha256:{HEX}")


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1 kB"), (12_345, "12 kB"), (123_456_789, "123.46 MB"),
    (5_000_000_000, "5.00 GB"), (7_000_000_000_000, "7000.00 GB"),
])
def test_size_text(n: int, text: str) -> None:
    assert engine.size_text(n) == text


def test_where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine.where() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "")
    assert engine.where() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    assert engine.where() == "tcp://10.0.0.2:2375"


def test_connect_without_an_engine(no_engine: str) -> None:
    with pytest.raises(EnvkitError) as info:
        engine.connect(timeout=5)
    text = one_line(info.value)
    assert f"engine: no Docker engine answers at {no_engine}: no socket there" in text
    assert "--target host" in text


class FakeImages:
    def __init__(self, present: dict[str, Any] | None = None, pull_error: str = "",
                 get_error: Exception | None = None):
        self.present = present or {}
        self.pull_error = pull_error
        self.get_error = get_error
        self.pulled: list[tuple[str, str]] = []
        self.asked: list[str] = []

    def get(self, ref: str) -> Any:
        self.asked.append(ref)
        if self.get_error:
            raise self.get_error
        if ref not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {ref}")
        return self.present[ref]

    def pull(self, repo: str, tag: str | None = None) -> Any:
        self.pulled.append((repo, tag or ""))
        if self.pull_error:
            raise docker.errors.APIError("500 Server Error", explanation=self.pull_error)
        self.present[f"{repo}:{tag}"] = SimpleNamespace(id="sha256:pulled")
        return self.present[f"{repo}:{tag}"]


def fake_client(images: FakeImages) -> Any:
    return SimpleNamespace(images=images)


def api_error(status: int, explanation: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} error", response=response, explanation=explanation)


def test_engine_image_and_pull() -> None:
    img = SimpleNamespace(id="sha256:1")
    images = FakeImages({"a:1": img})
    client = fake_client(images)
    assert engine.image(client, "a:1") is img
    assert engine.image(client, "b:1") is None
    assert engine.pull(client, "localhost:5000/b") == ""
    assert images.pulled == [("localhost:5000/b", "latest")]
    images.pull_error = "pull access denied for b\nsecond line"
    assert engine.pull(client, "b:2") == "pull access denied for b"
    client404 = fake_client(FakeImages(get_error=api_error(404, "gone")))
    assert engine.image(client404, "a:1") is None
    client500 = fake_client(FakeImages(get_error=api_error(500, "engine broke")))
    with pytest.raises(EnvkitError) as info:
        engine.image(client500, "a:1")
    assert "cannot inspect image a:1: engine broke" in one_line(info.value)


# --- baseimage -------------------------------------------------------------------------------


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for folder in ("etc/apt", "etc/dpkg/dpkg.cfg.d", "usr/share/doc/pkg", "usr/share/man/man1",
                   "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt",
                   "usr/share/locale/de/LC_MESSAGES", "usr/bin"):
        (root / folder).mkdir(parents=True)
    files = {
        "usr/share/doc/pkg/copyright": "c", "usr/share/doc/pkg/changelog.gz": "z",
        "usr/share/man/man1/x.1": "m", "var/lib/apt/lists/foo_Packages": "p",
        "var/lib/apt/lists/lock": "", "var/cache/apt/pkgcache.bin": "b",
        "var/cache/apt/srcpkgcache.bin": "b", "var/cache/apt/archives/a.deb": "d",
        "var/cache/apt/archives/lock": "", "var/log/dpkg.log": "l",
        "var/log/apt/history.log": "h", "usr/share/locale/de/LC_MESSAGES/x.mo": "mo",
        "usr/bin/bash": "#!", "etc/apt/sources.list": "deb old stuff\n",
    }
    for rel, text in files.items():
        (root / rel).write_text(text)
    (root / "usr/share/doc/linked").symlink_to("pkg")
    return root


def test_tidy_a_stable_suite(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    baseimage._tidy(root, "bookworm", "http://mirror.example/debian")
    kept = ["usr/share/doc/pkg/copyright", "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial", "var/cache/apt/archives/lock", "usr/bin/bash",
            "usr/share/man", "usr/share/locale", "usr/share/doc/linked"]
    gone = ["usr/share/doc/pkg/changelog.gz", "usr/share/man/man1",
            "var/lib/apt/lists/foo_Packages", "var/lib/apt/lists/lock",
            "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
            "var/cache/apt/archives/a.deb", "var/log/dpkg.log", "var/log/apt/history.log",
            "usr/share/locale/de"]
    assert [p for p in kept if not os.path.lexists(root / p)] == []
    assert [p for p in gone if os.path.lexists(root / p)] == []
    assert (root / "etc/apt/sources.list").read_text() == (
        "deb http://mirror.example/debian bookworm main\n"
        "deb http://mirror.example/debian bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n")
    slim = (root / "etc/dpkg/dpkg.cfg.d/envkit-slim").read_text()
    assert "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n" in slim
    assert "path-exclude /usr/share/man/*\n" in slim


def test_tidy_sid_has_no_updates_or_security(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    baseimage._tidy(root, "sid", baseimage.DEFAULT_MIRROR)
    assert (root / "etc/apt/sources.list").read_text() == (
        "deb http://deb.debian.org/debian sid main\n")


def test_make_refuses_a_bad_suite_before_running_anything(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    def forbidden(*args: object, **kw: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(baseimage.subprocess, "run", forbidden)
    monkeypatch.setattr(baseimage.subprocess, "Popen", forbidden)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    client = fake_client(FakeImages())
    with pytest.raises(EnvkitError) as info:
        baseimage.make(client, "Bookworm; rm", "envkit/base:x", baseimage.DEFAULT_MIRROR,
                       io.StringIO())
    text = one_line(info.value)
    assert "--suite: 'Bookworm; rm' is not a Debian suite name" in text
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvkitError, match="debootstrap needs root"):
        baseimage.make(client, "bookworm", "envkit/base:x", baseimage.DEFAULT_MIRROR,
                       io.StringIO())


def scratch_in(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """baseimage's scratch folders go into ``folder`` (mkdtemp's other arguments kept)."""
    real = baseimage.tempfile.mkdtemp
    monkeypatch.setattr(baseimage.tempfile, "mkdtemp",
                        lambda **kw: real(**{**kw, "dir": folder}))


def bind(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
@pytest.mark.parametrize("umount_works", [True, False])
def test_the_scratch_root_is_removed_without_reaching_through_a_mount(
        umount_works: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As debootstrap leaves /proc mounted in its root when it is stopped: here a folder of
    ours stands in for the host's /proc, and it must come out whole."""
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "precious").write_text("keep\n")
    scratch_in(monkeypatch, tmp_path)
    real_run = subprocess.run
    if not umount_works:
        monkeypatch.setattr(baseimage.subprocess, "run", lambda argv, **kw: real_run(
            ["false"] if argv[0] == "umount" else argv, **kw))
    out = io.StringIO()
    try:
        with baseimage._scratch(out) as tmp:
            bind(host_dir, tmp / "rootfs/proc")
            (tmp / "rootfs/etc").mkdir()
        assert (host_dir / "precious").read_text() == "keep\n"
        if umount_works:
            assert not tmp.exists() and out.getvalue() == ""
            assert str(tmp) not in Path("/proc/mounts").read_text()
        else:
            assert tmp.exists()
            assert out.getvalue() == (
                f"envkit: left {tmp} in place: {tmp}/rootfs/proc would not unmount (see to "
                "that, then remove it)\n")
    finally:
        for line in Path("/proc/mounts").read_text().splitlines():
            if str(tmp_path) in line.split(" ")[1]:
                real_run(["umount", "--lazy", line.split(" ")[1]], check=True)


def test_mount_points_decode_the_kernels_escapes(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n"
                      "proc /var/tmp/envkit-base-x/a\\040b/proc proc rw 0 0\n"
                      "proc /var/tmp/envkit-base-xy/proc proc rw 0 0\n")
    real_path = baseimage.Path
    monkeypatch.setattr(baseimage, "Path", lambda p: real_path(
        mounts if p == "/proc/self/mounts" else p))
    assert baseimage._mounts_under(real_path("/var/tmp/envkit-base-x")) == [
        "/var/tmp/envkit-base-x/a b/proc"]
    mounts.unlink()
    assert baseimage._mounts_under(real_path("/var/tmp/envkit-base-x")) is None


def test_the_scratch_root_stays_when_the_mount_table_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseimage, "_mounts_under", lambda folder: None)
    scratch_in(monkeypatch, tmp_path)
    out = io.StringIO()
    with baseimage._scratch(out) as tmp:
        (tmp / "rootfs").mkdir()
    assert (tmp / "rootfs").is_dir()
    assert out.getvalue() == (
        f"envkit: left {tmp} in place: /proc/self/mounts cannot be read, so what is mounted "
        "in it is unknown (see to that, then remove it)\n")


def test_the_scratch_root_path_is_the_real_one(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/self/mounts names mounts by their real path, not through a symlinked /var/tmp."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    scratch_in(monkeypatch, tmp_path / "link")
    with baseimage._scratch(io.StringIO()) as tmp:
        assert tmp.parent == tmp_path / "real"
    assert list((tmp_path / "real").iterdir()) == []


@pytest.fixture
def no_make(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def make(client: Any, suite: str, tag: str, mirror: str, out: Any) -> str:
        calls.append((suite, tag, mirror))
        return "sha256:made"

    monkeypatch.setattr(baseimage, "make", make)
    return calls


def test_ensure_present_image(no_make: list[tuple[Any, ...]]) -> None:
    images = FakeImages({"debian:bookworm-slim": SimpleNamespace(id="sha256:1")})
    out = io.StringIO()
    assert baseimage.ensure(fake_client(images), "debian:bookworm-slim", out) == (
        "debian:bookworm-slim")
    assert images.pulled == [] and out.getvalue() == "" and no_make == []


def test_ensure_pulls(no_make: list[tuple[Any, ...]]) -> None:
    images = FakeImages()
    out = io.StringIO()
    assert baseimage.ensure(fake_client(images), "debian:bookworm-slim", out) == (
        "debian:bookworm-slim")
    assert images.pulled == [("debian", "bookworm-slim")]
    assert out.getvalue() == "envkit: pulled debian:bookworm-slim\n"


def test_ensure_a_foreign_image_that_cannot_be_pulled(no_make: list[tuple[Any, ...]]) -> None:
    ref = "registry.example.com:5000/team/img:1"
    images = FakeImages(pull_error="pull access denied for team/img")
    with pytest.raises(EnvkitError) as info:
        baseimage.ensure(fake_client(images), ref, io.StringIO())
    text = one_line(info.value)
    assert f"base image {ref} is not on this engine and cannot be pulled: " in text
    assert "pull access denied for team/img" in text
    assert images.pulled == [("registry.example.com:5000/team/img", "1")]
    assert "envkit/base" not in " ".join(images.asked) and no_make == []


def test_ensure_falls_back_to_the_envkit_base(no_make: list[tuple[Any, ...]]) -> None:
    images = FakeImages({"envkit/base:bookworm": SimpleNamespace(id="sha256:b")},
                        pull_error="dial tcp: lookup registry-1.docker.io: no such host")
    out = io.StringIO()
    got = baseimage.ensure(fake_client(images), "docker.io/library/debian:bookworm-slim", out)
    assert got == "envkit/base:bookworm"
    assert out.getvalue() == (
        "envkit: docker.io/library/debian:bookworm-slim cannot be pulled (dial tcp: lookup "
        "registry-1.docker.io: no such host); using envkit/base:bookworm (made by invoke base)\n")
    assert no_make == []


def test_ensure_without_a_base_and_not_root(monkeypatch: pytest.MonkeyPatch,
                                            no_make: list[tuple[Any, ...]]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    images = FakeImages(pull_error="no such host")
    with pytest.raises(EnvkitError) as info:
        baseimage.ensure(fake_client(images), "debian:bookworm", io.StringIO())
    text = one_line(info.value)
    assert "base image debian:bookworm is not on this engine and cannot be pulled: no such host" \
        in text
    assert "invoke base --suite bookworm" in text
    assert no_make == []


def test_ensure_makes_the_base_as_root(monkeypatch: pytest.MonkeyPatch,
                                       no_make: list[tuple[Any, ...]]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(baseimage.shutil, "which", lambda name: f"/usr/sbin/{name}")
    out = io.StringIO()
    images = FakeImages(pull_error="no such host")
    assert baseimage.ensure(fake_client(images), "debian:trixie-slim", out) == (
        "envkit/base:trixie")
    assert no_make == [("trixie", "envkit/base:trixie", baseimage.DEFAULT_MIRROR)]
    assert "making envkit/base:trixie with debootstrap" in out.getvalue()


# --- ca --------------------------------------------------------------------------------------

DEBIAN_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.mark.skipif(not DEBIAN_BUNDLE.is_file(), reason="no Debian CA bundle here")
def test_ca_bundle_accepts_debians_bundle() -> None:
    assert ca.bundle(str(DEBIAN_BUNDLE)) == DEBIAN_BUNDLE.resolve()


def test_ca_bundle_accepts_a_pem_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = tmp_path / "my.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ca.bundle("~/my.pem") == pem.resolve()


def test_ca_bundle_refusals(tmp_path: Path) -> None:
    empty = tmp_path / "no-certs.pem"
    empty.write_text("just text\n")
    big = tmp_path / "big.pem"
    with open(big, "wb") as fh:
        fh.write(b"-----BEGIN CERTIFICATE-----\n")
        fh.truncate(16 * 1024 * 1024 + 1)
    cases = {
        str(tmp_path / "missing.pem"): "cannot read the CA bundle",
        str(tmp_path): "cannot read the CA bundle",
        str(empty): "holds no PEM certificate",
        str(big): "is over 16 MiB; that is not a CA bundle",
    }
    for path, message in cases.items():
        with pytest.raises(EnvkitError) as info:
            ca.bundle(path)
        text = one_line(info.value)
        assert "--ca-bundle: " in text and message in text and path in text, text


def test_ca_env() -> None:
    env = ca.env("/run/secrets/envkit-ca")
    assert list(env) == list(ca.VARS)
    assert set(env.values()) == {"/run/secrets/envkit-ca"}
    assert {"ENVKIT_CA", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"} == set(env)


# --- host ------------------------------------------------------------------------------------


def test_base_environment_leaves_envkits_own_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", "/work/x/.venv")
    monkeypatch.setenv("PYTHONHOME", "/work/x/.venv")
    monkeypatch.setenv("PATH", "/work/x/.venv/bin:/usr/local/bin:/work/x/.venv/bin/:/usr/bin")
    env = host.base_environment()
    assert "VIRTUAL_ENV" not in env and "PYTHONHOME" not in env
    assert env["PATH"] == "/usr/local/bin:/usr/bin"
    assert os.environ["VIRTUAL_ENV"] == "/work/x/.venv"  # this process is untouched
    monkeypatch.delenv("VIRTUAL_ENV")
    assert host.base_environment()["PATH"] == (
        "/work/x/.venv/bin:/usr/local/bin:/work/x/.venv/bin/:/usr/bin")


def test_environment_applies_each_steps_env_in_order(recipe: MakeRecipe, tmp_path: Path
                                                     ) -> None:
    prefix = tmp_path / "env"
    plan = plan_of(recipe("""\
        env:
          TOOL_HOME: "{{ prefix }}/tool"
        steps:
          - venv: {path: "{{ prefix }}/venv"}
          - env:
              A: "x"
              B: "${A}y"
              C: "$TOOL_HOME/bin:${PATH}"
              D: "cost $$5 ${UNSET_VAR}."
          - env: {A: "${B}z"}
        """), {"prefix": str(prefix)})
    base = {"PATH": "/usr/bin:/bin", "HOME": "/root", "A": "old"}
    env = host.environment(plan, base)
    venv_path = f"{prefix}/venv/bin:/usr/bin:/bin"
    assert "PIP_INDEX_URL" not in env  # mirrors are for installing; checks need none
    assert env["TOOL_HOME"] == f"{prefix}/tool"
    assert env["VIRTUAL_ENV"] == f"{prefix}/venv"
    assert env["PATH"] == venv_path
    assert env["B"] == "xy"
    assert env["C"] == f"{prefix}/tool/bin:{venv_path}"
    assert env["D"] == "cost $5 ."
    assert env["A"] == "xyz"
    assert env["HOME"] == "/root"
    assert base == {"PATH": "/usr/bin:/bin", "HOME": "/root", "A": "old"}


def test_environment_starts_from_the_base_environment(recipe: MakeRecipe,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", "/v")
    monkeypatch.setenv("PATH", "/v/bin:/usr/bin")
    plan = plan_of(recipe("steps:\n  - env: {X: \"${PATH}\"}\n"))
    env = host.environment(plan)
    assert "VIRTUAL_ENV" not in env and env["X"] == "/usr/bin"


def test_manifest_of_a_plain_folder(tmp_path: Path) -> None:
    with pytest.raises(EnvkitError) as info:
        host.manifest(tmp_path)
    text = one_line(info.value)
    assert f"--env: {tmp_path} is not an environment envkit provisioned (no envkit.json)" in text
    (tmp_path / "envkit.json").write_text("{not json")
    with pytest.raises(EnvkitError):
        host.manifest(tmp_path)
    (tmp_path / "envkit.json").write_text('{"recipe": "t"}')
    assert host.manifest(tmp_path) == {"recipe": "t"}


MARKER = """\
    env:
      GREETING: "hello world"
    steps:
      - run: |
          mkdir -p {{ prefix }}/out
          echo "$GREETING" > {{ prefix }}/out/marker
    verify:
      - file_exists: "{{ prefix }}/out/marker"
    """


def test_provision_runs_the_script(recipe: MakeRecipe, tmp_path: Path) -> None:
    target = tmp_path / "env"
    plan = plan_of(recipe(MARKER), {"prefix": str(target)})
    out = io.StringIO()
    seconds = host.provision(plan, target, out)
    assert seconds > 0
    assert (target / "out/marker").read_text() == "hello world\n"
    assert (target / "install.sh").is_file() and (target / "install.log").is_file()
    manifest = json.loads((target / "envkit.json").read_text())
    installed = manifest.pop("installed")
    assert manifest == {"recipe": "t", "version": "1.0.0", "hash": plan.hash,
                        "params": {"cache": "/var/cache/envkit", "prefix": str(target)},
                        "mirror": "default", "lock": {"state": "off"}}
    # no venv here; this host's Debian packages, as dpkg-query -W lists them
    assert set(installed) <= {"dpkg"}
    if shutil.which("dpkg-query"):
        assert any(line.startswith("bash ") for line in installed["dpkg"])
    assert host.manifest(target) == {**manifest, "installed": installed}
    log = (target / "install.log").read_text()
    assert "[envkit] step 2/2: t: run mkdir" in log and "[envkit] t: all 2 steps done" in log
    lines = out.getvalue().splitlines()
    assert lines[0] == "  step 1/2: t: env GREETING" and lines[-1] == "  t: all 2 steps done"


def test_provision_failure(recipe: MakeRecipe, tmp_path: Path) -> None:
    target = tmp_path / "env"
    target.mkdir()
    (target / "envkit.json").write_text("{}")  # from an earlier, successful run
    plan = plan_of(recipe("""\
        steps:
          - env: {A: "1"}
          - run: |
              echo about to fail
              exit 3
          - run: echo never
        """), {"prefix": str(target)})
    out = io.StringIO()
    with pytest.raises(EnvkitError) as info:
        host.provision(plan, target, out)
    text = one_line(info.value)
    assert "t: the script failed (exit 3) at step 2/3 t: run echo about to fail…" in text
    assert "[envkit]" not in "".join(ln for ln in out.getvalue().splitlines()
                                     if ln.startswith("  | "))  # shown once, not again
    assert f"full log: {target / 'install.log'}" in text
    assert not (target / "envkit.json").exists()
    assert "  | about to fail" in out.getvalue()
    assert "never" not in (target / "install.log").read_text()


def test_provision_checks_debian_packages(recipe: MakeRecipe, tmp_path: Path) -> None:
    target = tmp_path / "env"
    plan = plan_of(recipe("steps:\n  - apt: [bash, envkit-no-such-pkg]\n"),
                   {"prefix": str(target)})
    out = io.StringIO()
    with pytest.raises(EnvkitError) as info:
        host.provision(plan, target, out)
    assert "at step 1/1 t: apt bash envkit-no-such-pkg" in one_line(info.value)
    assert "missing Debian packages: envkit-no-such-pkg (" in out.getvalue()
    assert "missing Debian packages: bash" not in out.getvalue()
    plan = plan_of(recipe("steps:\n  - apt: [bash]\n", name="u"), {"prefix": str(target)})
    assert host.provision(plan, target, io.StringIO()) > 0
    assert json.loads((target / "envkit.json").read_text())["recipe"] == "u"


def test_provision_allow_system_needs_root(recipe: MakeRecipe, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    target = tmp_path / "env"
    plan = plan_of(recipe(MARKER), {"prefix": str(target)})
    with pytest.raises(EnvkitError) as info:
        host.provision(plan, target, io.StringIO(), allow_system=True)
    assert "--allow-system installs Debian packages, which needs root" in one_line(info.value)
    assert not target.exists()


def test_provision_hands_the_ca_bundle_to_the_script(recipe: MakeRecipe, tmp_path: Path
                                                     ) -> None:
    target = tmp_path / "env"
    plan = plan_of(recipe("""\
        steps:
          - run: |
              mkdir -p {{ prefix }}
              echo "$PIP_CERT $ENVKIT_CA $ENVKIT_SYSTEM" > {{ prefix }}/seen
        """), {"prefix": str(target)})
    host.provision(plan, target, io.StringIO(), ca_bundle=Path("/x/ca.pem"))
    assert (target / "seen").read_text() == "/x/ca.pem /x/ca.pem check\n"


# --- verify ----------------------------------------------------------------------------------

CHECKED = """\
    steps:
      - run: "true"
    verify:
      - name: tool runs
        command: {argv: [tool, --version], output: "^tool 1\\\\."}
      - file_exists: /opt/x
      - python_import: {module: json, version: ">=2"}
    """


def stub_runner(answers: dict[str, tuple[int, str]]) -> tuple[Runner, list[list[str]]]:
    seen: list[list[str]] = []

    def run(argv: list[str]) -> tuple[int, str]:
        seen.append(argv)
        return answers[argv[0]]

    return run, seen


def test_run_checks_all_pass(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe(CHECKED))
    assert len(plan.checks) == 3
    run, seen = stub_runner({"tool": (0, "tool 1.2\n"), "test": (0, ""),
                             "python3": (0, "a warning\nenvkit-version:2.0.9\n")})
    out = io.StringIO()
    assert run_checks(plan.checks, run, "img:1", out) is True
    lines = out.getvalue().splitlines()
    assert lines[0] == "verify img:1: 3 checks"
    assert [ln.split()[0] for ln in lines[1:4]] == ["PASS"] * 3
    assert "tool runs" in lines[1] and "exists /opt/x" in lines[2] and "json 2.0.9" in lines[3]
    assert lines[-1] == "all 3 checks passed"
    assert seen[0] == ["tool", "--version"] and seen[1] == ["test", "-e", "/opt/x"]


def test_run_checks_one_fails(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe(CHECKED))
    run, _ = stub_runner({"tool": (0, "tool 1.2\n"), "test": (1, ""),
                          "python3": (0, "envkit-version:2.0.9\nwarned after\n")})
    out = io.StringIO()
    assert run_checks(plan.checks, run, "/env", out) is False
    lines = out.getvalue().splitlines()
    fail = [ln for ln in lines if ln.startswith("  FAIL")]
    assert len(fail) == 1 and "exists /opt/x" in fail[0] and "/opt/x is missing" in fail[0]
    assert lines[-1] == "1 of 3 checks failed"


def test_run_checks_a_runner_that_cannot_run(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe(CHECKED))

    def run(argv: list[str]) -> tuple[int, str]:
        raise FileNotFoundError(2, "No such file or directory", argv[0])

    out = io.StringIO()
    assert run_checks(plan.checks, run, "/env", out) is False
    assert out.getvalue().count("could not run") == 3
    assert out.getvalue().endswith("3 of 3 checks failed\n")


def test_run_checks_without_checks(recipe: MakeRecipe) -> None:
    plan = plan_of(recipe("steps:\n  - run: \"true\"\n"))
    out = io.StringIO()

    def run(argv: list[str]) -> tuple[int, str]:
        raise AssertionError("nothing to run")

    assert plan.checks == []
    assert run_checks(plan.checks, run, "/env", out) is True
    assert out.getvalue() == "verify /env: the recipe declares no checks\n"


# --- build -----------------------------------------------------------------------------------


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
        buildmod._run_build(docker_with(builder), full_plan, render(full_plan, "dockerfile"),
                            context,
                            ["envkit/t:1"], "abc", opts, buildmod.secretmod.Provided(), out)
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
    buildmod._run_build(docker_with(builder), full_plan, render(full_plan, "dockerfile"),
                        tmp_path,
                        ["envkit/t:1"], "abc", buildmod.Options(recipe="t"),
                        buildmod.secretmod.Provided(), out)
    assert "--secret" not in (tmp_path / "argv.txt").read_text()
    assert out.getvalue().splitlines()[-1].startswith("envkit: built envkit/t:1 in ")
    assert out.getvalue().splitlines()[-1].endswith("s (1 steps cached, 4 run)")



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
    path = recipe("""\
        steps:
          - run: echo hi
        verify:
          - name: echo
            command:
              argv: [echo, ok]
        """)
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

    def fake_run_build(backend: Any, plan: Plan, dockerfile: str, context: Path,
                       tags: list[str], *rest: Any) -> None:
        assert (context / "Dockerfile").read_text() == dockerfile  # what was written is built
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


# --- the tasks, as a user types them -----------------------------------------------------------


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


# --- what review found --------------------------------------------------------------------


def test_where_follows_the_docker_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    import hashlib

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert engine.where() == "unix:///var/run/docker.sock"  # no config at all
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "rootless"}))
    meta = tmp_path / "contexts/meta" / hashlib.sha256(b"rootless").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": "rootless", "Endpoints": {"docker": {"Host": "unix:///run/user/1000/d.sock"}}}))
    assert engine.where() == "unix:///run/user/1000/d.sock"
    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    assert engine.where() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://h:2375")
    assert engine.where() == "tcp://h:2375"


def test_a_refused_user_is_not_a_missing_engine(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_reason", lambda exc: "permission denied (join the docker "
                        "group or use root)")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/x.sock")
    with pytest.raises(EnvkitError) as info:
        engine.connect()
    assert not isinstance(info.value, engine.NoEngine)
    assert "refuses this user: permission denied" in one_line(info.value)
    monkeypatch.undo()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/x.sock")
    with pytest.raises(engine.NoEngine):
        engine.connect()


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


def test_secret_flag_is_one_csv_record() -> None:
    assert buildkit._csv("id=envkit-ca", "src=/etc/ca.pem") == "id=envkit-ca,src=/etc/ca.pem"
    assert buildkit._csv("id=envkit-ca", 'src=/a,b"c') == 'id=envkit-ca,"src=/a,b""c"'


def test_ca_auto_none_and_a_stale_ssl_cert_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "gone.pem"))
    assert ca.choose("auto") == Path(ca.HOST_BUNDLE).resolve()  # falls back to the host's
    assert ca.choose("none") is None
    mine = tmp_path / "mine.pem"
    mine.write_text(Path(ca.HOST_BUNDLE).read_text())
    monkeypatch.setenv("SSL_CERT_FILE", str(mine))
    assert ca.choose("") == mine.resolve()


def test_ca_hint_with_and_without_a_bundle() -> None:
    lines = ["SSL: CERTIFICATE_VERIFY_FAILED certificate verify failed"]
    assert "pass --ca-bundle /etc/ssl/certs" in ca.hint(lines, None)
    given = ca.hint(lines, Path("/x.pem"))
    assert "although /x.pem was trusted" in given
    assert ca.hint(["all fine"], None) == ""


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


def test_ensure_pulls_through_the_registry_mirrors_first(no_make: list[tuple[Any, ...]]
                                                         ) -> None:
    class Tagging(FakeImages):
        def pull(self, repo: str, tag: str | None = None) -> Any:
            if repo.startswith("dead.example"):
                self.pulled.append((repo, tag or ""))
                raise docker.errors.APIError("500", explanation="no such host")
            image = super().pull(repo, tag)
            image.tag = lambda r, t: self.present.__setitem__(f"{r}:{t}", image)
            return image

    images = Tagging()
    out = io.StringIO()
    got = baseimage.ensure(fake_client(images), "debian:bookworm-slim", out,
                           ["dead.example", "docker.m.daocloud.io"])
    assert got == "debian:bookworm-slim" and "debian:bookworm-slim" in images.present
    assert images.pulled == [("dead.example/library/debian", "bookworm-slim"),
                             ("docker.m.daocloud.io/library/debian", "bookworm-slim")]
    assert "registry mirror dead.example cannot give debian:bookworm-slim (no such host)" in (
        out.getvalue())
    assert "pulled debian:bookworm-slim through docker.m.daocloud.io" in out.getvalue()


@pytest.mark.parametrize("ref, path", [
    ("debian:bookworm", "library/debian:bookworm"),
    ("nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04", "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04"),
    ("docker.io/library/ubuntu:22.04", "library/ubuntu:22.04"),
    ("nvcr.io/nvidia/pytorch:24.01", ""),
    ("localhost:5000/x:1", ""),
])
def test_only_docker_hub_refs_go_through_a_registry_mirror(ref: str, path: str) -> None:
    assert baseimage.hub_path(ref) == path


def test_a_build_plans_once_and_renders_once(recipe: MakeRecipe, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One plan, one render: the Dockerfile that is hashed is the one written and built,
    and the base the engine finds is only the FROM line's image, not a second plan."""
    from envkit import render as rendermod

    path = recipe("steps:\n  - run: echo hi\n")
    calls = {"plan": 0, "render": 0}
    real_plan, real_render = buildmod.make_plan, rendermod.render

    def counted_plan(*args: Any, **kw: Any) -> Plan:
        calls["plan"] += 1
        return real_plan(*args, **kw)

    def counted_render(*args: Any, **kw: Any) -> str:
        calls["render"] += 1
        return real_render(*args, **kw)

    built: dict[str, Any] = {}

    def fake_run_build(builder: Any, plan: Plan, dockerfile: str, context: Path,
                       tags: list[str], *rest: Any) -> None:
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
    monkeypatch.setattr(rendermod, "render", counted_render)
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


def test_cached_steps_are_said_in_step_order(full_plan: Plan) -> None:
    """BuildKit reports cached vertices in any order; the user reads them in step order,
    and only recipe steps count."""
    progress, out = progress_of(full_plan)
    lines = ["#4 [1/11] FROM docker.io/library/debian:bookworm-slim", "#4 CACHED",
             "#12 [2/11] COPY files/envkit/helpers.sh /usr/local/lib/envkit/helpers.sh",
             "#12 CACHED",
             "#7 [6/11] RUN python3 -m venv /opt/envkit/venv", "#8 [7/11] RUN pip",
             "#6 [5/11] RUN apt", "#7 CACHED", "#8 CACHED", "#6 CACHED",
             "#9 [8/11] COPY files/t/data.txt /opt/data.txt", "#9 DONE 0.1s"]
    for line in lines:
        progress.feed(line)
    said = [line.split(":")[0].strip() for line in out.getvalue().splitlines()]
    assert said == ["step 2/7 t", "step 4/7 t", "step 5/7 t", "step 6/7 t"]
    assert progress.counts() == (3, 1)  # the FROM and the helpers' COPY are not steps


def test_held_lines_come_out_when_the_build_stops(full_plan: Plan) -> None:
    progress, out = progress_of(full_plan)
    for line in ["#8 [7/11] RUN pip", "#8 CACHED"]:  # step 2 and 4 never reported
        progress.feed(line)
    assert out.getvalue() == ""
    progress.flush()
    assert out.getvalue().splitlines() == [
        f"  step 5/7 {full_plan.steps[4].recipe}: {full_plan.steps[4].title}: cached"]


def test_debootstrap_progress_is_one_line_a_phase() -> None:
    from envkit.backends import baseimage

    out = io.StringIO()
    phases = baseimage.Phases(out)
    for line in ["I: Retrieving InRelease", "I: Checking Release signature",
                 "I: Retrieving libc6 2.36-9", "I: Retrieving dpkg 1.21", "W: a warning",
                 "I: Extracting libc6...", "I: Extracting dpkg...", "I: Extracting bash...",
                 "I: Base system installed successfully."]:
        phases(line)
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 2)[2] for line in lines] == [
        "Retrieving InRelease", "Checking Release signature", "Retrieving libc6 2.36-9",
        "Extracting libc6...", "Base system installed successfully."]
    assert "(2 packages)" in lines[3] and "(3 packages)" in lines[4]
    assert all(line.startswith("envkit: debootstrap ") for line in lines)
