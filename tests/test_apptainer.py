"""The Apptainer format: a definition file spython reads, whose sections run in the shells
Apptainer gives them (their bodies run here, for real, with sh and bash), linted, with no
secret or CA written in, and routed through render, render --out and validate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, plan_of, run_cli
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import apptainer, lint, render


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


def test_variants_share_their_lint(tmp_path: Path) -> None:
    catalog = Catalog()
    one, two = (render(make_plan(catalog.find("paddle-cpu"), catalog, {"prefix": "/opt/envkit"},
                                 mirror=m), "apptainer") for m in ("default", "tuna"))
    assert one != two
    assert lint.pieces("apptainer", one) == lint.pieces("apptainer", two)


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
