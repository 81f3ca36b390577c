"""Python versions: one shared ``python`` param, each recipe's ``python`` (the Pythons its
pins install on), python-venv's providers (the base's Debian Python or a uv-managed CPython)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, plan_of, problems
from envkit.load.catalog import Catalog
from envkit.plan import make_plan, resolve
from envkit.plan.lock import GLIBC, Target, target_of
from envkit.plan.variants import variants
from envkit.render import render

HELPERS = REPO / "src" / "envkit" / "data" / "helpers.sh"


def _venv_steps(plan) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(ps.kind, ps.title) for ps in plan.steps]


@pytest.mark.parametrize(("python", "base", "provider"), [
    ("3.9", "debian:bullseye-slim", "apt"), ("3.11", "debian:bookworm-slim", "apt"),
    ("3.13", "debian:trixie-slim", "apt"), ("3.8", "debian:bookworm-slim", "uv_python"),
    ("3.10", "debian:bookworm-slim", "uv_python"), ("3.12", "debian:bookworm-slim", "uv_python"),
])
def test_python_venv_takes_each_python_from_the_provider_that_has_it(
        catalog: Catalog, python: str, base: str, provider: str) -> None:
    plan = make_plan(catalog.find("python-venv"), catalog, {"python": python})
    assert plan.base == base
    kinds = [ps.kind for ps in plan.steps]
    venv = plan.steps[-1].step
    if provider == "apt":
        assert kinds == ["apt", "venv"]
        assert plan.steps[0].step.packages == ["ca-certificates", f"python{python}",  # type: ignore[attr-defined]
                                               f"python{python}-venv"]
        assert venv.interpreter == f"python{python}"  # type: ignore[attr-defined]
    else:
        assert kinds == ["apt", "uv_python", "venv"]
        assert plan.steps[0].step.packages == ["ca-certificates", "python3", "python3-venv"]  # type: ignore[attr-defined]
        uv = plan.steps[1].step
        assert (uv.version, uv.dir) == (python, "/opt/envkit/python")  # type: ignore[attr-defined]
        assert venv.python == uv.interpreter == (  # type: ignore[attr-defined]
            f"/opt/envkit/python/{python}/bin/python{python}")
    assert target_of(plan).python == python
    dockerfile = render(plan, "dockerfile")
    if provider == "uv_python":
        assert f"envkit_uv_python {python} /opt/envkit/python" in dockerfile
        assert "COPY files/envkit/uv.txt" in dockerfile  # the helper installs the pinned uv


def test_a_recipes_python_narrows_the_shared_param(catalog: Catalog) -> None:
    recipe = catalog.find("faiss-cpu")
    _, params, found = resolve(recipe, catalog)
    assert not found
    assert params["python"].values == ("3.11", "3.12", "3.13")
    assert params["python"].default == "3.11"
    pythons = [v.settings["python"] for v in variants(recipe, catalog) if "python" in v.settings]
    assert pythons == ["3.12", "3.13"]  # with the default: every Python its pins install on
    # python-venv itself offers all six
    _, params, _ = resolve(catalog.find("python-venv"), catalog)
    assert params["python"].values == ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")
    # a requiring recipe narrows it further: paddlespeech (Debian's -dev headers) and
    # paddle-cpu (>=3.9) together
    _, params, _ = resolve(catalog.find("paddlespeech"), catalog)
    assert params["python"].values == ("3.9", "3.11", "3.13")


def test_a_python_the_pins_do_not_install_on_is_an_error_at_the_recipes_line(
        catalog: Catalog) -> None:
    recipe = catalog.find("faiss-cpu")
    line = next(i for i, text in enumerate(recipe.path.read_text().splitlines(), 1)
                if text.startswith("python:"))
    with pytest.raises(Exception) as info:
        make_plan(recipe, catalog, {"python": "3.9"})
    lines = [str(d) for d in info.value.diagnostics]  # type: ignore[attr-defined]
    assert lines == [f"recipes/faiss-cpu.yaml:{line}:9: python: --set python=3.9: faiss-cpu's "
                     "pins install on Python >=3.11 (choose one of: 3.11, 3.12, 3.13)"]
    # a value no provider has is the param's own error
    with pytest.raises(Exception) as info:
        make_plan(recipe, catalog, {"python": "3.14"})
    assert "'3.14' is not one of: 3.11, 3.12, 3.13" in str(info.value.diagnostics[0])  # type: ignore[attr-defined]


def test_python_specs_that_leave_nothing_and_bad_specs(write) -> None:
    write("""
        name: py
        description: a Python
        version: 1.0.0
        base: debian:bookworm-slim
        params:
          python: {type: choice, values: ["3.11", "3.13"], default: "3.11"}
        steps: [{run: echo py}]
    """, "py")
    old = write("""
        name: old
        description: pins for old Pythons
        version: 1.0.0
        requires: [py]
        python: "<3.10"
        steps: [{run: echo old}]
    """, "old")
    found = problems(old)
    assert len(found) == 1 and found[0].endswith(
        "old.yaml:6:9: python: none of the Pythons 'py' offers (3.11, 3.13) is old: <3.10 "
        "(widen 'python' to a version its pins install on, or require another Python)"), found
    bad = write("""
        name: bad
        description: a broken specifier
        version: 1.0.0
        requires: [py]
        python: "3.11+"
        steps: [{run: echo bad}]
    """, "bad")
    found = problems(bad)
    assert len(found) == 1 and found[0].endswith(
        "bad.yaml:6:9: python: not a valid version specifier: '3.11+' (e.g. '>=2.6,<3') "
        "(a PEP 440 specifier set, e.g. '>=3.10')"), found


def test_when_takes_a_list_of_values(recipe) -> None:
    path = recipe("""
        params:
          flavour: {type: choice, values: [a, b, c], default: a}
        steps:
          - {run: echo ab, when: {flavour: [a, b]}}
          - {run: echo c, when: {flavour: [c]}}
    """)
    assert [s.step.script for s in plan_of(path).steps] == ["echo ab"]
    assert [s.step.script for s in plan_of(path, {"flavour": "b"}).steps] == ["echo ab"]
    assert [s.step.script for s in plan_of(path, {"flavour": "c"}).steps] == ["echo c"]


def test_a_when_value_outside_the_choice_is_an_error(recipe) -> None:
    path = recipe("""
        params:
          flavour: {type: choice, values: [a, b], default: a}
        steps:
          - {run: echo x, when: {flavour: [a, d]}}
    """)
    found = problems(path)
    assert len(found) == 1 and "steps[0].when.flavour" in found[0], found
    assert "'d' is not one of: a, b" in found[0]


def test_trixie_resolves_for_the_newest_manylinux_uv_names() -> None:
    assert Target("3.13", "trixie", GLIBC["trixie"]).platform == "x86_64-manylinux_2_40"
    assert Target("3.11", "bookworm", GLIBC["bookworm"]).platform == "x86_64-manylinux_2_36"
    assert Target("3.9", "bullseye", GLIBC["bullseye"]).platform == "x86_64-manylinux_2_31"


@pytest.mark.parametrize("version", ["3", "2.7", "3.12.x", "python3.12", "3.12 ", ""])
def test_uv_python_refuses_what_is_not_a_cpython_version(recipe, version: str) -> None:
    path = recipe(f"""
        steps:
          - uv_python: {{version: "{version}", dir: /opt/py}}
    """)
    found = problems(path)
    assert found and any("uv_python.version" in p for p in found), found


def test_uv_python_wants_an_absolute_dir(recipe) -> None:
    found = problems(recipe("""
        steps:
          - uv_python: {version: "3.12", dir: opt/py}
    """))
    assert found and "uv_python.dir" in found[0], found


def _fake_uv(tmp_path: Path) -> Path:
    """A uv that records its arguments and, for `python install`, lays out a build the way
    uv does (DIR/cpython-X.Y.Z-linux-x86_64-gnu/bin/python3)."""
    uv = tmp_path / "uv"
    uv.write_text(textwrap.dedent("""\
        #!/bin/bash
        echo "uv $* | dir=$UV_PYTHON_INSTALL_DIR downloads=${UV_PYTHON_DOWNLOADS:-}" \\
          "mirror=${UV_PYTHON_INSTALL_MIRROR:-}" >> "$UV_LOG"
        args=" $* "
        build="$UV_PYTHON_INSTALL_DIR/cpython-3.12.16-linux-x86_64-gnu"
        case $args in
          *" python install "*)
            mkdir -p "$build/bin"
            printf '#!/bin/sh\\necho 3.12.16\\n' > "$build/bin/python3"
            chmod +x "$build/bin/python3"
            ln -sf python3 "$build/bin/python3.12" ;;
          *" python find "*) echo "$build/bin/python3.12" ;;
        esac
        """))
    uv.chmod(0o755)
    return uv


def test_the_helper_installs_the_build_uv_names_and_links_it_by_version(tmp_path: Path) -> None:
    uv, log = _fake_uv(tmp_path), tmp_path / "uv.log"
    dest = tmp_path / "python dir"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ENVKIT_UV": str(uv),
           "UV_LOG": str(log), "UV_PYTHON_DOWNLOADS": "never",
           "UV_PYTHON_INSTALL_MIRROR": "https://mirror.example/pbs"}
    done = subprocess.run(["bash", "-c", f'. "{HELPERS}"; envkit_uv_python 3.12 "$1"', "-",
                           str(dest)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "[envkit] CPython 3.12: 3.12.16" in done.stderr
    calls = log.read_text().splitlines()
    assert calls[0].startswith("uv --no-config python install --no-bin 3.12 | "
                               f"dir={dest} downloads=manual mirror=https://mirror.example/pbs")
    assert calls[1].startswith("uv --no-config python find --managed-python "
                               "--no-python-downloads 3.12")
    assert (dest / "3.12").is_symlink()
    assert os.readlink(dest / "3.12") == str(dest / "cpython-3.12.16-linux-x86_64-gnu")
    assert (dest / "3.12" / "bin" / "python3.12").exists()


def test_the_helper_says_when_there_is_no_python3_to_install_uv_with(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "mktemp", "rm", "mkdir", "env", "ln", "cat"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    done = subprocess.run(["bash", "-c", f'. "{HELPERS}"; envkit_uv_python 3.12 /tmp/x'],
                          env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "a uv-managed Python needs the base's python3 to install uv" in done.stderr


def test_the_python_standalone_mirror_reaches_uv(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "ENVKIT_MIRROR_PYTHON_STANDALONE": "https://pbs.example/mirror"}  # one: no probe
    done = subprocess.run(["bash", "-c", f'. "{HELPERS}"; envkit_mirrors; '
                           'echo "mirror=${UV_PYTHON_INSTALL_MIRROR:-}"'],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "mirror=https://pbs.example/mirror" in done.stdout


def test_a_when_python_that_no_provider_offers_is_an_error(recipe) -> None:
    found = problems(recipe("""
        params:
          python: {type: choice, values: ["3.11", "3.13"], default: "3.11"}
        steps:
          - {run: "true", when: {python: ["3.11", "3.1"]}}
    """))
    assert len(found) == 1 and "'3.1' is not one of: 3.11, 3.13" in found[0], found


def test_a_two_stage_plan_keeps_a_uv_managed_python(write) -> None:
    """The runtime stage copies the venv and the CPython it links to (a venv alone would
    point at nothing)."""
    path = write("""
        name: built
        description: a two-stage build on the shared Python
        version: 1.0.0
        requires: [python-venv]
        runtime:
          keep: ["{{ prefix }}/lib"]
        steps:
          - run: mkdir -p {{ prefix }}/lib
    """, "built")
    plan = plan_of(path, {"python": "3.12"})
    assert plan.keep == ["/opt/envkit/lib", "/opt/envkit/python", "/opt/envkit/venv"]
    dockerfile = render(plan, "dockerfile")
    assert 'COPY --from=build ["/opt/envkit/python", "/opt/envkit/python"]' in dockerfile
    plan = plan_of(path, {"python": "3.11"})  # Debian's: the runtime stage installs it
    assert plan.keep == ["/opt/envkit/lib", "/opt/envkit/venv"]


def test_a_recipe_that_says_nothing_of_python_is_covered_for_the_default_only(write) -> None:
    """Its own base may lack Debian's other Pythons: validate and the lock cover 3.11 until
    the recipe says which it takes; --set python still picks another."""
    from envkit.load.catalog import Catalog

    mine = write("""
        name: mine
        description: a recipe on a base of its own
        version: 1.0.0
        base: debian:bookworm-slim
        requires: [python-venv]
        steps: [{pip: [six]}]
    """, "mine")
    catalog = Catalog()
    assert [v.settings for v in variants(catalog.load(mine), catalog)
            if "python" in v.settings] == []
    assert plan_of(mine, {"python": "3.12"}).steps[1].kind == "uv_python"
    said = write(mine.read_text().replace("steps:", 'python: ">=3.12"\nsteps:'), "mine")
    catalog = Catalog()
    assert [v.settings["python"] for v in variants(catalog.load(said), catalog)
            if "python" in v.settings] == ["3.12"]  # and the default, now 3.13
