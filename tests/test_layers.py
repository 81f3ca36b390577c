"""The folders are the layers, and data flows one way: load -> plan -> render -> backends ->
verify -> cli. A module imports from its own layer, the layers before it, and the shared
top-level modules (steps/, checks, grammar, ...), never from a later one; the shared
modules import no layer. Lazy imports inside functions count too."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "envkit"
LAYERS = ["load", "plan", "render", "backends", "verify", "cli"]
IMPORT = re.compile(r"^\s*(?:from|import)\s+envkit\.(\w+)", re.M)


def _upward() -> list[str]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        own = parts[0] if len(parts) > 1 and parts[0] in LAYERS else None
        for m in IMPORT.finditer(path.read_text()):
            target = m[1]
            if target not in LAYERS:
                continue
            line = path.read_text()[:m.start()].count("\n") + 1
            if own is None or LAYERS.index(target) > LAYERS.index(own):
                found.append(f"{path.relative_to(ROOT)}:{line}: imports envkit.{target}")
    return found


def test_no_module_imports_a_later_layer() -> None:
    assert _upward() == []


def test_the_check_sees_an_upward_import(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plan").mkdir()
    (tmp_path / "plan" / "x.py").write_text("def f():\n    from envkit.cli import build\n")
    (tmp_path / "grammar.py").write_text("import envkit.load\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _upward() == ["grammar.py:1: imports envkit.load",
                         "plan/x.py:2: imports envkit.cli"]
