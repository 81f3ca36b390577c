"""Plan: a loaded recipe -> the exact list of steps to render.

Params are bound (defaults, then ``--set``), ``requires`` is expanded depth
first in the order written (each recipe once), the mirror profile is chosen,
every value gets its grammar check, and each step gets a content hash chained
on the one before it: the plan hash names what gets built.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from envkit import __version__, grammar, paths
from envkit.checks import CHECKS, Check
from envkit.diagnostics import Diagnostic, EnvkitError, Path_, did_you_mean, format_path
from envkit.load import compat
from envkit.load.catalog import Catalog
from envkit.load.model import PLACEHOLDER, Item, Param, Recipe, User, walk_strings
from envkit.plan import mirrors
from envkit.secrets import Secret
from envkit.steps import REGISTRY, State, Step

# Characters with no meaning to bash in any quoting context (bare, "..", '..', heredocs).
INERT = re.compile(r"[A-Za-z0-9_@%+=:,./-]*")

HELPERS = "files/envkit/helpers.sh"  # in the build context; the Dockerfile COPYs it
UV_REQUIREMENT = "files/envkit/uv.txt"  # the pinned uv, hash-checked: pip steps install with it

BUILTIN_PARAMS = {
    "prefix": Param("prefix", "string", "/opt/envkit",
                    description="Where recipes install what they build (venvs, sources)."),
    "cache": Param("cache", "string", "/var/cache/envkit",
                   description="Where big downloads go: a BuildKit cache mount in Docker "
                               "builds (no layer keeps them; a rebuild finds them there)."),
}


BUILD, RUNTIME = "build", "runtime"  # the stages of a two-stage plan


@dataclass
class PlannedStep:
    number: int
    recipe: str
    title: str
    step: Step
    hash: str
    stage: str = BUILD  # RUNTIME: the runtime stage's own steps (images only)

    @property
    def kind(self) -> str:
        return self.step.kind


@dataclass
class Plan:
    name: str
    description: str
    version: str
    source: str
    base: str
    params: dict[str, Any]
    mirror: mirrors.Mirror
    recipes: list[str]
    declared: dict[str, Param] = field(default_factory=dict)  # every param, as declared
    steps: list[PlannedStep] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    # two stages: the checks of toolchain recipes (build-essentials'), which the image
    # leaves out with the toolchain; a host, which keeps everything, runs them too
    build_checks: list[Check] = field(default_factory=list)
    # checks only an image runs: each exposed port answers when its command runs (on a host
    # the port may be another program's, and the command would start a server there)
    image_checks: list[Check] = field(default_factory=list)
    files: list[tuple[Path, str]] = field(default_factory=list)
    secrets: dict[str, Secret] = field(default_factory=dict)  # those the steps use, in order
    user: User | None = None  # the image runs as this user (the requiring recipe's wins)
    # how the image runs (the requiring recipe's wins, each field on its own), params bound
    workdir: str = ""
    expose: list[str] = field(default_factory=list)  # '8888/tcp'
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    hash: str = ""
    # The image a Docker build starts FROM: ``base`` itself, or what the backend found for it
    # (the envkit base of the same Debian suite). Set once the base is resolved; it is not in
    # the plan hash (the build hash covers the exact base image instead).
    image: str = ""
    lock: Any = None  # the lock.Match a locker found (or made) for this plan; None: no lock
    # An offline build's folder in the build (invoke build --offline): its RUNs install from
    # the exported wheels and .debs mounted there; '' builds online. Not in the plan hash:
    # the Dockerfile (in the build hash) says it.
    offline: str = ""
    generated: dict[str, str] = field(default_factory=dict)  # context path -> text to write
    # A two-stage plan (the requiring recipe has `runtime:`): the paths its runtime stage
    # copies from the build stage; None: one stage, the toolchain stays in the image.
    keep: list[str] | None = None
    # ... and the variables it sets: each venv's, and the top-level env of the recipes that
    # have a runtime section (not env steps, which set up a build: CC, ccache's launcher).
    runtime_env: list[tuple[str, str]] = field(default_factory=list)

    @property
    def from_image(self) -> str:
        return self.image or self.base

    @property
    def build_steps(self) -> list[PlannedStep]:
        """What the build (and a host's script) runs: every step but the runtime stage's."""
        return [ps for ps in self.steps if ps.stage == BUILD]

    @property
    def runtime_steps(self) -> list[PlannedStep]:
        return [ps for ps in self.steps if ps.stage == RUNTIME]

    @property
    def cuda(self) -> str:
        """The CUDA version the plan's packages are built for ('12.4'), '' for none: the
        ``cuda`` param, else a pip pin's local version (+cu124) or a cuXYZ index."""
        if "cuda" in self.params:
            return param_text(self.params["cuda"])
        for ps in self.steps:
            if ps.kind != "pip":
                continue
            step: Any = ps.step
            for text in [*step.packages, step.index, *step.extra_index]:
                if m := _CU.search(text):
                    return f"{int(m[1][:-1])}.{m[1][-1]}"
        return ""

    @property
    def needs_gpu(self) -> bool:
        """Its checks want a GPU where there is one: CUDA packages, or a true ``gpu`` param,
        or a GPU build of faiss or Paddle."""
        if self.cuda or self.params.get("gpu") is True:
            return True
        return any(re.match(r"(faiss-gpu|paddlepaddle-gpu|cupy-cuda)", p, re.I)
                   for ps in self.steps if ps.kind == "pip"
                   for p in getattr(ps.step, "packages", []))

    @property
    def short_hash(self) -> str:
        return self.hash.split(":", 1)[-1][:12]


_CU = re.compile(r"(?:\+|/|\b)cu(\d{3,4})\b")  # torch==2.5.1+cu124, .../whl/cu124
_CUDA_IMAGE = re.compile(r"(?:.*/)?nvidia/cuda:(\d+)\.(\d+)(?:\.\d+)?-.*")


def param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def merged_params(order: list[Recipe]) -> tuple[dict[str, Param], list[Diagnostic]]:
    """Params of a recipe and all it requires; one name is one param everywhere."""
    params = dict(BUILTIN_PARAMS)
    owner: dict[str, str] = {}
    problems = []
    for recipe in order:
        for name, param in recipe.params.items():
            if name in BUILTIN_PARAMS:
                problems.append(recipe.doc.diag(("params", name), f"'{name}' is a built-in param",
                                                "use it without declaring it"))
                continue
            if name in owner and params[name].type != param.type:
                problems.append(recipe.doc.diag(
                    ("params", name, "type"),
                    f"'{name}' is a {params[name].type} param in '{owner[name]}'",
                    "a param shared through requires has one type"))
                continue
            params[name] = param  # the requiring recipe's default wins
            owner[name] = recipe.name
    if "python" in params and params["python"].type == "choice":
        params["python"] = _narrowed(params["python"], order, owner.get("python", ""),
                                     problems)
    return params, problems


def _python_specs(order: list[Recipe]) -> list[tuple[Recipe, SpecifierSet]]:
    """Each recipe's ``python``: the Pythons its pins install on."""
    return [(r, SpecifierSet(r.python)) for r in order if r.python]


def _python_fits(value: Any, spec: SpecifierSet) -> bool:
    try:
        return spec.contains(Version(param_text(value)), prereleases=True)
    except InvalidVersion:
        return False


def _narrowed(param: Param, order: list[Recipe], owner: str,
              problems: list[Diagnostic]) -> Param:
    """The shared ``python`` choice offers only the Pythons every recipe in the plan
    installs on; its default stays unless one of them excludes it (then the newest)."""
    specs = _python_specs(order)
    if not specs:
        return param
    allowed = tuple(v for v in param.values if all(_python_fits(v, s) for _, s in specs))
    if not allowed:
        recipe, _ = specs[-1]
        offered = ", ".join(param_text(v) for v in param.values)
        wanted = " and ".join(f"{r.name}: {r.python}" for r, _ in specs)
        problems.append(recipe.doc.diag(
            ("python",), f"none of the Pythons '{owner}' offers ({offered}) is {wanted}",
            "widen 'python' to a version its pins install on, or require another Python"))
        return param
    default = param.default if param.default in allowed else allowed[-1]
    return dataclasses.replace(param, values=allowed, default=default,
                               offered=param.offered or param.values)


def _check_python(order: list[Recipe], params: dict[str, Param], settings: dict[str, str],
                  problems: list[Diagnostic]) -> dict[str, str]:
    """A ``--set python=X`` that a recipe's pins do not install on is an error at that
    recipe's ``python`` line (not a bare 'not one of'); the settings without it, then."""
    wanted = settings.get("python")
    if wanted is None or "python" not in params:
        return settings
    for recipe, spec in _python_specs(order):
        if not _python_fits(wanted, spec):
            param = params["python"]
            offered = (f"choose one of: {', '.join(param_text(v) for v in param.values)}"
                       if param.type == "choice" else f"choose a Python {spec}")
            problems.append(recipe.doc.diag(
                ("python",), f"--set python={wanted}: {recipe.name}'s pins install on "
                f"Python {recipe.python}", offered))
            return {k: v for k, v in settings.items() if k != "python"}
    return settings


def expand(root: Recipe, catalog: Catalog) -> tuple[list[Recipe], list[Diagnostic]]:
    """Every recipe ``root`` needs, dependencies first, each once, in written order."""
    order: list[Recipe] = []
    done: set[Path] = set()
    by_name: dict[str, Path] = {root.name: root.path}
    problems: list[Diagnostic] = []

    def visit(recipe: Recipe, stack: list[Recipe]) -> None:
        for i, name in enumerate(recipe.requires):
            path = catalog.locate(name, recipe.folder)
            if path is None:
                problems.append(recipe.doc.diag(("requires", i), f"unknown recipe '{name}'",
                                                did_you_mean(name, catalog.names())))
                continue
            try:
                dep = catalog.load(path)
            except EnvkitError as exc:
                problems.extend(exc.diagnostics)
                continue
            other = by_name.setdefault(dep.name, dep.path)
            if other != dep.path:
                problems.append(recipe.doc.diag(
                    ("requires", i), f"'{name}' resolves to {dep.doc.file}, but {other} "
                    "is already used under that name", "one recipe per name in a plan"))
                continue
            if dep.path in (r.path for r in stack):
                names = [r.name for r in stack[[r.path for r in stack].index(dep.path):]]
                cycle = " -> ".join([*names, dep.name])
                problems.append(recipe.doc.diag(("requires", i), f"requires cycle: {cycle}"))
                continue
            if dep.path not in done:
                visit(dep, [*stack, dep])
        done.add(recipe.path)
        order.append(recipe)

    visit(root, [root])
    return order, problems


class _Binder:
    """Substitutes ``{{ name }}`` in one recipe's values, collecting problems."""

    def __init__(self, recipe: Recipe, values: dict[str, Any], problems: list[Diagnostic]):
        self.recipe, self.values, self.problems = recipe, values, problems

    def text(self, text: str, path: Path_, mode: str = "plain") -> str:
        """Substitute params. ``mode`` says where the text lands: 'plain', 'env' (an env
        value: a '$' in a param is literal there) or 'shell' (a run script: only inert
        characters may arrive, since the author's quoting around it is unknown)."""

        def one(m: Any) -> str:
            name = m.group(1).strip()
            if name in self.recipe.unusable or not name.isidentifier():
                return m.group(0)  # reported on load already
            if name not in self.values:
                self.problems.append(self.recipe.doc.diag(
                    path, f"unknown param '{name}' in {m.group(0)}",
                    did_you_mean(name, self.values) or "declare it under params"))
                return m.group(0)
            value = param_text(self.values[name])
            if mode == "shell" and not INERT.fullmatch(value):
                self.problems.append(self.recipe.doc.diag(
                    path, f"param '{name}' is {value!r}: in a run script a param may hold only "
                    "letters, digits and @%+=:,./_-",
                    f"pass it through env (MY_VAR: \"{{{{ {name} }}}}\") and use \"$MY_VAR\""))
                return m.group(0)
            return value.replace("$", "$$") if mode == "env" else value

        return PLACEHOLDER.sub(one, text)

    def name(self, item: Item) -> str:
        """A step's or check's display name, params substituted: one line of text, since
        it is shown in logs and terminals (no control characters to spoof them)."""
        if not item.name:
            return ""
        at = (*item.path[:2], "name")
        text = self.text(item.name, at)
        if msg := (grammar.single_line(text) or grammar.credential(text)
                   or ("" if text.strip() else "must not be blank")):
            self.problems.append(self.recipe.doc.diag(at, msg))
        return text

    def value(self, value: Any, path: Path_, mode: str = "plain", verbatim: bool = False) -> Any:
        if isinstance(value, str):
            return self.text(value, path, mode)
        if isinstance(value, list):
            return [self.value(v, (*path, i), mode, verbatim) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self.value(v, (*path, k), mode, verbatim) for k, v in value.items()}
        if verbatim and isinstance(value, int | float) and not isinstance(value, bool):
            # as written: YAML reads 0755 as 493 and 1.10 as 1.1, not what an env value means
            return self.recipe.doc.raw.get(path, str(value))
        return value

    def fields(self, item: Item, cls: Any) -> tuple[dict[str, Any], dict[str, Path_]]:
        fields = cls.normalize(item.raw)
        where = {name: (*item.path, *cls.field_path(item.raw, name)) for name in fields}
        bound = {}
        for name, v in fields.items():
            mode = ("shell" if name in cls.shell_fields
                    else "env" if name in cls.env_fields else "plain")
            bound[name] = self.value(v, where[name], mode, name in cls.verbatim_fields)
        return bound, where

    def build(self, item: Item, cls: Any, **extra: Any) -> tuple[Any, dict[str, Path_]]:
        """The typed step or check with params bound and its grammar checked, or None."""
        before = len(self.problems)
        fields, where = self.fields(item, cls)
        if len(self.problems) > before:  # an unknown param: its values cannot be judged
            return None, where
        if self.credentials(fields, where):  # before any check that would echo the value
            return None, where
        unit = cls(**fields, **extra)
        return (unit if self.report(unit.check(), where, item) else None), where

    def credentials(self, fields: dict[str, Any], where: dict[str, Path_]) -> bool:
        """A URL with a credential in any bound field (params substituted) is refused."""
        found = False
        for name, value in fields.items():
            for sub, text in walk_strings(value):
                if msg := grammar.credential(text):
                    self.problems.append(self.recipe.doc.diag((*where[name], *sub), msg,
                                                              grammar.CREDENTIAL_HINT))
                    found = True
        return found

    def report(self, problems: list[tuple[Path_, str]], where: dict[str, Path_],
               item: Item) -> bool:
        for sub, message in problems:
            head, *rest = sub
            self.problems.append(self.recipe.doc.diag((*where.get(head, item.path), *rest),
                                                      message))
        return not problems


def resolve(root: Recipe, catalog: Catalog
            ) -> tuple[list[Recipe], dict[str, Param], list[Diagnostic]]:
    """The recipes ``root`` needs in order, their params, and every problem so far."""
    order, problems = expand(root, catalog)
    for recipe in order:
        problems += recipe.problems
    params, more = merged_params(order)
    return order, params, problems + more


def make_plan(root: Recipe, catalog: Catalog, settings: dict[str, str] | None = None,
              mirror: str | None = None, base: str | None = None,
              locker: Callable[[Plan], None] | None = None) -> Plan:
    """The plan of ``root``: every problem of the recipes and the options at once, else
    the steps to render. ``locker`` applies a lock to the steps before they are hashed."""
    order, params, problems = resolve(root, catalog)
    values = _bind_params(params, _check_python(order, params, settings or {}, problems),
                          problems)
    try:
        profile = mirrors.get(mirror)
    except EnvkitError as exc:
        problems.extend(exc.diagnostics)
        profile = mirrors.get(None)
    try:
        table = catalog.compat_table()
    except EnvkitError as exc:
        problems.extend(exc.diagnostics)
        table = compat.Table()
    bound = {**_derived(table, values, params, problems), **values}
    chosen = _base(order, bound, base, problems)  # before the steps: a param may choose it

    declared = _declared_secrets(order, problems)
    state = State()
    steps: list[tuple[str, str, Step]] = []
    pins: list[compat.Pin] = []
    check_items: list[tuple[_Binder, Item, bool]] = []
    for recipe in order:
        binder = _Binder(recipe, bound, problems)
        state.recipe, state.recipe_dir = recipe.name, recipe.folder
        state.recipe_file = recipe.doc.file
        items = ([Item("env", "", recipe.env, ("env",))] if recipe.env else []) + recipe.steps
        for item in items:
            if not _holds(item, recipe, params, values, problems):
                continue
            step, where = binder.build(item, REGISTRY[item.kind])
            state.step_path = format_path(item.path)
            if step:
                step.secrets = _uses(item, step, declared, recipe, problems)
            if step and binder.report(step.bind(state), where, item):
                step.origin = recipe.doc.diag(item.path, "")
                steps.append((recipe.name, binder.name(item) or step.title(), step))
                pins += [compat.Pin(req, recipe.doc.diag((*where["packages"], i), ""))
                         for i, req in enumerate(getattr(step, "packages", []))
                         if step.kind == "pip"]
                pins += [compat.Pin(req, at) for req, at in getattr(step, "file_pins", [])]
        in_image = root.runtime is None or _in_runtime(recipe)
        check_items += [(binder, item, in_image) for item in recipe.verify
                        if _holds(item, recipe, params, values, problems)]
    checks: list[Check] = []
    build_checks: list[Check] = []
    for binder, item, in_image in check_items:  # after all steps: in the finished result
        check, _ = binder.build(item, CHECKS[item.kind], name=binder.name(item))
        if check:
            check.bind(state.python)
            (checks if in_image else build_checks).append(check)
    problems += state.problems
    run = _run_fields(order, bound, problems)
    problems += compat.check(table, pins, _text(values.get("python")), _text(values.get("cuda")))
    steps = merge_shared(steps)
    runtime = _runtime(order, bound, problems, steps) if root.runtime is not None else None
    if problems:
        raise EnvkitError(sorted(set(problems)))

    plan = Plan(name=root.name, description=root.description, version=root.version,
                source=root.path.name, base=chosen,
                params={k: values[k] for k in sorted(values)}, mirror=profile,
                recipes=[r.name for r in order], declared=params, checks=checks,
                build_checks=build_checks, image_checks=_port_checks(run),
                files=[(paths.data_dir() / "helpers.sh", HELPERS), *state.files],
                secrets={s.id: s for _, _, step in steps for s in step.secrets},
                user=next((r.user for r in reversed(order) if r.user), None), **run)
    plan.steps = [PlannedStep(number, recipe_name, title, step, "")
                  for number, (recipe_name, title, step) in enumerate(steps, 1)]
    if runtime is not None:
        plan.keep, more = runtime
        with_runtime = {r.name for r in order if r.runtime is not None}
        plan.runtime_env = [pair for recipe_name, _, step in steps
                            if step.kind == "venv" or (recipe_name in with_runtime
                                                       and step.origin.path == "env")
                            for pair in step.env()]
        plan.steps += [PlannedStep(len(plan.steps) + i, recipe_name, title, step, "", RUNTIME)
                       for i, (recipe_name, title, step) in enumerate(more, 1)]
    if any(getattr(ps.step, "installer", "") == "uv" for ps in plan.steps):
        plan.files.append((paths.data_dir() / "uv.txt", UV_REQUIREMENT))
    if msg := cuda_mismatch(plan, table):
        where = next((r.doc.diag(("base",), "") for r in reversed(order) if r.base), None)
        raise EnvkitError(Diagnostic(where.file if where and not base else "--base",
                                     where.line if where and not base else 0,
                                     where.col if where and not base else 0, "base", *msg))
    if locker is not None:
        locker(plan)  # sets each lockable step's `locked` (and plan.lock) before the hashes
    _chain(plan, root)
    return plan


def cuda_mismatch(plan: Plan, table: compat.Table) -> tuple[str, str] | None:
    """A CUDA base image whose CUDA is not the one the plan's wheels are built for: the
    wheels bring their own runtime, so the base's toolkit would be a second, unused one,
    and the host driver must suit the newer. (message, hint) or None."""
    m = _CUDA_IMAGE.fullmatch(plan.base)
    wheels = plan.cuda
    if not m or not wheels:
        return None
    base = f"{m[1]}.{m[2]}"
    if base == wheels:
        return None
    driver = table.cuda.get(wheels, {}).get("driver", "")
    image = table.cuda.get(wheels, {}).get("image", "")
    return (f"the base {plan.base} has CUDA {base}, but the plan's packages are built for "
            f"CUDA {wheels}" + (f" (which needs NVIDIA driver {driver})" if driver else ""),
            (f"use {image}, " if image else "") + f"or wheels built for CUDA {base}, or a "
            "base without CUDA (the wheels bring their runtime)")


def _chain(plan: Plan, root: Recipe) -> None:
    """The one hash chain: each step's hash covers the step before it, what it is, its
    template and what the lock says it installs; the plan hash ends the chain."""
    prev = _digest({"envkit": __version__, "base": plan.base, "mirror": plan.mirror.env(),
                    "runtime": _runtime_digest()})
    for ps in plan.steps:
        locked = ps.step.locked.digest() if ps.step.locked is not None else None
        prev = _digest({"prev": prev, "step": step_digest(ps.step),
                        "partial": _file_digest(paths.templates_dir() / "steps" /
                                                f"{ps.kind}.j2"), "lock": locked})
        ps.hash = prev
    user = {"user": dataclasses.astuple(plan.user)} if plan.user else {}
    keep = {"keep": plan.keep, "env": plan.runtime_env} if plan.keep is not None else {}
    plan.hash = "sha256:" + _digest({"steps": prev, "name": root.name, "version": root.version,
                                     **user, **keep})


def _in_runtime(recipe: Recipe) -> bool:
    """Whether a recipe's result is in a two-stage plan's image, so its checks run there:
    it has a runtime section, or a venv (kept). Others (a toolchain) are the build's."""
    return recipe.runtime is not None or any(item.kind == "venv" for item in recipe.steps)


# What a runtime stage must not keep: the system's own folders (the base has them; copying
# them over it would bring the toolchain back). /usr/local and /opt are for installs.
_SYSTEM_DIRS = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
                "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr", "/usr/bin",
                "/usr/include", "/usr/lib", "/usr/lib64", "/usr/libexec", "/usr/sbin",
                "/usr/share", "/var", "/var/lib"}
