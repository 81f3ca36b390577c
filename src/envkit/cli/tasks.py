"""The invoke tasks: ``invoke list|render|validate|schema``, also the ``envkit`` command."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import invoke
from invoke import Collection, Exit

# Each task imports what it needs when it runs: `invoke render` never loads the engine's
# SDK, the backends, the resolver or the linters (see the README's performance section).
from envkit import ca, grammar
from envkit import secrets as secretmod
from envkit.diagnostics import Diagnostic, EnvkitError, error
from envkit.load.catalog import Catalog
from envkit.plan import make_plan, mirrors, param_text
from envkit.render import FORMATS, check_format, render, write_outputs

if TYPE_CHECKING:
    from envkit.cli.build import Options


class _Task(invoke.Task):
    """invoke's Task, but a dashed option (--from-step) never gets '-' as its short flag."""

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        return super().arg_opts(name, default, taken_names | {"-"})


def task(*args: Any, **kwargs: Any) -> Any:
    return invoke.task(*args, klass=_Task, **kwargs)


_STOPPED = ("no output file is ever half-written, and no image is tagged by an interrupted "
            "build")


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: envkit stops as on Ctrl-C (the build cancelled, its children
    stopped, nothing half-written), then exits 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _stops_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated. Their default would kill envkit alone, and the
    docker CLI (in a session of its own) would go on building and tag the image.

    Once interrupted, envkit has stopped what it ran and is exiting: a second Ctrl-C (users
    press it twice) must not turn that clean exit into a death by signal, so from then on
    these signals are ignored (and stay so: the process ends)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(sig) is signal.SIG_DFL}  # nohup's SIG_IGN stays
    try:
        yield
    except KeyboardInterrupt:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        raise
    finally:
        for sig, handler in previous.items():
            if signal.getsignal(sig) is _terminate:
                signal.signal(sig, handler)


MAX_PROBLEMS = 20  # problems printed; a hostile file may have thousands, the first ones say enough


def _reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every EnvkitError becomes its one-line diagnostics on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _no_world_writable()
        try:
            with _stops_on_signals():
                return fn(*args, **kwargs)
        except EnvkitError as exc:
            sys.stdout.flush()
            for diag in exc.diagnostics[:MAX_PROBLEMS]:
                print(diag, file=sys.stderr)
            if len(exc.diagnostics) > MAX_PROBLEMS:
                more = len(exc.diagnostics) - MAX_PROBLEMS
                print(Diagnostic(exc.diagnostics[MAX_PROBLEMS].file, 0, 0, "(more)",
                                 f"{more} more problem{'s' * (more != 1)} not shown"),
                      file=sys.stderr)
            raise Exit(code=1) from None
        except KeyboardInterrupt as exc:
            if isinstance(exc, Terminated):
                name = signal.Signals(exc.signum).name
                print(f"envkit: stopped by {name} ({_STOPPED})", file=sys.stderr)
                raise Exit(code=128 + exc.signum) from None
            print(f"envkit: interrupted ({_STOPPED})", file=sys.stderr)
            raise Exit(code=130) from None
        except BrokenPipeError:  # `envkit list | head`: the reader has gone, which is fine
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=0) from None
        except (Exit, SystemExit):
            raise
        except Exception as exc:
            sys.stdout.flush()
            print(f"envkit: {_one_line(exc)}", file=sys.stderr)
            raise Exit(code=2 if _is_bug(exc) else 1) from None

    return wrapper


def _no_world_writable() -> None:
    """Nothing envkit writes (rendered files, build/, .envkit/, logs) is world-writable,
    whatever the caller's umask; a stricter umask stays as it is."""
    os.umask(os.umask(0o022) | 0o022)


