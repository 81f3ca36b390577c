"""Plan: params, requires, mirrors, hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, plan_of, problems
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import make_plan, mirrors
from envkit.render import render


def test_requires_expand_dependencies_first_each_once(write) -> None:
    write("""
        name: base
        description: b
        version: 1.0.0
        base: debian:bookworm-slim
        steps: [{run: echo base}]
    """, "base")
    for name in ("left", "right"):
        write(f"""
            name: {name}
            description: x
            version: 1.0.0
            requires: [base]
            steps: [{{run: echo {name}}}]
        """, name)
    top = write("""
        name: top
        description: diamond
        version: 1.0.0
        requires: [left, right]
        steps: [{run: echo top}]
    """, "top")
    plan = plan_of(top)
    assert plan.recipes == ["base", "left", "right", "top"]
    assert [s.step.script for s in plan.steps] == ["echo base", "echo left", "echo right",
                                                   "echo top"]
    assert plan.base == "debian:bookworm-slim"  # inherited from the dependency


def test_params_are_shared_through_requires_and_set_overrides(catalog: Catalog) -> None:
    plan = make_plan(catalog.find("paddle-cpu"), catalog, {"paddle": "3.2.2"})
    assert plan.params == {"cache": "/var/cache/envkit", "paddle": "3.2.2", "prefix": "/opt/envkit",
                           "python": "3.11"}
    pip = next(s.step for s in plan.steps if s.kind == "pip")
    assert pip.packages == ["paddlepaddle==3.2.2"]
    assert pip.python == "/opt/envkit/venv/bin/python"  # the venv of python-venv
    assert plan.checks[-2].version == "==3.2.2"


def test_typed_params_are_coerced(recipe) -> None:
    path = recipe("""
        params:
          jobs: {type: int, default: 2}
          debug: {type: bool, default: false}
        steps:
          - run: echo {{ jobs }} {{ debug }}
    """)
    plan = plan_of(path, {"jobs": "8", "debug": "yes"})
    assert plan.params["jobs"] == 8 and plan.params["debug"] is True
    assert plan.steps[0].step.script == "echo 8 true"


def test_string_param_pattern(recipe) -> None:
    path = recipe("""
        params:
          tag: {type: string, default: v1, pattern: "v[0-9]+"}
        steps: [{run: "echo {{ tag }}"}]
    """)
    assert problems(path, {"tag": "v2"}) == []
    [line] = problems(path, {"tag": "latest"})
    assert line.startswith("--set: tag: ") and "does not match" in line


def test_param_in_a_run_script_must_be_inert(recipe) -> None:
    """The author's quoting around {{ p }} is unknown, so only inert characters arrive."""
    path = recipe("""
        params:
          msg: {type: string, default: "a b; rm -rf /"}
          ver: {type: string, default: "3.11.7"}
        steps: [{run: "echo {{ ver }} \\"{{ msg }}\\""}]
    """)
    [line] = problems(path)
    assert line.endswith("steps[0].run: param 'msg' is 'a b; rm -rf /': in a run script a "
                         "param may hold only letters, digits and @%+=:,./_- (pass it through "
                         "env (MY_VAR: \"{{ msg }}\") and use \"$MY_VAR\")")
    assert plan_of(path, {"msg": "ok"}).steps[0].step.script == 'echo 3.11.7 "ok"'


def test_a_param_in_an_env_value_is_literal(recipe) -> None:
    path = recipe("""
        params:
          home: {type: string, default: "/opt/$HOME$$x"}
        env: {D: "{{ home }}/data", P: "${PATH}"}
    """)
    assert plan_of(path).steps[0].step.vars == {"D": "/opt/$$HOME$$$$x/data", "P": "${PATH}"}
    assert 'ENV D="/opt/\\$HOME\\$\\$x/data"' in render(plan_of(path), "dockerfile")


def test_pip_needs_a_venv(recipe) -> None:
    [line] = problems(recipe("steps: [{pip: [numpy]}]\n"))
    assert line.endswith("steps[0].pip: pip needs a venv step before it, or an explicit 'python'")


def test_two_recipes_with_one_name(write, tmp_path) -> None:
    write("name: python-venv\ndescription: mine\nversion: 1.0.0\nbase: debian:bookworm-slim\n",
          "python-venv")
    top = write("name: top\ndescription: t\nversion: 1.0.0\n"
                "requires: [python-venv, paddle-cpu]\n", "top")
    lines = problems(top)
    assert any("is already used under that name" in line for line in lines), lines