# COPY expands $VARS and globs in its sources (even in the JSON form), as for copy steps
_COPY_SPECIAL = re.compile(r"[$*?\[\]\\]")


def _keep_problem(path: str) -> str:
    if msg := grammar.abs_path(path) or grammar.credential(path):
        return msg
    if _COPY_SPECIAL.search(path):
        return f"{path!r} has a character COPY --from expands ($ * ? [ ] \\)"
    if posixpath.normpath(path) != path.rstrip("/") or "//" in path:
        return f"{path!r} is not a normal path (no '.', '..' or '//')"
    if path.rstrip("/") in _SYSTEM_DIRS or not path.rstrip("/"):
        return f"keeping {path} keeps the system's own files (and the toolchain)"
    return ""


def _runtime(order: list[Recipe], values: dict[str, Any], problems: list[Diagnostic],
             steps: list[tuple[str, str, Step]]
             ) -> tuple[list[str], list[tuple[str, str, Step]]]:
    """A two-stage plan's runtime stage: the paths it keeps (every recipe's ``runtime.keep``
    and each venv, an ancestor covering its descendants) and its apt step (every recipe's
    ``runtime.apt``, each package once), bound and checked where each is written."""
    keep: list[str] = []
    packages: list[str] = []
    written = False
    for recipe in order:
        if recipe.runtime is None:
            continue
        binder = _Binder(recipe, values, problems)
        for i, raw in enumerate(recipe.runtime.get("keep", [])):
            written = True
            at = ("runtime", "keep", i)
            before = len(problems)
            path = binder.text(raw, at)
            if len(problems) > before:
                continue
            if msg := _keep_problem(path):
                problems.append(recipe.doc.diag(at, msg, "keep what the build installed, "
                                                "e.g. {{ prefix }}/lib"))
            else:
                keep.append(path.rstrip("/"))
        for i, raw in enumerate(recipe.runtime.get("apt", [])):
            at = ("runtime", "apt", i)
            name = binder.text(raw, at)
            if msg := grammar.apt_package(name):
                problems.append(recipe.doc.diag(at, msg))
            elif name not in packages:
                packages.append(name)
    for _, _, step in steps:  # each venv is kept, and the Python a uv_python step installed
        if step.kind in ("venv", "uv_python"):
            field_name = "path" if step.kind == "venv" else "dir"
            path = getattr(step, field_name).rstrip("/")
            if msg := _keep_problem(path):
                what = "venv" if step.kind == "venv" else "Python"
                problems.append(dataclasses.replace(
                    step.origin, message=f"{msg}: a two-stage plan copies this {what}",
                    path=f"{step.origin.path}.{field_name}"))
            else:
                keep.append(path)
    kept: list[str] = []
    for path in sorted(set(keep)):
        if not any(path.startswith(k + "/") for k in kept):
            kept.append(path)
    if not kept and not written:  # (a path written but refused is reported already)
        root = order[-1]
        problems.append(root.doc.diag(("runtime",), "the runtime stage keeps nothing of the "
                                      "build", "list what it needs under runtime.keep"))
    more: list[tuple[str, str, Step]] = []
    if packages:
        step = REGISTRY["apt"](packages=packages)  # type: ignore[call-arg]
        step.origin = order[-1].doc.diag(("runtime", "apt"), "")
        more.append((order[-1].name, f"runtime: {step.title()}", step))
    return kept, more


