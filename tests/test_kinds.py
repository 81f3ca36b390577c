"""Step kinds run for real: rendered shell scripts executed by bash against local
servers and repositories (download over HTTP on loopback, git from a local repo,
cmake on a tiny project, venv with this host's Python)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import FlakyServer, git, make_repo, plan_of, problems
from envkit.render import render
from envkit.steps import REGISTRY


def run_script(path: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    script = tmp / "install.sh"
    script.write_text(render(plan_of(path), "shell"))
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def server(flaky: FlakyServer) -> tuple[str, Path]:
    """A local HTTP server (one that never fails on purpose) and the folder it serves."""
    return flaky.url, flaky.root


def _tarball() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"hello from the archive\n"
        info = tarfile.TarInfo("pkg-1.0/README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_every_kind_has_a_partial() -> None:
    templates = Path(__file__).resolve().parents[1] / "templates" / "steps"
    assert sorted(p.stem for p in templates.glob("*.j2")) == sorted(REGISTRY)


def test_download_checks_sha256_then_extracts(recipe, server, tmp_path: Path) -> None:
    url, root = server
    blob = _tarball()
    (root / "pkg.tar.gz").write_bytes(blob)
    path = recipe(f"""
        steps:
          - download:
              url: {url}/pkg.tar.gz
              sha256: {hashlib.sha256(blob).hexdigest()}
              dest: {tmp_path}/dl/pkg.tar.gz
              extract: {tmp_path}/src
              strip_components: 1
    """)
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "src" / "README").read_text() == "hello from the archive\n"


def test_download_with_a_wrong_checksum_stops_and_leaves_nothing(recipe, server,
                                                                 tmp_path: Path) -> None:
    url, root = server
    (root / "pkg.tar.gz").write_bytes(_tarball())
    wrong = "0" * 64
    path = recipe(f"""
        steps:
          - download: {{url: "{url}/pkg.tar.gz", sha256: "{wrong}", dest: "{tmp_path}/dl/p.tgz"}}
          - run: touch {tmp_path}/after
    """)
    done = run_script(path, tmp_path)
    assert done.returncode != 0
    actual = hashlib.sha256((root / "pkg.tar.gz").read_bytes()).hexdigest()
    assert f"expected {wrong}, got {actual}" in done.stderr
    assert not list((tmp_path / "dl").iterdir())  # neither p.tgz nor p.tgz.part
    assert not (tmp_path / "after").exists()


def test_download_from_an_unreachable_server_fails(recipe, tmp_path: Path) -> None:
    path = recipe(f"""
        steps:
          - download: {{url: "http://127.0.0.1:9/x.tgz", sha256: "{'a' * 64}",
                        dest: "{tmp_path}/x.tgz"}}
    """)
    done = run_script(path, tmp_path)
    assert done.returncode != 0 and "step 1/1 failed" in done.stderr



@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    src = tmp_path / "upstream"
    first = make_repo(src)
    git("tag", "v1", cwd=src)
    (src / "f").write_text("v2\n")
    git("commit", "-qam", "two", cwd=src)
    return src, first, git("rev-parse", "HEAD", cwd=src)


@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
def test_git_checks_out_the_ref_and_checks_the_commit(recipe, repo, tmp_path: Path) -> None:
    src, first, _ = repo
    path = recipe(f"""
        steps:
          - git: {{url: "file://{src}", ref: v1, dest: "{tmp_path}/co", commit: "{first}"}}
    """)
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "co" / "f").read_text() == "v1\n"


@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
def test_git_commit_mismatch_stops_with_both_hashes(recipe, repo, tmp_path: Path) -> None:
    src, first, second = repo
    path = recipe(f"""
        steps:
          - git: {{url: "file://{src}", ref: main, dest: "{tmp_path}/co", commit: "{first}"}}
    """)
    done = run_script(path, tmp_path)
    assert done.returncode != 0
    assert f"expected {first}, got {second}" in done.stderr


@pytest.mark.skipif(not shutil.which("cmake") or not shutil.which("cc"),
                    reason="cmake or a C compiler missing")
def test_cmake_configures_builds_and_installs(recipe, tmp_path: Path) -> None:
    src = tmp_path / "proj"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.10)\nproject(hello C)\n"
        "add_executable(hello hello.c)\n"
        'file(WRITE "${CMAKE_BINARY_DIR}/greeting.txt" "${GREETING}")\n'
        "install(TARGETS hello)\n"
        'install(FILES "${CMAKE_BINARY_DIR}/greeting.txt" DESTINATION share)\n')
    (src / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    greeting = f"hi there && $(touch {tmp_path}/PWNED) `id` 'q' \\"
    as_yaml = json.dumps(greeting)  # a JSON string is a YAML double-quoted scalar
    path = recipe(f"""
        steps:
          - cmake:
              source: {src}
              install_prefix: {tmp_path}/inst
              jobs: 2
              options: {{GREETING: {as_yaml}, FLAG: true}}
    """)
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    out = subprocess.run([str(tmp_path / "inst" / "bin" / "hello")], capture_output=True,
                         text=True).stdout
    assert out == "hi\n"
    assert (tmp_path / "inst" / "share" / "greeting.txt").read_text() == greeting
    assert "-DFLAG=ON" in render(plan_of(path), "shell")
    assert not (tmp_path / "PWNED").exists()


def test_venv_becomes_the_active_python(recipe, tmp_path: Path) -> None:
    path = recipe(f"""
        steps:
          - venv: {{path: "{tmp_path}/venv", python: python3}}
          - run: python -c 'import sys; print(sys.prefix)' > {tmp_path}/prefix
    """)
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "prefix").read_text().strip() == f"{tmp_path}/venv"


def test_pip_and_apt_render_as_expected(recipe) -> None:
    path = recipe("""
        steps:
          - apt: [curl]
          - pip:
              python: python3
              packages: ["numpy>=2,<3", requests]
              index: https://example.org/simple
              extra_index: [https://example.com/simple]
              options: [--no-deps]
    """)
    text = render(plan_of(path), "shell")
    assert "\n  envkit_apt_get install -y --no-install-recommends curl\n" in text
    assert ("envkit_uv_pip python3 install --default-index https://example.org/simple "
            "--extra-index-url https://example.com/simple --index-strategy=unsafe-best-match "
            "--no-deps 'numpy>=2,<3' requests" in text)
    # with installer: pip, pip's own spelling
    pip = recipe("""
        steps:
          - pip:
              python: python3
              installer: pip
              packages: [requests]
              index: https://example.org/simple
              extra_index: [https://example.com/simple]
    """, name="u")
    assert ("python3 -m pip install --no-input --index-url https://example.org/simple "
            "--extra-index-url https://example.com/simple requests"
            in render(plan_of(pip), "shell"))


@pytest.mark.skipif(not shutil.which("git"), reason="git not installed")
def test_git_checks_out_a_branch_that_is_not_the_default(recipe, repo,
                                                         tmp_path: Path) -> None:
    src, first, _ = repo
    git("checkout", "-q", "-b", "dev", first, cwd=src)
    (src / "f").write_text("dev\n")
    git("commit", "-qam", "dev", cwd=src)
    dev = git("rev-parse", "HEAD", cwd=src)
    git("checkout", "-q", "main", cwd=src)
    path = recipe(f"""
        steps:
          - git: {{url: "file://{src}", ref: dev, dest: "{tmp_path}/co", commit: "{dev}"}}
          - git: {{url: "file://{src}", ref: "{first}", dest: "{tmp_path}/co2"}}
    """)
    done = run_script(path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "co" / "f").read_text() == "dev\n"
    assert (tmp_path / "co2" / "f").read_text() == "v1\n"


def test_a_branch_or_tag_without_its_commit_is_refused(recipe) -> None:
    path = recipe("""\
        steps:
          - git: {url: "https://example.com/r.git", ref: v1.0, dest: /src}
    """)
    assert problems(path) == [
        f"{path}:6:50: steps[0].git.ref: 'v1.0' is a branch or tag, and those move: pin the "
        "commit it must be at with 'commit' (40 hex digits: git rev-parse v1.0)"]


def test_a_commit_as_ref_must_agree_with_commit(recipe) -> None:
    a, b = "a" * 40, "b" * 40
    path = recipe(f"""\
        steps:
          - git: {{url: "https://example.com/r.git", ref: "{a}", commit: "{b}", dest: /src}}
    """)
    assert problems(path) == [
        f"{path}:6:102: steps[0].git.commit: ref is the commit {a}; 'commit' says {b}"]


def test_a_failing_run_step_is_reported_once(recipe, tmp_path: Path) -> None:
    done = run_script(recipe("steps: [{run: 'false'}]\n"), tmp_path)
    assert done.returncode != 0 and done.stderr.count("failed") == 1, done.stderr