def _is_engine(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("docker", "requests", "urllib3")


def _is_bug(exc: BaseException) -> bool:
    return not (_is_engine(exc) or isinstance(exc, OSError))


def _one_line(exc: BaseException) -> str:
    """An unexpected failure, still as one line: the engine went away mid-way, a file of
    ours could not be written, or (exit 2) a bug of ours."""
    if _is_engine(exc):  # requests' errors are OSErrors too: this test comes first
        from envkit.backends import engine

        if (why := engine._reason(exc)) in ("no socket there", "connection refused"):
            return (f"engine: the Docker engine at {engine.where()} went away: {why} "
                    "(is it still running?)")
        text = (getattr(exc, "explanation", None) or str(exc)).strip().splitlines()
        return (f"engine: {text[0][:300] if text else type(exc).__name__} "
                "(is the Docker engine still running?)")
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    text = " ".join(str(exc).split())[:300]
    return (f"internal error: {type(exc).__name__}: {text} "
            "(please report it with the recipe that caused it)")


def _settings(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise error(f"expected KEY=VALUE, got {pair!r}", path="--set")
        out[key.strip()] = value
    return out


def _config(c: Any, key: str) -> Any:
    section = c.config.get("envkit", {}) if c is not None else {}
    return section.get(key) if hasattr(section, "get") else None


@task(help={"from_": "requirements.txt, pyproject.toml, a conda environment.yml, cog.yaml or "
                     "devcontainer.json.",
            "name": "The recipe's name (default: the project's); it is written as NAME.yaml "
                    "beside the file.",
            "python": "The Python (3.8-3.13) instead of the file's.",
            "force": "Replace a recipe of that name that is already there."})
@_reports_errors
def init(c, from_="", name="", python="", force=False):
    """Write a recipe from a project's own file, then validate it."""
    from envkit.cli.validate import validate
    from envkit.load import importers

    if not from_:
        raise error("which file? --from requirements.txt (or pyproject.toml, environment.yml, "
                    "cog.yaml, devcontainer.json)", path="--from")
    source = Path(from_)
    draft = importers.read(source, importers._name(name) if name else "", python)
    target = source.parent / f"{draft.name}.yaml"
    if target.exists() and not force:
        raise error(f"{target} is already there", path="--name",
                    hint="--force replaces it; --name NAME writes another")
    from envkit.files import atomic_write

    atomic_write(target, importers.recipe_text(draft).encode(), 0o644)
    print(f"envkit: wrote {target} from {source.name} ({draft.kind})")
    for line in importers.summary(draft):
        print(f"  mapped: {line}")
    for line in draft.unmapped:
        print(f"  not mapped: {line}")
    report = validate([str(target)])
    if not report.ok:
        raise EnvkitError(report.problems)
    print(f"envkit: {target} validates ({report.renders} renders); next: invoke lock "
          f"--recipe {target}, then invoke build --recipe {target}")


@task(iterable=["recipe"],
      help={"recipe": "A recipe file, relative to the repository (default: every recipe in "
                      "recipes/); repeat for several.",
            "out": "The repository's folder (default: here); the workflow is written to "
                   ".github/workflows/envkit.yml in it.",
            "envkit": "The pip requirement that installs envkit in CI (default: this "
                      "version from PyPI).",
            "python": "The Python envkit runs on in CI (default 3.11).",
            "force": "Replace a workflow that is already there and differs."})
@_reports_errors
def ci(c, recipe=None, out="", envkit="", python="3.11", force=False):
    """Write a GitHub Actions workflow for a repository of recipes: validate, resolve,
    then build and verify each one."""
    from envkit.files import atomic_write
    from envkit.render import workflows

    root = Path(out or ".")
    paths_ = workflows.recipe_paths(root, list(recipe or []))
    text = workflows.user_workflow(paths_, envkit, python)
    target = root / workflows.WORKFLOW
    if target.exists() and target.read_text(errors="replace") != text and not force:
        raise error(f"{target} is already there and differs", path="--out",
                    hint="--force replaces it")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, text.encode(), 0o644)
    print(f"envkit: wrote {target} ({len(paths_)} recipes: {', '.join(paths_)})")


@task(iterable=["recipe", "platform", "secret"],
      help={"recipe": "A recipe to bake (repeat it; default: the whole catalog).",
            "out": "The folder of docker-bake.json and the contexts (default: bake).",
            "registry": "Tag images under this registry (REGISTRY/envkit/NAME:VARIANT) and "
                        "keep the build cache there.",
            "push_base": "Push the bases to this registry, which the builders reach, and "
                         "build FROM them there.",
            "platform": "A platform to build for (repeat it; default linux/amd64).",
            "ca_bundle": "A CA bundle the builds trust, as a build secret (a file).",
            "secret": "id=ID,src=FILE: a recipe secret the client sends to the builders."})
@_reports_errors
def bake(c, recipe=None, out="", registry="", push_base="", platform=None, ca_bundle="",
         secret=None):
    """Write docker-bake.json: a target per recipe and param variant, for buildx bake."""
    from envkit.cli import bake as bakemod

    given = secretmod.parse(secret or [])
    files = {}
    for sid, g in given.items():
        if not g.src:
            raise error(f"secret {sid}: bake sends files to the builders", path="--secret",
                        hint=f"id={sid},src=FILE")
        files[sid] = Path(g.src).expanduser().resolve()
    opts = bakemod.Options(recipes=list(recipe or []), out=Path(out or "bake"),
                           registry=registry.rstrip("/"), push_base=push_base.rstrip("/"),
                           platforms=list(platform or []) or ["linux/amd64"],
                           ca_bundle=ca.bundle(ca_bundle) if ca_bundle else None,
                           secrets=files)
    push = bakemod.pusher(opts.push_base, sys.stdout) if opts.push_base else None
    path = bakemod.bake(opts, sys.stdout, push)
    print(f"envkit: {bakemod.command(path.parent, os.environ)}")


@task(name="list")
@_reports_errors
def list_(c):
    """List the catalog's recipes with their description and params."""
    catalog = Catalog()
    for path in catalog.all():
        try:
            recipe = catalog.load(path)
            plan = make_plan(recipe, catalog)
            params = plan.declared  # listed when it plans with defaults
        except EnvkitError as exc:
            n = len(exc.diagnostics)
            print(f"{path.stem:<16} (invalid: {n} problem{'s' * (n != 1)}; "
                  f"run: invoke validate --recipe {path.stem})")
            continue
        print(f"{recipe.name:<16} {recipe.description}")
        for name, p in params.items():
            if name == "prefix":
                continue
            allowed = f" [{', '.join(param_text(v) for v in p.values)}]" if p.values else ""
            allowed += f" {p.range}" if p.range else ""
            if p.minimum is not None or p.maximum is not None:
                low, high = ("" if b is None else b for b in (p.minimum, p.maximum))
                allowed += f" {low}..{high}"
            print(f"{'':<16}   {name}={param_text(p.default)} ({p.type}{allowed})"
                  f"{' ' + p.description if p.description else ''}")
        runs = [f"workdir {plan.workdir}"] if plan.workdir else []
        runs += [f"expose {' '.join(plan.expose)}"] if plan.expose else []
        runs += [f"entrypoint {json.dumps(plan.entrypoint)}"] if plan.entrypoint else []
        runs += [f"cmd {json.dumps(plan.cmd)}"] if plan.cmd is not None else []
        if runs:
            print(f"{'':<16}   runs: {'; '.join(runs)}")


@task(
    name="render",
    iterable=["set_"],
    help={
        "recipe": "Catalog name or path to a recipe YAML file.",
        "format": "; ".join(f"{f.name}: {f.summary}" for f in FORMATS.values())
                  + " (default: dockerfile on stdout; every format with --out).",
        "set_": "KEY=VALUE for a param; repeat for several.",
        "mirror": "Mirror profile: " + ", ".join(sorted(mirrors.profiles())) + ".",
        "base": "Base image instead of the recipe's.",
        "out": "Write files into this folder (atomically) instead of printing.",
        "no_lock": "Render from the recipe alone, not its lock.",
    },
)
@_reports_errors
def render_(c, recipe="", format="", set_=None, mirror="", base="", out="", no_lock=False):
    """Render a recipe as a shell script or a Dockerfile (installing its lock)."""
    from envkit.plan.locking import Locker, label

    _need_recipe(recipe)
    catalog = Catalog()
    formats = [check_format(format)] if format else (list(FORMATS) if out else ["dockerfile"])
    found = catalog.find(recipe)
    locker = Locker(catalog, found, off=no_lock)
    plan = make_plan(found, catalog, _settings(set_), mirror or _config(c, "mirror"),
                     base or None, locker=locker)
    if plan.lock is not None and plan.lock.state in ("missing", "unlocked") and locker.inputs:
        why = (f"{plan.lock.entry.unlocked}" if plan.lock.state == "unlocked"
               else f"no lock for {label(locker.inputs.params)}; invoke lock --recipe {recipe} "
               "makes one")
        print(f"envkit: rendered from the recipe alone ({why})", file=sys.stderr)
    if out:
        for path in write_outputs(plan, formats, Path(out)):
            print(path)
    else:
        sys.stdout.write(render(plan, formats[0]))


@task(help={"recipe": "Only this recipe (name or path); repeat for several.",
            "quiet": "Print problems only.",
            "resolve": "Also resolve every pip step with the lock's resolver (uv) for the "
                       "plan's Python and the base's platform (needs the network; installs "
                       "and writes nothing).",
            "ca-bundle": "CA bundle for --resolve: auto (default), none, or a file."},
      iterable=["recipe"])
@_reports_errors
def validate(c, recipe=None, quiet=False, resolve=False, ca_bundle=""):
    """Dry-run every recipe: load, plan and render every param value, lint the output."""
    from envkit.cli.validate import validate as run_validate

    started = time.perf_counter()
    report = run_validate(recipe or None, resolve_pins=resolve,
                          ca_bundle=ca_bundle or _config(c, "ca_bundle") or "auto")
    if not quiet:
        for line in report.lines:
            print(line)
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if not report.ok:
        raise EnvkitError(report.problems)
    resolved = (f", {report.resolved} pip resolutions passed ({report.packages} packages)"
                f"{f' ({len(report.skipped)} skipped)' if report.skipped else ''}"
                if resolve else "")
    print(f"ok: {report.recipes} recipes, {report.renders} renders linted clean, "
          f"{report.locked} locks current{resolved} in {time.perf_counter() - started:.1f}s")


@task(name="schema", help={"check": "Fail if the shipped file is out of date; write nothing."})
@_reports_errors
def schema_(c, check=False):
    """Write the recipe JSON Schema (for editors) into the package."""
    from envkit.load import schema

    path = schema.shipped_schema_path()
    text = schema.schema_text()
    current = path.read_text() if path.exists() else ""
    if check:
        if current != text:
            raise error(f"{path} is out of date", path="schema", hint="run invoke schema")
        print(f"{path} is up to date")
        return
    path.write_text(text)
    print(path)


def _need_recipe(recipe: str) -> None:
    if not recipe:
        raise error("which recipe? pass --recipe NAME or --recipe PATH", path="--recipe",
                    hint="invoke list shows the catalog")


def _options(c: Any, recipe: str, set_: list[str] | None, mirror: str, base: str = "",
             ca_bundle: str | None = None, **kw: Any) -> Options:
    """Options for a task; ``ca_bundle=None`` for tasks that download nothing."""
    from envkit.cli.build import Options

    _need_recipe(recipe)
    bundle = (None if ca_bundle is None
              else ca.choose(ca_bundle or _config(c, "ca_bundle") or "auto"))
    return Options(recipe=recipe, settings=_settings(set_), mirror=mirror or _config(c, "mirror"),
                   base=base or None, ca_bundle=bundle,
                   docker=_config(c, "docker") or "", **kw)


def _step_number(value: Any) -> int:
    """--from-step N: invoke passes what was typed; a number from 1 on."""
    text = str(value).strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise error(f"--from-step needs a step number from 1, got {text!r}", path="--from-step")
    return int(text)


def _check_tag(tag: str) -> str:
    if msg := grammar.image(tag):
        raise error(msg, path="--tag")
    if "@" in tag:
        raise error(f"a tag names an image; {tag!r} is a digest", path="--tag",
                    hint="e.g. envkit/paddle:dev")
    return tag


_COMMON = {
    "recipe": "Catalog name or path to a recipe YAML file.",
    "set_": "KEY=VALUE for a param; repeat for several.",
    "mirror": "Mirror profile: " + ", ".join(sorted(mirrors.profiles())) + ".",
    "ca_bundle": "PEM CA bundle apt, pip, uv, curl and git trust while building (HTTPS "
                 "through a proxy); in no layer of the image. Default 'auto': the host's "
                 "(/etc/ssl/certs/ca-certificates.crt); 'none': no bundle. Or envkit.ca_bundle.",
    "verbose": "Print the tools' whole output, not one line per step.",
    "allow_system": "Host: let apt steps install Debian packages (root). Without it they only "
                    "check that the packages are installed.",
    "fresh": "Host: run every step, forgetting which ones finished in an earlier run.",
    "secret": "id=ID,src=FILE or id=ID,env=VAR: a secret the recipe declares; repeat for "
              "several (default: ENVKIT_SECRET_<ID>_FILE or ENVKIT_SECRET_<ID>).",
    "from_step": "Host: run from step N on (earlier steps must have finished before).",
    "no_lock": "Install from the recipe alone, not its lock (only its own pins are fixed).",
}


@task(
    iterable=["set_", "secret"],
    help={**_COMMON,
          "base": "Base image instead of the recipe's.",
          "tag": "Image tag (default: envkit/NAME:<build hash>, and envkit/NAME:latest).",
          "target": "docker, podman or host (default: the first of docker and podman whose "
                    "engine is there, else host).",
          "no_verify": "Skip the recipe's checks after the build.",
          "no_cache": "Build even if the image exists, without the layer cache.",
          "offline": "Build with no network from this folder (invoke export wrote it): "
                     "its base, wheels and .debs, checked against the lock."},
)
@_reports_errors
def build(c, recipe="", set_=None, mirror="", base="", tag="", ca_bundle="", target="",
          no_verify=False, no_cache=False, allow_system=False, verbose=False, secret=None,
          fresh=False, from_step="", no_lock=False, offline=""):  # in this order: -e, -f, -p
    """Build a recipe into an image (Docker or podman; or on this host) and verify it."""
    from envkit.cli.build import build as run_build

    if tag:
        _check_tag(tag)
    opts = _options(c, recipe, set_, mirror, base, ca_bundle, tag=tag, target=target,
                    verify=not no_verify, no_cache=no_cache, allow_system=allow_system,
                    verbose=verbose, fresh=fresh, from_step=_step_number(from_step),
                    secrets=secretmod.parse(secret or []), no_lock=no_lock,
                    offline=Path(offline) if offline else None)
    run_build(opts)


@task(iterable=["set_", "secret"],
      help={**{k: v for k, v in _COMMON.items()
               if k in ("recipe", "set_", "mirror", "ca_bundle", "secret", "verbose")},
            "out": "The folder to write (default: export/NAME); an earlier export there is "
                   "replaced once this one is complete.",
            "target": "docker or podman (default: the first whose engine is there)."})
@_reports_errors
def export(c, recipe="", set_=None, mirror="", ca_bundle="", target="", out="", secret=None,
           verbose=False):
    """Build a recipe at its lock, then write an air-gapped hand-over: the image, its base,
    the locked wheels and .debs (invoke build --offline DIR builds from it with no network)."""
    from envkit.cli.export import export as run_export

    opts = _options(c, recipe, set_, mirror, "", ca_bundle, target=target, verbose=verbose,
                    secrets=secretmod.parse(secret or []))
    run_export(opts, Path(out) if out else None, sys.stdout)


@task(name="run", iterable=["set_", "secret"], help=_COMMON)
@_reports_errors
def run_(c, recipe="", set_=None, mirror="", ca_bundle="", allow_system=False, verbose=False,
         secret=None, fresh=False, from_step="", no_lock=False):
    """Run a recipe's shell script on this host, into .envkit/envs/NAME (no verify)."""
    from envkit.cli.build import build_host

    opts = _options(c, recipe, set_, mirror, "", ca_bundle, allow_system=allow_system,
                    verbose=verbose, target="host", fresh=fresh,
                    from_step=_step_number(from_step), secrets=secretmod.parse(secret or []),
                    no_lock=no_lock)
    build_host(opts, Catalog(), sys.stdout, verify=False)


@task(iterable=["set_"],
      help={"recipe": _COMMON["recipe"], "set_": _COMMON["set_"],
            "image": "Verify this image (its labels give the params it was built with).",
            "env": "Verify this host environment (a folder invoke build --target host made).",
            "target": "docker or podman: the engine that has the image (default: the first "
                      "that has it)."})
@_reports_errors
def verify(c, recipe="", image="", env="", set_=None, target=""):
    """Run a recipe's checks in an image or a host environment."""
    from envkit.cli.build import verify_env, verify_image

    if bool(image) == bool(env):
        raise error("verify what? pass --image TAG or --env PATH (one of them)",
                    path="--image")
    opts = _options(c, recipe, set_, "", target=target)
    if image:
        verify_image(opts, image, sys.stdout)
    else:
        verify_env(opts, Path(env), sys.stdout)


_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})Z)?")


