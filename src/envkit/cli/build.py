"""Build a recipe on a backend, then verify it: the ``build``, ``run``, ``verify`` tasks.

docker: plan -> build/NAME/ (Dockerfile + files/) -> BuildKit -> tagged image ->
each check in a fresh container. host: plan with prefix .envkit/envs/NAME ->
install.sh run here -> each check with that environment.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from envkit import backends, ca, proxy
from envkit import secrets as secretmod
from envkit.backends import docker as dockerbackend
from envkit.backends import engine, host
from envkit.checks import Runner
from envkit.diagnostics import EnvkitError, error
from envkit.load.catalog import Catalog
from envkit.plan import Plan, locking, make_plan, mirrors, param_text, resolve
from envkit.plan import lock as lockmod
from envkit.render import Rendered, render_all, write_rendered
from envkit.verify import lockcheck, run_checks

MADE_LOCK = "envkit.lock"  # a lock made for one build, beside its Dockerfile or script
DOCKERIGNORE = "# Only files/ is context; the Dockerfile and logs are not.\n*\n!files/\n"


@dataclass
class Options:
    recipe: str
    settings: dict[str, str] = field(default_factory=dict)
    mirror: str | None = None
    base: str | None = None
    tag: str = ""
    ca_bundle: Path | None = None
    target: str = ""  # "" = docker when an engine answers, else host
    verify: bool = True
    no_cache: bool = False
    allow_system: bool = False
    verbose: bool = False
    docker: str = ""  # a docker CLI to build with, instead of choosing one
    build_dir: Path = Path("build")
    secrets: dict[str, secretmod.Given] = field(default_factory=dict)  # --secret
    fresh: bool = False  # host: forget finished steps, run all
    from_step: int = 0  # host: run from this step on (earlier ones must have finished)
    no_lock: bool = False  # build from the recipe alone, not the lock
    offline: Path | None = None  # build with no network from this invoke export folder


class VerifyFailed(EnvkitError):
    pass


def _plan(opts: Options, catalog: Catalog, settings: dict[str, str] | None = None,
          locker: Any = None) -> Plan:
    return make_plan(catalog.find(opts.recipe), catalog,
                     opts.settings if settings is None else settings, opts.mirror, opts.base,
                     locker=locker)


def _locker(opts: Options, catalog: Catalog, containers: Any, out: TextIO) -> locking.Locker:
    """The lock a build installs: the recipe's, else one made now (and said so), its apt
    steps in the build's engine (``containers``: the backend; None on this host)."""
    recipe = catalog.find(opts.recipe)
    if opts.no_lock:
        return locking.Locker(catalog, recipe, off=True)
    if opts.offline is not None:  # the export's lock, never one made now (no network)
        return locking.Locker(catalog, recipe)
    maker = locking.Maker(locking.Settings(ca_bundle=opts.ca_bundle, given=opts.secrets),
                          containers, out, host=containers is None)
    file = lockmod.path_for(recipe.path)

    def make(plan: Plan, inputs: lockmod.Inputs) -> lockmod.Entry:
        which = f" for {locking.label(inputs.params)}" if inputs.params else ""
        exists = "has no entry" if file.exists() else "does not exist"
        print(f"envkit: {lockmod.display(file)} {exists}{which}; locking it for this build",
              file=out, flush=True)
        return maker(plan, inputs)

    return locking.Locker(catalog, recipe, make=make)


def _say_lock(plan: Plan, opts: Options, saved: Path, out: TextIO) -> None:
    """One line on the lock the build installs (or why it has none); a lock made for this
    build is kept at ``saved``."""
    match = plan.lock
    if match is None:
        print("envkit: --no-lock: building from the recipe alone (only its own pins are fixed)",
              file=out, flush=True)
        return
    entry = match.entry
    if match.state == "locked" and entry is not None and match.file is not None:
        print(f"envkit: installing the locked set of {match.file.display} "
              f"({locking.summary(entry)})", file=out, flush=True)
    elif match.state == "made" and entry is not None:
        print(f"envkit: locked for this build ({locking.summary(entry)}), not saved: "
              f"invoke lock --recipe {opts.recipe}"
              + "".join(f" --set {k}={v}" for k, v in opts.settings.items())
              + f" writes it next to the recipe (this one: {saved})", file=out, flush=True)
    elif match.state == "unlocked" and entry is not None:
        print(f"envkit: {plan.name} could not be locked here ({entry.unlocked}); building "
              "from the recipe alone", file=out, flush=True)


