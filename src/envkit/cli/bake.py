"""``invoke bake``: the catalog (or some recipes) as one ``docker-bake.json``, for
``docker buildx bake`` on remote or Kubernetes BuildKit builders, in parallel.

One target per recipe and per param variant validate covers (each choice and bool value
other than the default, the others at their defaults; mirror profiles are a network's, not
a variant of the image), each with its rendered context beside the bake file
(``contexts/TARGET/``: the Dockerfile, files/ and a .dockerignore), its tags, labels,
build args, secrets, cache settings and platforms. Groups: ``default`` (every target) and
one per recipe (``RECIPE-variants``).

A remote builder cannot see an image that only the local engine has: an envkit base
(``invoke base``) is pushed to a registry the builders reach with ``--push-base REGISTRY``
and the Dockerfiles start FROM it; without it they start FROM the recipe's own base, which
the builders pull themselves.

Proxies and network settings are never written into the bake file: the command printed
at the end passes the ones your environment sets by name (``--set '*.args.HTTPS_PROXY'``),
and buildx reads each value from its own environment when it bakes, as ``invoke build``
passes them.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from envkit import ca, grammar, proxy
from envkit.cli.build import DOCKERIGNORE, network_args
from envkit.diagnostics import error
from envkit.files import atomic_write
from envkit.load.catalog import Catalog
from envkit.load.model import Recipe
from envkit.plan import Plan, make_plan, mirrors
from envkit.plan.locking import Locker
from envkit.plan.variants import variants
from envkit.render import render_all, write_rendered

FILE = "docker-bake.json"
_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class Options:
    recipes: list[str] = field(default_factory=list)  # none: the whole catalog
    out: Path = Path("bake")
    registry: str = ""  # tags and the registry cache go there ("": local tags, no cache)
    push_base: str = ""  # the registry the local bases are pushed to
    platforms: list[str] = field(default_factory=lambda: ["linux/amd64"])
    ca_bundle: Path | None = None
    secrets: dict[str, Path] = field(default_factory=dict)  # id -> file, on the client


def target_name(recipe: str, settings: dict[str, str]) -> str:
    """'paddle-cpu', 'paddle-cpu-paddle-3-2-2': a bake target name ([A-Za-z0-9_-])."""
    parts = [recipe, *(f"{k}-{v}" for k, v in sorted(settings.items()))]
    return _NAME.sub("-", "-".join(parts)).strip("-")


def tag_of(settings: dict[str, str]) -> str:
    """The image tag of a variant: 'default', 'paddle-3.2.2' (at most 128 characters)."""
    text = "-".join(f"{k}-{v}" for k, v in sorted(settings.items())) or "default"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:128] or "default"


def plans(opts: Options, catalog: Catalog) -> list[tuple[Recipe, str, Plan, str]]:
    """(recipe, target name, plan, image tag) for every recipe and variant, in order."""
    refs: list[Any] = list(opts.recipes) if opts.recipes else catalog.all()
    out = []
    for ref in refs:
        recipe = catalog.find(ref) if isinstance(ref, str) else catalog.load(ref)
        for variant in variants(recipe, catalog):
            if variant.mirror != mirrors.DEFAULT:
                continue
            # the recipe's lock where it has one for the variant, as a build installs it
            plan = make_plan(recipe, catalog, variant.settings,
                             locker=Locker(catalog, recipe, strict=False))
            out.append((recipe, target_name(recipe.name, variant.settings), plan,
                        tag_of(variant.settings)))
    names = [name for _, name, _, _ in out]
    if len(set(names)) != len(names):
        raise error("two variants give the same bake target name", path="bake",
                    hint=", ".join(sorted({n for n in names if names.count(n) > 1})))
    return out


def bake(opts: Options, out: TextIO, push: Any = None) -> Path:
    """Write the bake file and every target's context; returns the bake file's path.
    ``push(base) -> pushed ref`` pushes a base to ``opts.push_base``."""
    for flag, value in (("--registry", opts.registry), ("--push-base", opts.push_base)):
        if value and (msg := grammar.image(f"{value}/x:1")):
            raise error(f"'{value}' is not a registry: {msg}", path=flag,
                        hint="HOST[:PORT][/PATH], e.g. registry.example:5000/team")
    catalog = Catalog()
    chosen = plans(opts, catalog)
    pushed: dict[str, str] = {}
    if opts.push_base:
        assert push is not None
        for base in sorted({plan.base for _, _, plan, _ in chosen}):
            pushed[base] = push(base)
            print(f"envkit: base {base}: pushed as {pushed[base]}", file=out, flush=True)
    targets: dict[str, dict[str, Any]] = {}
    groups: dict[str, list[str]] = {}
    for recipe, name, plan, tag in chosen:
        if plan.base in pushed:
            plan.image = pushed[plan.base]
        context = opts.out / "contexts" / name
        write_rendered(plan, render_all(plan, ["dockerfile"]).files, context)
        atomic_write(context / ".dockerignore", DOCKERIGNORE.encode(), 0o644)  # as build's
        targets[name] = _target(opts, recipe, name, plan, tag)
        groups.setdefault(f"{recipe.name}-variants", []).append(name)
    data = {"group": {"default": {"targets": list(targets)},
                      **{g: {"targets": t} for g, t in groups.items()}},
            "target": targets}
    path = opts.out / FILE
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode(), 0o644)
    print(f"envkit: wrote {path}: {len(targets)} targets from {len(groups)} recipes",
          file=out, flush=True)
    return path


def _target(opts: Options, recipe: Recipe, name: str, plan: Plan, tag: str
            ) -> dict[str, Any]:
    repo = f"{opts.registry}/envkit/{recipe.name}" if opts.registry else f"envkit/{recipe.name}"
    target: dict[str, Any] = {
        "context": f"contexts/{name}",
        "dockerfile": "Dockerfile",
        "tags": [f"{repo}:{tag}"],
        "labels": {"io.envkit.build": f"bake-{plan.hash.split(':')[-1][:12]}"},
        "platforms": list(opts.platforms),
    }
    args: dict[str, str] = {}
    used = {s.id for s in plan.secrets.values()}
    secrets = [f"id={sid},src={src}" for sid, src in sorted(opts.secrets.items())
               if sid in used]
    if opts.ca_bundle is not None:
        secrets.insert(0, f"id={ca.SECRET_ID},src={opts.ca_bundle.resolve()}")
        args.update(ca.env(ca.TARGET))
    if args:
        target["args"] = args
    if secrets:
        target["secret"] = secrets
    if opts.registry:
        cache = f"{repo}:cache-{tag}"[:255]
        target["cache-from"] = [f"type=registry,ref={cache}"]
        target["cache-to"] = [f"type=registry,ref={cache},mode=max"]
    return target


def by_name(environ: Mapping[str, str]) -> list[str]:
    """The build arguments ``invoke build`` would take from this environment, by name: the
    proxies (Docker's predefined arguments) and the network settings that are numbers."""
    return [*proxy.settings(environ), *network_args(environ)]


def command(folder: Path, environ: Mapping[str, str]) -> str:
    """The command that bakes ``folder``: each of :func:`by_name` as ``--set
    '*.args.NAME'`` without a value, which buildx fills from its own environment (never
    from this file, or this line)."""
    sets = "".join(f" --set {shlex.quote(f'*.args.{name}')}" for name in by_name(environ))
    return (f"cd {shlex.quote(str(folder))} && docker buildx bake --builder NAME{sets} "
            "[--push | --load] [TARGET|GROUP ...]")


def check(path: Path) -> list[str]:
    """What is wrong with a bake file's structure (no buildx binary here): each problem
    one line; [] when every target has a context with its Dockerfile, valid tags, secrets
    and cache settings, and every group names targets that exist."""
    problems = []
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{path}: not JSON: {exc}"]
    targets = data.get("target", {})
    if not targets:
        problems.append("no targets")
    for name, t in targets.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            problems.append(f"target {name!r}: not a bake target name")
        context = path.parent / t.get("context", "")
        if not (context / t.get("dockerfile", "Dockerfile")).is_file():
            problems.append(f"target {name}: no {t.get('dockerfile')} in {context}")
        for tag in t.get("tags", []):
            if msg := grammar.image(tag):
                problems.append(f"target {name}: tag {tag!r}: {msg}")
        for s in t.get("secret", []):
            fields = dict(f.split("=", 1) for f in s.split(","))
            if "id" not in fields or "src" not in fields:
                problems.append(f"target {name}: secret {s!r} needs id= and src=")
        for key in ("cache-from", "cache-to"):
            for c in t.get(key, []):
                if not c.startswith("type="):
                    problems.append(f"target {name}: {key} {c!r} has no type=")
        for p in t.get("platforms", []):
            if not re.fullmatch(r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?", p):
                problems.append(f"target {name}: platform {p!r}")
    for group, g in data.get("group", {}).items():
        missing = [t for t in g.get("targets", []) if t not in targets]
        if missing:
            problems.append(f"group {group}: no targets {', '.join(missing)}")
    return problems


def pusher(registry: str, out: TextIO) -> Any:
    """A push(base) for bake: the base as the Docker engine has it (pulled, or the envkit
    base of its Debian suite) tagged under ``registry`` and pushed; its pushed ref, by
    digest."""
    from envkit.backends import baseimage, engine

    client = engine.connect()

    def push(base: str) -> str:
        local = baseimage.ensure(client, base, out)
        path = baseimage.hub_path(base) or base.split("/", 1)[-1]
        repo, tag = engine.split_ref(f"{registry}/{path}")
        client.images.get(local).tag(repo, tag)
        digest = ""
        for event in client.images.push(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise error(f"cannot push {local} to {repo}:{tag}: {event['error']}",
                            path="--push-base", hint="is the registry up, and does this "
                            "engine trust it (insecure-registries for plain HTTP)?")
            digest = (event.get("aux") or {}).get("Digest", digest)
        return f"{repo}@{digest}" if digest else f"{repo}:{tag}"

    return push
