"""Resolving pip steps with uv's resolver, for the plan's Python and the base's platform.

Each pip step is resolved by ``uv pip compile --format pylock.toml``, with
``--python-version`` and ``--python-platform`` of the target (not this host's), on the
step's own index (else the mirror profile's) and its extra indexes. A step is resolved
against the packages the earlier steps of its venv installed: they are uv's preferences
(kept unless the step needs another version, as pip keeps what is installed), never
constraints. What the step installs or changes is its locked set; every file uv names for
the target comes with its sha256, so installs are hash-checked.

The same resolution serves ``invoke lock`` (written down) and ``validate --resolve`` (a
failure is one line naming the package and why: no such release, no wheel for the target
and no compiler in the plan, or what it conflicts with).
"""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from envkit.diagnostics import EnvkitError, error
from envkit.plan import Plan
from envkit.plan import lock as lockmod
from envkit.plan.lock import Dist, PipPackage, StepLock, Target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TIMEOUT = 600  # one step's resolution
PYPI = "https://pypi.org/simple"
# a compiler in the plan: an sdist with native code can be built at install time
_COMPILER = re.compile(r"(build-essential|gcc|g\+\+|clang|gfortran)(-\d+)?")
# sources in these languages need a compiler (or cargo) to build
_NATIVE = re.compile(r"\.(c|cc|cpp|cxx|h|hpp|pyx|pxd|f|f90|f95|cu|rs|go)$|(^|/)(Cargo\.toml|"
                     r"CMakeLists\.txt|meson\.build|configure)$", re.IGNORECASE)
_OPTION_KEEP = re.compile(r"--(pre|no-deps|prerelease=.+|index-strategy=.+|no-binary=.+|"
                          r"only-binary=.+|no-build-isolation)")


class ResolveError(EnvkitError):
    """A step that cannot be resolved: ``message`` names the package and why; ``number``
    is the plan's step."""

    def __init__(self, message: str, package: str = "", skipped: bool = False,
                 number: int = 0):
        super().__init__(error(message, path="resolve").diagnostics)
        self.message, self.package, self.skipped = message, package, skipped
        self.number = number


@dataclass
class PipJob:
    """One pip step as the resolver sees it."""

    number: int
    title: str
    requirements: list[str]
    files: list[tuple[str, Path]]  # ("-r" | "-c", a file on this machine)
    index: str
    extra: list[str]
    options: list[str]  # those that change the resolution
    venv: str  # the interpreter: steps of one venv see each other's packages
    mirrored: bool = False  # the index is the mirror profile's (the step names none)
    local: tuple[str, ...] = ()  # projects installed from a folder: not pinned by hash

    @property
    def indexes(self) -> list[str]:
        return [self.index, *self.extra]


def pip_index(plan: Plan) -> str:
    first = plan.mirror.candidates("pip")[0]
    return PYPI if first == "-" else first


def jobs_of(plan: Plan) -> list[PipJob]:
    """Each pip step, with the indexes earlier steps of its venv named carried along as
    extra indexes: what they installed came from there (see lock.carried_indexes)."""
    out = []
    for ps in plan.steps:
        if ps.kind != "pip":
            continue
        step: Any = ps.step
        options = [o for o in step.options if _OPTION_KEEP.fullmatch(o)]
        index = step.index or pip_index(plan)
        extra = [u for u in [*step.extra_index, *lockmod.carried_indexes(plan, ps.number)]
                 if u != index]
        requirements = list(step.packages)
        project = step.project_input
        if project is not None:  # resolved from its folder: its dependencies get locked
            requirements.append(f"{step.project_spec} @ {project.source.as_uri()}")
        out.append(PipJob(ps.number, f"{ps.recipe}: {ps.title}", requirements,
                          lockmod.requirement_files(plan, ps.number), index,
                          list(dict.fromkeys(extra)), options, step.python,
                          mirrored=not step.index,
                          local=(step.project_name,) if project is not None else ()))
    return out


def mirror_index(plan: Plan, env: dict[str, str]) -> str:
    """The mirror profile's first pip index that answers, as the helper picks it in a
    build (its fallbacks in order, upstream last); the first when none does."""
    candidates = [PYPI if c == "-" else c for c in plan.mirror.candidates("pip")]
    return next((c for c in candidates if answers(c, env)), candidates[0])