def build(opts: Options, out: TextIO | None = None) -> str:
    """Build (or provision) and verify; returns the image tag or the environment path.

    The target is settled first (the first backend whose engine is there, else this host),
    so the recipe is planned once, for that target: a host plan installs into
    .envkit/envs/NAME."""
    out = out or sys.stdout  # looked up per call (a caller may have redirected it)
    targets = backends.targets()
    if opts.target not in ("", *targets):
        raise error(f"unknown target '{opts.target}'", path="--target",
                    hint=" or ".join(targets))
    catalog = Catalog()
    catalog.find(opts.recipe)  # an unknown recipe is said before the engine is asked
    if opts.offline is not None:
        from envkit.cli.export import offline_error

        if opts.target == "host":
            raise offline_error("--target host provisions this host")
        if opts.no_lock:
            raise offline_error("it installs exactly the export's lock, not --no-lock")
    if opts.target == "host":
        return build_host(opts, catalog, out)
    backend, refused = connect(opts.target, opts.docker, out)
    if backend is None and refused is None and opts.offline is not None:
        raise offline_error("no engine is there")
    if backend is None and refused is None:
        unused = [flag for flag, value in (("--tag", opts.tag), ("--base", opts.base),
                                           ("--no-cache", opts.no_cache)) if value]
        if unused:
            print(f"envkit: {', '.join(unused)} only apply to images; ignored here",
                  file=out, flush=True)
        return build_host(opts, catalog, out)
    if refused is not None:
        _plan(opts, catalog)  # every recipe problem surfaces before the engine's
        raise refused
    assert backend is not None
    plan = _plan(opts, catalog, locker=_locker(opts, catalog, backend, out))
    if opts.fresh or opts.from_step:
        raise error("--fresh and --from-step are for host runs: an image build resumes "
                    "from its layer cache", path="--from-step",
                    hint="--no-cache rebuilds every step; --target host runs here")
    return build_image(backend, opts, catalog, plan, out)


def connect(target: str, docker_cli: str, out: TextIO, instead: str = "",
            doing: str = "building"
            ) -> tuple[backends.ImageBackend | None, EnvkitError | None]:
    """The backend ``target`` names, or (no target) the first whose engine is there; (None,
    None) when none is, said on ``out`` (the host stands in; ``instead`` says what happens
    then, if not that); (None, error) when the one asked for is not there or refuses.
    ``doing`` names the work when one engine stands in for another."""
    available = backends.load()
    absent: list[tuple[str, str]] = []
    for name in [target] if target else list(available):
        try:
            backend = available[name]()
        except backends.Disabled as exc:
            if target:
                return None, exc
        except backends.NoBackend as exc:
            if target:
                return None, exc
            absent.append((name, exc.diagnostics[0].message))
        except EnvkitError as exc:  # an engine that is there but refuses this user
            return None, exc
        else:
            if docker_cli and isinstance(backend, dockerbackend.Docker):
                backend.client_cli = docker_cli
            if absent:  # one stands in for another that is not there
                print(f"envkit: {'; '.join(m for _, m in absent)}; {doing} with {name}",
                      file=out, flush=True)
            return backend, None
    names = " or ".join(f"--target {n}" for n, _ in absent)
    instead = instead or f"provisioning on this host instead ({names} insists on an engine)"
    print(f"envkit: {'; '.join(m for _, m in absent)}; {instead}", file=out, flush=True)
    return None, None


# --- docker -------------------------------------------------------------------------------


def build_id(dockerfile: str, plan: Plan, base_id: str, with_ca: bool = False) -> str:
    """What the image is made of: the Dockerfile exactly as rendered (so a template change
    counts), the plan hash (which covers copied files' content and the runtime helpers),
    the exact base image, and whether the CA build args were set (they are part of every
    layer's cache key)."""
    key = f"{dockerfile}\n{plan.hash}\n{base_id}\nca={int(with_ca)}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