def _date(value: str, flag: str) -> tuple[int, ...]:
    import datetime

    m = _DATE.fullmatch(value.strip())
    if not m:
        raise error(f"expected a date, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, got {value!r}",
                    path=flag)
    parts = tuple(int(g or 0) for g in m.groups())
    try:
        datetime.datetime(*parts)  # type: ignore[misc]
    except ValueError as exc:
        raise error(f"{value!r} is not a date: {exc}", path=flag) from None
    return parts


@task(name="lock", iterable=["recipe", "set_", "upgrade_package", "secret"],
      help={"recipe": "A recipe (name or path) to lock; repeat for several.",
            "set_": "KEY=VALUE: lock only this param combination; repeat for several params.",
            "all": "Lock every recipe of the catalog.",
            "upgrade": "Resolve anew: the newest versions the pins allow, not the locked ones.",
            "upgrade_package": "Let this package move (pip or Debian); repeat for several.",
            "exclude_newer": "Lock as of this date (YYYY-MM-DD[THH:MM:SSZ]): no pip release "
                             "uploaded after it.",
            "apt_snapshot": "Debian's archive as of this date (snapshot.debian.org), "
                            "rendered into the apt sources of builds.",
            "mirror": _COMMON["mirror"] + " Where to resolve; the lock is the same.",
            "base": "Base image instead of the recipe's (as a build with --base uses it).",
            "ca_bundle": _COMMON["ca_bundle"],
            "secret": _COMMON["secret"],
            "target": "docker or podman: the engine apt steps are locked in, in a container "
                      "of the base (default: the first whose engine is there)."})
