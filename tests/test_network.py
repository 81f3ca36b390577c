"""A flaky network: downloads, clones and pip retry with backoff, a stalled transfer is
abandoned, an answer that will not change moves on at once. Real bash, curl, git and pip
against a local server that fails on purpose (conftest.FlakyServer); nothing leaves this
machine."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, FlakyServer, git, make_repo, plan_of, simple_index, uv_bin
from envkit.render import render

HELPERS = REPO / "src" / "envkit" / "data" / "helpers.sh"
DEAD = "http://127.0.0.1:1"  # nothing listens on port 1: refused at once
FAST = {"ENVKIT_RETRY_DELAY": "0.05"}  # backoff 50, 100, 200 ms instead of 2, 4, 8 s


def helper(script: str, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Source the helpers in a strict bash, then run ``script``."""
    base = {"PATH": os.environ["PATH"], "HOME": str(cwd), "LC_ALL": "C"}
    return subprocess.run(["bash", "-c", f'set -Eeuo pipefail; . "$0"; {script}',
                           str(HELPERS)], cwd=cwd, env={**base, **FAST, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def retries(stderr: str) -> list[str]:
    """The waits the helpers announced: 'retrying in Ns'."""
    return re.findall(r"retrying in ([\d.]+)s", stderr)


# --- backoff ------------------------------------------------------------------------------


def test_backoff_doubles_and_stops_at_30s(tmp_path: Path) -> None:
    done = helper("for n in 1 2 3 4 5 6 7; do envkit_backoff $n; echo; done", tmp_path,
                  {"ENVKIT_RETRY_DELAY": "2"})
    assert done.stdout.split() == ["2", "4", "8", "16", "30", "30", "30"]


@pytest.mark.parametrize(("given", "waits"), [
    ("0.05", ["0.050", "0.100", "0.200", "0.400"]),
    ("0.5", ["0.500", "1", "2", "4"]), (".5", ["0.500", "1", "2", "4"]),
    ("1.2345", ["1.234", "2.468", "4.936", "9.872"]),  # milliseconds, the rest cut
    ("soon", ["2", "4", "8", "16"]), ("-1", ["2", "4", "8", "16"]),  # not a delay: default
    ("$(touch PWNED)", ["2", "4", "8", "16"]),
])
def test_backoff_takes_decimal_delays_and_nothing_else(tmp_path: Path, given: str,
                                                       waits: list[str]) -> None:
    done = helper("for n in 1 2 3 4; do envkit_backoff $n; echo; done", tmp_path,
                  {"ENVKIT_RETRY_DELAY": given})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == waits
    assert not (tmp_path / "PWNED").exists()


def test_retry_runs_a_command_until_it_succeeds(tmp_path: Path) -> None:
    done = helper("envkit_retry 'the flaky thing' bash -c '"
                  "n=$(cat n 2>/dev/null || echo 0); echo $((n + 1)) > n; [ $n -ge 2 ]'",
                  tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "n").read_text() == "3\n"
    assert retries(done.stderr) == ["0.050", "0.100"]
    assert "the flaky thing failed (exit 1, try 1 of 4); retrying in 0.050s" in done.stderr


def test_retry_gives_up_after_the_last_try_with_the_commands_exit_code(tmp_path: Path) -> None:
    done = helper("envkit_retry 'it' bash -c 'exit 7'", tmp_path, {"ENVKIT_RETRIES": "2"})
    assert done.returncode == 7
    assert "it failed 2 times (exit 7); giving up" in done.stderr


# --- downloads ----------------------------------------------------------------------------


def test_download_survives_a_server_that_fails_the_first_requests(
        flaky: FlakyServer, tmp_path: Path) -> None:
    (flaky.root / "f.bin").write_bytes(b"payload\n")
    flaky.fail["/f.bin"] = 2
    started = time.monotonic()
    done = helper(f"envkit_download out.part {flaky.url}/f.bin", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.part").read_bytes() == b"payload\n"
    assert flaky.hits["/f.bin"] == 3
    assert retries(done.stderr) == ["0.050", "0.100"]  # twice as long the 2nd time
    assert "(curl exit 22, HTTP 503, try 1 of 4)" in done.stderr
    assert time.monotonic() - started >= 0.15  # it waited: 50 + 100 ms


def test_download_gives_up_on_a_source_after_its_tries_and_moves_on(
        flaky: FlakyServer, tmp_path: Path) -> None:
    (flaky.root / "f.bin").write_bytes(b"payload\n")
    done = helper(f"envkit_download out.part {DEAD}/f.bin {flaky.url}/f.bin", tmp_path,
                  {"ENVKIT_RETRIES": "2"})
    assert done.returncode == 0, done.stderr
    assert f"download from {DEAD}/f.bin failed 2 times" in done.stderr
    assert "trying the next source" in done.stderr
    assert (tmp_path / "out.part").read_bytes() == b"payload\n"


def test_a_404_is_not_retried(flaky: FlakyServer, tmp_path: Path) -> None:
    (flaky.root / "f.bin").write_bytes(b"payload\n")
    done = helper(f"envkit_download out.part {flaky.url}/gone.bin {flaky.url}/f.bin", tmp_path)
    assert done.returncode == 0, done.stderr
    assert flaky.hits["/gone.bin"] == 1 and retries(done.stderr) == []
    assert f"download from {flaky.url}/gone.bin: HTTP 404" in done.stderr


def test_no_source_answering_fails_and_leaves_no_file(tmp_path: Path) -> None:
    done = helper(f"envkit_download out.part {DEAD}/a {DEAD}/b", tmp_path,
                  {"ENVKIT_RETRIES": "2"})
    assert done.returncode == 1
    assert f"no source of {DEAD}/a answered" in done.stderr
    assert not (tmp_path / "out.part").exists()


def test_a_stalled_transfer_is_abandoned_and_retried(flaky: FlakyServer,
                                                       tmp_path: Path) -> None:
    flaky.stall.add("/slow.bin")
    (flaky.root / "f.bin").write_bytes(b"payload\n")
    started = time.monotonic()
    done = helper(f"envkit_download out.part {flaky.url}/slow.bin {flaky.url}/f.bin", tmp_path,
                  {"ENVKIT_RETRIES": "2", "ENVKIT_STALL_TIMEOUT": "2"})
    assert done.returncode == 0, done.stderr
    assert "(curl exit 28," in done.stderr  # curl's "operation too slow"
    assert flaky.hits["/slow.bin"] == 2
    assert time.monotonic() - started < 25  # the server would have held each try for 30 s


def test_a_download_step_retries_then_checks_the_sha256(recipe, flaky: FlakyServer,
                                                         tmp_path: Path) -> None:
    data = b"the real file\n"
    (flaky.root / "f.bin").write_bytes(data)
    flaky.fail["/f.bin"] = 1
    path = recipe(f"""\
        steps:
          - download:
              url: {flaky.url}/f.bin
              sha256: {hashlib.sha256(data).hexdigest()}
              dest: "{{{{ prefix }}}}/f.bin"
    """)
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env" / "f.bin").read_bytes() == data
    assert retries(done.stderr) == ["0.050"]


def run_script(path: Path, tmp_path: Path, *args: str,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    prefix = tmp_path / "env"
    script = tmp_path / "install.sh"
    script.write_text(render(plan_of(path, {"prefix": str(prefix)}), "shell"))
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LC_ALL": "C",
            "PIP_CONFIG_FILE": os.devnull, "ENVKIT_UV": uv_bin()}
    return subprocess.run(["bash", str(script), *args], cwd=tmp_path,
                          env={**base, **FAST, **(env or {})}, capture_output=True, text=True,
                          timeout=300)


# --- clones -------------------------------------------------------------------------------



@pytest.fixture
def served_repo(flaky: FlakyServer, tmp_path: Path) -> tuple[str, str]:
    """A repository served over git's 'dumb' HTTP protocol by the flaky server."""
    work = tmp_path / "work"
    commit = make_repo(work)
    git("clone", "-q", "--bare", str(work), str(flaky.root / "r.git"), cwd=tmp_path)
    git("update-server-info", cwd=flaky.root / "r.git")
    return f"{flaky.url}/r.git", commit


def test_a_clone_survives_a_server_that_fails_the_first_requests(
        flaky: FlakyServer, served_repo: tuple[str, str], tmp_path: Path) -> None:
    url, commit = served_repo
    flaky.fail["/r.git/info/refs"] = 2
    done = helper(f"envkit_clone {url} co {commit}", tmp_path)
    assert done.returncode == 0, done.stderr
    assert retries(done.stderr) == ["0.050", "0.100"]
    assert (tmp_path / "co" / "f").read_text() == "v1\n"
    assert not (tmp_path / "co.part").exists()


def test_a_clone_that_never_works_leaves_nothing(flaky: FlakyServer, tmp_path: Path) -> None:
    done = helper(f"envkit_clone {DEAD}/r.git co {'0' * 40}", tmp_path, {"ENVKIT_RETRIES": "2"})
    assert done.returncode != 0
    assert f"git clone of {DEAD}/r.git failed 2 times" in done.stderr
    assert not (tmp_path / "co").exists() and not (tmp_path / "co.part").exists()


def test_a_clone_left_by_an_earlier_run_is_kept_or_redone(
        flaky: FlakyServer, served_repo: tuple[str, str], tmp_path: Path) -> None:
    url, commit = served_repo
    assert helper(f"envkit_clone {url} co {commit}", tmp_path).returncode == 0
    (tmp_path / "co" / "mine").write_text("kept\n")
    again = helper(f"envkit_clone {url} co {commit}", tmp_path)
    assert again.returncode == 0 and "is already a clone of" in again.stderr
    assert (tmp_path / "co" / "mine").exists()  # not cloned again
    other = helper(f"envkit_clone {url} co {'1' * 40}", tmp_path)
    assert "not " + "1" * 40 + "; cloning again" in other.stderr
    assert not (tmp_path / "co" / "mine").exists()


def test_a_clone_never_replaces_a_folder_it_did_not_make(
        served_repo: tuple[str, str], tmp_path: Path) -> None:
    url, commit = served_repo
    (tmp_path / "co").mkdir()
    (tmp_path / "co" / "precious").write_text("mine\n")
    done = helper(f"envkit_clone {url} co {commit}", tmp_path)
    assert done.returncode == 1
    assert "co already exists and is not a clone of" in done.stderr
    assert (tmp_path / "co" / "precious").read_text() == "mine\n"


def test_a_git_step_retries_the_clone_and_checks_the_commit(
        recipe, flaky: FlakyServer, served_repo: tuple[str, str], tmp_path: Path) -> None:
    url, commit = served_repo
    flaky.fail["/r.git/info/refs"] = 1
    path = recipe(f"""\
        steps:
          - git: {{url: "{url}", ref: main, commit: "{commit}", dest: "{{{{ prefix }}}}/src"}}
    """)
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert retries(done.stderr) == ["0.050"]
    assert (tmp_path / "env" / "src" / "f").read_text() == "v1\n"


# --- apt and pip ----------------------------------------------------------------------------


def test_apt_get_gets_retries_timeouts_the_ca_and_the_mirror_list(tmp_path: Path) -> None:
    stub = tmp_path / "bin" / "apt-get"
    stub.parent.mkdir()
    stub.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$HOME/argv"\n')
    stub.chmod(0o755)
    env = {"PATH": f"{stub.parent}:{os.environ['PATH']}", "ENVKIT_CA": "/run/secrets/envkit-ca"}
    done = helper("ENVKIT_APT_LIST=/s.list ENVKIT_APT_PARTS=/parts; envkit_apt_get update",
                  tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "argv").read_text().split("\n")[:-1] == [
        "-o", "Acquire::Retries=5", "-o", "Acquire::http::Timeout=60",
        "-o", "Acquire::https::Timeout=60", "-o", "Acquire::https::CAInfo=/run/secrets/envkit-ca",
        "-o", "Dir::Etc::SourceList=/s.list", "-o", "Dir::Etc::SourceParts=/parts", "update"]


@pytest.mark.skipif(not shutil.which("python3"), reason="python3 missing")
def test_pip_retries_an_index_that_fails_the_first_requests(recipe, flaky: FlakyServer,
                                                              tmp_path: Path) -> None:
    simple_index(flaky.root, "envkit-probe", "1.0")
    flaky.fail["/simple/envkit-probe/"] = 2
    path = recipe(f"""\
        steps:
          - venv: {{path: "{{{{ prefix }}}}/venv"}}
          - pip:
              packages: ["envkit-probe==1.0"]
              index: {flaky.url}/simple
              options: [--no-cache-dir]
    """)
    # Without retries (the user's own UV_HTTP_RETRIES=0 wins) uv stops at the first 503 ...
    once = tmp_path / "once"
    once.mkdir()
    done = run_script(path, once, env={"UV_HTTP_RETRIES": "0"})
    assert done.returncode != 0 and "step 2/2 failed" in done.stderr
    assert flaky.hits["/simple/envkit-probe/"] == 1
    # ... and with envkit's (5) it gets through the two 503s to the page.
    flaky.hits.clear()
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert flaky.hits["/simple/envkit-probe/"] == 3
    probe = subprocess.run([str(tmp_path / "env" / "venv" / "bin" / "python"), "-c",
                            "import envkit_probe; print(envkit_probe.__version__)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout == "1.0\n"


def test_the_outputs_give_pip_and_uv_retries_and_timeouts(recipe) -> None:
    plan = plan_of(recipe("steps: [{run: 'true'}]\n"))
    shell, docker = render(plan, "shell"), render(plan, "dockerfile")
    for key, value in (("PIP_RETRIES", "5"), ("PIP_DEFAULT_TIMEOUT", "60"),
                       ("UV_HTTP_RETRIES", "5"), ("UV_HTTP_TIMEOUT", "60")):
        assert f'export {key}="${{{key}:-{value}}}"' in shell  # the user's own setting wins
        assert f'ARG {key}="{value}"' in docker  # build time only: not in the image


def test_your_pip_and_uv_network_settings_reach_a_docker_build() -> None:
    """As in a host script: PIP_RETRIES and the like from the environment win over the
    Dockerfile's defaults (build arguments); a value that is not a number stays out."""
    from envkit.cli.build import network_args

    assert network_args({"PIP_RETRIES": "0", "UV_HTTP_TIMEOUT": "120", "HOME": "/root",
                         "PIP_DEFAULT_TIMEOUT": "60; rm -rf /", "UV_HTTP_RETRIES": ""}) == {
        "PIP_RETRIES": "0", "UV_HTTP_TIMEOUT": "120"}


def test_your_download_retry_settings_reach_a_docker_build() -> None:
    """ENVKIT_RETRIES, ENVKIT_RETRY_DELAY (decimals) and ENVKIT_STALL_TIMEOUT from the
    environment become build arguments the Dockerfile declares without a value (the
    helpers' defaults otherwise); one that is not a number is left out, and said."""
    from envkit.cli.build import network_args, network_ignored

    environ = {"ENVKIT_RETRIES": "7", "ENVKIT_RETRY_DELAY": "0.25",
               "ENVKIT_STALL_TIMEOUT": "$(id)", "PIP_RETRIES": "x"}
    assert network_args(environ) == {"ENVKIT_RETRIES": "7", "ENVKIT_RETRY_DELAY": "0.25"}
    assert network_ignored(environ) == ["PIP_RETRIES", "ENVKIT_STALL_TIMEOUT"]
    docker = render(plan_of(REPO / "recipes" / "python-venv.yaml"), "dockerfile")
    for key in ("ENVKIT_RETRIES", "ENVKIT_RETRY_DELAY", "ENVKIT_STALL_TIMEOUT"):
        assert f"\nARG {key}\n" in docker  # no value: unset unless given
