"""The host backend run for real on tiny recipes: the environment, the manifest, provisioning."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest

from backend_fakes import MARKER, MakeRecipe, one_line
from conftest import plan_of
from envkit.backends import host
from envkit.diagnostics import EnvkitError

pytestmark = pytest.mark.usefixtures("fresh_choice")


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
