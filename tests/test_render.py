"""Rendering: golden outputs for the catalog, determinism, linters, and the templates' quoting."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, plan_of
from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import FORMATS, lint, render, write_outputs

GOLDEN = Path(__file__).parent / "golden"
CATALOG = ["python-venv", "paddle-cpu", "faiss-cpu", "pytorch-cpu"]
SUFFIX = {"shell": "sh", "dockerfile": "Dockerfile", "apptainer": "def"}


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("name", CATALOG)
def test_golden(name: str, fmt: str) -> None:
    """The whole rendered file; ENVKIT_UPDATE_GOLDEN=1 rewrites the expected files."""
    catalog = Catalog()
    text = render(make_plan(catalog.find(name), catalog), fmt)
    helpers = (REPO / "src/envkit/data/helpers.sh").read_text().rstrip("\n")
    if fmt == "shell":  # inlined whole: the golden names it instead of repeating it
        assert text.count(helpers) == 1
        text = text.replace(helpers, "# (src/envkit/data/helpers.sh, inlined whole)")
    expected = GOLDEN / f"{name}.{SUFFIX[fmt]}"
    if os.environ.get("ENVKIT_UPDATE_GOLDEN"):
        expected.write_text(text)
    assert text == expected.read_text()


def test_deterministic_across_hash_seeds(tmp_path: Path) -> None:
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        out = tmp_path / seed
        subprocess.run(
            [sys.executable, "-m", "invoke", "render", "--recipe", "paddle-cpu",
             "--set", "paddle=3.2.2", "--mirror", "tuna", "--out", str(out)],
            cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed}, check=True,
            capture_output=True)
        outputs.add(((out / "Dockerfile").read_bytes(), (out / "install.sh").read_bytes()))
    assert len(outputs) == 1


def test_same_output_from_any_working_directory(tmp_path: Path) -> None:
    here = render(plan_of(REPO / "recipes" / "faiss-cpu.yaml"), "dockerfile")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        there = render(plan_of(REPO / "recipes" / "faiss-cpu.yaml"), "dockerfile")
    finally:
        os.chdir(cwd)
    assert here == there


def test_rendered_catalog_passes_the_real_linters(tmp_path: Path) -> None:
    catalog = Catalog()
    files: dict[str, list[Path]] = {fmt: [] for fmt in FORMATS}
    for name in CATALOG:
        plan = make_plan(catalog.find(name), catalog)
        for fmt in FORMATS:
            path = tmp_path / f"{name}.{SUFFIX[fmt]}"
            path.write_text(render(plan, fmt))
            files[fmt].append(path)
    assert lint.lint(files["shell"], files["dockerfile"]) == []
    (_, (apptainer_linter,)) = lint.LINTERS["apptainer"]
    assert callable(apptainer_linter) and apptainer_linter(files["apptainer"]) == []


def test_linters_do_find_problems(tmp_path: Path) -> None:
    """The lint wiring is live: a bad script and a bad Dockerfile are reported."""
    bad_sh = tmp_path / "bad.sh"
    bad_sh.write_text("#!/usr/bin/env bash\nrm -rf $1/*\nif then\n")
    bad_df = tmp_path / "Dockerfile"
    bad_df.write_text("FROM debian:bookworm\nRUN cd /tmp && apt-get install curl\n")
    found = lint.lint([bad_sh], [bad_df])
    tools = {f.tool for f in found}
    assert {"bash -n", "shellcheck", "hadolint"} <= tools, found


def test_every_template_expression_is_quoted() -> None:
    """Each {{ }} in templates/ ends in a quoting filter, calls a partial's macro or marks
    where a step begins (a mark render takes out: render.stepmap)."""
    allowed = {"sh", "sh_cmd", "sh_words", "sh_env", "df_str", "df_env", "df_json", "df_run",
               "df_mounts", "df_env_pairs", "df_port", "comment", "ident", "image", "int", "block",
               "rendered", "sh_posix", "sh_posix_words", "sh_posix_env"}
    bad = []
    for path in sorted((REPO / "templates").rglob("*.j2")):
        text = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)  # comments
        for expr in re.findall(r"\{\{(.*?)\}\}", text, re.S):
            expr = expr.strip()
            last = re.search(r"\|\s*(\w+)(\([^()]*\))?\s*$", expr)
            macro_call = re.fullmatch(
                r"([mk]\.)?\w+\(s(, \w+)?\)(\|indent\(\d+, true\))?|[mk]\.\w+\(.*\)", expr)
            step_mark = re.fullmatch(r"step\((0|ps\.number)\)", expr)
            if (last and last.group(1) in allowed) or macro_call or step_mark:
                continue
            bad.append(f"{path.name}: {{{{ {expr} }}}}")
    assert bad == []


def test_dockerfile_shape() -> None:
    text = render(plan_of(REPO / "recipes" / "paddle-cpu.yaml"), "dockerfile")
    lines = text.splitlines()
    assert lines[2] == "FROM debian:bookworm-slim"
    assert lines[3] == 'SHELL ["/bin/bash", "-o", "pipefail", "-c"]'
    # one RUN per command-running step, between envkit's records of the base and of what
    # the image holds; labels after the last RUN
    runs = [line for line in lines if line.startswith("RUN ")]
    assert len(runs) == 4 + 2
    assert runs[0] == "RUN envkit_record_base"
    assert runs[-1] == "RUN envkit_record_installed /opt/envkit/venv/bin/python"
    assert text.index("LABEL ") > text.rindex("\nRUN ")
    for label in ("org.opencontainers.image.title", "org.opencontainers.image.version",
                  "org.opencontainers.image.description", "io.envkit.recipe", "io.envkit.hash"):
        assert f"{label}=" in text
    # apt lists and the pip cache live in BuildKit cache mounts, never in a layer
    assert "--mount=type=cache,target=/var/lib/apt,sharing=locked" in text
    assert "--mount=type=cache,target=/root/.cache/pip,sharing=locked" in text
    assert "--mount=type=cache,target=/root/.cache/uv,sharing=locked" in text


def test_shell_script_runs_and_logs_each_step(recipe, tmp_path: Path) -> None:
    path = recipe("""
        env:
          GREETING: hello
        steps:
          - name: first
            run: echo "$GREETING" > "$OUT/one"
          - env: {SECOND: "${GREETING} again"}
          - name: third
            run: echo "$SECOND" > "$OUT/two"
    """)
    script = tmp_path / "install.sh"
    script.write_text(render(plan_of(path), "shell"))
    done = subprocess.run(["bash", str(script)], env={**os.environ, "OUT": str(tmp_path)},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "one").read_text() == "hello\n"
    assert (tmp_path / "two").read_text() == "hello again\n"
    assert "[envkit] step 2/4: t: first" in done.stderr
    assert re.search(r"\[envkit\] step 4/4 done in \d+s", done.stderr)


def test_shell_script_stops_at_a_failing_step(recipe, tmp_path: Path) -> None:
    path = recipe("""
        steps:
          - {name: ok, run: "touch \\"$OUT/a\\""}
          - {name: boom, run: "false"}
          - {name: never, run: "touch \\"$OUT/c\\""}
    """)
    script = tmp_path / "install.sh"
    script.write_text(render(plan_of(path), "shell"))
    done = subprocess.run(["bash", str(script)], env={**os.environ, "OUT": str(tmp_path)},
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert (tmp_path / "a").exists() and not (tmp_path / "c").exists()
    assert "step 2/3 failed" in done.stderr and "t: boom" in done.stderr


def test_write_outputs_is_atomic_and_copies_files(write, tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.ini").write_text("[x]\n")
    path = write("""
        name: t
        description: copies
        version: 1.0.0
        base: debian:bookworm-slim
        steps:
          - copy: {src: conf, dest: /etc/app}
    """)
    out = tmp_path / "out"
    written = write_outputs(plan_of(path), list(FORMATS), out)
    assert sorted(p.name for p in out.iterdir()) == ["Dockerfile", "envkit.def", "files",
                                                     "install.sh"]
    assert (out / "files" / "t" / "conf" / "app.ini").read_text() == "[x]\n"
    assert not [p for p in out.rglob(".*tmp")]
    assert out / "install.sh" in written
    assert 'COPY ["files/t/conf", "/etc/app"]' in (out / "Dockerfile").read_text()
    # the shell script copies from files/ next to itself
    dest = tmp_path / "dest"
    text = (out / "install.sh").read_text().replace("/etc/app", str(dest))
    (out / "install.sh").write_text(text)
    subprocess.run(["bash", str(out / "install.sh")], check=True, capture_output=True)
    assert (dest / "app.ini").read_text() == "[x]\n"


# --- the output-format registry ---------------------------------------------------------------


def test_every_format_has_its_template_and_linters_and_a_file_of_its_own() -> None:
    from envkit import paths

    assert list(FORMATS) == ["shell", "dockerfile", "apptainer"]
    for fmt in FORMATS.values():
        assert (paths.templates_dir() / fmt.template).is_file(), fmt.name
        assert fmt.lint_kind in lint.LINTERS, fmt.name
    assert len({f.filename for f in FORMATS.values()}) == len(FORMATS)


def test_a_format_is_registered_once() -> None:
    from envkit.render import output_format

    with pytest.raises(ValueError, match="registered twice"):
        output_format(FORMATS["shell"])


def test_lint_refuses_a_kind_it_has_no_linters_for() -> None:
    with pytest.raises(ValueError, match="no linters for nix"):
        lint.lint_texts([("nix", "{ }\n")], use_cache=False)


def test_a_new_format_is_one_registry_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Render, render --out (its file, its mode, its companions) and the unknown-format hint
    all follow an entry added to the registry; nothing else names the formats."""
    from conftest import run_cli
    from envkit.render import OutputFormat, check_format

    extra = OutputFormat("second-shell", "script.sh.j2", "again.sh", lint.SHELL,
                         "the script once more", mode=0o700,
                         companions=lambda plan: {"files/again.txt": plan.name + "\n"})
    monkeypatch.setitem(FORMATS, extra.name, extra)
    plan = plan_of(REPO / "recipes" / "python-venv.yaml")
    assert render(plan, "second-shell") == render(plan, "shell")
    out = tmp_path / "out"
    written = write_outputs(plan, ["second-shell"], out)
    assert {p.relative_to(out).as_posix() for p in written} >= {"again.sh", "files/again.txt"}
    assert (out / "again.sh").stat().st_mode & 0o777 == 0o700
    assert (out / "files" / "again.txt").read_text() == "python-venv\n"
    with pytest.raises(Exception) as caught:
        check_format("nix")
    assert "shell or dockerfile or apptainer or second-shell" in str(caught.value.diagnostics[0])
    done = run_cli("invoke", "render", "--recipe", "python-venv", "--out", str(tmp_path / "all"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "all" / "again.sh").is_file()
