"""The invoke tasks: ``invoke list|render|validate|schema``, also the ``envkit`` command."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invoke import Collection, Exit, task

from . import ca, grammar, mirrors, schema
from .build import Options
from .catalog import Catalog
from .diagnostics import Diagnostic, EnvkitError, error
from .plan import make_plan, param_text
from .render import FORMATS, check_format, render, write_outputs
from .validate import validate as run_validate

MAX_SHOWN = 20  # problems printed; a hostile file may have thousands, the first ones say enough


def _reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every EnvkitError becomes its one-line diagnostics on stderr and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EnvkitError as exc:
            sys.stdout.flush()
            for diag in exc.diagnostics[:MAX_SHOWN]:
                print(diag, file=sys.stderr)
            if len(exc.diagnostics) > MAX_SHOWN:
                more = len(exc.diagnostics) - MAX_SHOWN
                print(Diagnostic(exc.diagnostics[MAX_SHOWN].file, 0, 0, "(more)",
                                 f"{more} more problem{'s' * (more != 1)} not shown"),
                      file=sys.stderr)
            raise Exit(code=1) from None
        except KeyboardInterrupt:
            print("envkit: interrupted (no output file is ever half-written, and no image is "
                  "tagged by an interrupted build)", file=sys.stderr)
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


def _is_engine(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("docker", "requests", "urllib3")


def _is_bug(exc: BaseException) -> bool:
    return not (_is_engine(exc) or isinstance(exc, OSError))


def _one_line(exc: BaseException) -> str:
    """An unexpected failure, still as one line: the engine went away mid-way, a file of
    ours could not be written, or (exit 2) a bug of ours."""
    if _is_engine(exc):  # requests' errors are OSErrors too: this test comes first
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


@task(name="list")
@_reports_errors
def list_(c):
    """List the catalog's recipes with their description and params."""
    catalog = Catalog()
    for path in catalog.all():
        try:
            recipe = catalog.load(path)
            params = make_plan(recipe, catalog).declared  # listed when it plans with defaults
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
            print(f"{'':<16}   {name}={param_text(p.default)} ({p.type}{allowed})"
                  f"{' ' + p.description if p.description else ''}")


@task(
    name="render",
    iterable=["set_"],
    help={
        "recipe": "Catalog name or path to a recipe YAML file.",
        "format": "shell or dockerfile (default: dockerfile on stdout; both with --out).",
        "set_": "KEY=VALUE for a param; repeat for several.",
        "mirror": "Mirror profile: " + ", ".join(sorted(mirrors.profiles())) + ".",
        "base": "Base image instead of the recipe's.",
        "out": "Write files into this folder (atomically) instead of printing.",
    },
)
@_reports_errors
def render_(c, recipe="", format="", set_=None, mirror="", base="", out=""):
    """Render a recipe as a shell script or a Dockerfile."""
    _need_recipe(recipe)
    catalog = Catalog()
    formats = [check_format(format)] if format else (list(FORMATS) if out else ["dockerfile"])
    plan = make_plan(catalog.find(recipe), catalog, _settings(set_),
                     mirror or _config(c, "mirror"), base or None)
    if out:
        for path in write_outputs(plan, formats, Path(out)):
            print(path)
    else:
        sys.stdout.write(render(plan, formats[0]))


@task(help={"recipe": "Only this recipe (name or path); repeat for several.",
            "quiet": "Print problems only.",
            "resolve": "Also resolve every pip step for the recipe's own Python and platform "
                       "with pip --dry-run (needs the network; installs nothing).",
            "ca-bundle": "CA bundle for --resolve: auto (default), none, or a file."},
      iterable=["recipe"])
@_reports_errors
def validate(c, recipe=None, quiet=False, resolve=False, ca_bundle=""):
    """Dry-run every recipe: load, plan and render every param value, lint the output."""
    started = time.perf_counter()
    report = run_validate(recipe or None, resolve_pins=resolve,
                          ca_bundle=ca_bundle or _config(c, "ca_bundle") or "auto")
    if not quiet:
        for line in report.lines:
            print(line)
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if not report.ok:
        raise EnvkitError(report.problems)
    resolved = (f", {report.resolved} pip resolutions passed"
                f"{f' ({len(report.skipped)} skipped)' if report.skipped else ''}"
                if resolve else "")
    print(f"ok: {report.recipes} recipes, {report.renders} renders linted clean{resolved} "
          f"in {time.perf_counter() - started:.1f}s")


