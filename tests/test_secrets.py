"""Secrets: declared by id, given at build or run time, handed only to the steps that use
them, and never written anywhere: not in a rendered file, not in a log (shown as ***), not
left on disk after the script ends. Real bash and real pip against a local index that wants
a login; the Docker side is in test_e2e.py (-m docker)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import ENVKIT, FlakyServer, plan_of, problems, simple_index
from envkit import secrets
from envkit.diagnostics import EnvkitError
from envkit.render import render
from test_injection import instructions

# --- declaring and using ------------------------------------------------------------------


def test_a_step_may_use_only_declared_secrets(recipe) -> None:
    path = recipe("""\
        secrets:
          login: {env: NETRC}
        steps:
          - {secrets: [login], run: 'true'}
          - {secrets: [logn], run: 'true'}
    """)
    assert problems(path) == [
        f"{path}:9:16: steps[1].secrets[0]: unknown secret 'logn' (did you mean 'login'?)"]


def test_a_declared_secret_no_step_uses_is_a_mistake(recipe) -> None:
    path = recipe("secrets:\n  login: {env: NETRC}\nsteps: [{run: 'true'}]\n")
    assert problems(path) == [
        f"{path}:6:10: secrets.login: no step uses secret 'login' "
        "(name it in a step's 'secrets', or remove it)"]


@pytest.mark.parametrize("var", ["PATH", "HOME", "BASH_ENV", "LD_PRELOAD", "ENVKIT_CA"])
def test_a_secret_cannot_take_a_variable_the_shell_or_envkit_needs(recipe, var: str) -> None:
    path = recipe(f"secrets:\n  s: {{env: {var}}}\nsteps: [{{secrets: [s], run: 'true'}}]\n")
    lines = problems(path)
    assert any(f"secrets.s.env: '{var}' is not for a secret" in line for line in lines), lines


@pytest.mark.parametrize("kind", ["copy: {src: f, dest: /f}", "env: {A: b}"])
def test_steps_that_run_nothing_cannot_use_secrets(recipe, tmp_path: Path, kind: str) -> None:
    (tmp_path / "f").write_text("x")
    path = recipe(f"secrets:\n  s: {{env: S}}\nsteps:\n  - {{secrets: [s], {kind}}}\n")
    lines = problems(path)
    assert len(lines) == 1 and "step runs nothing, so it cannot use a secret" in lines[0]


@pytest.mark.parametrize(("spec", "message"), [
    ("{env: 1A}", "secrets.s.env: does not match"),
    ("{env: A, as: text}", "secrets.s.as: expected one of file, value"),
    ("{as: file}", "secrets.s: missing required field 'env'"),
    ("{env: A, requird: false}", "unknown key 'requird' (did you mean 'required'?)"),
])
def test_bad_declarations_are_one_line_errors(recipe, spec: str, message: str) -> None:
    lines = problems(recipe(f"secrets:\n  s: {spec}\nsteps: [{{secrets: [s], run: 'true'}}]\n"))
    assert any(message in line for line in lines), lines
    assert all("\n" not in line for line in lines)


def test_two_ids_that_read_the_same_variable_are_refused(recipe) -> None:
    path = recipe("""\
        secrets:
          a-b: {env: X}
          a.b: {env: Y}
        steps: [{secrets: [a-b, a.b], run: 'true'}]
    """)
    assert any("'a.b' and 'a-b' are both given as ENVKIT_SECRET_A_B" in line
               for line in problems(path))


# --- what gets rendered -------------------------------------------------------------------

RECIPE = """\
secrets:
  login: {env: NETRC, description: the private index's .netrc}
  token: {env: API_TOKEN, as: value}
  maybe: {env: MAYBE, required: false}
steps:
  - name: before
    run: 'report before'
  - name: uses them
    secrets: [login, token, maybe]
    run: 'report uses'
  - name: a pip step with a login
    secrets: [login]
    pip: {packages: ["six==1.17.0"], python: python3}
  - name: after
    run: 'report after'
"""

REPORT = """\
report() {
  { printf '%s NETRC=%s TOKEN=%s MAYBE=%s inherited=%s\\n' "$1" "${NETRC:-unset}" \\
      "${API_TOKEN:-unset}" "${MAYBE:-unset}" "$(env | grep -c '^ENVKIT_SECRET' || true)"
    if [ -n "${NETRC:-}" ]; then printf 'netrc: %s\\n' "$(cat "$NETRC")"; fi
  } >> "$ENVKIT_TEST_DIR/report"
}
"""


def test_only_the_steps_that_use_a_secret_mount_it(recipe) -> None:
    docker = render(plan_of(recipe(RECIPE)), "dockerfile")
    runs = [i for i in instructions(docker)  # the steps' RUNs, not envkit's own records
            if i.startswith("RUN ") and not i.startswith("RUN envkit_record")]
    mounts = [sorted(m.split(",")[1] for m in i.split() if m.startswith("--mount=type=secret"))
              for i in runs]
    assert mounts == [["id=envkit-ca"],
                      ["id=envkit-ca", "id=login", "id=maybe", "id=token"],
                      ["id=envkit-ca", "id=login"],
                      ["id=envkit-ca"]]
    assert "--mount=type=secret,id=login,target=/run/secrets/login,mode=0400" in runs[1]
    assert "envkit_secret_use NETRC file login" in runs[2]
    assert "ENV NETRC" not in docker and "ARG NETRC" not in docker  # never outlives its RUN


def test_the_script_takes_secrets_before_any_step_and_hands_them_out_per_step(recipe) -> None:
    shell = render(plan_of(recipe(RECIPE)), "shell")
    init = next(line for line in shell.splitlines() if line.startswith("envkit_secrets_init "))
    assert init == ("envkit_secrets_init login ENVKIT_SECRET_LOGIN 1 token ENVKIT_SECRET_TOKEN 1 "
                    "maybe ENVKIT_SECRET_MAYBE 0")
    assert shell.index(init) < shell.index("envkit_begin 1 ")
    assert shell.count("envkit_secret_use NETRC file login") == 2
    assert shell.count("unset NETRC API_TOKEN MAYBE\n") == 1


# --- the script, run by bash --------------------------------------------------------------


def run(script: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{cwd / 'bin'}:{os.environ['PATH']}", "HOME": str(cwd),
            "ENVKIT_TEST_DIR": str(cwd), "TMPDIR": str(cwd / "tmp"),
            "BASH_ENV": str(cwd / "report.sh"), "ENVKIT_UV": str(cwd / "bin" / "uv")}
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.run(["bash", str(script)], cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def scripted(recipe, tmp_path: Path) -> Path:
    """The RECIPE rendered, with `report` defined and uv a stub (pip needs no network)."""
    (tmp_path / "report.sh").write_text(REPORT)
    (tmp_path / "bin").mkdir()
    stub = tmp_path / "bin" / "uv"
    stub.write_text('#!/bin/bash\nreport pip\n')
    stub.chmod(0o755)
    script = tmp_path / "install.sh"
    script.write_text(render(plan_of(recipe(RECIPE)), "shell"))
    return script


def report(tmp_path: Path) -> list[str]:
    return (tmp_path / "report").read_text().splitlines()


def test_each_step_sees_only_its_secrets(scripted: Path, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc.txt"
    netrc.write_text("machine example.com login me password s3cret-PW\n")
    done = run(scripted, tmp_path, {"ENVKIT_SECRET_LOGIN_FILE": str(netrc),
                                    "ENVKIT_SECRET_TOKEN": "tok-123"})
    assert done.returncode == 0, done.stderr
    lines = report(tmp_path)
    assert lines[0] == "before NETRC=unset TOKEN=unset MAYBE=unset inherited=0"
    assert lines[1].startswith("uses NETRC=") and lines[1].endswith(
        " TOKEN=tok-123 MAYBE=unset inherited=0")
    assert lines[2] == "netrc: machine example.com login me password s3cret-PW"
    assert lines[3].startswith("pip NETRC=") and " TOKEN=unset " in lines[3]
    assert lines[5] == "after NETRC=unset TOKEN=unset MAYBE=unset inherited=0"
    assert "secret maybe was not given; MAYBE stays unset" in done.stderr
    secret_file = lines[1].split()[1].removeprefix("NETRC=")
    assert secret_file.startswith(str(tmp_path / "tmp" / "envkit-secrets."))
    assert not Path(secret_file).exists()  # the private copy is gone
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_missing_required_secret_stops_before_step_1(scripted: Path, tmp_path: Path) -> None:
    done = run(scripted, tmp_path, {"ENVKIT_SECRET_TOKEN": "tok"})
    assert done.returncode == 1
    assert done.stderr.strip() == ("[envkit] secret login is required: set "
                                   "ENVKIT_SECRET_LOGIN_FILE to a file holding it (or "
                                   "ENVKIT_SECRET_LOGIN to its value)")
    assert not (tmp_path / "report").exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_private_copy_is_removed_when_a_step_fails(scripted: Path, tmp_path: Path) -> None:
    (tmp_path / "bin" / "uv").write_text("#!/bin/bash\nexit 3\n")
    done = run(scripted, tmp_path, {"ENVKIT_SECRET_LOGIN": "l", "ENVKIT_SECRET_TOKEN": "t"})
    assert done.returncode == 3 and "step 3/4 failed" in done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_private_copy_is_removed_when_the_script_is_stopped(
        scripted: Path, tmp_path: Path, sig: signal.Signals) -> None:
    (tmp_path / "bin" / "uv").write_text("#!/bin/bash\ntouch \"$HOME/in-pip\"\nsleep 30\n")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "ENVKIT_TEST_DIR": str(tmp_path), "TMPDIR": str(tmp_path / "tmp"),
           "BASH_ENV": str(tmp_path / "report.sh"), "ENVKIT_SECRET_LOGIN": "l",
           "ENVKIT_SECRET_TOKEN": "t", "ENVKIT_UV": str(tmp_path / "bin" / "uv")}
    (tmp_path / "tmp").mkdir()
    proc = subprocess.Popen(["bash", str(scripted)], cwd=tmp_path, env=env,
                            start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (tmp_path / "in-pip").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list((tmp_path / "tmp").iterdir())) == 1  # the copy exists while it runs
    os.killpg(proc.pid, sig)
    assert proc.wait(timeout=30) != 0
    assert list((tmp_path / "tmp").iterdir()) == []


# --- given to envkit ------------------------------------------------------------------------


def test_flags_parse_like_dockers() -> None:
    assert secrets.parse(["id=a,src=/f", "id=b,env=B", "type=file,id=c,source=/g"]) == {
        "a": secrets.Given("a", src="/f"), "b": secrets.Given("b", env="B"),
        "c": secrets.Given("c", src="/g")}


@pytest.mark.parametrize("flag", ["a", "id=a", "id=a,src=/f,env=B", "src=/f", "id=a,mode=1"])
def test_bad_flags_are_one_line_errors(flag: str) -> None:
    with pytest.raises(EnvkitError) as info:
        secrets.parse([flag])
    assert str(info.value).startswith("envkit: --secret: expected id=ID")


def test_provide_reads_files_and_variables_and_cleans_up(tmp_path: Path) -> None:
    used = {"a": secrets.Secret("a", "A"), "b": secrets.Secret("b", "B", "value"),
            "c": secrets.Secret("c", "C", required=False)}
    (tmp_path / "a.txt").write_text("alpha-secret\n")
    given = {"a": secrets.Given("a", src=str(tmp_path / "a.txt"))}
    with secrets.provide(used, given, {"ENVKIT_SECRET_B": "bravo-token"}) as out:
        assert sorted(out.files) == ["a", "b"]
        assert out.files["b"].read_text() == "bravo-token"
        assert oct(out.files["a"].stat().st_mode & 0o777) == "0o600"
        folder = out.files["a"].parent
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        assert out.env(used) == {"ENVKIT_SECRET_A_FILE": str(out.files["a"]),
                                 "ENVKIT_SECRET_B_FILE": str(out.files["b"])}
        assert "alpha-secret" in out.redact and "bravo-token" in out.redact
    assert not folder.exists()


@pytest.mark.parametrize(("given", "environ", "message"), [
    ({}, {}, "envkit: --secret: secret 'a' is required and was not given (pass --secret "
             "id=a,src=FILE (or env=VAR), or set ENVKIT_SECRET_A_FILE or ENVKIT_SECRET_A)"),
    ({"x": secrets.Given("x", env="X")}, {}, "envkit: --secret: the recipe uses no secret 'x' "
                                             "(its secrets: a)"),
    ({"a": secrets.Given("a", env="NOPE")}, {}, "envkit: --secret: secret 'a': the variable "
                                                "NOPE is not set"),
    ({"a": secrets.Given("a", src="/no/such")}, {}, "envkit: --secret: cannot read secret 'a' "
                                                    "from /no/such: No such file or directory"),
])
def test_provide_errors(given: dict[str, secrets.Given], environ: dict[str, str],
                        message: str) -> None:
    with pytest.raises(EnvkitError) as info, secrets.provide(
            {"a": secrets.Secret("a", "A")}, given, environ):
        pass
    assert str(info.value) == message


def test_redaction_masks_the_value_its_lines_and_long_words() -> None:
    texts = secrets.redactions(b"machine example.com login me password hunter2-long\n")
    line = "auth: machine example.com login me password hunter2-long; pw=hunter2-long"
    assert secrets.redact(line, texts) == "auth: ***; pw=***"
    assert "me" not in texts  # short words are not masked everywhere


# --- real pip, a private index, envkit run ---------------------------------------------------


@pytest.fixture
def private_index(flaky: FlakyServer) -> FlakyServer:
    simple_index(flaky.root, "envkit-probe", "1.0")
    flaky.login = f"envkit:pw-{uuid.uuid4().hex}"
    return flaky


def private_recipe(folder: Path, index: str) -> Path:
    path = folder / "private.yaml"
    path.write_text(f"""\
name: private
description: a package from an index that needs a login
version: 1.0.0
base: debian:bookworm-slim
secrets:
  index-login: {{env: NETRC, description: .netrc with the index's login}}
steps:
  - venv: {{path: "{{{{ prefix }}}}/venv"}}
  - name: the private package
    secrets: [index-login]
    pip: {{packages: ["envkit-probe==1.0"], index: "{index}", options: [--no-cache-dir]}}
  - name: tell the secret (a careless step)
    secrets: [index-login]
    run: 'cat "$NETRC"'
verify:
  - python_import: {{module: envkit_probe, version: "==1.0"}}
""")
    return path


def test_envkit_run_installs_from_a_private_index_and_logs_no_secret(
        private_index: FlakyServer, tmp_path: Path) -> None:
    password = private_index.login.split(":", 1)[1]
    private_recipe(tmp_path, f"{private_index.url}/simple")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login envkit password {password}\n")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    without = subprocess.run([ENVKIT, "build", "--target", "host", "--recipe", "./private.yaml"],
                             cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert without.returncode == 1 and "Traceback" not in without.stderr
    assert without.stderr.strip() == (
        "envkit: --secret: secret 'index-login' is required and was not given (pass --secret "
        "id=index-login,src=FILE (or env=VAR), or set ENVKIT_SECRET_INDEX_LOGIN_FILE or "
        "ENVKIT_SECRET_INDEX_LOGIN)")

    done = subprocess.run([ENVKIT, "build", "--target", "host", "--recipe", "./private.yaml",
                           "--secret", f"id=index-login,src={netrc}", "--verbose"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    # locked for this build, with the login (uv reads the .netrc as the step's pip does),
    # installed hash-checked and checked against that lock
    assert "envkit: private.lock does not exist; locking it for this build" in done.stdout
    assert "installed packages match the lock" in done.stdout
    assert "all 2 checks passed" in done.stdout
    assert "machine 127.0.0.1 login envkit password" not in done.stdout  # the careless step
    assert "  ***" in done.stdout
    env_dir = tmp_path / ".envkit" / "envs" / "private"
    for path in [*env_dir.rglob("*"), *tmp_path.glob("*.yaml")]:
        if path.is_file() and "venv" not in path.parts:
            assert password.encode() not in path.read_bytes(), path
    assert password not in done.stdout + done.stderr
    assert private_index.hits.get("/simple/envkit-probe/", 0) >= 1


def test_a_secret_from_an_environment_variable(private_index: FlakyServer,
                                               tmp_path: Path) -> None:
    password = private_index.login.split(":", 1)[1]
    private_recipe(tmp_path, f"{private_index.url}/simple")
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull,
           "ENVKIT_SECRET_INDEX_LOGIN": f"machine 127.0.0.1 login envkit password {password}"}
    done = subprocess.run([ENVKIT, "run", "--recipe", "./private.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / ".envkit" / "envs" / "private" / "install.log").read_text()
    assert password not in log and "***" in log


def test_a_recipe_with_secrets_and_a_user_lints_clean(recipe, tmp_path: Path) -> None:
    """The new parts of both outputs (secret mounts and handoff, the secrets' private
    folder, the user block) pass bash -n, shellcheck and hadolint like the catalog does."""
    from envkit.render import lint

    path = recipe(RECIPE + "user: {name: ml, uid: 1234}\n")
    plan = plan_of(path)
    shell, docker = tmp_path / "install.sh", tmp_path / "Dockerfile"
    shell.write_text(render(plan, "shell"))
    docker.write_text(render(plan, "dockerfile"))
    assert lint.lint([shell], [docker]) == []
