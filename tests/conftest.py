"""Shared fixtures: recipes written to a temp folder, the catalog, and rendering helpers."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from envkit.catalog import Catalog
from envkit.diagnostics import EnvkitError
from envkit.plan import Plan, make_plan

REPO = Path(__file__).resolve().parents[1]

HEADER = """\
name: {name}
description: a test recipe
version: 1.0.0
base: debian:bookworm-slim
"""


@pytest.fixture
def catalog() -> Catalog:
    return Catalog()


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """write(text, name='t') -> path of tmp/<name>.yaml holding the dedented text."""

    def _write(text: str, name: str = "t") -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture
def recipe(write: Callable[..., Path]) -> Callable[..., Path]:
    """recipe(body, name='t') -> a recipe file: the standard header plus ``body``."""

    def _recipe(body: str, name: str = "t") -> Path:
        return write(HEADER.format(name=name) + textwrap.dedent(body), name)

    return _recipe


def plan_of(path: Path, settings: dict[str, str] | None = None, **kw: object) -> Plan:
    catalog = Catalog()
    return make_plan(catalog.load(path), catalog, settings, **kw)  # type: ignore[arg-type]


def problems(path: Path, settings: dict[str, str] | None = None) -> list[str]:
    """Every diagnostic line that loading and planning ``path`` gives (empty when valid)."""
    try:
        plan_of(path, settings)
    except EnvkitError as exc:
        return [str(d) for d in exc.diagnostics]
    return []
