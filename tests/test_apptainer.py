"""The Apptainer format: a definition file spython reads, whose sections run in the shells
Apptainer gives them (their bodies run here, for real, with sh and bash), linted, with no
secret or CA written in, and routed through render, render --out and validate."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, plan_of, run_cli
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.plan.locking import Locker
from envkit.render import apptainer, lint, render, render_all
from envkit.render.quote import sh_posix_env, sh_words


def body(text: str, name: str) -> str:
    found = [b for n, _, _, b in apptainer.sections(text) if n == name]
    assert len(found) == 1, (name, text)
    return "\n".join(found[0]) + "\n"


def lint_text(tmp_path: Path, text: str) -> list[lint.Finding]:
    path = tmp_path / "envkit.def"
    path.write_text(text)
    return apptainer.lint_definitions([path])


def test_the_catalog_definition_reads_in_spython_and_lints_clean(tmp_path: Path) -> None:
    from spython.main.parse.parsers import SingularityParser

    catalog = Catalog()
    text = render(make_plan(catalog.find("paddle-cpu"), catalog), "apptainer")
    assert lint_text(tmp_path, text) == []
    recipe = SingularityParser(str(tmp_path / "envkit.def")).recipe
    (layer,) = recipe.values()
    assert layer.fromHeader == "debian:bookworm-slim"
    assert any("install.sh" in line for line in layer.install)  # %post
    assert "VIRTUAL_ENV=/opt/envkit/venv" in layer.environ
    assert "io.envkit.recipe paddle-cpu" in layer.labels
    assert [n for n, *_ in apptainer.sections(text)] == [
        "help", "files", "post", "environment", "test", "labels"]


def test_a_base_only_the_local_engine_has_bootstraps_from_the_docker_daemon(recipe) -> None:
    plan = plan_of(recipe("steps: [{run: 'true'}]\n"))
    assert render(plan, "apptainer").startswith("Bootstrap: docker\nFrom: debian:bookworm-slim\n")
    plan.image = "envkit/base:bookworm"  # what the backend resolves the base to
    assert render(plan, "apptainer").startswith(
        "Bootstrap: docker-daemon\nFrom: envkit/base:bookworm\n")


def test_render_out_writes_the_definition_and_what_its_files_section_copies(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_cli("invoke", "render", "--recipe", "python-venv", "--format", "apptainer",
            "--out", str(out))
    text = (out / "envkit.def").read_text()
    for line in body(text, "files").split("\n"):
        if line.strip():
            assert (out / line.split()[0]).exists(), line
    shell = run_cli("invoke", "render", "--recipe", "python-venv", "--format", "shell")
    assert (out / "install.sh").read_text() == shell.stdout  # the same plan's script
    assert (out / "files/envkit/manifest.json").is_file()
    assert (out / "files/envkit/helpers.sh").is_file()


def test_secrets_and_the_ca_are_paths_under_the_bound_folder_never_values(
        recipe, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "s3cr3t-value")
    plan = plan_of(recipe("""
        secrets:
          token: {env: TOKEN, required: true}
        steps: [{secrets: [token], run: 'test -n "$TOKEN"'}]
    """))
    text = render(plan, "apptainer")
    post = body(text, "post")
    assert "export ENVKIT_SECRET_TOKEN_FILE=/mnt/token" in post
    assert "export PIP_CERT=/mnt/envkit-ca" in post
    assert "s3cr3t" not in text + render(plan, "shell")


def _run_post_env(text: str, tmp_path: Path) -> Path:
    script = tmp_path / "env.sh"
    script.write_text(body(text, "environment"))
    return script


def test_environment_is_what_the_steps_export(recipe, tmp_path: Path) -> None:
    plan = plan_of(recipe("""
        steps:
          - env: {GREETING: "it's $$HOME, ${LANG}"}
          - venv: {path: /opt/v}
    """))
    script = _run_post_env(render(plan, "apptainer"), tmp_path)
    done = subprocess.run(
        ["sh", "-c", '. "$1" && printf "%s|%s|%s" "$GREETING" "$VIRTUAL_ENV" "$PATH"', "sh",
         str(script)], env={"PATH": "/usr/bin:/bin", "LANG": "C"}, capture_output=True,
        text=True, check=True)
    assert done.stdout == "it's $HOME, C|/opt/v|/opt/v/bin:/usr/bin:/bin"


@pytest.mark.parametrize(("args", "expected"), [([], "a b|$(id)|"), (["x", "y z"], "x|y z|")])
def test_runscript_runs_entrypoint_and_cmd_as_docker_does(
        recipe, tmp_path: Path, args: list[str], expected: str) -> None:
    plan = plan_of(recipe("""
        workdir: /
        entrypoint: [printf, "%s|"]
        cmd: ["a b", "$(id)"]
        steps: [{run: 'true'}]
    """))
    script = tmp_path / "run.sh"
    script.write_text(body(render(plan, "apptainer"), "runscript"))
    done = subprocess.run(["sh", str(script), *args], capture_output=True, text=True,
                          check=True, cwd=tmp_path)
    assert done.stdout == expected


def test_a_value_a_posix_shell_cannot_hold_is_refused_not_rendered(recipe) -> None:
    plan = plan_of(recipe("""
        cmd: ["line\\nbreak"]
        steps: [{run: 'true'}]
    """))
    with pytest.raises(EnvkitError, match="cannot render t: a /bin/sh word cannot hold"):
        render(plan, "apptainer")
    assert '["line\\nbreak"]' in render(plan, "dockerfile")  # exec form holds it


def test_a_runtime_section_gives_two_stages_as_the_dockerfile_has(tmp_path: Path) -> None:
    """faiss-src: every step in the build stage; the image is a runtime stage on the same
    base that copies what the Dockerfile's runtime stage copies, runs only the runtime apt
    step, and sets and checks only what the runtime image holds."""
    from spython.main.parse.parsers import SingularityParser

    catalog = Catalog()
    found = catalog.find("faiss-src")
    plan = make_plan(found, catalog, locker=Locker(catalog, found, strict=False))
    files = render_all(plan, ["apptainer"]).files
    text = files["envkit.def"]
    assert text.startswith("Bootstrap: docker\nFrom: debian:bookworm-slim\nStage: build\n\n")
    assert "\nBootstrap: docker\nFrom: debian:bookworm-slim\nStage: runtime\n\n" in text
    assert [n for n, *_ in apptainer.sections(text)] == [
        "files", "post", "help", "files", "post", "environment", "test", "labels"]
    (build_files, copied) = [b for n, _, _, b in apptainer.sections(text) if n == "files"]
    assert [o for n, o, _, _ in apptainer.sections(text) if n == "files"] == ["", "from build"]
    assert [line.split()[0] for line in build_files if line.strip()] == [
        "install.sh", "runtime.sh", "files"]
    assert [line.split() for line in copied if line.strip()] == [
        [p, p] for p in [*plan.keep, "/opt/envkit-build"]]
    dockerfile = files.get("Dockerfile") or render(plan, "dockerfile")
    for path in plan.keep:  # what Docker's runtime stage copies, no more
        assert f'COPY --from=build ["{path}", "{path}"]' in dockerfile
    # install.sh (the build stage's) is the host script; runtime.sh the runtime apt step alone
    assert files["install.sh"] == render(plan, "shell")
    runtime = files["runtime.sh"]
    assert "ENVKIT_TOTAL=1\n" in runtime and "# [1/1] faiss-src: runtime: apt " in runtime
    [step] = plan.runtime_steps
    assert f"envkit_apt_locked faiss-src {sh_words(step.step.locked.pins)}" in runtime
    assert "cmake" not in runtime.split("# [1/1]")[1]
    post = [b for n, _, _, b in apptainer.sections(text) if n == "post"]
    assert any('bash "$envkit_build/install.sh" --fresh' in ln for ln in post[0])
    assert any('bash "$envkit_build/runtime.sh" --fresh' in ln for ln in post[1])
    assert not any("install.sh" in ln for ln in post[1])
    assert body(text, "environment").strip("\n") == "\n".join(
        f"  export {k}={sh_posix_env(v)}" for k, v in plan.runtime_env)
    assert [k for k, _ in plan.runtime_env] == ["VIRTUAL_ENV", "PATH"]  # not CC, CXX
    test = body(text, "test")
    assert plan.build_checks and all(c.label() not in test for c in plan.build_checks)
    assert all(c.label().replace("'", "") in test.replace("'", "") for c in plan.checks)
    path = tmp_path / "envkit.def"
    path.write_text(text)
    assert apptainer.lint_definitions([path]) == []
    layers = SingularityParser(str(path)).recipe
    assert list(layers) == ["build", "runtime"]
    assert layers["runtime"].layer_files["build"][0] == f"{plan.keep[0]} {plan.keep[0]}"


def test_a_path_the_runtime_stage_copies_must_be_safe_for_its_shell(recipe) -> None:
    """Apptainer expands a %files path with /bin/sh: a kept path with a character the shell
    reads is refused for this format (the Dockerfile's COPY takes it as JSON)."""
    plan = plan_of(recipe("""
        steps: [{run: 'mkdir -p "/opt/a;b"'}]
        runtime: {keep: ["/opt/a;b"]}
    """))
    with pytest.raises(EnvkitError, match=r"cannot render t: Apptainer's %files reads its "
                       r"paths with /bin/sh: '/opt/a;b' has a character it would expand"):
        render(plan, "apptainer")
    assert 'COPY --from=build ["/opt/a;b", "/opt/a;b"]' in render(plan, "dockerfile")


def test_the_checks_judge_themselves_in_the_image(recipe, tmp_path: Path) -> None:
    """%test's body under bash, here: exit codes, output patterns and a version specifier
    (packaging from this venv) each pass and fail as verify judges them."""
    py = sys.executable
    import json as _json  # a module with a __version__
    plan = plan_of(recipe(f"""
        steps: [{{run: 'true'}}]
        verify:
          - command: {{argv: [sh, -c, "echo 'hello 42'"], output: 'hello \\d+$'}}
          - command: {{argv: [sh, -c, "exit 3"], exit_code: 3}}
          - python_import: {{module: json, version: "=={_json.__version__}", python: {py}}}
          - file_exists: /
          - {{name: wrong output, command: {{argv: [sh, -c, "echo nope"], output: '^yes'}}}}
          - {{name: wrong exit, command: {{argv: ["false"]}}}}
          - python_import: {{module: json, version: ">=999", python: {py}}}
    """))
    script = tmp_path / "test.sh"
    script.write_text(body(render(plan, "apptainer"), "test"))
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        "ok   sh -c echo 'hello 42'", "ok   sh -c exit 3",
        f"ok   import json=={_json.__version__}", "ok   exists /"]
    fails = done.stderr.splitlines()
    assert fails[0].startswith("FAIL wrong output: output does not match /^yes/: nope")
    assert fails[1].startswith("FAIL wrong exit: exit 1, expected 0")
    assert fails[2].startswith("FAIL import json>=999: exit 1, expected 0")
    assert f"json {_json.__version__}, expected >=999" in fails[2]