# Docker's rule for a repository path component; recipe names allow a little more.
_REPO = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def default_repo(name: str) -> str:
    if not _REPO.fullmatch(name):
        raise error(f"'{name}' cannot be a Docker repository name (it must start and end with "
                    "a letter or digit, with single . or _ or dashes between)", path="--tag",
                    hint="pass --tag REPO:TAG")
    return f"envkit/{name}"


def build_image(backend: backends.ImageBackend, opts: Options, catalog: Catalog, plan: Plan,
                out: TextIO) -> str:
    # every secret the steps use is found before any slow work; removed after the build
    with secretmod.provide(plan.secrets, opts.secrets) as given:
        return _build_image(backend, opts, catalog, plan, given, out)


def _build_image(backend: backends.ImageBackend, opts: Options, catalog: Catalog, plan: Plan,
                 given: secretmod.Provided, out: TextIO) -> str:
    print(f"envkit: builder {backend.about()}", file=out, flush=True)
    repo = "" if opts.tag else default_repo(plan.name)  # before any slow work
    _say_lock(plan, opts, opts.build_dir / plan.name / MADE_LOCK, out)
    # the plan stays: only the image FROM names is settled here (by the lock, if it made one):
    # a registry base the lock pins by digest is built from that digest, not the moving tag
    entry = plan.lock.entry if plan.lock is not None else None
    pinned = entry.base_digest if entry is not None and plan.lock.state == "locked" else ""
    offline = None
    if opts.offline is not None:  # the export's lock and files, checked; its base
        from envkit.cli.export import TARGET, Offline

        offline = Offline.open(opts.offline)
        offline.check(plan, opts.recipe)
        plan.image, plan.offline = offline.ensure_base(backend, out), TARGET
        print(f"envkit: building offline from {opts.offline} (no network: the export's "
              "wheels and .debs)", file=out, flush=True)
    base = plan.image or backend.ensure_base(pinned or plan.base, out,
                                             plan.mirror.registries())
    plan.image = base
    base_image = backend.image(base)
    rendered = render_all(plan, ["dockerfile"])  # rendered once: built, hashed and written
    dockerfile = rendered.files["Dockerfile"]
    bid = build_id(dockerfile, plan, base_image.id if base_image is not None else base,
                   bool(opts.ca_bundle))
    tags = [opts.tag or f"{repo}:{bid}"]
    context = opts.build_dir / plan.name
    # the checks and the :latest tag under the lock too, and on the image's id: a second
    # build of this recipe may re-tag tags[0] the moment this one lets go
    with _locked(context):
        write_rendered(plan, rendered.files, context)
        (context / ".dockerignore").write_text(DOCKERIGNORE)
        _save_made_lock(plan, context)
        existing = backend.image(tags[0])
        if (existing is not None and not opts.no_cache
                and existing.labels.get("io.envkit.build") == bid):
            print(f"envkit: {tags[0]} is already built from this recipe; skipping the build "
                  "(--no-cache rebuilds)", file=out, flush=True)
        elif offline is not None:
            staged = offline.stage(context)
            try:
                _run_build(backend, plan, rendered, context, tags, bid, opts, given, out,
                           network="none")
            finally:
                shutil.rmtree(staged, ignore_errors=True)
        else:
            _run_build(backend, plan, rendered, context, tags, bid, opts, given, out)
        image = backend.image(tags[0])
        if image is None:  # removed by someone else between the build and here
            raise error(f"{plan.name}: the image {tags[0]} is gone right after its build",
                        path="build", hint="rerun the build")
        size = engine.size_text(image.size)
        base_size = engine.size_text(base_image.size) if base_image else "?"
        print(f"envkit: image {tags[0]}: {size} (base {base}: {base_size})", file=out,
              flush=True)
        if opts.verify:
            _verify(plan, _checks_in(backend, image, tags[0], out, plan), tags[0], out,
                    image=True)
        if repo:  # :latest only ever names a build that passed its checks
            backend.tag(image, repo, "latest")
            print(f"envkit: tagged {repo}:latest", file=out, flush=True)
    return tags[0]


