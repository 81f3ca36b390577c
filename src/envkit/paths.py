"""Where envkit's own files are: in the installed package, or in a source checkout."""

from __future__ import annotations

import functools
from pathlib import Path

_PKG = Path(__file__).resolve().parent


def package_dir() -> Path:
    return _PKG


@functools.cache
def _shipped(name: str) -> Path:
    inside = _PKG / name  # a wheel carries templates/ and recipes/ inside the package
    if inside.is_dir():
        return inside
    return _PKG.parents[1] / name  # a source checkout (editable install)


def templates_dir() -> Path:
    return _shipped("templates")


def catalog_dir() -> Path:
    return _shipped("recipes")


def data_dir() -> Path:
    return _PKG / "data"
