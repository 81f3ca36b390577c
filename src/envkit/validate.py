"""Validate: the CI dry run. Every recipe, every value of every choice and bool
param (each with the others at their defaults) and every mirror profile, loaded,
planned, rendered in every format and linted. Nothing is built or downloaded.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ca, lint, mirrors
from . import resolve as resolver
from .catalog import Catalog
from .diagnostics import Diagnostic, EnvkitError
from .model import Recipe
from .plan import Plan, make_plan, param_text, resolve
from .render import FORMATS, render


@dataclass
class Variant:
    settings: dict[str, str]
    mirror: str

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.settings.items()]
        if self.mirror != mirrors.DEFAULT:
            parts.append(f"mirror={self.mirror}")
        return ", ".join(parts) or "defaults"


@dataclass
class Report:
    recipes: int = 0
    renders: int = 0
    problems: list[Diagnostic] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one summary line per recipe
    resolved: int = 0  # distinct pip resolutions that passed
    skipped: list[str] = field(default_factory=list)  # resolutions this machine cannot do
    warnings: list[str] = field(default_factory=list)  # worth a look, not wrong

    @property
    def ok(self) -> bool:
        return not self.problems


def variants(recipe: Recipe, catalog: Catalog) -> list[Variant]:
    _, params, _ = resolve(recipe, catalog)
    out = [Variant({}, mirrors.DEFAULT)]
    for name in sorted(params):
        for value in params[name].variants():
            if value != params[name].default:
                out.append(Variant({name: param_text(value)}, mirrors.DEFAULT))
    out += [Variant({}, m) for m in sorted(mirrors.profiles()) if m != mirrors.DEFAULT]
    return out


def validate(refs: list[str] | None = None, catalog: Catalog | None = None,
             resolve_pins: bool = False, ca_bundle: str = "auto") -> Report:
    catalog = catalog or Catalog()
    report = Report()
    rendered: list[tuple[Recipe, Variant, str, str]] = []
    plans: list[tuple[Recipe, Variant, Plan]] = []
    targets: list[Any] = list(refs) if refs else catalog.all()
    for ref in targets:
        report.recipes += 1
        try:
            recipe = catalog.find(ref) if isinstance(ref, str) else catalog.load(ref)
            count = 0
            for variant in variants(recipe, catalog):
                plan = make_plan(recipe, catalog, variant.settings, variant.mirror)
                if variant.mirror == mirrors.DEFAULT:
                    plans.append((recipe, variant, plan))
                    if not variant.settings:
                        report.warnings += cache_order(plan)
                for fmt in FORMATS:
                    rendered.append((recipe, variant, fmt, render(plan, fmt)))
                    count += 1
            report.lines.append(f"{recipe.name}: {count} renders")
        except EnvkitError as exc:
            report.problems.extend(exc.diagnostics)
            report.lines.append(f"{ref if isinstance(ref, str) else ref.stem}: invalid")
    report.renders = len(rendered)
    report.problems += _lint(rendered)
    if resolve_pins:
        _resolve(plans, report, ca_bundle)
    return report


def cache_order(plan: Plan) -> list[str]:
    """A Docker build resumes from the layer cache: a step that changes often (a copied
    file) rebuilds every step after it. Say so when slow steps follow a copy."""
    out = []
    for ps in plan.steps:
        if ps.kind != "copy":
            continue
        slow = [later for later in plan.steps[ps.number:] if later.step.slow]
        if slow:
            kinds = ", ".join(dict.fromkeys(s.kind for s in slow))
            out.append(f"{plan.name}: step {ps.number} ({ps.title}) comes before {len(slow)} "
                       f"slow step{'s' * (len(slow) != 1)} ({kinds}): each change to what it "
                       "copies rebuilds them in Docker; put it after them unless they need it")
    return out


def _resolve(plans: list[tuple[Recipe, Variant, Plan]], report: Report, ca_bundle: str) -> None:
    """Each recipe's pip requirements for its own Python, on PyPI (default mirror)."""
    where: dict[resolver.Job, list[tuple[Recipe, Variant, int, str]]] = {}
    for recipe, variant, plan in plans:
        for job, number, title in resolver.jobs_of(plan):
            where.setdefault(job, []).append((recipe, variant, number, title))
    bundle = ca.choose(ca_bundle)
    env = {"PIP_CERT": str(bundle)} if bundle else {}
    outcomes = resolver.run_all(list(where), env)
    for job, outcome in outcomes.items():
        recipe, variant, number, title = where[job][0]
        label = f"{recipe.name} [{variant.label()}] step {number} ({title})"
        if outcome.ok:
            report.resolved += 1
            for sdist in outcome.sdists:
                report.lines.append(f"{label}: {sdist} has no wheel for Python {job.python}; "
                                    "pip builds it from source")
        elif outcome.skipped:
            report.skipped.append(f"{label}: {outcome.message}")
        else:
            report.problems.append(Diagnostic(
                recipe.doc.file, 0, 0, f"step {number} ({title}) [{variant.label()}]",
                f"pip cannot resolve it for Python {job.python} on {resolver.PLATFORM}: "
                f"{outcome.message}", f"index {job.index}"))


def _lint(rendered: list[tuple[Recipe, Variant, str, str]]) -> list[Diagnostic]:
    with tempfile.TemporaryDirectory(prefix="envkit-validate-") as tmp:
        where: dict[Path, tuple[Recipe, Variant, str]] = {}
        shell, docker = [], []
        for i, (recipe, variant, fmt, text) in enumerate(rendered):
            path = Path(tmp) / f"{i:04d}-{recipe.name}-{FORMATS[fmt][1]}"
            path.write_text(text)
            where[path] = (recipe, variant, fmt)
            (shell if fmt == "shell" else docker).append(path)
        findings = lint.lint(shell, docker)
        out = []
        for f in findings:
            recipe, variant, fmt = where[f.file]
            out.append(Diagnostic(recipe.doc.file, 0, 0, f"{FORMATS[fmt][1]} [{variant.label()}]",
                                  str(f)))
        return out
