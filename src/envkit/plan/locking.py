"""Locks in use: the lock a plan gets, and making locks (``invoke lock``, or on the fly).

A plan's lock is found by the hash of its normalised inputs (``lock.inputs_of``). The
locker a build hands ``make_plan`` applies it to the steps before they are hashed, so the
step hashes, the image tag and the resume stamps follow the locked content. A stale lock
(the params have an entry, for other inputs) is refused; a missing one is made on the fly
when the caller can (a build), else the plan stays unlocked and says so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from envkit import ca
from envkit import secrets as secretmod
from envkit.diagnostics import Diagnostic, EnvkitError, error
from envkit.load import compat
from envkit.load.catalog import Catalog
from envkit.load.model import Recipe
from envkit.load.yamlsrc import load_file
from envkit.plan import Plan, aptlock, make_plan, mirrors
from envkit.plan import lock as lockmod
from envkit.plan.lock import Entry, Inputs, LockFile, Match, StepLock
from envkit.plan.variants import variants as all_variants
from envkit.secrets import Given


@dataclass
class Settings:
    """How locks are made: ``invoke lock``'s options, or a build's for an on-the-fly lock."""

    ca_bundle: Path | None = None
    exclude_newer: str = ""
    apt_snapshot: str = ""
    upgrade: bool = False
    upgrade_packages: list[str] = field(default_factory=list)
    given: dict[str, Given] = field(default_factory=dict)  # --secret: a private index's login


@functools.cache
def _compat_digest(path: Path, mtime_ns: int) -> str:
    data = load_file(path).data if path.is_file() else None
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def compat_digest(catalog: Catalog) -> str:
    """The compatibility data as loaded (a comment edit changes nothing)."""
    path = catalog.root / compat.FILE
    return _compat_digest(path, path.stat().st_mtime_ns if path.is_file() else 0)


def label(params: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "no params"


def stale_error(plan: Plan, match: Match, inputs: Inputs) -> EnvkitError:
    entry = match.entry
    assert entry is not None and match.file is not None
    return EnvkitError([Diagnostic(
        match.file.display, entry.line, 1, "lock",
        f"stale for {label(inputs.params)}: {plan.name} (or a recipe it requires, the "
        "compatibility data or envkit's uv) changed since it was locked",
        f"lock again: invoke lock --recipe {plan.name}; or build from the recipe alone: "
        "--no-lock")])


class Locker:
    """What ``make_plan`` calls to apply a lock. ``make`` makes a missing one (a build);
    without it a missing lock leaves the plan unlocked. A stale lock is an error unless
    ``strict`` is off (validate reports it itself)."""

    def __init__(self, catalog: Catalog, recipe: Recipe, *, off: bool = False,
                 strict: bool = True, make: Callable[[Plan, Inputs], Entry] | None = None):
        self.catalog, self.recipe, self.off, self.strict, self.make = (catalog, recipe, off,
                                                                         strict, make)
        self.inputs: Inputs | None = None

    def __call__(self, plan: Plan) -> None:
        if self.off:
            return
        inputs = self.inputs = lockmod.inputs_of(plan, compat_digest(self.catalog))
        if not inputs.data["steps"]:  # no apt or pip step: nothing a lock could pin
            plan.lock = Match("none", None, None)
            return
        file = lockmod.load(lockmod.path_for(self.recipe.path))
        match = file.find(inputs) if file else Match("missing", None, None)
        if match.state == "stale" and self.strict:
            raise stale_error(plan, match, inputs)
        if match.state == "missing" and self.make is not None:
            entry = self.make(plan, inputs)
            match = Match("unlocked" if entry.unlocked else "made", entry, None)
        plan.lock = match
        if match.state in ("locked", "made"):
            lockmod.apply(plan, match)


# --- making an entry -----------------------------------------------------------------------


class Maker:
    """Makes lock entries: pip steps with uv, apt steps in the base image (through the
    engine, if there is one)."""

    def __init__(self, settings: Settings, containers: aptlock.Containers | None = None,
                 out: TextIO | None = None, host: bool = False):
        """``containers``: the image engine apt steps are locked with (a backend), or None.
        ``host``: for a build on this host, whose apt steps only check packages: without
        an engine its apt steps stay unlocked instead of failing the lock."""
        self.settings, self.containers, self.out, self.host = settings, containers, out, host
        self._bases: dict[str, tuple[str, str, str]] = {}  # ref -> (image, made, digest)

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def __call__(self, plan: Plan, inputs: Inputs, previous: Entry | None = None) -> Entry:
        # uv: only when a lock is made
        from envkit.plan import resolver as resolve

        s = self.settings
        target = lockmod.target_of(plan)
        entry = Entry(inputs.digest, [inputs.params], python=target.python,
                      platform=target.platform, base=plan.base, suite=target.suite,
                      uv=lockmod.uv_version(), exclude_newer=s.exclude_newer,
                      apt_snapshot=s.apt_snapshot)
        old = previous.steps if previous and not previous.unlocked else []
        # a pip step's secrets (a private index's .netrc) reach uv as they reach the step
        used = {sec.id: sec for ps in plan.steps if ps.kind == "pip" for sec in ps.step.secrets}
        # every secret the plan needs is asked for here, so all missing ones are said at once
        with secretmod.provide(plan.secrets, {k: v for k, v in s.given.items()
                                              if k in plan.secrets}) as given:
            env = resolve.uv_env(s.ca_bundle)
            for sid, path in given.files.items():
                if sid in used:
                    env[used[sid].env] = (str(path) if used[sid].mode == "file"
                                          else path.read_text())
            try:
                pip = resolve.resolve_plan(
                    plan, env, resolve.Options(s.exclude_newer, s.upgrade, s.upgrade_packages),
                    [st for st in old if st.kind == "pip"])
            except resolve.ResolveError as exc:
                message = exc.message
                for text in given.redact:
                    message = message.replace(text, "***")
                if exc.skipped:
                    entry.unlocked = message
                    return entry
                raise self._failed(plan, inputs, message) from None
        apt_jobs = [aptlock.AptJob(f"{ps.recipe}: {ps.title}", ps.step.packages,  # type: ignore[attr-defined]
                                  fresh=ps.stage == "runtime")  # its own stage, on the base
                    for ps in plan.steps if ps.kind == "apt"]
        apt: list[StepLock] = []
        if apt_jobs and self.containers is None and self.host:
            entry.apt_free = ("no image engine answers here to lock apt steps in the base "
                              "image; on a host they check packages, they do not install")
            entry.steps = pip
            return entry
        if apt_jobs and self.containers is None:
            raise NeedsEngine(error(
                f"{plan.name}: its apt steps are locked in the base image ({plan.base}), "
                "and no image engine (Docker or podman) answers here", path="lock",
                hint="start one (invoke doctor says how), then lock again").diagnostics)
        if apt_jobs or self.containers is not None:
            image, made, digest, why = self._base(plan)
            if why:
                if apt_jobs:
                    entry.unlocked = why
                    return entry
            else:
                entry.base_made, entry.base_digest = made, digest
                plan.image = image
            if apt_jobs:
                prefer = {} if s.upgrade else {
                    p.name: p.version for st in old if st.kind == "apt" for p in st.apt
                    if p.name not in s.upgrade_packages}
                sim = aptlock.simulate(self.containers, image, apt_jobs,
                                       dict(plan.mirror.env()), s.ca_bundle, prefer,
                                       s.apt_snapshot)
                apt = sim.steps
                entry.suite = sim.suite  # what the base says it is (a host checks it)
        pips, apts = iter(pip), iter(apt)
        for ps in plan.steps:
            if ps.step.lock_inputs() is None:
                continue
            entry.steps.append(next(pips) if ps.kind == "pip" else next(apts))
        return entry

    def _failed(self, plan: Plan, inputs: Inputs, message: str) -> EnvkitError:
        hint = ca.hint([message], self.settings.ca_bundle).removesuffix("; ")
        return error(f"{plan.name} [{label(inputs.params)}] cannot be locked: {message}",
                     path="lock", hint=hint)

    def _base(self, plan: Plan) -> tuple[str, str, str, str]:
        """(image, how it was made, registry digest, why not): the base on the engine."""
        assert self.containers is not None
        if plan.base in self._bases:
            return (*self._bases[plan.base], "")
        try:
            ref = self.containers.ensure_base(plan.base, self.out or _Null(),
                                              plan.mirror.registries())
        except EnvkitError:
            return "", "", "", (f"the base image {plan.base} is not on this engine, and no "
                                "registry answers")
        made, digest = self.containers.provenance(ref)
        self._bases[plan.base] = (ref, made, digest)
        return ref, made, digest, ""


class _Inputs:
    """A locker that only notes the plan's lock inputs."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.inputs: Inputs | None = None

    def __call__(self, plan: Plan) -> None:
        self.inputs = lockmod.inputs_of(plan, compat_digest(self.catalog))


