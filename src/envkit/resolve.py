"""``validate --resolve``: every pip step's requirements resolved for the recipe's own
target (its ``python`` param, CPython on manylinux x86_64) without installing anything.

Each pip step is resolved together with the pip steps before it (they end up in one
venv), by ``pip install --dry-run --report`` on the step's own index or the mirror
profile's: natively when the target is the Python running envkit (sdists included), else
with ``--python-version``, ``--platform`` and ``--only-binary=:all:``. A pin that
does not exist for that target fails with the recipe, step and package named. A package
published only as a source archive, with no Linux wheels at all, is checked on the
index's JSON API instead (pip builds it at install time). An index this machine cannot
reach is reported as skipped, never as passed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .plan import Plan

PLATFORM = "manylinux_2_36_x86_64"  # Debian bookworm's glibc 2.36
# pip does not widen a PEP 600 tag to the older ones, so name them all (manylinux2014
# brings manylinux2010 and manylinux1); linux_x86_64 is what a local build is tagged.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in range(36, 16, -1)] + [
    "manylinux2014_x86_64", "linux_x86_64"]
DEFAULT_PYTHON = "3.11"
TIMEOUT = 300
_NOT_FOUND = re.compile(r"No matching distribution found for (\S+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement (\S+)")


@dataclass(frozen=True)
class Job:
    """One resolution: a pip step and every pip requirement installed up to it."""

    python: str  # 'X.Y'
    index: str
    extra: tuple[str, ...]
    requirements: tuple[str, ...]


@dataclass
class Outcome:
    ok: bool
    installs: int = 0  # distributions the resolution picked
    message: str = ""
    skipped: bool = False  # the index does not answer from here
    sdists: list[str] = field(default_factory=list)  # checked on the JSON API instead


@dataclass
class Where:
    recipe: str
    file: str
    step: int
    title: str
    variant: str


def target_python(plan: Plan) -> str:
    """The plan's ``python`` param as 'X.Y' (3.11 when the recipe has none)."""
    text = str(plan.params.get("python", DEFAULT_PYTHON))
    try:
        v = Version(text)
    except InvalidVersion:
        return DEFAULT_PYTHON
    return f"{v.major}.{v.minor}"


def jobs_of(plan: Plan) -> list[tuple[Job, int, str]]:
    """(job, step number, step title) for each pip step of a plan."""
    out = []
    so_far: list[str] = []
    python = target_python(plan)
    for ps in plan.steps:
        if ps.kind != "pip":
            continue
        step = ps.step
        so_far += [r for r in step.packages if r not in so_far]  # type: ignore[attr-defined]
        index = step.index or plan.mirror.candidates("pip")[0]  # type: ignore[attr-defined]
        if index == "-":
            index = "https://pypi.org/simple"
        out.append((Job(python, index, tuple(step.extra_index),  # type: ignore[attr-defined]
                        tuple(so_far)), ps.number, ps.title))
    return out


def answers(index: str, env: dict[str, str]) -> bool:
    """Any HTTP answer from the index (even an error status) means it is reachable."""
    try:
        with urllib.request.urlopen(index, timeout=20, context=_ssl_context(env)):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def native(job: Job) -> bool:
    """The target is this interpreter on Linux x86-64: pip resolves exactly as it would
    install, source distributions included (their metadata is built, not the package)."""
    return (job.python == f"{sys.version_info.major}.{sys.version_info.minor}"
            and sys.platform == "linux" and os.uname().machine == "x86_64")


def resolve(job: Job, env: dict[str, str]) -> Outcome:
    for index in (job.index, *job.extra):
        if not answers(index, env):
            return Outcome(False, message=f"{index} does not answer from here", skipped=True)
    requirements = list(job.requirements)
    sdists: list[str] = []
    while True:
        outcome = _pip(job, requirements, env)
        if outcome.ok or outcome.skipped:
            outcome.sdists = sdists + outcome.sdists
            return outcome
        missing = _missing(outcome.message)
        if missing:
            suspects = [r for r in requirements if _name(r) == missing]
        else:  # e.g. an sdist whose metadata cannot be built here (psycopg2 needs pg_config)
            suspects = list(requirements)
        found = [(r, name) for r in suspects if (name := _sdist(job, r, env))]
        if not found:
            return outcome
        for req, name in found:
            sdists.append(name)
            requirements.remove(req)
        if not requirements:
            return Outcome(True, 0, sdists=sdists)