_PORT = re.compile(r"([0-9]{1,5})(?:/(tcp|udp))?")
PORT_WAIT = 60  # seconds the image's command has to answer on a port in verify


def _run_fields(order: list[Recipe], values: dict[str, Any],
                problems: list[Diagnostic]) -> dict[str, Any]:
    """workdir, expose, entrypoint and cmd: each the last recipe's that sets it, params
    bound, checked (an absolute folder; ports 1-65535, tcp or udp; one-line arguments)."""
    out: dict[str, Any] = {}
    for key in ("workdir", "expose", "entrypoint", "cmd"):
        recipe = next((r for r in reversed(order) if getattr(r, key) is not None), None)
        if recipe is None:
            continue
        binder = _Binder(recipe, values, problems)
        raw = getattr(recipe, key)
        if key == "workdir":
            text = binder.text(raw, (key,))
            if msg := grammar.abs_path(text):
                problems.append(recipe.doc.diag((key,), msg))
            out[key] = text
        elif key == "expose":
            ports = []
            for i, item in enumerate(raw):
                text = binder.text(str(item), (key, i))
                m = _PORT.fullmatch(text)
                if not m or not 1 <= int(m[1]) <= 65535:
                    problems.append(recipe.doc.diag((key, i), f"{text!r} is not a port",
                                                    "1-65535, optionally /tcp or /udp"))
                    continue
                ports.append(f"{int(m[1])}/{m[2] or 'tcp'}")
            out[key] = list(dict.fromkeys(ports))
        else:
            args = [binder.text(a, (key, i)) for i, a in enumerate(raw)]
            for i, arg in enumerate(args):
                if "\x00" in arg:
                    problems.append(recipe.doc.diag((key, i), "NUL characters are not allowed"))
            out[key] = args
    return out