def test_base_override_and_its_grammar(catalog: Catalog) -> None:
    recipe = catalog.find("python-venv")
    assert make_plan(recipe, catalog, base="envkit/base:bookworm").base == "envkit/base:bookworm"
    with pytest.raises(EnvkitError) as exc:
        make_plan(recipe, catalog, base="bad image; rm -rf /")
    assert "not a Docker image reference" in str(exc.value)


@pytest.mark.parametrize("mirror, index", [
    ("default", "https://pypi.org/simple"),
    ("tuna", "https://pypi.tuna.tsinghua.edu.cn/simple"),
    ("aliyun", "https://mirrors.aliyun.com/pypi/simple"),
    ("ustc", "https://mirrors.ustc.edu.cn/pypi/simple"),
])
def test_mirror_profile_is_rendered_as_the_tools_settings(catalog: Catalog, mirror: str,
                                                          index: str) -> None:
    plan = make_plan(catalog.find("paddle-cpu"), catalog, mirror=mirror)
    docker, shell = render(plan, "dockerfile"), render(plan, "shell")
    assert f'ARG ENVKIT_MIRROR_PIP="{index}' in docker
    line = next(x for x in shell.splitlines() if x.startswith("export ENVKIT_MIRROR_PIP="))
    assert line.split("=", 1)[1].strip("'").split()[0] == index
    assert "ARG BASH_ENV=/usr/local/lib/envkit/helpers.sh" in docker
    # commands themselves name no mirror
    assert "--index-url" not in docker and "-i " not in docker


def test_every_tool_follows_the_profile_with_its_fallbacks_in_order() -> None:
    tuna = mirrors.get("tuna")
    assert tuna.candidates("pip") == [
        "https://pypi.tuna.tsinghua.edu.cn/simple", "https://mirrors.ustc.edu.cn/pypi/simple",
        "https://mirrors.aliyun.com/pypi/simple", "https://pypi.org/simple"]
    # upstream has no apt/conda/github mirror: '-' (the tool's default) ends the list
    assert tuna.candidates("apt") == ["http://mirrors.tuna.tsinghua.edu.cn",
                                      "http://mirrors.ustc.edu.cn", "http://mirrors.aliyun.com",
                                      "-"]
    assert tuna.candidates("github") == ["https://gitclone.com/github.com/", "-"]
    assert tuna.goproxy() == ("https://goproxy.cn|https://mirrors.aliyun.com/goproxy|"
                              "https://proxy.golang.org,direct")
    assert tuna.registries() == ["docker.m.daocloud.io"]
    default = mirrors.get(None)
    assert default.name == "default" and default.candidates("apt") == ["-"]
    assert dict(default.env())["GOPROXY"] == "https://proxy.golang.org,direct"


def test_a_broken_mirror_file_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "mirrors.yaml"
    path.write_text("a:\n  description: x\n  fallbacks: [b]\n  pip: not-a-url\n")
    with pytest.raises(EnvkitError) as exc:
        mirrors.profiles(path)
    text = str(exc.value)
    assert "mirrors.yaml:4:" in text and "not an http(s) URL" in text
    assert "mirrors.yaml:3:" in text and "unknown profile 'b'" in text


def test_unknown_mirror(catalog: Catalog) -> None:
    with pytest.raises(EnvkitError) as exc:
        make_plan(catalog.find("paddle-cpu"), catalog, mirror="tunaa")
    assert "unknown mirror profile 'tunaa' (did you mean 'tuna'?)" in str(exc.value)


def test_hash_follows_content(catalog: Catalog) -> None:
    recipe = catalog.find("paddle-cpu")
    a = make_plan(recipe, catalog)
    assert a.hash == make_plan(recipe, catalog).hash
    b = make_plan(recipe, catalog, {"paddle": "3.2.2"})
    assert a.hash != b.hash
    # the steps before the change keep their hash: a chain, so caches can reuse them
    assert [s.hash for s in a.steps[:3]] == [s.hash for s in b.steps[:3]]
    assert a.steps[3].hash != b.steps[3].hash
    assert make_plan(recipe, catalog, mirror="tuna").hash != a.hash


def test_copy_content_changes_the_hash(write, tmp_path) -> None:
    (tmp_path / "f.txt").write_text("one")
    path = write("""
        name: t
        description: c
        version: 1.0.0
        base: debian:bookworm-slim
        steps: [{copy: {src: f.txt, dest: /etc/f.txt}}]
    """)
    first = plan_of(path).hash
    (tmp_path / "f.txt").write_text("two")
    assert plan_of(path).hash != first


