"""BuildKit without an engine: picking a docker client (fake CLIs), the Dockerfile's
vertices and the progress canned BuildKit output makes, and a build with a fake client."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest

from backend_fakes import (
    FAILURE,
    NEW,
    OLD,
    SUCCESS,
    fake_builder,
    fake_docker,
    one_line,
    progress_of,
    step_map,
)
from conftest import script
from envkit import ca
from envkit.backends import buildkit
from envkit.diagnostics import EnvkitError
from envkit.plan import Plan
from envkit.render import stepmap

pytestmark = pytest.mark.usefixtures("fresh_choice")


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


def test_instruction_steps_of_a_rendered_dockerfile(full_plan: Plan) -> None:
    kinds = [ps.kind for ps in full_plan.steps]
    assert kinds == ["env", "apt", "env", "venv", "pip", "copy", "run"]
    steps = step_map(full_plan).buildkit()
    # FROM, the helpers' and uv's COPY and the base's record, then one vertex per
    # apt/venv/pip/copy/run step (env steps make none), then the manifest's COPY and RUN
    assert steps == {"stage-0": [0, 0, 0, 0, 2, 4, 5, 6, 7, 0, 0]}


def test_instruction_steps_counts_workdir_and_add() -> None:
    pieces = [(0, "FROM debian\n"), (1, "WORKDIR /x\nENV A=1\n"), (2, "ADD x /x\nrun echo\n"),
              (3, "LABEL a=b\n")]
    assert stepmap.dockerfile(pieces).buildkit() == {"stage-0": [0, 1, 2, 2]}


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


def test_secret_flag_is_one_csv_record() -> None:
    assert buildkit._csv("id=envkit-ca", "src=/etc/ca.pem") == "id=envkit-ca,src=/etc/ca.pem"
    assert buildkit._csv("id=envkit-ca", 'src=/a,b"c') == 'id=envkit-ca,"src=/a,b""c"'


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