def _port_checks(run: dict[str, Any]) -> list[Check]:
    """Each exposed TCP port answers once the image's command runs (in the check's
    container, on loopback): when the image has a command to run."""
    argv = [*(run.get("entrypoint") or []), *(run.get("cmd") or [])]
    if not argv:
        return []
    out: list[Check] = []
    for port in run.get("expose", []):
        number, proto = port.split("/")
        if proto != "tcp":
            continue
        check = CHECKS["command"](argv=["bash", "-c", _PORT_SCRIPT, "envkit-port", number,
                                        str(PORT_WAIT), *argv],
                                  output=f"^port {number} answers",
                                  name=f"the image's command answers on port {number}")
        out.append(check)
    return out


# PORT SECONDS COMMAND...: start the command, wait for the port on loopback, stop it
_PORT_SCRIPT = """port=$1 wait=$2; shift 2
log=$(mktemp)
"$@" >"$log" 2>&1 &
pid=$!
end=$((SECONDS + wait))
while ((SECONDS < end)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port answers"; kill "$pid" 2>/dev/null; exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"; echo "the command exited ($?) before port $port answered:"; tail -n 5 "$log"
    exit 1
  fi
  sleep 0.2
done
echo "port $port did not answer within ${wait}s:"; tail -n 5 "$log"; kill "$pid" 2>/dev/null
exit 1
"""


