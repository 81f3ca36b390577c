"""The compatibility table: loading and its checks, pins checked against it (alone and in a
plan), values a ``cuda`` param brings, and steps that recipes share merged once."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import REPO, plan_of, problems
from envkit.diagnostics import Diagnostic, EnvkitError
from envkit.load import compat
from envkit.load.catalog import Catalog
from envkit.plan import Plan, make_plan, merge_shared
from envkit.steps import REGISTRY

SHA = "0123456789abcdef" * 4
TABLE = f"""\
cuda:
  "12.1":
    tag: cu121
    image: nvidia/cuda:12.1.1-cudnn8-devel-ubuntu22.04
    driver: ">=530.30.02"
  "12.4":
    tag: cu124
    image: nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04
    driver: ">=550.54.15"
    runfile: {{url: "https://cuda.example/cuda_12.4.1_linux.run", sha256: "{SHA}"}}
packages:
  torch:
    - {{version: "2.5.1", python: ">=3.9,<3.14", cuda: ["12.1", "12.4"],
       with: {{torchvision: "0.20.1"}}}}
    - {{version: "2.3.1", python: ">=3.8,<3.13", cuda: ["12.1"], with: {{torchvision: "0.18.1"}}}}
    - {{version: "2.0.1", python: ">=3.8,<3.12", cuda: ["12.1"], with: {{torchvision: "0.15.2"}}}}
  torchvision:
    - {{version: "0.20.1", python: ">=3.9,<3.13"}}
    - {{version: "0.18.1", python: ">=3.8,<3.13"}}
    - {{version: "0.15.2", python: ">=3.8,<3.12"}}
  Paddle_Paddle:
    - {{version: "3.3.1", python: ">=3.9,<3.14"}}
    - {{version: "2.6.2", python: ">=3.8,<3.13"}}