@_reports_errors
def lock_(c, recipe=None, set_=None, all=False, upgrade=False, upgrade_package=None,
          exclude_newer="", apt_snapshot="", mirror="", base="", ca_bundle="", secret=None,
          target=""):
    """Lock recipes: every pip and apt package, exactly, with hashes, per param variant."""
    from envkit.plan import lock as lockmod
    from envkit.plan.locking import Maker, Settings, label, lock_recipe

    if not recipe and not all:
        _need_recipe("")
    if recipe and all:
        raise error("--all locks every recipe of the catalog; give it without --recipe",
                    path="--all")
    if upgrade and upgrade_package:
        raise error("--upgrade moves every package; --upgrade-package names some",
                    path="--upgrade", hint="pass one of them")
    if set_ and (all or len(recipe or []) != 1):
        raise error("--set locks one combination of one recipe", path="--set")
    settings = Settings(
        ca_bundle=ca.choose(ca_bundle or _config(c, "ca_bundle") or "auto"),
        exclude_newer=("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(
            *_date(exclude_newer, "--exclude-newer")) if exclude_newer else ""),
        apt_snapshot=("{:04d}{:02d}{:02d}T{:02d}{:02d}{:02d}Z".format(
            *_date(apt_snapshot, "--apt-snapshot")) if apt_snapshot else ""),
        upgrade=upgrade, upgrade_packages=list(upgrade_package or []),
        given=secretmod.parse(secret or []))
    catalog = Catalog()
    recipes = ([catalog.find(r) for r in recipe] if recipe
               else [catalog.load(p) for p in catalog.all()])
    only = [_settings(set_)] if set_ else None
    from envkit import backends
    from envkit.cli.build import connect

    if target and target not in backends.load():
        raise error(f"unknown target '{target}'", path="--target",
                    hint=" or ".join(backends.load()))
    containers, refused = connect(target, "", sys.stderr, doing="locking apt steps",
                                  instead="apt steps cannot be locked here")
    if refused is not None:
        raise refused
    maker = Maker(settings, containers, sys.stdout)
    started = time.perf_counter()
    counts = {"locked": 0, "kept": 0, "unlocked": 0, "failed": 0, "nothing": 0}
    problems = []
    for r in recipes:
        for o in lock_recipe(catalog, r, settings, maker, only, mirror or _config(c, "mirror"),
                             base or None):
            counts[o.state] += 1
            problems += o.problems
            state = {"kept": "up to date", "locked": "locked", "unlocked": "unlocked",
                     "failed": "FAILED", "nothing": "nothing to lock"}[o.state]
            print(f"{o.recipe} [{label(o.params)}]: {state}: {o.detail} ({o.seconds:.1f}s)",
                  flush=True)
        if lockmod.path_for(r.path).exists():
            print(f"wrote {lockmod.display(lockmod.path_for(r.path))}", flush=True)
    summary = (f"{counts['locked']} locked, {counts['kept']} up to date, {counts['unlocked']} "
               f"unlocked here (an index or a base that does not answer), {counts['failed']} "
               f"failed, in {time.perf_counter() - started:.1f}s")
    if problems:
        print(f"lock: {summary}", file=sys.stderr)
        raise EnvkitError(problems)
    print(f"ok: {summary}")


