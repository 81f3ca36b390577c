"""Benchmarks, on demand only: python -m pytest -m bench tests/test_bench.py

They measure; they assert nothing about time (the machine is shared and noisy).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from envkit.catalog import Catalog
from envkit.plan import make_plan
from envkit.render import render
from envkit.validate import validate

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