def test_the_linter_reads_each_running_section_in_its_shell(tmp_path: Path) -> None:
    catalog = Catalog()
    text = render(make_plan(catalog.find("python-venv"), catalog), "apptainer")
    lines = text.splitlines()
    at = lines.index("  set -eu")
    lines.insert(at + 1, '  echo "$unset_here"')  # SC2154 in %post
    found = lint_text(tmp_path, "\n".join(lines) + "\n")
    assert [(f.line, f.code) for f in found] == [(at + 2, "SC2154")]
    assert found[0].file == tmp_path / "envkit.def"
    # bash-only syntax: not in %post, which runs in sh; in %test, which says -c /bin/bash
    lines[at + 1] = "  echo $'x'"
    found = lint_text(tmp_path, "\n".join(lines) + "\n")
    assert [(f.line, f.code) for f in found] == [(at + 2, "SC3003")]
    test = lines.index("  envkit_failed=0")
    lines[at + 1] = "  true"
    lines.insert(test, "  echo $'x'")
    assert lint_text(tmp_path, "\n".join(lines) + "\n") == []


def test_the_linter_finds_what_apptainer_or_spython_would_misread(tmp_path: Path) -> None:
    catalog = Catalog()
    text = render(make_plan(catalog.find("python-venv"), catalog), "apptainer")
    found = lint_text(tmp_path, text.replace("  rm -rf", "%oops\n  rm -rf"))
    assert [(f.tool, f.code) for f in found] == [("apptainer", "section")]
    assert "'%oops' is no section Apptainer knows" in found[0].message
    found = lint_text(tmp_path, text.replace("From: ", "Base: "))
    assert [(f.tool, f.message) for f in found] == [("spython", "no From: header")]
    found = lint_text(tmp_path, text.replace("Bootstrap: docker", "Bootstrap: library"))
    assert [f.tool for f in found] == ["spython"] and "cannot read it" in found[0].message
    # spython takes a section's first line holding 'stage:' for a stage of its own
    found = lint_text(tmp_path, text.replace("%post\n", "%post\n  # this stage: one\n"))
    assert [(f.tool, f.message.split(":")[0]) for f in found] == [
        ("spython", "spython reads the stages ['# this  one'], the file has ['spython-base']")]