def _run_build(backend: backends.ImageBackend, plan: Plan, rendered: Rendered,
               context: Path, tags: list[str], bid: str, opts: Options,
               given: secretmod.Provided, out: TextIO, network: str = "") -> None:
    titles = {ps.number: f"{ps.recipe}: {ps.title}" for ps in plan.steps}
    log = context / "build.log"
    secrets, args = dict(given.files), {}
    if opts.ca_bundle:
        secrets[ca.SECRET_ID] = opts.ca_bundle
        args = ca.env(ca.TARGET)
    # pip's and uv's retries and timeouts: settings of your own win, as in a host script;
    # your proxies, as Docker's predefined build arguments (no layer, label or file keeps them)
    args.update(network_args(os.environ))
    for key in network_ignored(os.environ):
        print(f"envkit: {key} in your environment is not a number; the build keeps its "
              "default", file=out, flush=True)
    proxies = list(proxy.settings(os.environ))  # the client reads them from its environment
    redact = [*given.redact, *proxy.redactions(os.environ)]
    dockerfile = rendered.files["Dockerfile"]
    if os.environ.get("ENVKIT_APT_VANISHED") == "newer" and "ENVKIT_APT_VANISHED" in dockerfile:
        args["ENVKIT_APT_VANISHED"] = "newer"
        print("envkit: ENVKIT_APT_VANISHED=newer: a locked Debian version the archive has "
              "dropped is replaced by its newer one (and said so)", file=out, flush=True)
    print(f"envkit: building {tags[0]} from {context / 'Dockerfile'} "
          f"({len(plan.steps)} steps; log: {log})", file=out, flush=True)
    if opts.ca_bundle:
        print(f"envkit: the build trusts {opts.ca_bundle} (a build secret, in no layer; "
              "--ca-bundle none to build without)", file=out, flush=True)
    if given.files:
        print(f"envkit: secrets {', '.join(given.files)} are mounted only on the steps that "
              "use them (build secrets, in no layer)", file=out, flush=True)
    outcome = backend.build(backends.BuildRequest(
        context, rendered.step_maps["Dockerfile"], tags, {"io.envkit.build": bid}, titles,
        log, out, secrets=secrets, build_args=args, env_args=proxies, no_cache=opts.no_cache,
        redact=redact, verbose=opts.verbose, network=network))
    progress = outcome.progress
    if not outcome.ok:
        if why := backend.lost():  # the CLI only says "unexpected EOF" or the like
            running = [log for log in progress.logs.values() if log.state == "running"]
            at = (f"at step {running[-1].number}/{len(plan.steps)} {running[-1].title}"
                  if running and running[-1].number else "before any recipe step ran")
            engine_name = "Docker" if backend.name == "docker" else backend.name
            raise error(f"{plan.name}: the {engine_name} engine went away during the build, "
                        f"{at}, after {outcome.seconds:.1f}s: {why}", path="engine",
                        hint=f"start it again and rerun; log: {log}")
        failed = progress.failed
        for line in outcome.tail:
            print(f"  | {line}", file=out)
        where = (f"at step {failed.number}/{len(plan.steps)} {failed.title}" if failed
                 else "outside the recipe's steps (base image, context or export)")
        lock_says = lockmod.explain_step(plan, failed.number, failed.lines) if failed else ""
        # the failing step's kept lines, not only the last: a certificate error may be
        # early in its output, before the retries' messages
        hint = (ca.hint(failed.lines if failed else outcome.tail, opts.ca_bundle)
                + f"last lines above; full log: {log}")
        raise error(f"{plan.name}: the build failed {where} after {outcome.seconds:.1f}s"
                    + (f": {lock_says}" if lock_says else ""), path="build", hint=hint)
    cached, built = progress.counts()
    print(f"envkit: built {tags[0]} in {outcome.seconds:.1f}s ({cached} steps cached, "
          f"{built} run)", file=out, flush=True)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One build per folder at a time: a second one says so instead of mixing files."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise error(f"another envkit build is using {folder}", path="build",
                        hint="wait for it to finish") from None
        yield


def _save_made_lock(plan: Plan, folder: Path) -> None:
    """A lock made for this build, kept beside its Dockerfile or script (copy it next to
    the recipe, or run invoke lock, to use it again)."""
    target = folder / MADE_LOCK
    if plan.lock is not None and plan.lock.state == "made" and plan.lock.entry is not None:
        lockmod.write(lockmod.LockFile(target, plan.name, [plan.lock.entry]))
    else:
        target.unlink(missing_ok=True)


