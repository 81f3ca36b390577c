"""Fakes the backend and build tests share: docker CLIs and SDK clients, canned BuildKit
output, a recipe that writes a marker."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import requests

from conftest import script
from envkit.backends import buildkit
from envkit.backends import docker as dockerbackend
from envkit.diagnostics import EnvkitError
from envkit.plan import Plan
from envkit.render import render_all
from envkit.render.stepmap import StepMap

MakeRecipe = Callable[..., Path]


def one_line(exc: EnvkitError) -> str:
    text = str(exc)
    assert "\n" not in text and len(exc.diagnostics) == 1, text
    return text


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




def progress_of(plan: Plan, verbose: bool = False) -> tuple[buildkit.Progress, io.StringIO]:
    out = io.StringIO()
    titles = {ps.number: f"{ps.recipe}: {ps.title}" for ps in plan.steps}
    steps = step_map(plan).buildkit()
    return buildkit.Progress(titles, steps, out, verbose), out


def step_map(plan: Plan) -> StepMap:
    """The step map of the plan's Dockerfile, from the render a build makes."""
    return render_all(plan, ["dockerfile"]).step_maps["Dockerfile"]


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