@task(name="schema", help={"check": "Fail if the shipped file is out of date; write nothing."})
@_reports_errors
def schema_(c, check=False):
    """Write the recipe JSON Schema (for editors) into the package."""
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
    _need_recipe(recipe)
    bundle = (None if ca_bundle is None
              else ca.choose(ca_bundle or _config(c, "ca_bundle") or "auto"))
    return Options(recipe=recipe, settings=_settings(set_), mirror=mirror or _config(c, "mirror"),
                   base=base or None, ca_bundle=bundle,
                   docker=_config(c, "docker") or "", **kw)


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
}


@task(
    iterable=["set_"],
    help={**_COMMON,
          "base": "Base image instead of the recipe's.",
          "tag": "Image tag (default: envkit/NAME:<build hash>, and envkit/NAME:latest).",
          "target": "docker or host (default: docker when an engine answers, else host).",
          "no_verify": "Skip the recipe's checks after the build.",
          "no_cache": "Build even if the image exists, without the layer cache."},
)
@_reports_errors
def build(c, recipe="", set_=None, mirror="", base="", tag="", ca_bundle="", target="",
          no_verify=False, no_cache=False, allow_system=False, verbose=False):
    """Build a recipe into a Docker image (or on this host) and verify it."""
    from .build import build as run_build

    if tag:
        _check_tag(tag)
    opts = _options(c, recipe, set_, mirror, base, ca_bundle, tag=tag, target=target,
                    verify=not no_verify, no_cache=no_cache, allow_system=allow_system,
                    verbose=verbose)
    run_build(opts)


@task(name="run", iterable=["set_"], help=_COMMON)
@_reports_errors
def run_(c, recipe="", set_=None, mirror="", ca_bundle="", allow_system=False, verbose=False):
    """Run a recipe's shell script on this host, into .envkit/envs/NAME (no verify)."""
    from .build import build_host

    opts = _options(c, recipe, set_, mirror, "", ca_bundle, allow_system=allow_system,
                    verbose=verbose, target="host")
    build_host(opts, Catalog(), sys.stdout, verify=False)


@task(iterable=["set_"],
      help={"recipe": _COMMON["recipe"], "set_": _COMMON["set_"],
            "image": "Verify this Docker image (its labels give the params it was built with).",
            "env": "Verify this host environment (a folder invoke build --target host made)."})
@_reports_errors
def verify(c, recipe="", image="", env="", set_=None):
    """Run a recipe's checks in an image or a host environment."""
    from .build import verify_env, verify_image

    if bool(image) == bool(env):
        raise error("verify what? pass --image TAG or --env PATH (one of them)",
                    path="--image")
    opts = _options(c, recipe, set_, "")
    if image:
        verify_image(opts, image, sys.stdout)
    else:
        verify_env(opts, Path(env), sys.stdout)


@task(help={"suite": "Debian suite (default bookworm).",
            "tag": "Image tag (default envkit/base:SUITE).",
            "mirror_url": "Debian mirror debootstrap downloads from."})
@_reports_errors
def base(c, suite="", tag="", mirror_url=""):
    """Make a minimal Debian base image with debootstrap; no registry involved."""
    from . import baseimage, engine

    suite = baseimage.check_suite(suite or baseimage.DEFAULT_SUITE)
    tag = _check_tag(tag or baseimage.default_tag(suite))
    client = engine.connect()
    started = time.perf_counter()
    print(f"envkit: debootstrap {suite} (minbase); about a minute", flush=True)
    image_id = baseimage.make(client, suite, tag, mirror_url or baseimage.DEFAULT_MIRROR,
                              sys.stdout)
    size = engine.size_text(engine.image(client, tag).attrs.get("Size", 0))
    print(f"envkit: {tag} ({image_id[:19]}, {size}) in {time.perf_counter() - started:.0f}s")


ns = Collection(list_, render_, validate, schema_, build, run_, verify, base)
# Settings users may put in invoke.yaml (or INVOKE_ENVKIT_MIRROR=...): envkit.mirror,
# envkit.ca_bundle (a PEM file), envkit.docker (the docker CLI to build with).
ns.configure({"envkit": {"mirror": "", "ca_bundle": "", "docker": ""}})