def has_compiler(plan: Plan) -> bool:
    """An apt step of the plan installs a C compiler (or gfortran)."""
    for ps in plan.steps:
        if ps.kind == "apt":
            for pkg in ps.step.packages:  # type: ignore[attr-defined]
                if _COMPILER.fullmatch(pkg.split("=", 1)[0]):
                    return True
    return False


# --- the environment uv runs in -------------------------------------------------------------


def uv_bin() -> str:
    """envkit's own uv: the pinned one (a dependency of envkit)."""
    try:
        import uv
    except ImportError:  # pragma: no cover - a dependency of envkit
        raise error("uv is not installed", path="uv",
                    hint=f"pip install uv=={lockmod.uv_version()}") from None
    return str(uv.find_uv_bin())


def uv_env(ca_bundle: Path | None = None, netrc: Path | None = None) -> dict[str, str]:
    """This process's environment without the user's uv and pip settings (an index or a
    constraint there must not decide what a recipe resolves to), with the CA bundle."""
    env = {k: v for k, v in os.environ.items()  # where uv keeps its cache is no setting
           if (not k.startswith(("UV_", "PIP_")) or k == "UV_CACHE_DIR")
           and k not in ("SSL_CERT_FILE", "NETRC")}
    if ca_bundle:
        env["SSL_CERT_FILE"] = str(ca_bundle)
    if netrc:
        env["NETRC"] = str(netrc)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


def answers(index: str, env: dict[str, str]) -> bool:
    """Any HTTP answer from the index (even an error status) means it is reachable."""
    try:
        with urllib.request.urlopen(index, timeout=20, context=_ssl_context(env)):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _ssl_context(env: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=env.get("SSL_CERT_FILE") or None)


# --- one step ------------------------------------------------------------------------------


@dataclass
class Options:
    exclude_newer: str = ""
    upgrade: bool = False
    upgrade_packages: list[str] = field(default_factory=list)
    timeout: float = TIMEOUT


def compile_job(job: PipJob, target: Target, installed: dict[str, PipPackage],
                previous: list[PipPackage], env: dict[str, str],
                options: Options | None = None) -> list[PipPackage]:
    """The step's whole closure for the target: every package with the files uv would
    install from (wheels for the target, else the sdist) and their sha256."""
    options = options or Options()
    with tempfile.TemporaryDirectory(prefix="envkit-lock-") as tmp:
        folder = Path(tmp)
        reqs = [*job.requirements, *(f"{flag} {path}" for flag, path in job.files)]
        (folder / "requirements.in").write_text("\n".join(reqs) + "\n")
        out = folder / "pylock.toml"
        prefer = {} if options.upgrade else {**{p.name: p for p in previous}, **installed}
        if prefer:
            out.write_text(_preferences(prefer.values()))
        argv = [uv_bin(), "pip", "compile", "--no-config", "--quiet", "--no-header",
                "--format", "pylock.toml", "-o", str(out), str(folder / "requirements.in"),
                "--python-version", target.python, "--python-platform", target.platform,
                "--index-url", job.index]
        for url in job.extra:
            argv += ["--extra-index-url", url]
        if job.extra and not any(o.startswith("--index-strategy") for o in job.options):
            argv += ["--index-strategy", "unsafe-best-match"]  # pip's: the best of them all
        for option in job.options:
            argv += ["--prerelease=allow"] if option == "--pre" else [option]
        if options.exclude_newer:
            argv += ["--exclude-newer", options.exclude_newer]
        if options.upgrade:
            argv.append("--upgrade")  # and the indexes' pages asked for anew
        for name in options.upgrade_packages:
            argv += ["--upgrade-package", name]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp,
                                  timeout=options.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise ResolveError(f"uv did not resolve it in {options.timeout:.0f}s") from None
        if done.returncode != 0:
            raise ResolveError(*explain(done.stderr or done.stdout))
        return _closure(out.read_text(), job.local)


def _preferences(packages: Any) -> str:
    """A pylock.toml that uv reads as its preferences (the versions to keep if it can)."""
    lines = ['lock-version = "1.0"', 'created-by = "envkit"', ""]
    for p in sorted(packages, key=lambda p: p.name):
        lines += ["[[packages]]", f'name = "{p.name}"', f'version = "{p.version}"', ""]
    return "\n".join(lines)


