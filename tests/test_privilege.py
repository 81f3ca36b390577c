"""Least privilege: an image can run as a non-root user, the host target installs no system
package without --allow-system, and nothing envkit writes is world-writable, whatever the
caller's umask."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import ENVKIT, HEADER, plan_of, problems, script
from envkit import paths
from envkit.diagnostics import EnvkitError
from envkit.render import render
from test_injection import instructions


def test_a_user_makes_the_image_run_as_that_user(recipe) -> None:
    docker = render(plan_of(recipe("user: {name: ml, uid: 1234}\nsteps: [{run: 'true'}]\n")),
                    "dockerfile")
    insts = instructions(docker)
    assert insts[-4:-1] == [
        "RUN envkit_add_user ml 1234 /home/ml",
        "USER 1234:1234",  # by number: no passwd lookup, and runAsNonRoot can tell
        'WORKDIR "/home/ml"']
    assert insts[-1].startswith("LABEL ")
    assert [i for i in insts if i.startswith("USER ")] == ["USER 1234:1234"]


def test_a_short_user_defaults_to_uid_1000_and_its_home(recipe) -> None:
    docker = render(plan_of(recipe("user: ml\nsteps: [{run: 'true'}]\n")), "dockerfile")
    assert "USER 1000:1000" in docker and 'WORKDIR "/home/ml"' in docker


def test_no_user_means_no_user_instruction(recipe) -> None:
    assert "USER" not in render(plan_of(recipe("steps: [{run: 'true'}]\n")), "dockerfile")


@pytest.mark.parametrize(("user", "message"), [
    ("{name: ml, uid: 0}", "user.uid: 0 is less than the minimum of 1"),
    ("Root", "user: a user name is lower-case letters, digits, _ and -, got 'Root'"),
    ("{name: ml, home: home/ml}", "user.home: an absolute path, got 'home/ml'"),
    ("{name: ml, shell: zsh}", "user.shell: unknown key 'shell'"),
])
def test_bad_users_are_refused(recipe, user: str, message: str) -> None:
    lines = problems(recipe(f"user: {user}\nsteps: [{{run: 'true'}}]\n"))
    assert any(message in line for line in lines), lines


def test_the_requiring_recipes_user_wins(write) -> None:
    write(HEADER.format(name="dep") + "user: a\nsteps: [{run: 'true'}]\n", "dep")
    top = write(HEADER.format(name="top") + "requires: [dep]\nuser: {name: b, uid: 2000}\n", "top")
    assert plan_of(top).user.name == "b"  # type: ignore[union-attr]
    inherit = write(HEADER.format(name="mid") + "requires: [dep]\n", "mid")
    assert plan_of(inherit).user.name == "a"  # type: ignore[union-attr]


def test_a_world_writable_copy_mode_is_refused(recipe, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    lines = problems(recipe("steps: [{copy: {src: f, dest: /f, mode: '0777'}}]\n"))
    assert lines == [f"{tmp_path / 't.yaml'}:5:41: steps[0].copy.mode: 0777 is world-writable: "
                     "anyone in the image could change it (e.g. 0755 or 0644)"]


# --- the host -------------------------------------------------------------------------------


@pytest.fixture
def apt_stub(tmp_path: Path) -> Path:
    """apt-get that only records that it was called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "apt-get"
    stub.write_text(f'#!/bin/bash\necho "$*" >> {tmp_path / "apt-calls"}\n')
    stub.chmod(0o755)
    return bin_dir