def _declared_secrets(order: list[Recipe], problems: list[Diagnostic]) -> dict[str, Secret]:
    """Secrets of a recipe and all it requires; one id is one secret everywhere."""
    out: dict[str, Secret] = {}
    for recipe in order:
        for sid, secret in recipe.secrets.items():
            if out.setdefault(sid, secret) != secret:
                problems.append(recipe.doc.diag(
                    ("secrets", sid), f"secret '{sid}' is declared differently in a recipe "
                    "this one requires", "declare it once, or give it another id"))
    return out


def _uses(item: Item, step: Step, declared: dict[str, Secret], recipe: Recipe,
          problems: list[Diagnostic]) -> list[Secret]:
    out = []
    for i, sid in enumerate(item.secrets):
        at = (*item.path[:2], "secrets", i)
        if not step.runs:
            problems.append(recipe.doc.diag(at, f"a {step.kind} step runs nothing, so it "
                                            "cannot use a secret"))
        elif sid not in declared:
            problems.append(recipe.doc.diag(at, f"unknown secret '{sid}'",
                                            did_you_mean(sid, declared) or
                                            "declare it under 'secrets'"))
        else:
            out.append(declared[sid])
    return out


def _holds(item: Item, recipe: Recipe, params: dict[str, Param], values: dict[str, Any],
           problems: list[Diagnostic]) -> bool:
    """An item's ``when``: every named param has the given value (compared as its type)."""
    holds = True
    for name, wanted in item.when.items():
        at = (*item.path[:2], "when", name)
        if name not in params:
            problems.append(recipe.doc.diag(at, f"unknown param '{name}'",
                                            did_you_mean(name, params) or "declare it"))
            return False
        texts = []
        for one in wanted if isinstance(wanted, list) else [wanted]:
            try:
                texts.append(param_text(_when_value(params[name], one)))
            except ValueError as exc:
                problems.append(recipe.doc.diag(at, str(exc)))
                return False
        holds = holds and param_text(values[name]) in texts
    return holds