def _closure(text: str, local: tuple[str, ...] = ()) -> list[PipPackage]:
    data = tomllib.loads(text)
    out = []
    for pkg in data.get("packages", []):
        name = canonicalize_name(str(pkg.get("name", "")))
        if name in local:  # the recipe's own project: installed from its folder
            continue
        wheels = [_dist(w) for w in pkg.get("wheels", [])]
        sdist = [_dist(pkg["sdist"])] if "sdist" in pkg else []
        dists = [d for d in wheels if d] or [d for d in sdist if d]
        if not dists or "version" not in pkg:
            # a direct URL or VCS reference: no file of an index, so nothing to pin by hash
            raise ResolveError(f"{name} comes from a direct URL or VCS reference, which a "
                               "lock cannot pin by hash: publish it to an index, or build "
                               "without the lock (--no-lock)", name)
        out.append(PipPackage(name, str(pkg["version"]), sorted(dists, key=lambda d: d.file)))
    return sorted(out, key=lambda p: p.name)


def _dist(entry: dict[str, Any]) -> Dist | None:
    url = entry.get("url") or entry.get("path") or ""
    name = entry.get("name") or url.rsplit("/", 1)[-1].split("#", 1)[0]
    sha = (entry.get("hashes") or {}).get("sha256", "")
    return Dist(name, sha, url if url.startswith(("http://", "https://")) else "") \
        if name and sha else None


def is_sdist(package: PipPackage) -> bool:
    return all(not d.file.endswith(".whl") for d in package.dists)


_BECAUSE = re.compile(r"Because .*", re.DOTALL)
_NO_VERSION = re.compile(r"there is no version of ([A-Za-z0-9._-]+)([^\s,]*)")
_NO_WHEEL = re.compile(r"([A-Za-z0-9._-]+)==(\S+) has no wheels with a matching "
                       r"(Python ABI tag|Python implementation tag|platform tag)")
_NOT_FOUND = re.compile(r"Because ([A-Za-z0-9._-]+) was not found in the package registry")
_CONFLICT = re.compile(r"(?:Because|and) (?:you require |only )?([A-Za-z0-9._-]+)[=<>!~]")


_NEEDS_PYTHON = re.compile(r"does not satisfy Python(\S+) and ([A-Za-z0-9._-]+)==(\S+) "
                           r"depends on Python")


def explain(text: str) -> tuple[str, str]:
    """uv's explanation of a failed resolution, as one line, and the package it names."""
    body = " ".join(line.strip().lstrip("×╰─▶│ ").strip() for line in text.splitlines())
    body = re.sub(r"\s+", " ", body).strip()
    body = body.split(" hint: ", 1)[0]  # uv's advice on its own flags, not the user's
    if m := _NEEDS_PYTHON.search(body):
        return (f"{m[2]}=={m[3]} needs Python {m[1]}",
                canonicalize_name(m[2]))
    if m := _NO_VERSION.search(body):
        return f"no release {m[1]}{m[2]} exists on the index", canonicalize_name(m[1])
    if m := _NOT_FOUND.search(body):
        return f"{m[1]} is not on the index", canonicalize_name(m[1])
    if m := _NO_WHEEL.search(body):
        what = "platform" if m[3] == "platform tag" else "Python"
        return (f"{m[1]}=={m[2]} has no wheel for this {what} (and no source to build)",
                canonicalize_name(m[1]))
    if m := _BECAUSE.search(body):
        named = _CONFLICT.search(m[0])
        return _shorten(m[0]), canonicalize_name(named[1]) if named else ""
    if m := re.search(r"Failed to (?:build|download|fetch) `([^`]+)`", body):
        return _shorten(body), canonicalize_name(re.split(r"[=<>@ ]", m[1], maxsplit=1)[0])
    return _shorten(body or "uv failed"), ""


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- a plan's pip steps --------------------------------------------------------------------


