"""The commands as a user types them: invoke in the checkout, envkit when pip-installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, run_cli
from envkit.load.catalog import Catalog


def invoke(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``invoke ARGS`` in this process (conftest.run_cli); test_envkit_console_script and
    the -r test below start real processes."""
    return run_cli("invoke", *args, cwd=cwd)


def test_list_of_tasks() -> None:
    out = invoke("--list").stdout
    for name in ("list", "render", "validate", "schema"):
        assert f"\n  {name} " in out


def test_envkit_console_script() -> None:
    exe = Path(sys.executable).parent / "envkit"
    done = subprocess.run([str(exe), "--list"], capture_output=True, text=True)
    assert done.returncode == 0 and "validate" in done.stdout
    done = subprocess.run([str(exe), "render", "--recipe", "python-venv", "--format", "shell"],
                          capture_output=True, text=True, cwd="/")
    assert done.returncode == 0 and done.stdout.startswith("#!/usr/bin/env bash\n")


def test_list_recipes() -> None:
    out = invoke("list").stdout
    for name in ("python-venv", "paddle-cpu", "faiss-cpu", "pytorch-cpu"):
        assert f"\n{name} " in "\n" + out
    assert "paddle=3.3.1 (choice [3.3.1, 3.2.2, 3.1.1])" in out


def test_render_to_stdout_and_help() -> None:
    done = invoke("render", "--recipe", "paddle-cpu", "--format", "dockerfile")
    assert done.returncode == 0 and "\nFROM debian:bookworm-slim\n" in done.stdout
    helptext = invoke("render", "--help").stdout
    for flag in ("--recipe", "--format", "--set", "--mirror", "--out", "--base"):
        assert flag in helptext


def test_mirror_from_a_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "invoke.yaml"
    conf.write_text("envkit:\n  mirror: ustc\n")
    done = invoke("-f", str(conf), "render", "--recipe", "python-venv")
    assert 'ARG ENVKIT_MIRROR_PIP="https://mirrors.ustc.edu.cn/pypi/simple ' in done.stdout
    # the flag wins over the file
    done = invoke("-f", str(conf), "render", "--recipe", "python-venv", "--mirror", "tuna")
    assert "tsinghua" in done.stdout


def test_validate_catalog_exits_zero() -> None:
    done = invoke("validate")
    assert done.returncode == 0, done.stderr
    recipes = len(Catalog(REPO / "recipes").all())
    assert f"ok: {recipes} recipes" in done.stdout


def test_validate_a_broken_file_exits_nonzero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ndescription: x\nversion: 1.0.0\nbase: debian:bookworm-slim\n"
                   "steps:\n  - pip: ['numpy=>1']\n")
    done = invoke("validate", "--recipe", str(bad))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"{bad}:6:11: steps[0].pip[0]: not a valid pip requirement (PEP 508): "
        + done.stderr.split("(PEP 508): ", 1)[1].strip())
    assert "Traceback" not in done.stderr + done.stdout


def test_a_name_is_a_catalog_name_even_when_a_folder_has_it(tmp_path: Path) -> None:
    (tmp_path / "paddle-cpu").mkdir()
    done = subprocess.run([sys.executable, "-m", "invoke", "-r", str(REPO), "render",
                           "--recipe", "paddle-cpu"], cwd=tmp_path, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_absurd_names_are_one_line_errors() -> None:
    for ref in ("a" * 300, "a" * 300 + ".yaml"):
        done = invoke("render", "--recipe", ref)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_every_option_of_every_task_has_a_real_short_flag_or_none() -> None:
    """invoke would give --from-step the short flag '-' (it shows as '--=STRING')."""
    from envkit.cli.tasks import ns

    for name in ns.task_names:
        for arg in ns[name].get_arguments():
            assert all(not n.startswith("-") for n in arg.names), (name, arg.names)
