"""``validate --resolve``: every pip step's requirements resolved for the recipe's own
target (its ``python`` param, CPython on manylinux x86_64) without installing anything.

Each pip step is resolved together with the pip steps before it (they end up in one
venv), by ``pip install --dry-run --report`` with ``--python-version``, ``--platform``
and ``--only-binary=:all:``, on the step's own index or the mirror profile's. A pin that
does not exist for that target fails with the recipe, step and package named. A package
published only as a source archive is checked on the index's JSON API instead (it gets
built at install time). An index this machine cannot reach is reported as skipped.
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
from packaging.utils import canonicalize_name, parse_sdist_filename
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
_UNREACHABLE = ("Failed to establish a new connection", "Name or service not known",
                "Temporary failure in name resolution", "Could not fetch URL",
                "Connection refused", "Max retries exceeded")


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


def resolve(job: Job, env: dict[str, str]) -> Outcome:
    requirements = list(job.requirements)
    sdists: list[str] = []
    while True:
        outcome = _pip(job, requirements, env)
        if outcome.ok or outcome.skipped:
            outcome.sdists = sdists
            return outcome
        missing = _missing(outcome.message)
        req = next((r for r in requirements if _name(r) == missing), None) if missing else None
        if req is None:
            return outcome
        # no wheel for this target: an sdist for it is fine (pip builds it at install time)
        found = _sdist(job, req, env)
        if not found:
            return outcome
        sdists.append(found)
        requirements.remove(req)
        if not requirements:
            return Outcome(True, 0, sdists=sdists)


def _pip(job: Job, requirements: list[str], env: dict[str, str]) -> Outcome:
    abi = "cp" + job.python.replace(".", "")
    with tempfile.TemporaryDirectory(prefix="envkit-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        # --target: pip takes a foreign target only for a folder; --dry-run writes nothing
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                "--disable-pip-version-check", "--no-input", "--quiet",
                "--report", str(report), "--target", str(Path(tmp) / "target"),
                "--python-version", job.python,
                "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
                *(a for p in PLATFORMS for a in ("--platform", p)),
                "--only-binary=:all:", "--index-url", job.index,
                "--retries", "1", "--timeout", "30"]
        for url in job.extra:
            argv += ["--extra-index-url", url]
        argv += ["--", *requirements]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                                  env=env, cwd=tmp, check=False)
        except subprocess.TimeoutExpired:
            return Outcome(False, message=f"pip did not finish in {TIMEOUT}s")
        text = done.stderr + done.stdout
        if done.returncode == 0:
            installs = json.loads(report.read_text()).get("install", [])
            return Outcome(True, len(installs))
        if any(s in text for s in _UNREACHABLE) and not _missing(text):
            return Outcome(False, message=f"{job.index} does not answer from here",
                           skipped=True)
        return Outcome(False, message=_summary(text))


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
    url = f"{job.index.rstrip('/')}/{canonicalize_name(req.name)}/"
    request = urllib.request.Request(url, headers={
        "Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        context = _ssl_context(env)
        with urllib.request.urlopen(request, timeout=30, context=context) as resp:
            files = json.load(resp).get("files", [])
    except (urllib.error.URLError, OSError, ValueError):
        return ""
    python = Version(job.python)
    for f in files:
        name = f.get("filename", "")
        if not name.endswith((".tar.gz", ".zip")) or f.get("yanked"):
            continue
        try:
            _, version = parse_sdist_filename(name)
        except Exception:
            continue
        needs = f.get("requires-python") or ""
        if req.specifier.contains(version, prereleases=True) and (
                not needs or SpecifierSet(needs).contains(python, prereleases=True)):
            return name
    return ""


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