class NeedsEngine(EnvkitError):
    """Locking apt steps needs the base image, so an engine."""


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


# --- invoke lock ---------------------------------------------------------------------------


def variants(recipe: Recipe, catalog: Catalog) -> list[dict[str, str]]:
    """The param settings validate covers: the defaults, then each other value of each
    choice and bool param with the rest at their defaults."""
    return [v.settings for v in all_variants(recipe, catalog) if v.mirror == mirrors.DEFAULT]


@dataclass
class Outcome:
    recipe: str
    params: dict[str, str]
    state: str  # locked (made now) | kept (up to date) | unlocked | failed | nothing
    detail: str
    seconds: float
    problems: list[Diagnostic] = field(default_factory=list)  # when it failed
    base: str = ""


def lock_recipe(catalog: Catalog, recipe: Recipe, settings: Settings, maker: Maker,
                only: list[dict[str, str]] | None = None, mirror: str | None = None,
                base: str | None = None) -> list[Outcome]:
    """Lock every variant (or ``only`` these settings) of a recipe and write its lock file.
    An entry already made from the same inputs is kept, unless upgrading or locking as of
    another date."""
    path = lockmod.path_for(recipe.path)
    try:
        file = lockmod.load(path) or LockFile(path, recipe.name)
    except EnvkitError as exc:  # a lock that cannot be read is made anew, not kept
        maker.say(f"envkit: {lockmod.display(path)} cannot be read "
                  f"({exc.diagnostics[0].message}); making it anew")
        file = LockFile(path, recipe.name)
    file.recipe = recipe.name
    wanted = only if only is not None else variants(recipe, catalog)
    outcomes: list[Outcome] = []
    nothing = 0
    made: dict[str, tuple[Entry, str]] = {}  # inputs -> the entry, and what became of it
    for settings_ in wanted:
        started = time.monotonic()
        grab = _Inputs(catalog)  # the lock file itself is read above, once
        plan = make_plan(recipe, catalog, settings_, mirror, base, locker=grab)
        assert grab.inputs is not None
        inputs = grab.inputs
        if not inputs.data["steps"]:
            outcomes.append(Outcome(recipe.name, inputs.params, "nothing",
                                    "no apt or pip step to lock", 0.0, base=plan.base))
            nothing += 1
            continue
        fresh = _fresh(settings)
        if inputs.digest in made:  # another variant with the same inputs: the same entry
            entry, state = made[inputs.digest]
        else:
            old = next((e for e in file.entries if e.inputs == inputs.digest), None)
            if (old is not None and not fresh and not old.unlocked
                    and _same_options(old, settings)):  # one not made here is tried again
                entry, state = old, "kept"
            else:
                previous = old or next((e for e in file.entries
                                        if inputs.params in e.params), None)
                try:
                    entry, state = maker(plan, inputs, previous), "locked"
                except EnvkitError as exc:  # the other variants are still locked and written
                    outcomes.append(Outcome(recipe.name, inputs.params, "failed",
                                            exc.diagnostics[0].message,
                                            time.monotonic() - started, exc.diagnostics,
                                            base=plan.base))
                    continue
                if old is not None:  # made anew for the same inputs: it takes old's place
                    entry.params = [*old.params,
                                    *(p for p in entry.params if p not in old.params)]
                    file.entries.remove(old)
            if entry.unlocked:
                state = "unlocked"
            made[inputs.digest] = (entry, state)
        # this variant's params on this base now belong to this entry alone (another
        # base's entries, made with invoke lock --base, stay)
        for e in file.entries:
            if inputs.params in e.params and e is not entry and e.base == entry.base:
                e.params.remove(inputs.params)
        if inputs.params not in entry.params:
            entry.params.append(inputs.params)
        if entry not in file.entries:
            file.entries.append(entry)
        outcomes.append(Outcome(recipe.name, inputs.params, state, summary(entry),
                                time.monotonic() - started, base=plan.base))
    if only is None:  # every variant was locked: an entry for params no longer covered goes
        covered = [(o.base, o.params) for o in outcomes]  # a failed one keeps its old entry
        bases = {o.base for o in outcomes}  # another base's entries (--base) stay
        for e in file.entries:
            if e.base in bases:
                e.params = [p for p in e.params if (e.base, p) in covered]
    file.entries = [e for e in file.entries if e.params]
    if nothing < len(wanted) or path.exists():
        lockmod.write(file)
    return outcomes


def _fresh(settings: Settings) -> bool:
    return settings.upgrade or bool(settings.upgrade_packages)


def _same_options(entry: Entry, settings: Settings) -> bool:
    return (entry.exclude_newer == settings.exclude_newer
            and entry.apt_snapshot == settings.apt_snapshot)


def summary(entry: Entry) -> str:
    if entry.unlocked:
        return entry.unlocked
    pip = sum(len(s.pip) for s in entry.steps)
    apt = sum(len(s.apt) for s in entry.steps)
    if entry.apt_free:
        return f"{pip} pip package{'s' * (pip != 1)}; apt steps not locked: {entry.apt_free}"
    return f"{pip} pip package{'s' * (pip != 1)}, {apt} Debian package{'s' * (apt != 1)}"