def test_variants_share_their_lint(tmp_path: Path) -> None:
    catalog = Catalog()
    one, two = (render(make_plan(catalog.find("paddle-cpu"), catalog, {"prefix": "/opt/envkit"},
                                 mirror=m), "apptainer") for m in ("default", "tuna"))
    assert one != two
    assert lint.pieces("apptainer", one) == lint.pieces("apptainer", two)


def test_validate_lints_each_section_once_and_finds_what_the_whole_file_lint_finds(
        tmp_path: Path) -> None:
    """validate cuts a definition into its structure and its running sections (lint.pieces):
    the %post two recipes share is one piece, and a finding lands on the same line of the
    whole text as lint_definitions, which lints the file as a whole, puts it."""
    catalog = Catalog()
    venv, faiss = (render(make_plan(catalog.find(n), catalog), "apptainer")
                   for n in ("python-venv", "faiss-cpu"))
    shared = ({p.key for p in lint.pieces("apptainer", venv)}
              & {p.key for p in lint.pieces("apptainer", faiss)})
    assert [p.kind for p in lint.pieces("apptainer", venv) if p.key in shared] == [
        "apptainer-section"]  # %post
    bad = venv.replace("  rm -rf -- \"$envkit_build\"\n",
                       "  rm -rf -- \"$envkit_build\"\n  echo $1 > `cat $envkit_build`\n"
                       ).replace("%test -c /bin/bash\n", "%test -c /bin/bash\n  cd $HOME\n")
    assert bad.count("\n") == venv.count("\n") + 2
    [whole] = [sorted((f.line, f.code) for f in lint_text(tmp_path, bad))]
    [found] = lint.lint_texts([("apptainer", bad)], use_cache=False)
    assert sorted((f.line, f.code) for f in found) == whole
    assert {code for _, code in whole} == {"SC2046", "SC2164"}  # in %post and in %test
    lines = bad.splitlines()
    assert all(lines[line - 1].strip().startswith(("echo $1", "cd $HOME")) for line, _ in whole)


