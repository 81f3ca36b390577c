"""Finding recipes: by catalog name or by path, and the names a recipe requires."""

from __future__ import annotations

import re
from pathlib import Path

from envkit import paths
from envkit.diagnostics import did_you_mean, error
from envkit.load import compat
from envkit.load.model import Recipe, load_recipe
from envkit.load.schema import NAME_PATTERN
from envkit.load.yamlsrc import load_file

NAME = re.compile(NAME_PATTERN)


def display(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    here = Path.cwd()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


class Catalog:
    """Loads each recipe file once; names resolve next to the requiring recipe, then here."""

    def __init__(self, root: Path | None = None):
        self.root = (root or paths.catalog_dir()).resolve()
        self._cache: dict[Path, Recipe] = {}
        self._compat: compat.Table | None = None

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.all())

    def load(self, path: Path) -> Recipe:
        path = path.resolve()
        if path not in self._cache:
            recipe = load_recipe(path, display(path))
            if recipe.name != path.stem:
                recipe.problems.append(recipe.doc.diag(
                    ("name",), f"name '{recipe.name}' differs from the file name '{path.stem}'",
                    "requires and --recipe find a recipe by its file name"))
            self._cache[path] = recipe
        return self._cache[path]

    def find(self, ref: str) -> Recipe:
        """``--recipe``: a catalog name, or a path to a YAML file anywhere."""
        if ref.endswith((".yaml", ".yml")) or "/" in ref:
            try:
                if not Path(ref).is_file():  # the loader says what it is instead
                    load_file(Path(ref), ref)
            except OSError as exc:
                raise error(f"cannot read {ref[:80]}: {exc.strerror}", path="--recipe") from None
            return self.load(Path(ref))
        path = self.root / f"{ref}.yaml"
        if not NAME.fullmatch(ref) or not path.is_file() or path.name == compat.FILE:
            raise error(f"unknown recipe '{ref}'", path="--recipe",
                        hint=did_you_mean(ref, self.names()) or f"see: {', '.join(self.names())}")
        return self.load(path)

    def locate(self, name: str, near: Path) -> Path | None:
        """The file a ``requires`` name means: next to the requiring recipe, else the catalog."""
        if not NAME.fullmatch(name):
            return None
        for folder in (near, self.root):
            path = folder / f"{name}.yaml"
            if path.is_file() and path.name != compat.FILE:
                return path
        return None

    def all(self) -> list[Path]:
        """Every recipe file; compat.yaml is the compatibility table, not a recipe."""
        return sorted(p for p in self.root.glob("*.yaml") if p.name != compat.FILE)

    def compat_table(self) -> compat.Table:
        if self._compat is None:
            self._compat = compat.load(self.root / compat.FILE)
        return self._compat