def envkit(*args: str, cwd: Path, env: dict[str, str] | None = None,
           umask: int | None = None) -> subprocess.CompletedProcess[str]:
    def preexec() -> None:
        if umask is not None:
            os.umask(umask)

    done = subprocess.run([ENVKIT, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, preexec_fn=preexec)
    assert "Traceback" not in done.stderr
    return done


def test_the_host_target_installs_no_system_package_without_allow_system(
        tmp_path: Path, apt_stub: Path) -> None:
    (tmp_path / "t.yaml").write_text(HEADER.format(name="t") + "steps:\n  - apt: [bash]\n")
    env = {"PATH": f"{apt_stub}:{os.environ['PATH']}"}
    done = envkit("run", "--recipe", "./t.yaml", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr  # bash is installed: check passes
    assert not (tmp_path / "apt-calls").exists()  # apt-get was never run
    allowed = envkit("run", "--recipe", "./t.yaml", "--allow-system", "--fresh", cwd=tmp_path,
                     env=env)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    calls = (tmp_path / "apt-calls").read_text().splitlines()
    assert calls[-1].endswith("install -y --no-install-recommends bash")


def test_a_user_is_for_images_and_the_host_says_so(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(HEADER.format(name="t") + "user: ml\nsteps: [{run: 'true'}]\n")
    done = envkit("run", "--recipe", "./t.yaml", cwd=tmp_path)
    assert done.returncode == 0
    assert "envkit: 'user: ml' is for images; here the script runs as you" in done.stdout


def world_writable(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in [root, *root.rglob("*")]
            if not p.is_symlink() and p.stat().st_mode & stat.S_IWOTH]


def test_nothing_envkit_writes_is_world_writable_even_with_umask_0(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("x")
    os.chmod(data, 0o777)
    os.chmod(data / "f", 0o666)
    (tmp_path / "t.yaml").write_text(HEADER.format(name="t") + """\
steps:
  - copy: {src: data, dest: "{{ prefix }}/data"}
  - run: 'echo made > "$HOME/out.txt"; mkdir -p "$HOME/made"'
""")
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    out = tmp_path / "rendered"
    assert envkit("render", "--recipe", "./t.yaml", "--out", str(out), cwd=tmp_path,
                  umask=0).returncode == 0
    done = envkit("run", "--recipe", "./t.yaml", cwd=tmp_path, umask=0,
                  env={"HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert world_writable(out) == []
    assert world_writable(tmp_path / ".envkit") == []  # script, log, manifest, lock, stamps
    assert world_writable(home) == []  # what the steps wrote, under the script's umask


def _add_user(tmp_path: Path, passwd: str, group: str, *args: str) -> subprocess.CompletedProcess:
    """envkit_add_user from the helpers, with getent reading the given tables and
    groupadd/useradd only saying what they would do."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    (tmp_path / "passwd").write_text(passwd)
    (tmp_path / "group").write_text(group)
    script(bin_ / "getent", f"""\
        grep -E "^$2:|^[^:]*:[^:]*:$2:" "{tmp_path}/$1"
        """)
    script(bin_ / "groupadd", 'echo "groupadd $*"\n')
    script(bin_ / "useradd", 'echo "useradd $*"\n')
    helpers = paths.data_dir() / "helpers.sh"
    return subprocess.run(["bash", "-c", f'. "{helpers}"; envkit_add_user "$@"', "t", *args],
                          capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"})


BASE_PASSWD = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/bin/sh\n"
BASE_GROUP = "root:x:0:\nstaff:x:50:\nnogroup:x:65534:\n"


def test_the_user_is_made_when_the_base_does_not_have_it(tmp_path: Path) -> None:
    done = _add_user(tmp_path, BASE_PASSWD, BASE_GROUP, "ml", "1234", "/home/ml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "groupadd --gid 1234 ml",
        "useradd --uid 1234 --gid 1234 --create-home --home-dir /home/ml --shell /bin/bash ml"]


@pytest.mark.parametrize(("table", "name", "kind", "held"), [
    ("passwd", "app", "user", "1001"), ("group", "devs", "group", "50")])
def test_a_name_the_base_holds_with_another_id_stops_the_build(
        tmp_path: Path, table: str, name: str, kind: str, held: str) -> None:
    passwd, group = BASE_PASSWD, BASE_GROUP
    if table == "passwd":
        passwd += f"{name}:x:{held}:{held}::/home/{name}:/bin/bash\n"
    else:
        group += f"{name}:x:{held}:\n"
    done = _add_user(tmp_path, passwd, group, name, "1000", f"/home/{name}")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (f"[envkit] the base already has a {kind} named {name} with id "
                           f"{held}, not 1000: choose another name for the user\n")


def test_a_name_the_base_holds_with_the_same_id_is_kept(tmp_path: Path) -> None:
    done = _add_user(tmp_path, BASE_PASSWD + "ml:x:1000:1000::/home/ml:/bin/bash\n",
                     BASE_GROUP + "ml:x:1000:\n", "ml", "1000", "/home/ml")
    assert done.returncode == 0 and done.stdout == "", done


@pytest.mark.parametrize("name", ["root", "nobody", "daemon", "www-data", "_apt", "staff"])
def test_a_system_account_by_name_is_refused_where_it_is_written(recipe, name: str) -> None:
    for text, col in ((f"user: {name}\n", 7), (f"user: {{name: {name}, uid: 2000}}\n", 14)):
        with pytest.raises(EnvkitError) as exc:
            plan_of(recipe(text + "steps: [{run: 'true'}]\n"))
        [d] = exc.value.diagnostics
        assert (d.line, d.col) == (5, col) and d.path.startswith("user")
        assert f"'{name}' is a system account or group of every Debian base" in d.message