def _verify(plan: Plan, runner: Any, where: str, out: TextIO, image: bool,
            built_with: str = "") -> None:
    """The recipe's checks, then (when the build installed a lock) the installed set
    against the lock. ``built_with``: the lock content hash the result records (verify
    alone); against another lock than that there is nothing to hold it to."""
    entry = plan.lock.entry if plan.lock is not None else None
    if built_with.startswith("sha256:") and entry is not None and (
            entry.content_digest() != built_with):
        print(f"envkit: {where} was built from another lock ({built_with[:19]}…) than the "
              "recipe's now: its installed set is not compared (build it again to)", file=out,
              flush=True)
        extra = None
    else:
        extra = lockcheck.for_plan(plan, image)
    # a host keeps the toolchain a two-stage image leaves out: its checks run there too
    checks = [*plan.checks, *(plan.image_checks if image else plan.build_checks),
              *([extra] if extra else [])]
    if not run_checks(checks, runner, where, out):
        raise VerifyFailed(error(f"{plan.name}: verification failed in {where}",
                                 path="verify", hint="see the table above").diagnostics)


# --- host ---------------------------------------------------------------------------------


def _host_plan(opts: Options, catalog: Catalog, target: Path, out: TextIO) -> Plan:
    settings = dict(opts.settings)
    settings.setdefault("prefix", str(target))
    settings.setdefault("cache", str(target / "cache"))
    return _plan(opts, catalog, settings=settings, locker=_locker(opts, catalog, None, out))


def build_host(opts: Options, catalog: Catalog, out: TextIO, verify: bool | None = None
               ) -> str:
    name = catalog.find(opts.recipe).name
    target = host.env_dir(name)
    plan = _host_plan(opts, catalog, target, out)
    print(f"envkit: provisioning {plan.name} on this host into {target}", file=out, flush=True)
    _say_lock(plan, opts, target / MADE_LOCK, out)
    if plan.user:
        print(f"envkit: 'user: {plan.user.name}' is for images; here the script runs as you",
              file=out, flush=True)
    if opts.from_step and not 1 <= opts.from_step <= len(plan.build_steps):
        raise error(f"--from-step {opts.from_step}: {plan.name} has steps 1 to "
                    f"{len(plan.build_steps)}", path="--from-step")
    # the checks under the lock too: they run in the folder a second run rewrites
    with _locked(target):
        _save_made_lock(plan, target)
        with secretmod.provide(plan.secrets, opts.secrets) as given:
            seconds = host.provision(plan, target, out, allow_system=opts.allow_system,
                                     ca_bundle=opts.ca_bundle, verbose=opts.verbose,
                                     fresh=opts.fresh, from_step=opts.from_step,
                                     secrets=given)
        print(f"envkit: {plan.name} provisioned in {seconds:.1f}s", file=out, flush=True)
        if opts.verify if verify is None else verify:
            _verify(plan, host.runner(plan), str(target), out, image=False)
    return str(target)


# --- verify alone -------------------------------------------------------------------------


def verify_image(opts: Options, image_ref: str, out: TextIO) -> None:
    if opts.target not in ("", *backends.load()):
        raise error(f"unknown target '{opts.target}'", path="--target",
                    hint=" or ".join(backends.load()))
    backend: backends.ImageBackend | None = None
    absent: list[str] = []
    for name in [opts.target] if opts.target else list(backends.load()):
        try:
            candidate = backends.load()[name]()
        except backends.NoBackend as exc:
            if opts.target:
                raise
            if not isinstance(exc, backends.Disabled):
                absent.append(exc.diagnostics[0].message)
            continue
        backend = backend or candidate  # the first that answers, unless another has it
        if candidate.image(image_ref) is not None:
            backend = candidate
            break
    if backend is None:
        raise error("; ".join(absent) or "no image engine here", path="engine",
                    hint="start one, or verify a host environment with --env")
    image = backend.image(image_ref)
    if image is None:
        raise error(f"no image {image_ref} on this engine ({backend.name})", path="--image",
                    hint="invoke build makes one")
    labels = image.labels
    catalog = Catalog()
    name = catalog.find(opts.recipe).name
    if labels.get("io.envkit.recipe") not in (None, name):
        raise error(f"{image_ref} was built from recipe '{labels['io.envkit.recipe']}', "
                    f"not '{name}'", path="--image")
    recorded = _known(opts, catalog, _built_params(labels.get("io.envkit.params", "")))
    built_with = labels.get("io.envkit.lock", "")
    plan = _plan(opts, catalog, settings={**recorded, **opts.settings},
                 locker=_verify_locker(opts, catalog, built_with))
    _verify(plan, _checks_in(backend, image, image_ref, out, plan), image_ref, out, image=True,
            built_with=built_with)