@task(help={"suite": "Debian suite (default bookworm).",
            "tag": "Image tag (default envkit/base:SUITE).",
            "mirror_url": "Debian mirror debootstrap downloads from.",
            "target": "docker or podman: the engine whose store gets it (default: the first "
                      "that is there)."})
@_reports_errors
def base(c, suite="", tag="", mirror_url="", target=""):
    """Make a minimal Debian base image with debootstrap; no registry involved."""
    from envkit.backends import baseimage, engine
    from envkit.cli.build import connect

    suite = baseimage.check_suite(suite or baseimage.DEFAULT_SUITE)
    tag = _check_tag(tag or baseimage.default_tag(suite))
    from envkit.backends import load

    if target not in ("", *load()):
        raise error(f"a base image is for an engine, not '{target}'", path="--target",
                    hint=" or ".join(load()))
    backend, refused = connect(target, "", io.StringIO())
    if backend is None:
        raise refused or error("no Docker engine or podman here to import the base into",
                               path="engine", hint="start dockerd, or install podman")
    started = time.perf_counter()
    print(f"envkit: debootstrap {suite} (minbase) for {backend.name}; about a minute",
          flush=True)
    image_id = backend.make_base(suite, tag, mirror_url or baseimage.DEFAULT_MIRROR,
                                 sys.stdout)
    made = backend.image(tag)
    size = engine.size_text(made.size if made else 0)
    print(f"envkit: {tag} ({image_id[:19]}, {size}) in {time.perf_counter() - started:.0f}s")