def _when_value(param: Param, value: Any) -> Any:
    """A ``when`` value as the param's type. A value a recipe's ``python`` leaves out of
    the shared choice still names a Python (the step is for the recipes that offer it)."""
    if param.name == "python" and param.type == "choice" and str(value) in (
            param_text(v) for v in param.offered):
        return str(value)
    return param.coerce(value)


MERGED = ("apt", "venv", "pip")  # their effect is the same wherever they run


def merge_shared(steps: list[tuple[str, str, Step]]) -> list[tuple[str, str, Step]]:
    """Steps two recipes share run once: an identical apt, venv or pip step from another
    recipe is dropped, and an apt step installs only packages no earlier apt step installs.
    Other kinds (run, env, ...) may depend on what comes before them, so they stay."""
    seen: dict[str, str] = {}  # step digest -> recipe that has it
    installed: set[str] = set()
    out = []
    for recipe, title, step in steps:
        key = step_digest(step)
        if step.kind in MERGED and seen.get(key, recipe) != recipe:
            continue
        seen.setdefault(key, recipe)
        if step.kind == "apt":
            fresh = [p for p in step.packages if p not in installed]  # type: ignore[attr-defined]
            if not fresh:
                continue
            if len(fresh) < len(step.packages):  # type: ignore[attr-defined]
                step = dataclasses.replace(step, packages=fresh)  # type: ignore[call-arg]
                title = step.title()
            installed.update(fresh)
        out.append((recipe, title, step))
    return out


