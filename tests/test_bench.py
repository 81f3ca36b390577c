"""Benchmarks, on demand only: python -m pytest -m bench -n 0 tests/test_bench.py
(pytest-benchmark turns itself off under xdist); tests/benchmark.py prints paired ratios.

They measure; they assert nothing about time (the machine is shared and noisy).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ENVKIT, REPO
from envkit.cli.validate import validate
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import FORMATS, render
from test_hostile import make_corpus

pytestmark = pytest.mark.bench


def test_bench_plan_and_render_in_process(benchmark) -> None:
    def once() -> str:
        catalog = Catalog()
        return render(make_plan(catalog.find("paddle-cpu"), catalog), "dockerfile")

    assert "FROM" in benchmark(once)


def test_bench_render_from_the_cli(benchmark) -> None:
    argv = [sys.executable, "-m", "invoke", "render", "--recipe", "paddle-cpu"]
    benchmark.pedantic(lambda: subprocess.run(argv, cwd=REPO, check=True, capture_output=True),
                       rounds=7, iterations=1)


def test_bench_validate_catalog(benchmark) -> None:
    report = benchmark.pedantic(validate, rounds=5, iterations=1)
    assert report.ok


def test_bench_hostile_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each file of tests/test_hostile.py's corpus: seconds through the CLI (validate and
    render --out) and in-process (load, plan, render), as a table. The requirement is < 2 s."""
    rows = []
    for case in make_corpus(tmp_path / "files", tmp_path / "ran"):
        row = [case.name]
        for args in (["validate", "--recipe", str(case.path)],
                     ["render", "--recipe", str(case.path), "--out", str(tmp_path / "out")]):
            started = time.perf_counter()
            subprocess.run([ENVKIT, *args], cwd=REPO, capture_output=True, timeout=60,
                           check=False)
            row.append(time.perf_counter() - started)
            shutil.rmtree(tmp_path / "out", ignore_errors=True)
        started = time.perf_counter()
        try:
            catalog = Catalog()
            plan = make_plan(catalog.find(str(case.path)), catalog)
            for fmt in FORMATS:
                render(plan, fmt)
        except EnvkitError:
            pass
        row.append(time.perf_counter() - started)
        rows.append(row)
    with capsys.disabled():
        print(f"\n{'file':<28} {'validate':>9} {'render':>9} {'in-proc':>9}")
        for name, *times in sorted(rows, key=lambda r: -max(r[1:])):
            print(f"{name:<28}" + "".join(f" {t:9.3f}" for t in times))
        for i, label in enumerate(["validate", "render", "in-process"], start=1):
            column = [r[i] for r in rows]
            print(f"{label}: max {max(column):.3f}s, median {statistics.median(column):.3f}s "
                  f"over {len(column)} files")


def test_bench_valid_recipes_at_the_limits(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Valid recipes just under the node limit: render through the CLI and in-process.
    (validate lints every render with shellcheck and hadolint: minutes at this size.)"""
    header = "name: {}\ndescription: d\nversion: 1.0.0\nbase: debian:bookworm-slim\nsteps:\n"
    files = {"1600-run-steps": "".join(f"  - run: echo {i}\n" for i in range(1600)),
             "2300-aliased-steps": "  - &r {run: echo hi}\n" + "  - *r\n" * 2300}
    with capsys.disabled():
        print(f"\n{'file':<28} {'render':>9} {'in-proc':>9}")
    for name, body in files.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(header.format(name) + body)
        started = time.perf_counter()
        subprocess.run([ENVKIT, "render", "--recipe", str(path), "--out", str(tmp_path / "o")],
                       cwd=REPO, capture_output=True, timeout=120, check=True)
        cli = time.perf_counter() - started
        started = time.perf_counter()
        catalog = Catalog()
        plan = make_plan(catalog.find(str(path)), catalog)
        for fmt in FORMATS:
            render(plan, fmt)
        with capsys.disabled():
            print(f"{name:<28} {cli:9.3f} {time.perf_counter() - started:9.3f}")


BENCH_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.parametrize("name", ["paddle-full", "transformers"])
def test_bench_uv_against_pip(name: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """A recipe's pip steps into a fresh venv, each way with an empty cache, in one run:
    pip resolving and installing as envkit did before; uv resolving and installing
    (--no-lock); uv installing the locked set (--require-hashes --no-deps), as builds do.
    The ratios go into README.md; the machine is shared, so they are one run's."""
    import os

    from envkit.plan import locking
    from envkit.plan import resolver as resolve

    catalog = Catalog()
    recipe = catalog.find(name)
    plan = make_plan(recipe, catalog, locker=locking.Locker(catalog, recipe))
    steps = [ps for ps in plan.steps if ps.kind == "pip"]
    assert steps and all(ps.step.locked is not None for ps in steps)  # type: ignore[attr-defined]
    uv = resolve.uv_bin()
    # as in a build: no config of this machine's, both compile bytecode, uv copies
    env = {**os.environ, "PIP_CERT": BENCH_CA, "SSL_CERT_FILE": BENCH_CA,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONFIG_FILE": os.devnull,
           "UV_LINK_MODE": "copy", "UV_COMPILE_BYTECODE": "1"}

    def venv(way: str) -> Path:
        folder = tmp_path / way
        subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
        return folder

    def run(way: str, commands: list[list[str]], extra: dict[str, str]) -> float:
        started = time.perf_counter()
        for argv in commands:
            subprocess.run(argv, check=True, capture_output=True, env={**env, **extra})
        return time.perf_counter() - started

    files = []
    for ps in steps:
        path = tmp_path / f"step-{ps.number}.txt"
        path.write_text(plan.generated[f"files/envkit/lock/{ps.step.locked.file}"])  # type: ignore[attr-defined]
        files.append(path)
    seconds = {}
    folder = venv("pip")
    py = str(folder / "venv/bin/python")
    seconds["pip (resolves)"] = run("pip", [
        [py, "-m", "pip", "install", "--index-url", resolve.PYPI, *ps.step.packages]  # type: ignore[attr-defined]
        for ps in steps], {"PIP_CACHE_DIR": str(folder / "cache")})
    folder = venv("uv")
    py = str(folder / "venv/bin/python")
    seconds["uv (resolves)"] = run("uv", [
        [uv, "pip", "install", "--no-config", "--python", py, "--default-index", resolve.PYPI,
         *ps.step.packages] for ps in steps],  # type: ignore[attr-defined]
        {"UV_CACHE_DIR": str(folder / "cache")})
    folder = venv("uv-locked")
    py = str(folder / "venv/bin/python")
    seconds["uv (locked)"] = run("uv-locked", [
        [uv, "pip", "install", "--no-config", "--python", py, "--default-index", resolve.PYPI,
         "--require-hashes", "--no-deps", "-r", str(f)] for f in files],
        {"UV_CACHE_DIR": str(folder / "cache")})
    packages = sum(len(ps.step.locked.step.pip) for ps in steps)  # type: ignore[attr-defined]
    with capsys.disabled():
        print(f"\n{name}: {packages} packages, cold cache, one run")
        for way, s in seconds.items():
            print(f"  {way:<16} {s:6.1f} s   pip/this {seconds['pip (resolves)'] / s:4.1f}x")