"""


def _load(tmp_path: Path, text: str, name: str = "compat.yaml") -> compat.Table:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return compat.load(path)


def _errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(EnvkitError) as err:
        _load(tmp_path, text)
    return [str(d) for d in err.value.diagnostics]


@pytest.fixture
def table(tmp_path: Path) -> compat.Table:
    return _load(tmp_path, TABLE, "table.yaml")


def check(table: compat.Table, *reqs: str, python: str | None = "3.11",
          cuda: str | None = None) -> list[Diagnostic]:
    pins = [compat.Pin(r, Diagnostic("t.yaml", i + 1, 9, f"steps[0].pip.packages[{i}]", ""))
            for i, r in enumerate(reqs)]
    return compat.check(table, pins, python, cuda)


# --- load -----------------------------------------------------------------------------------

def test_load_a_valid_table(table: compat.Table, tmp_path: Path) -> None:
    assert list(table.cuda) == ["12.1", "12.4"]
    assert list(table.packages) == ["torch", "torchvision", "paddle-paddle"]  # canonical names
    newest = table.packages["torch"][0]
    assert str(newest.version) == "2.5.1" and newest.cuda == ("12.1", "12.4")
    assert {k: str(v) for k, v in newest.goes_with.items()} == {"torchvision": "0.20.1"}
    assert table.packages["torchvision"][0].cuda is None  # not a CUDA build
    assert table.file.endswith("table.yaml")
    assert table.derived("12.4") == {
        "cuda_tag": "cu124", "cuda_image": "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04",
        "cuda_driver": ">=550.54.15",
        "cuda_runfile_url": "https://cuda.example/cuda_12.4.1_linux.run",
        "cuda_runfile_sha256": SHA}
    assert table.derived("12.1")["cuda_tag"] == "cu121"
    assert "cuda_runfile_url" not in table.derived("12.1")
    assert table.derived("99.9") == {}
    # a catalog without a table has an empty one
    empty = compat.load(tmp_path / "none.yaml")
    assert (empty.cuda, empty.packages) == ({}, {})


def test_schema_errors_name_their_line(tmp_path: Path) -> None:
    lines = _errors(tmp_path, """\
        cuda:
          "12.4":
            tag: cu124
            image: i
            runfile: {url: "https://x/y.run", sha256: "abc"}
          "12.1":
            tag: cuda121
            image: i
        packages:
          torch:
            - version: "2.5.1"
              python: ">=3.9"
              colour: red
        """)
    f = tmp_path / "compat.yaml"
    assert len(lines) == 3, lines
    assert any(ln.startswith(f"{f}:5:47: cuda.12.4.runfile.sha256: 'abc' does not match")
               for ln in lines)
    assert any(ln.startswith(f"{f}:7:10: cuda.12.1.tag: 'cuda121' does not match '^cu[0-9]+$'")
               for ln in lines)
    assert any(ln.startswith(f"{f}:11:7: packages.torch[0]:") and "'colour' was unexpected" in ln
               for ln in lines)


def test_unknown_top_level_key_and_missing_fields(tmp_path: Path) -> None:
    lines = _errors(tmp_path, """\
        pakages: {}
        cuda:
          "12.4": {tag: cu124}
        """)
    assert any("'pakages' was unexpected" in ln for ln in lines), lines
    assert any(":3:" in ln and "'image' is a required property" in ln for ln in lines), lines


def test_a_release_for_an_unlisted_cuda_is_an_error(tmp_path: Path) -> None:
    lines = _errors(tmp_path, """\
        cuda:
          "12.4": {tag: cu124, image: i}
        packages:
          torch:
            - version: "2.5.1"
              python: ">=3.9"
              cuda: ["12.4", "11.8"]
        """)
    f = tmp_path / "compat.yaml"
    assert lines == [f"{f}:7:22: packages.torch[0].cuda[1]: CUDA 11.8 is not under 'cuda:' in "
                     "compat.yaml"]


def test_invalid_version_or_specifier_is_an_error(tmp_path: Path) -> None:
    lines = _errors(tmp_path, """\
        packages:
          torch:
            - {version: "2.5.1", python: ">=3.9"}
            - {version: "not a version", python: ">=3.9"}
            - {version: "2.4.1", python: "=>3.9"}
        """)
    f = tmp_path / "compat.yaml"
    assert lines == [f"{f}:4:7: packages.torch[1]: Invalid version: 'not a version'",
                     f"{f}:5:7: packages.torch[2]: Invalid specifier: '=>3.9'"]


def test_the_shipped_table_loads_and_its_pairs_exist() -> None:
    table = compat.load(REPO / "recipes" / compat.FILE)
    assert {"paddlepaddle", "torch", "torchvision"} <= set(table.packages)
    for name, releases in table.packages.items():
        for release in releases:
            for other, version in release.goes_with.items():
                assert version in {r.version for r in table.packages.get(other, [])}, \
                    f"{name} {release.version} goes with {other} {version}, not in the table"
    for cuda, row in table.cuda.items():
        assert row["tag"] == "cu" + cuda.replace(".", ""), cuda


# --- check ----------------------------------------------------------------------------------

def test_an_exact_pin_that_exists(table: compat.Table) -> None:
    assert check(table, "torch==2.5.1") == []
    assert check(table, "torch==2.5.1", "torchvision==0.20.1", cuda="12.4") == []
    assert check(table, "paddle_paddle==3.3.1") == []  # names compare canonicalized


def test_a_pin_only_for_other_pythons(table: compat.Table) -> None:
    [d] = check(table, "torch==2.0.1", python="3.12")
    assert (d.file, d.line, d.path) == ("t.yaml", 1, "steps[0].pip.packages[0]")
    assert d.message.startswith("torch==2.0.1 does not exist for Python 3.12: it exists only "
                                "for Python ")
    assert "<3.12" in d.message and "CUDA 12.1" in d.message
    assert d.hint == "valid for Python 3.12: 2.5.1, 2.3.1 (see compat.yaml)"


def test_a_pin_not_in_the_table(table: compat.Table) -> None:
    [d] = check(table, "Paddle-Paddle==2.5.1")
    assert d.message == ("Paddle-Paddle==2.5.1 does not exist for Python 3.11: "
                         "no such release is known")
    assert d.hint == "valid for Python 3.11: 3.3.1, 2.6.2 (see compat.yaml)"


def test_a_range_is_fine_when_some_release_fits(table: compat.Table) -> None:
    assert check(table, "torch>=2.5") == []
    assert check(table, "torch>=2.0,<2.4", python="3.12") == []  # 2.3.1 fits
    assert check(table, "torch") == []
    [d] = check(table, "torch>=2.6")
    assert "no such release is known" in d.message


def test_cuda_filters_releases(table: compat.Table) -> None:
    [d] = check(table, "torch==2.3.1", cuda="12.4")
    assert d.message == ("torch==2.3.1 does not exist for Python 3.11 and CUDA 12.4: "
                         "it exists only for Python <3.13,>=3.8 with CUDA 12.1")
    assert d.hint == "valid for Python 3.11 and CUDA 12.4: 2.5.1 (see compat.yaml)"
    assert check(table, "torch==2.3.1", cuda="12.1") == []
    assert check(table, "torch==2.3.1", cuda=None) == []  # no cuda: not filtered
    assert check(table, "torchvision==0.18.1", cuda="12.4") == []  # not a CUDA build


def test_a_local_label_for_another_cuda(table: compat.Table) -> None:
    [d] = check(table, "torch==2.5.1+cu121", cuda="12.4")
    assert d.message == "torch==2.5.1+cu121 is a build for cu121, but cuda is 12.4 (cu124)"
    assert d.hint == "use the +cu124 build or choose another cuda"
    assert check(table, "torch==2.5.1+cu124", cuda="12.4") == []
    assert check(table, "torch==2.5.1+cu121", cuda=None) == []
    assert check(table, "torch==2.5.1+cpu", cuda="12.4") == []  # not a CUDA label
    [d] = check(table, "torch==2.0.1+cu121", python="3.12", cuda="12.1")  # label fits, python not
    assert "does not exist for Python 3.12 and CUDA 12.1" in d.message


def test_pairs_go_together(table: compat.Table) -> None:
    [d] = check(table, "torch==2.5.1", "torchvision==0.18.1")
    assert d.line == 2  # at the pin that does not fit
    assert d.message == "torchvision 0.18.1 does not go with torch 2.5.1"
    assert d.hint == "torch 2.5.1 goes with torchvision 0.20.1 (compat.yaml)"
    assert check(table, "torchvision==0.15.2", "torch==2.0.1") == []  # any order


def test_an_unpinned_partner_is_not_a_mismatch(table: compat.Table) -> None:
    assert check(table, "torch==2.3.1", "torchvision") == []
    assert check(table, "torch==2.3.1", "torchvision>=0.15") == []


def test_a_pin_for_another_python_by_marker_is_not_checked(table: compat.Table) -> None:
    assert check(table, "torch==2.0.1; python_version < '3.12'", python="3.12") == []


def test_packages_not_in_the_table_and_bad_requirements_are_ignored(table: compat.Table
                                                                    ) -> None:
    assert check(table, "numpy==0.0.1", "not a requirement !!", "faiss-cpu==9") == []
    assert check(compat.Table(), "torch==0.0.1") == []  # an empty table checks nothing


def test_python_as_a_full_version_or_absent(table: compat.Table) -> None:
    assert check(table, "torch==2.0.1", python="3.11.15") == []
    [d] = check(table, "torch==2.0.1", python="3.12.1")
    assert "for Python 3.12.1:" in d.message
    assert check(table, "torch==2.0.1", python=None) == []  # no python param: any
    [d] = check(table, "torch==9.0", python=None)
    assert d.message.startswith("torch==9.0 does not exist for any Python:")


# --- through make_plan ----------------------------------------------------------------------

CUDA_RECIPE = """\
params:
  python: {type: choice, values: ["3.10", "3.11", "3.12"], default: "3.11"}
  cuda: {type: choice, values: ["12.1", "12.4", "99.0"], default: "12.4"}