def _derived(table: compat.Table, values: dict[str, Any], params: dict[str, Param],
             problems: list[Diagnostic]) -> dict[str, Any]:
    """A ``cuda`` param brings what goes with that CUDA version: {{ cuda_tag }} and more."""
    if "cuda" not in values or not table.cuda:
        return {}
    cuda = param_text(values["cuda"])
    if cuda not in table.cuda:
        problems.append(Diagnostic("--set", 0, 0, "cuda",
                                   f"CUDA {cuda} is not in the compatibility table",
                                   "known: " + ", ".join(table.cuda) + f" ({compat.FILE})"))
        return {}
    return {k: v for k, v in table.derived(cuda).items() if k not in params}


def _text(value: Any) -> str | None:
    return None if value is None else param_text(value)


def _bind_params(params: dict[str, Param], settings: dict[str, str],
                 problems: list[Diagnostic]) -> dict[str, Any]:
    """Defaults, then ``--set`` values checked against each param's type."""
    values = {name: p.default for name, p in params.items()}
    for key, raw in settings.items():
        if key not in params:
            problems.append(Diagnostic("--set", 0, 0, key, f"unknown param '{key}'",
                                       did_you_mean(key, params) or
                                       "params: " + ", ".join(sorted(params))))
            continue
        try:
            values[key] = params[key].coerce(raw)
        except ValueError as exc:
            problems.append(Diagnostic("--set", 0, 0, key, str(exc)))
    return values


