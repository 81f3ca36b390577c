"""The variants a recipe is checked in: its defaults, each other value of each choice and
bool param with the rest at their defaults, and each other mirror profile. validate renders
and lints every one; the lock and bake take those of the default mirror."""

from __future__ import annotations

from dataclasses import dataclass

from envkit.load.catalog import Catalog
from envkit.load.model import Recipe
from envkit.plan import mirrors, param_text, resolve


@dataclass
class Variant:
    settings: dict[str, str]
    mirror: str

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.settings.items()]
        if self.mirror != mirrors.DEFAULT:
            parts.append(f"mirror={self.mirror}")
        return ", ".join(parts) or "defaults"


def variants(recipe: Recipe, catalog: Catalog) -> list[Variant]:
    """The defaults first, then each param's other values (python's only when the recipe
    says which Pythons it takes: covers_pythons), then the other mirror profiles."""
    order, params, _ = resolve(recipe, catalog)
    out = [Variant({}, mirrors.DEFAULT)]
    for name in sorted(params):
        if name == "python" and not covers_pythons(order):
            continue  # its default only: the recipe has not said which Pythons it takes
        for value in params[name].variants():
            if value != params[name].default:
                out.append(Variant({name: param_text(value)}, mirrors.DEFAULT))
    out += [Variant({}, m) for m in sorted(mirrors.profiles()) if m != mirrors.DEFAULT]
    return out


def covers_pythons(order: list[Recipe]) -> bool:
    """Validate and the lock cover every Python a plan offers when its recipe is a Python
    provider (it declares the ``python`` param) or a recipe in it says which Pythons its pins
    install on (``python:``, other than the provider's own); else the default Python alone,
    since a recipe with a base of its own may not have the others."""
    root = order[-1]
    if "python" in root.params:
        return True
    return any(r.python and "python" not in r.params for r in order)