def resolve_plan(plan: Plan, env: dict[str, str], options: Options | None = None,
                 previous: list[StepLock] | None = None) -> list[StepLock]:
    """Every pip step of the plan: what it installs or changes on top of the steps before
    it in its venv. ResolveError names the step's failing package; ``skipped`` when an
    index does not answer from here."""
    target = lockmod.target_of(plan)
    installed: dict[str, dict[str, PipPackage]] = {}
    before = iter(previous or [])
    out = []
    jobs = jobs_of(plan)
    if any(job.mirrored for job in jobs) and len(plan.mirror.candidates("pip")) > 1:
        picked = mirror_index(plan, env)
        for job in jobs:
            if job.mirrored:
                job.index = picked
    for job in jobs:
        for index in job.indexes:
            if not answers(index, env):
                raise ResolveError(f"{index} does not answer from here", skipped=True,
                                   number=job.number)
        have = installed.setdefault(job.venv, {})
        prev = next(before, None)
        try:
            closure = compile_job(job, target, have, prev.pip if prev else [], env, options)
            if not has_compiler(plan):
                _needs_no_compiler(closure, target, env)
        except ResolveError as exc:
            exc.number = job.number
            raise
        delta = [p for p in closure if have.get(p.name) is None
                 or have[p.name].version != p.version]
        for p in closure:
            have[p.name] = p
        out.append(StepLock("pip", job.title, pip=delta))
    return out


def _needs_no_compiler(closure: list[PipPackage], target: Target, env: dict[str, str]) -> None:
    """A package with no wheel for the target is built at install time: from pure Python
    sources that needs no compiler. One with C, C++, Cython, Fortran or Rust sources is
    built here with the compiler hidden (CC=false): some fall back to pure Python (crcmod);
    one that does not, or that cannot be tried here, needs a compiler the plan lacks."""
    for p in closure:
        if not is_sdist(p):
            continue
        sdist = _native_sources(p, env)
        if sdist is None:
            continue
        why = _build_without_compiler(sdist, target, env)
        if why:
            raise ResolveError(
                f"{p.name}=={p.version} has no wheel for this Python and platform, and the "
                f"plan installs no compiler to build it ({why}); add build-essential, or pin "
                "a release with wheels", p.name)


def _build_without_compiler(sdist: Path, target: Target, env: dict[str, str]) -> str:
    """'' when uv builds a wheel of ``sdist`` with no C/C++ compiler or cargo at hand; else
    why not, in a few words."""
    with tempfile.TemporaryDirectory(prefix="envkit-nocc-") as tmp:
        nocc = {**env, "CC": "false", "CXX": "false", "FC": "false", "CARGO": "false",
                "PATH": env.get("PATH", "/usr/bin:/bin")}
        argv = [uv_bin(), "build", "--no-config", "--wheel", "--quiet", "--python",
                target.python, "--out-dir", tmp, str(sdist)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=nocc, cwd=tmp,
                                  timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return "its build did not finish"
        if done.returncode == 0 and any(Path(tmp).glob("*.whl")):
            return ""
        text = done.stderr + done.stdout
        if "No interpreter found" in text or ("not found in" in text.lower() and "python" in (
                text.lower())):
            return f"its source has native code, and no Python {target.python} here to try it"
        return "its source has native code, and it does not build without one"


def _sdist_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envkit/sdists"


def _native_sources(package: PipPackage, env: dict[str, str]) -> Path | None:
    """The sdist, downloaded, when it holds native sources (read from the archive, not
    built); None when it is pure Python."""
    dist = package.dists[0]
    path = _sdist_cache() / dist.sha256 / dist.file  # its own name: a build checks it
    if not path.exists() or _sha256(path) != dist.sha256:
        url = dist.url
        if not url:
            raise ResolveError(f"{dist.file}: the index gave no address to read it from",
                               package.name)
        data = _get(url, env)
        if hashlib.sha256(data).hexdigest() != dist.sha256:
            raise ResolveError(f"{dist.file} from the index does not match its sha256",
                               package.name)
        try:  # whole or not at all: threads and other envkits share this cache
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise ResolveError(f"cannot keep {dist.file} in {path.parent}: "
                               f"{exc.strerror or exc}", package.name) from None
    try:
        if path.name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        else:
            with tarfile.open(path) as tf:
                names = tf.getnames()
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile):
        return path
    return path if any(_NATIVE.search(n) for n in names) else None


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _get(url: str, env: dict[str, str]) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60, context=_ssl_context(env)) as resp:
            return bytes(resp.read())
    except (urllib.error.URLError, OSError) as exc:
        raise ResolveError(f"cannot download {url}: {exc}") from None