def _base(order: list[Recipe], values: dict[str, Any], override: str | None,
          problems: list[Diagnostic]) -> str:
    if override:
        if msg := grammar.image(override):
            problems.append(Diagnostic("--base", 0, 0, "base", msg))
        return override
    for recipe in reversed(order):  # the requiring recipe's choice wins
        if recipe.base:
            base, at = recipe.base, ("base",)
            if isinstance(base, dict):
                by = base["by"]
                key = param_text(values[by]) if by in values else ""
                if by not in values or key not in base or key == "by":
                    problems.append(recipe.doc.diag(
                        ("base", "by"), f"no base for {by}={key}" if by in values
                        else f"unknown param '{by}'",
                        f"give one image per value of '{by}'"))
                    return ""
                base, at = base[key], ("base", key)
            chosen = _Binder(recipe, values, problems).text(base, at)
            if msg := grammar.image(chosen):
                problems.append(recipe.doc.diag(at, msg))
            return chosen
    root = order[-1]
    if not any("base" in r.doc.data for r in order):  # else its error is reported already
        problems.append(root.doc.diag((), "no base image", "set 'base' or pass --base"))
    return ""


def step_digest(step: Step) -> str:
    """What a step is: its kind, its bound fields and the content it reads (copied files)."""
    return _digest({"kind": step.kind, "fields": step.fields(), "content": step.content_digest()})


@functools.cache
def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runtime_digest() -> str:
    """What every step's text shares: the runtime helpers and the templates' macros. With
    each step's own partial, a template edit reruns the steps it changes (and every later
    one), as a recipe edit does."""
    return _digest([_file_digest(paths.data_dir() / "helpers.sh"),
                    _file_digest(paths.templates_dir() / "macros.j2")])


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


__all__ = ["Plan", "PlannedStep", "expand", "format_path", "make_plan"]