def _pip(job: Job, requirements: list[str], env: dict[str, str]) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="envkit-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        # --target: pip takes a foreign target only for a folder; --dry-run writes nothing
        # --isolated: this machine's pip.conf and PIP_* (extra indexes, constraints) must
        # not decide what a recipe resolves to
        argv = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run",
                "--ignore-installed", "--disable-pip-version-check", "--no-input", "--quiet",
                "--report", str(report), "--index-url", job.index,
                "--retries", "1", "--timeout", "30"]
        if not native(job):
            # another Python: wheels only (pip cannot build for a foreign interpreter), and
            # --target, the only way pip takes a foreign target; --dry-run writes nothing
            abi = "cp" + job.python.replace(".", "")
            argv += ["--target", str(Path(tmp) / "target"), "--python-version", job.python,
                     "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
                     *(a for p in PLATFORMS for a in ("--platform", p)), "--only-binary=:all:"]
        for url in job.extra:
            argv += ["--extra-index-url", url]
        if env.get("PIP_CERT"):
            argv += ["--cert", env["PIP_CERT"]]
        argv += ["--", *requirements]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                                  env=env, cwd=tmp, check=False)
        except subprocess.TimeoutExpired:
            return Outcome(False, message=f"pip did not finish in {TIMEOUT}s")
        text = done.stderr + done.stdout
        if done.returncode == 0:
            installs = json.loads(report.read_text()).get("install", [])
            return _built_from_source(job, installs, env)
        return Outcome(False, message=_summary(text))


def _built_from_source(job: Job, installs: list[dict], env: dict[str, str]) -> Outcome:
    """A release pip would build from its sdist although it has Linux wheels, only for
    other Pythons, does not exist for this one; one with no Linux wheels at all is fine."""
    sdists = []
    for item in installs:
        url = item.get("download_info", {}).get("url", "")
        if not url.endswith((".tar.gz", ".zip")):
            continue
        meta = item.get("metadata", {})
        name, version = meta.get("name", ""), meta.get("version", "")
        others = _linux_wheels(job, name, version, env)
        if others:
            return Outcome(False, message=f"{name}=={version} has Linux wheels only for "
                           f"{', '.join(sorted(others))}, none for Python {job.python} "
                           "(pip would try to build it from source)")
        sdists.append(url.rsplit("/", 1)[-1])
    return Outcome(True, len(installs), sdists=sdists)


def _linux_wheels(job: Job, name: str, version: str, env: dict[str, str]) -> set[str]:
    """Interpreter tags of the release's Linux wheels."""
    files = _files(job.index, name, env)
    out: set[str] = set()
    for f in files:
        fname = f.get("filename", "")
        if not fname.endswith(".whl") or f.get("yanked"):
            continue
        try:
            _, v, _, tags = parse_wheel_filename(fname)
        except Exception:
            continue
        if str(v) == str(Version(version)):
            out.update(t.interpreter for t in tags if "linux" in t.platform)
    return out


def _files(index: str, name: str, env: dict[str, str]) -> list[dict]:
    url = f"{index.rstrip('/')}/{canonicalize_name(name)}/"
    request = urllib.request.Request(url, headers={
        "Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(request, timeout=30, context=_ssl_context(env)) as resp:
            return list(json.load(resp).get("files", []))
    except (urllib.error.URLError, OSError, ValueError):
        return []


def _missing(text: str) -> str:
    m = _NOT_FOUND.search(text) or _NO_VERSION.search(text)
    return _name(m.group(1)) if m else ""


def _name(requirement: str) -> str:
    try:
        return canonicalize_name(Requirement(requirement).name)
    except Exception:  # pip's own rendering of a requirement, e.g. 'x==1' with markers
        return canonicalize_name(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0])


def _summary(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("ERROR:")]
    lines = [ln.removeprefix("ERROR: ") for ln in lines]
    return "; ".join(lines[:3]) or (text.strip().splitlines() or ["pip failed"])[-1]


def _sdist(job: Job, requirement: str, env: dict[str, str]) -> str:
    """'name-version.tar.gz' when the index has an sdist matching the requirement whose
    Requires-Python admits the target; '' otherwise."""
    req = Requirement(requirement)
    files = _files(job.index, req.name, env)
    python = Version(job.python)
    wheels: set[str] = set()  # Linux wheels of the matching releases, for other Pythons
    sdist = ""
    for f in files:
        name = f.get("filename", "")
        if f.get("yanked"):
            continue
        try:
            if name.endswith(".whl"):
                _, version, _, tags = parse_wheel_filename(name)
                if req.specifier.contains(version, prereleases=True) and any(
                        "linux" in t.platform for t in tags):
                    wheels.update(t.interpreter for t in tags)
                continue
            if not name.endswith((".tar.gz", ".zip")):
                continue
            _, version = parse_sdist_filename(name)
        except Exception:  # a file name that is not a distribution's
            continue
        needs = f.get("requires-python") or ""
        if not sdist and req.specifier.contains(version, prereleases=True) and (
                not needs or SpecifierSet(needs).contains(python, prereleases=True)):
            sdist = name
    # Linux wheels for other Pythons only: this release does not exist for ours. A project
    # that publishes no Linux wheels at all (psycopg2) is built from its sdist.
    return "" if wheels else sdist


def _ssl_context(env: dict[str, str]):  # type: ignore[no-untyped-def]
    import ssl
    cafile = env.get("PIP_CERT") or None
    return ssl.create_default_context(cafile=cafile)


def run_all(jobs: list[Job], env: dict[str, str] | None = None,
            workers: int = 4) -> dict[Job, Outcome]:
    env = {**os.environ, **(env or {})}
    unique = list(dict.fromkeys(jobs))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(unique, pool.map(lambda j: resolve(j, env), unique), strict=True))