def _checks_in(backend: backends.ImageBackend, image: backends.Image, name: str, out: TextIO,
               plan: Plan) -> Runner:
    """A runner of checks in ``image`` by its id (``name`` in messages), after removing the
    check containers an earlier, killed envkit left; with the GPUs for a plan that needs
    one, when the engine can give them."""
    if swept := backend.sweep():
        print(f"envkit: removed {swept} check container{'s' * (swept != 1)} an earlier, "
              "stopped envkit left behind", file=out, flush=True)
    gpu = plan.needs_gpu and backend.gpu()
    if plan.needs_gpu:
        print("envkit: the checks run with the GPUs (CUDA " + (plan.cuda or "packages") + ")"
              if gpu else "envkit: no GPU runtime on this engine: the checks run without a "
              "GPU (invoke doctor --gpu says what is missing)", file=out, flush=True)
    return backend.checks(image, name, gpu, out)


def verify_env(opts: Options, path: Path, out: TextIO) -> None:
    target = path.absolute()
    data = host.manifest(target)
    catalog = Catalog()
    name = catalog.find(opts.recipe).name
    if data.get("recipe") not in (None, name):
        raise error(f"{target} was provisioned from recipe '{data['recipe']}', not '{name}'",
                    path="--env")
    params = data.get("params")
    recorded = _known(opts, catalog, {k: param_text(v) for k, v in params.items()}
                      if isinstance(params, dict) else {})
    settings = {"prefix": str(target), **recorded, **opts.settings}  # recorded: the real prefix
    lock = data.get("lock") if isinstance(data.get("lock"), dict) else {}
    built_with = str(lock.get("digest", lock.get("state", "")))
    plan = _plan(opts, catalog, settings=settings,
                 locker=_verify_locker(opts, catalog, built_with))
    _verify(plan, host.runner(plan), str(target), out, image=False, built_with=built_with)


def _verify_locker(opts: Options, catalog: Catalog, built_with: str) -> locking.Locker:
    """Verify alone compares with the recipe's lock, unless the result was built without
    one (--no-lock): then there is no lock to hold it to."""
    return locking.Locker(catalog, catalog.find(opts.recipe), strict=False,
                          off=built_with in ("off", "unlocked", "missing"))


def _built_params(text: str) -> dict[str, str]:
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {k: param_text(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _known(opts: Options, catalog: Catalog, values: dict[str, str]) -> dict[str, str]:
    """Recorded params the recipe still declares (it may have changed since); the recipe is
    planned once, with them."""
    _, declared, problems = resolve(catalog.find(opts.recipe), catalog)
    if problems:
        raise EnvkitError(sorted(set(problems)))
    return {k: v for k, v in values.items() if k in declared}


def _network_keys() -> list[str]:
    return [*(key for key, _ in mirrors.NETWORK_ENV), *mirrors.RETRY_ENV]


_NETWORK_VALUE = re.compile(r"[0-9]{1,4}(\.[0-9]{1,3})?")


def network_args(environ: Any) -> dict[str, str]:
    """The network settings (PIP_RETRIES, UV_HTTP_TIMEOUT, ENVKIT_RETRIES, ...) this
    environment sets, as build arguments over the Dockerfile's defaults. Numbers only
    (seconds may have decimals): they land in a build."""
    return {key: environ[key] for key in _network_keys()
            if _NETWORK_VALUE.fullmatch(environ.get(key, ""))}


def network_ignored(environ: Any) -> list[str]:
    """The network settings this environment sets that are not numbers (left out)."""
    return [key for key in _network_keys()
            if environ.get(key) and not _NETWORK_VALUE.fullmatch(environ[key])]