def test_validate_lints_the_definition(tmp_path: Path) -> None:
    """jupyter's %runscript has several lines, which spython warns about on its own: not a
    line of that reaches the terminal, and validate's own output is whole."""
    env = {**os.environ, "ENVKIT_LINT_CACHE": "off"}
    done = subprocess.run([sys.executable, "-m", "invoke", "validate", "--recipe", "jupyter"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "%runscript" in render(plan_of(REPO / "recipes" / "jupyter.yaml"), "apptainer")
    assert done.stdout.splitlines()[-1].startswith("ok: 1 recipes, ")
    assert "WARNING" not in done.stdout + done.stderr


def test_the_whole_catalog_renders_for_apptainer(tmp_path: Path) -> None:
    catalog = Catalog()
    texts = [render(make_plan(catalog.find(n), catalog), "apptainer") for n in catalog.names()]
    assert all(t.startswith("Bootstrap: docker\n") for t in texts)
    paths = []
    for i, t in enumerate(texts):
        paths.append(tmp_path / f"{i}.def")
        paths[-1].write_text(t)
    assert apptainer.lint_definitions(paths) == []


# --- end to end: the sections run in the base, as `apptainer build` runs them ---------------


@pytest.mark.docker
def test_the_definition_builds_in_its_base_as_apptainer_runs_it(base: str, tmp_path: Path) -> None:
    """No Apptainer here: a container of the same base plays `apptainer build` (the %files
    copies, %post under sh, then %environment sourced and %test under bash), with the host's
    CA bundle in a folder bound over /mnt, as the definition asks."""
    from test_e2e import HOST_CA, small_recipe

    out = tmp_path / "out"
    done = run_cli("invoke", "render", "--recipe", str(small_recipe(tmp_path)), "--format",
                   "apptainer", "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = (out / "envkit.def").read_text()
    assert text.startswith("Bootstrap: docker\nFrom: debian:bookworm-slim\n")  # `base` made it
    play = tmp_path / "play"
    play.mkdir()
    copies = [line.split() for line in body(text, "files").splitlines() if line.strip()]
    (play / "files.sh").write_text("set -eu\n" + "".join(
        f'mkdir -p "$(dirname {dest})" && cp -r /def/{src} {dest}\n' for src, dest in copies))
    for name in ("post", "environment", "test"):
        (play / f"{name}.sh").write_text(body(text, name))
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "envkit-ca").write_bytes(Path(HOST_CA).read_bytes())
    name = f"envkit-apptainer-{os.getpid()}"
    run = subprocess.run(
        ["docker", "run", "--name", name, "-v", f"{out}:/def:ro", "-v", f"{play}:/play:ro",
         "-v", f"{secrets}:/mnt:ro", base, "bash", "-c",
         "sh /play/files.sh && sh -e /play/post.sh"
         " && bash -c '. /play/environment.sh && bash /play/test.sh'"
         " && test ! -e /opt/envkit-build && cat /usr/local/share/envkit/manifest.json"],
        capture_output=True, text=True)
    try:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert "ok   import six==1.17.0" in run.stdout
        assert '"recipe": "small"' in run.stdout
        # the CA was read from the bound folder, never copied into the container
        diff = subprocess.run(["docker", "diff", name], capture_output=True, text=True,
                              check=True).stdout
        assert "envkit-ca" not in diff and "/mnt" not in diff
        assert "/opt/envkit/venv" in diff
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def _stages(text: str) -> list[str]:
    """A definition's stages, each from its Bootstrap: line."""
    starts = [i for i, line in enumerate(text.splitlines(keepends=True))
              if line.startswith("Bootstrap:")]
    lines = text.splitlines(keepends=True)
    return ["".join(lines[a:b]) for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


@pytest.mark.docker
def test_two_stages_build_in_their_base_as_apptainer_runs_them(base: str, tmp_path: Path
                                                               ) -> None:
    """A recipe with `runtime:` played as `apptainer build` runs it: the build stage in one
    container of the base; each `%files from build` path taken out of it (links kept, as
    Apptainer's stage copy keeps them) into a second container of the base, which runs the
    runtime stage's %post (its apt step alone), then %environment and %test. What the build
    stage made and the runtime stage does not keep is not in the image."""
    from test_e2e import HOST_CA

    path = tmp_path / "twostage.yaml"
    path.write_text(
        "name: twostage\ndescription: a build stage and a runtime stage\nversion: 1.0.0\n"
        "base: debian:bookworm-slim\n"
        "steps:\n"
        "  - name: a toolchain the image leaves behind, and a program it keeps\n"
        "    run:\n"
        "      script: |\n"
        "        mkdir -p /opt/toolchain /opt/app/bin\n"
        "        echo cc > /opt/toolchain/cc\n"
        "        printf '#!/bin/sh\\necho built\\n' > /opt/app/bin/hello\n"
        "        chmod 755 /opt/app/bin/hello\n"
        "        ln -s hello /opt/app/bin/hi\n"
        "runtime:\n  apt: [libgomp1]\n  keep: [/opt/app]\n"
        "env:\n  APP_HOME: /opt/app\n"
        "verify:\n"
        "  - command: {argv: [/opt/app/bin/hi], output: '^built$'}\n"
        "  - command: {argv: [sh, -c, 'echo $APP_HOME'], output: '^/opt/app$'}\n")
    out = tmp_path / "out"
    done = run_cli("invoke", "render", "--recipe", str(path), "--format", "apptainer",
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    build, runtime = _stages((out / "envkit.def").read_text())
    assert build.startswith("Bootstrap: docker\nFrom: debian:bookworm-slim\nStage: build\n")
    play, stage, secrets = tmp_path / "play", tmp_path / "stage", tmp_path / "secrets"
    for folder in (play, stage, secrets):
        folder.mkdir()
    (secrets / "envkit-ca").write_bytes(Path(HOST_CA).read_bytes())
    copies = [line.split() for line in body(build, "files").splitlines() if line.strip()]
    (play / "files.sh").write_text("set -eu\n" + "".join(
        f'mkdir -p "$(dirname {dest})" && cp -r /def/{src} {dest}\n' for src, dest in copies))
    from_build = [line.split() for line in body(runtime, "files").splitlines() if line.strip()]
    assert [o for n, o, _, _ in apptainer.sections(runtime) if n == "files"] == ["from build"]
    assert from_build == [["/opt/app", "/opt/app"], ["/opt/envkit-build", "/opt/envkit-build"]]
    (play / "stage.sh").write_text("set -eu\n" + "".join(
        f'mkdir -p "$(dirname {dest})" && cp -a /stage/{i} {dest}\n'
        for i, (_, dest) in enumerate(from_build)))
    (play / "post1.sh").write_text(body(build, "post"))
    for name in ("post", "environment", "test"):
        (play / f"{name}.sh").write_text(body(runtime, name))
    names = [f"envkit-apptainer-{stage_}-{os.getpid()}" for stage_ in ("build", "runtime")]
    mounts = ["-v", f"{out}:/def:ro", "-v", f"{play}:/play:ro", "-v", f"{secrets}:/mnt:ro"]
    try:
        run = subprocess.run(["docker", "run", "--name", names[0], *mounts, base, "bash", "-c",
                              "sh /play/files.sh && sh -e /play/post1.sh"],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        for i, (src, _) in enumerate(from_build):  # docker cp keeps the links inside
            subprocess.run(["docker", "cp", f"{names[0]}:{src}", str(stage / str(i))],
                           check=True, capture_output=True)
        run = subprocess.run(
            ["docker", "run", "--name", names[1], "-v", f"{play}:/play:ro",
             "-v", f"{stage}:/stage:ro", "-v", f"{secrets}:/mnt:ro", base, "bash", "-c",
             "sh /play/stage.sh && sh -e /play/post.sh"
             " && bash -c '. /play/environment.sh && bash /play/test.sh'"
             " && test -L /opt/app/bin/hi && test ! -e /opt/toolchain"
             " && test ! -e /opt/envkit-build && dpkg-query -W libgomp1"
             " && cat /usr/local/share/envkit/manifest.json"],
            capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert run.stdout.count("ok   ") == 2 and "FAIL" not in run.stdout + run.stderr
        assert re.search(r"^libgomp1(:amd64)?\t", run.stdout, re.M), run.stdout[-2000:]
        assert '"recipe": "twostage"' in run.stdout
        assert "[envkit] step 1/1: twostage: runtime: apt libgomp1" in run.stderr  # runtime.sh
        assert "toolchain" not in run.stderr  # the build stage's step did not run again
    finally:
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True)