def test_catalog_recipe_by_path_outside_the_catalog(write) -> None:
    path = write("""
        name: mine
        description: my own, on top of the catalog's python-venv
        version: 1.0.0
        requires: [python-venv]
        steps: [{pip: [requests==2.32.3]}]
    """, "mine")
    plan = make_plan(Catalog().find(str(path)), Catalog())
    assert plan.recipes == ["python-venv", "mine"]
    assert (REPO / "recipes" / "mine.yaml").exists() is False


def test_numbers_in_env_and_cmake_options_keep_their_written_form(recipe) -> None:
    path = recipe("""
        env: {MODE: 0755, VERSION: 1.10, N: 3}
        steps:
          - cmake: {source: /src, options: {PERMS: 0755, ON_OFF: true}}
    """)
    plan = plan_of(path)
    assert plan.steps[0].step.vars == {"MODE": "0755", "VERSION": "1.10", "N": "3"}
    assert plan.steps[1].step.defines[-2:] == ["-DPERMS=0755", "-DON_OFF=ON"]


def test_unclosed_flow_list_names_where_it_opened(write) -> None:
    [line] = problems(write("name: [a, b\ndescription: x\n"))
    assert "(while parsing a flow sequence at line 1, column 7)" in line


def test_cmake_jobs_message(recipe) -> None:
    [line] = problems(recipe("steps: [{cmake: {source: /s, jobs: many}}]\n"))
    assert line.endswith("steps[0].cmake.jobs: expected 'auto', got 'many'")


def test_copy_refuses_links_out_of_the_folder_and_loops(write, tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "out").symlink_to("/etc/hostname")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    path = write("""
        name: t
        description: c
        version: 1.0.0
        base: debian:bookworm-slim
        steps:
          - copy: {src: d, dest: /opt/d}
          - copy: {src: loop, dest: /opt/l}
    """)
    lines = problems(path)
    assert len(lines) == 2, lines
    assert "steps[0].copy.src: d/out links outside the folder" in lines[0]
    assert "steps[1].copy.src: cannot read" in lines[1]


def test_validate_warns_when_slow_steps_follow_a_copy(recipe, tmp_path) -> None:
    from envkit.cli.validate import cache_order

    (tmp_path / "app.py").write_text("print('hi')\n")
    early = recipe("""\
        steps:
          - copy: {src: app.py, dest: /opt/app.py}
          - apt: [curl]
          - run: 'true'
          - venv: {path: /opt/v}
          - pip: [six]
    """)
    assert cache_order(plan_of(early)) == [
        "t: step 1 (copy app.py -> /opt/app.py) comes before 2 slow steps (apt, pip): each "
        "change to what it copies rebuilds them in Docker; put it after them unless they "
        "need it"]
    late = recipe("steps:\n  - apt: [curl]\n  - copy: {src: app.py, dest: /opt/app.py}\n",
                  name="late")
    assert cache_order(plan_of(late)) == []


def test_the_scripts_stamps_are_the_plans_step_hashes(catalog: Catalog) -> None:
    """One hash chain: the script stamps each step with its hash in the plan."""
    plan = make_plan(catalog.find("faiss-cpu"), catalog)
    text = render(plan, "shell")
    for ps in plan.steps:
        assert f"if envkit_begin {ps.number} {ps.hash} " in text
    assert len({ps.hash for ps in plan.steps}) == len(plan.steps)


def test_a_partials_edit_changes_its_steps_hash_and_every_later_one(
        catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from envkit import paths
    from envkit import plan as planmod

    before = make_plan(catalog.find("faiss-cpu"), catalog)
    copy = tmp_path / "templates"
    shutil.copytree(paths.templates_dir(), copy)
    (copy / "steps" / "pip.j2").write_text((copy / "steps" / "pip.j2").read_text() + "\n")
    monkeypatch.setattr(paths, "templates_dir", lambda: copy)
    after = make_plan(catalog.find("faiss-cpu"), catalog)
    first_pip = next(ps.number for ps in before.steps if ps.kind == "pip")
    for b, a in zip(before.steps, after.steps, strict=True):
        assert (b.hash == a.hash) == (b.number < first_pip), b.title
    assert before.hash != after.hash
    planmod._file_digest.cache_clear()