steps:
  - venv: {path: "{{ prefix }}/venv", python: "{{ python }}"}
  - name: torch for {{ cuda_tag }}
    pip:
      packages: ["torch==2.5.1"]
      index: "https://download.pytorch.org/whl/{{ cuda_tag }}"
"""


def _plan(path: Path, settings: dict[str, str] | None = None) -> Plan:
    catalog = Catalog(path.parent)  # its compat.yaml is the table
    return make_plan(catalog.load(path), catalog, settings)


def _plan_problems(path: Path, settings: dict[str, str] | None = None) -> list[str]:
    try:
        _plan(path, settings)
    except EnvkitError as exc:
        return [str(d) for d in exc.diagnostics]
    return []


@pytest.fixture
def cuda_recipe(recipe: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    (tmp_path / compat.FILE).write_text(TABLE)

    def _make(body: str = CUDA_RECIPE) -> Path:
        return recipe(body)

    return _make


def test_a_cuda_param_brings_its_tag(cuda_recipe) -> None:
    path = cuda_recipe()
    plan = _plan(path)
    pip = next(s for s in plan.steps if s.kind == "pip")
    assert pip.step.index == "https://download.pytorch.org/whl/cu124"
    assert pip.title == "torch for cu124"
    assert "cuda_tag" not in plan.params  # derived, not a param
    pip = next(s.step for s in _plan(path, {"cuda": "12.1"}).steps if s.kind == "pip")
    assert pip.index == "https://download.pytorch.org/whl/cu121"


def test_a_cuda_param_can_choose_the_base_image(write, tmp_path: Path) -> None:
    (tmp_path / compat.FILE).write_text(TABLE)
    path = write("""\
        name: t
        description: d
        version: 1.0.0
        base: "{{ cuda_image }}"
        params:
          cuda: {type: string, default: "12.1"}
        steps: [{run: "echo {{ cuda_tag }}"}]
        """)
    plan = _plan(path)
    assert plan.base == "nvidia/cuda:12.1.1-cudnn8-devel-ubuntu22.04"
    assert plan.steps[0].step.script == "echo cu121"


def test_an_unknown_cuda_lists_the_known_ones(cuda_recipe) -> None:
    lines = _plan_problems(cuda_recipe(), {"cuda": "99.0"})
    assert ("--set: cuda: CUDA 99.0 is not in the compatibility table "
            "(known: 12.1, 12.4 (compat.yaml))") in lines


def test_a_pin_without_its_cuda_fails_at_its_line(cuda_recipe) -> None:
    path = cuda_recipe(CUDA_RECIPE.replace("torch==2.5.1", "torch==2.3.1"))
    lines = _plan_problems(path)
    assert lines == [f"{path}:12:18: steps[1].pip.packages[0]: torch==2.3.1 does not exist for "
                     "Python 3.11 and CUDA 12.4: it exists only for Python <3.13,>=3.8 with CUDA "
                     "12.1 (valid for Python 3.11 and CUDA 12.4: 2.5.1 (see compat.yaml))"]
    assert _plan_problems(path, {"cuda": "12.1"}) == []
    # the python param takes part too
    path = cuda_recipe(CUDA_RECIPE.replace("torch==2.5.1", "torch==2.0.1"))
    assert _plan_problems(path, {"cuda": "12.1", "python": "3.11"}) == []
    [line] = _plan_problems(path, {"cuda": "12.1", "python": "3.12"})
    assert "torch==2.0.1 does not exist for Python 3.12 and CUDA 12.1" in line


def test_a_catalog_without_a_table_checks_no_pins(recipe) -> None:
    path = recipe("""\
        steps:
          - venv: {path: /opt/v}
          - pip: ["torch==0.0.1"]
        """)
    assert _plan_problems(path) == []


def test_paddle_2_5_1_on_python_venv_is_caught(recipe) -> None:
    path = recipe("""\
        requires: [python-venv]
        steps:
          - pip: ["paddlepaddle==2.5.1"]
        """)
    [line] = problems(path)  # the catalog's own table and python-venv's Python 3.11
    assert "paddlepaddle==2.5.1 does not exist for Python 3.11" in line
    valid = line.split("valid for Python 3.11: ", 1)[1]
    assert "3.3.1" in valid.split(", ")
    assert plan_of(recipe("""\
        requires: [python-venv]
        steps:
          - pip: ["paddlepaddle==3.3.1"]
        """, "ok")).name == "ok"


# --- merge_shared ---------------------------------------------------------------------------

def _chain(write, base_steps: str, top_steps: str) -> Path:
    """base (with a base image) and top, which requires it; each with the given steps."""

    def steps(text: str) -> str:
        return "steps:\n" + textwrap.indent(textwrap.dedent(text), "  ")

    write("name: base\ndescription: b\nversion: 1.0.0\nbase: debian:bookworm-slim\n"
          + steps(base_steps), "base")
    return write("name: top\ndescription: t\nversion: 1.0.0\nrequires: [base]\n"
                 + steps(top_steps), "top")


def _apt(plan: Plan) -> list[list[str]]:
    return [s.step.packages for s in plan.steps if s.kind == "apt"]


def test_apt_packages_two_recipes_share_are_installed_once(write) -> None:
    top = _chain(write, """\
        - apt: [libgomp1, zlib1g]
        """, """\
        - apt: [libgomp1]
        - run: echo top
        """)
    plan = plan_of(top)
    assert _apt(plan) == [["libgomp1", "zlib1g"]]  # the second step had nothing new
    assert [s.kind for s in plan.steps] == ["apt", "run"]


def test_apt_steps_keep_only_what_is_new(write) -> None:
    top = _chain(write, """\
        - apt: [libgomp1, zlib1g]
        """, """\
        - name: my packages
          apt: [libssl3, libgomp1, zlib1g, curl]
        """)
    plan = plan_of(top)
    apt = _apt(plan)
    assert apt == [["libgomp1", "zlib1g"], ["libssl3", "curl"]]
    everything = [p for step in apt for p in step]
    assert sorted(everything) == sorted({"libgomp1", "zlib1g", "libssl3", "curl"})  # no dupes
    assert plan.steps[1].title == "apt libssl3 curl"


def test_identical_steps_from_two_recipes_run_once(write) -> None:
    top = _chain(write, """\
        - venv: {path: /opt/v}
        - pip: [numpy==2.1.3]
        - run: echo shared
        """, """\
        - pip: [numpy==2.1.3]
        - run: echo shared
        - run: echo top
        """)
    plan = plan_of(top)
    # venv and pip steps merge; run steps may depend on their recipe's env, so they stay
    assert [(s.recipe, s.kind) for s in plan.steps] == [
        ("base", "venv"), ("base", "pip"), ("base", "run"), ("top", "run"), ("top", "run")]
    assert plan.steps[-1].step.script == "echo top"
    assert [s.number for s in plan.steps] == [1, 2, 3, 4, 5]


def test_identical_steps_within_one_recipe_are_kept(write) -> None:
    top = _chain(write, """\
        - run: echo again
        - run: echo again
        """, """\
        - run: echo top
        - run: echo top
        """)
    plan = plan_of(top)
    assert [(s.recipe, s.step.script) for s in plan.steps] == [
        ("base", "echo again"), ("base", "echo again"), ("top", "echo top"),
        ("top", "echo top")]


def test_steps_that_differ_in_a_field_are_not_merged(write) -> None:
    top = _chain(write, """\
        - run: {script: make, workdir: /a}
        """, """\
        - run: {script: make, workdir: /b}
        """)
    assert [s.step.workdir for s in plan_of(top).steps] == ["/a", "/b"]


def test_merge_shared_directly() -> None:
    apt, run = REGISTRY["apt"], REGISTRY["run"]
    steps = [("a", "t1", apt(packages=["x", "y"])), ("a", "r", run(script="echo")),
             ("b", "t2", apt(packages=["y", "z", "x"])), ("b", "r", run(script="echo")),
             ("c", "t3", apt(packages=["x"]))]
    out = merge_shared(steps)
    assert [(r, t) for r, t, _ in out] == [("a", "t1"), ("a", "r"), ("b", "apt z"), ("b", "r")]
    assert out[2][2].packages == ["z"]
    assert steps[2][2].packages == ["y", "z", "x"]  # the input step is not changed


def test_a_step_under_a_different_env_is_not_merged(write) -> None:
    write("""\
        name: base
        description: b
        version: 1.0.0
        base: debian:bookworm-slim
        env: {MODE: one}
        steps:
          - run: echo "$MODE"
        """, "base")
    top = write("""\
        name: top
        description: t
        version: 1.0.0
        requires: [base]
        env: {MODE: two}
        steps:
          - run: echo "$MODE"
        """, "top")
    assert [s.kind for s in plan_of(top).steps] == ["env", "run", "env", "run"]
