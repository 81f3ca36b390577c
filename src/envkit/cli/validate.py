"""Validate: the CI dry run. Every recipe, every value of every choice and bool
param (each with the others at their defaults) and every mirror profile, loaded,
planned, rendered in every format and linted. Nothing is built or downloaded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from envkit import ca, grammar
from envkit.diagnostics import Diagnostic, EnvkitError
from envkit.load.catalog import Catalog
from envkit.load.model import Recipe
from envkit.plan import Plan, make_plan, mirrors, resolver
from envkit.plan import lock as lockmod
from envkit.plan.locking import Locker, label, stale_error
from envkit.plan.variants import Variant, variants
from envkit.render import FORMATS, lint, render


@dataclass
class Report:
    recipes: int = 0
    renders: int = 0
    problems: list[Diagnostic] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # one summary line per recipe
    resolved: int = 0  # distinct pip resolutions that passed
    packages: int = 0  # packages those resolutions locked
    locked: int = 0  # variants whose lock is current
    skipped: list[str] = field(default_factory=list)  # resolutions this machine cannot do
    warnings: list[str] = field(default_factory=list)  # worth a look, not wrong

    @property
    def ok(self) -> bool:
        return not self.problems


def validate(refs: list[str] | None = None, catalog: Catalog | None = None,
             resolve_pins: bool = False, ca_bundle: str = "auto") -> Report:
    catalog = catalog or Catalog()
    report = Report()
    rendered: list[tuple[Recipe, Variant, str, str]] = []
    plans: list[tuple[Recipe, Variant, Plan, Any]] = []  # with its lock inputs
    targets: list[Any] = list(refs) if refs else catalog.all()
    for ref in targets:
        report.recipes += 1
        try:
            recipe = catalog.find(ref) if isinstance(ref, str) else catalog.load(ref)
            count = 0
            locks = _Locks(recipe, catalog)
            for variant in variants(recipe, catalog):
                locker = Locker(catalog, recipe, strict=False)
                plan = make_plan(recipe, catalog, variant.settings, variant.mirror,
                                 locker=locker)
                if variant.mirror == mirrors.DEFAULT:
                    plans.append((recipe, variant, plan, locker.inputs))
                    locks.add(plan, locker)
                    if not variant.settings:
                        report.warnings += cache_order(plan)
                for fmt in FORMATS:
                    rendered.append((recipe, variant, fmt, render(plan, fmt)))
                    count += 1
            locks.report(report)
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


class _Locks:
    """A recipe's lock against its variants: stale or missing is a problem (a missing one
    only for a recipe of the catalog), an entry that could not be made here a warning."""

    def __init__(self, recipe: Recipe, catalog: Catalog):
        self.recipe = recipe
        self.in_catalog = recipe.path.parent == catalog.root
        self.path = lockmod.path_for(recipe.path)
        self.stale: list[Diagnostic] = []
        self.missing: list[str] = []
        self.unlocked: dict[str, list[str]] = {}  # why -> variants
        self.locked = 0

    def add(self, plan: Plan, locker: Locker) -> None:
        match, inputs = plan.lock, locker.inputs
        if match is None or inputs is None:
            return
        if match.state == "none":  # nothing to lock
            return
        if match.state == "locked":
            self.locked += 1
        elif match.state == "unlocked" and match.entry is not None:
            self.unlocked.setdefault(match.entry.unlocked, []).append(label(inputs.params))
        elif match.state == "stale":
            self.stale += stale_error(plan, match, inputs).diagnostics
        else:
            self.missing.append(label(inputs.params))

    def report(self, report: Report) -> None:
        name, shown = self.recipe.name, lockmod.display(self.path)
        report.problems += self.stale
        if self.missing:
            text = (f"no entry for {'; '.join(self.missing)}" if self.path.exists()
                    else f"missing: {name} has no lock file")
            hint = f"invoke lock --recipe {name if self.in_catalog else self.recipe.path}"
            if self.in_catalog:
                report.problems.append(Diagnostic(shown, 0, 0, "lock", text, hint))
            else:
                report.warnings.append(f"{shown}: {text}: a build locks it on the fly "
                                       f"({hint} saves a lock)")
        for why, which in self.unlocked.items():
            report.warnings.append(f"{name}: not locked here ({'; '.join(which)}): {why}; "
                                   "it locks where that answers")
        report.locked += self.locked


def _resolve(plans: list[tuple[Recipe, Variant, Plan, Any]], report: Report,
             ca_bundle: str) -> None:
    """Every pip step of every recipe and param value, resolved by the lock's resolver for
    the plan's Python and the base's platform, on the default mirror profile. Plans with
    the same lock inputs resolve once."""
    bundle = ca.choose(ca_bundle)
    env = resolver.uv_env(bundle)
    unique: dict[str, tuple[Recipe, Variant, Plan]] = {}
    for recipe, variant, plan, inputs in plans:  # inputs: what the locker computed
        if inputs is not None and any(ps.kind == "pip" for ps in plan.steps):
            unique.setdefault(inputs.digest, (recipe, variant, plan))

    def one(item: tuple[Recipe, Variant, Plan]) -> tuple[Any, Any]:
        try:
            return resolver.resolve_plan(item[2], env), None
        except resolver.ResolveError as exc:
            return None, exc
        except EnvkitError as exc:  # a requirements file no copy step gives, say
            return None, exc

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, unique.values()))
    for (recipe, variant, plan), (steps, exc) in zip(unique.values(), results, strict=True):
        if exc is None:
            report.resolved += 1
            report.packages += sum(len(s.pip) for s in steps)
            continue
        if not isinstance(exc, resolver.ResolveError):
            report.problems += exc.diagnostics
            continue
        ps = plan.steps[exc.number - 1] if 0 < exc.number <= len(plan.steps) else None
        what = f"step {exc.number} ({ps.title})" if ps else "a pip step"
        if exc.skipped:
            report.skipped.append(f"{recipe.name} [{variant.label()}] {what}: {exc.message}")
            continue
        target = lockmod.target_of(plan)
        origin = ps.step.origin if ps is not None else None
        # a package a requirements file (or the project) names: at that file's line
        named = [at for req, at in getattr(ps.step, "file_pins", []) if exc.package
                 and grammar.requirement_name(req) == exc.package] if ps is not None else []
        if named:
            origin = named[0]
        file, line, col, path = ((origin.file, origin.line, origin.col, origin.path)
                                 if origin is not None else (recipe.doc.file, 0, 0, what))
        report.problems.append(Diagnostic(
            file, line, col, f"{path} [{variant.label()}]",
            f"cannot be resolved for Python {target.python} on {target.platform}: "
            f"{exc.message}", f"index {resolver.jobs_of(plan)[0].index}" if ps else ""))


def _lint(rendered: list[tuple[Recipe, Variant, str, str]]) -> list[Diagnostic]:
    found = lint.lint_texts([(FORMATS[fmt].lint_kind, text) for _, _, fmt, text in rendered])
    out = []
    for (recipe, variant, fmt, _), findings in zip(rendered, found, strict=True):
        out += [Diagnostic(recipe.doc.file, 0, 0, f"{FORMATS[fmt].filename} [{variant.label()}]",
                           str(f)) for f in findings]
    return out