@task(help={"target": "docker (default), podman or host: with podman or host the Docker "
                      "engine and BuildKit are optional.",
            "gpu": "Require a GPU runtime (the NVIDIA driver and Container Toolkit).",
            "ca_bundle": "The CA bundle to check: auto (default), none, or a file. Or "
                         "envkit.ca_bundle.",
            "mirror": _COMMON["mirror"] + " Its pip index is the HTTPS check's target."})
@_reports_errors
def doctor(c, target="", gpu=False, ca_bundle="", mirror=""):
    """Check this machine: engine, BuildKit, podman, disk, CA bundle, GPU, debootstrap."""
    from envkit import backends
    from envkit.verify import doctor as doc

    if target and target not in backends.targets():
        raise error(f"unknown target '{target}'", path="--target",
                    hint=" or ".join(backends.targets()))
    profile = mirrors.get(mirror or _config(c, "mirror"))
    indexes = tuple(doc.PYPI if url == mirrors.UPSTREAM else url
                    for url in profile.candidates("pip"))
    ctx = doc.Context(target=target, gpu=gpu,
                      ca_bundle=ca_bundle or _config(c, "ca_bundle") or "auto",
                      indexes=tuple(dict.fromkeys(indexes)), docker=_config(c, "docker") or "")
    findings = []
    for finding in doc.run(ctx):
        findings.append(finding)
        print(finding.line(), flush=True)
    print(doc.summary(findings))
    failed = [f.name for f in findings if f.status == doc.FAIL]
    if failed:
        raise error(f"{len(failed)} required check{'s' * (len(failed) != 1)} failed: "
                    f"{', '.join(failed)}", path="doctor", hint="each FAIL line says the fix")


ns = Collection(list_, render_, validate, schema_, lock_, build, run_, verify, base, doctor,
                init, ci, bake, export)
# Settings users may put in invoke.yaml (or INVOKE_ENVKIT_MIRROR=...): envkit.mirror,
# envkit.ca_bundle (a PEM file), envkit.docker (the docker CLI to build with).
ns.configure({"envkit": {"mirror": "", "ca_bundle": "", "docker": ""}})
