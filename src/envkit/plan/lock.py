"""The lock: every package a recipe's steps install, exactly, for each param variant.

A recipe's lock sits next to it (``faiss-cpu.yaml`` -> ``faiss-cpu.lock``) and holds one
entry per distinct set of lock inputs: each apt step's packages as ``name version`` (what
the step pulls in on top of the base and the earlier steps), each pip step's whole closure
as ``name version`` with the files it may install and their sha256, for one Python and
platform. An entry names the params it is for and the hash of the normalised inputs it was
made from (``inputs_of``): the locked steps' fields, the target Python and platform, the
base, the compatibility data and the uv version. So staleness is decided offline, and a
comment edit changes nothing. An entry that could not be made here (an index that does not
answer) is written as ``unlocked``, with the reason, and locks nothing.

The file is plain text, one fact a line, sorted where order means nothing, the same from
every mirror profile (no index URL but a step's own)::

    envkit-lock 1
    recipe faiss-cpu

    lock sha256:...
      params {"faiss":"1.15.1","python":"3.11"}
      python 3.11
      platform x86_64-manylinux_2_36
      base debian:bookworm-slim
      ...
      step pip faiss-cpu: faiss and numpy
        numpy 2.4.6
          numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl sha256:89cd...
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envkit import paths
from envkit.diagnostics import Diagnostic, EnvkitError, error
from envkit.files import atomic_write
from envkit.load.catalog import display
from envkit.plan import BUILTIN_PARAMS, Plan, param_text
from envkit.steps import LOCKS_DIR

FORMAT = 1
SUFFIX = ".lock"
DEFAULT_PYTHON = "3.11"
UV_NEWEST_MANYLINUX = (2, 40)  # the newest manylinux level uv 0.13's --python-platform takes
DEFAULT_GLIBC = "2.28"  # a base envkit does not know: manylinux_2_28 wheels run on it
# glibc of the bases envkit knows, by Debian suite or Ubuntu release: which wheels run there
GLIBC = {"bullseye": "2.31", "bookworm": "2.36", "trixie": "2.41",
         "ubuntu20.04": "2.31", "ubuntu22.04": "2.35", "ubuntu24.04": "2.39"}
_DEBIAN = re.compile(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-slim)?(?:@.*)?")
_UBUNTU = re.compile(r"(?:.*[:-])?ubuntu-?(\d\d\.\d\d)(?:@.*)?|(?:docker\.io/)?(?:library/)?"
                     r"ubuntu:(\d\d\.\d\d)(?:@.*)?")


def uv_requirement() -> Path:
    return paths.data_dir() / "uv.txt"


@functools.cache
def uv_version() -> str:
    """The pinned uv (data/uv.txt): the one images install and envkit resolves with."""
    m = re.search(r"^uv==(\S+)", uv_requirement().read_text(), re.MULTILINE)
    if not m:
        raise AssertionError("data/uv.txt pins no uv")
    return m[1]


# --- what a lock is made for ---------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the locked packages run: the base's Debian suite (or Ubuntu release) and glibc,
    the plan's Python, x86_64."""

    python: str  # 'X.Y'
    suite: str  # 'bookworm', 'ubuntu22.04', or '' when the base is not one envkit knows
    glibc: str
    arch: str = "x86_64"

    @property
    def platform(self) -> str:
        """uv's --python-platform: the manylinux level the base's glibc runs, at most the
        newest the pinned uv names (trixie's glibc 2.41 resolves as manylinux_2_40)."""
        major, minor = (int(x) for x in self.glibc.split("."))
        major, minor = min((major, minor), UV_NEWEST_MANYLINUX)
        return f"{self.arch}-manylinux_{major}_{minor}"


def target_python(plan: Plan) -> str:
    """The Python the pip steps install for, as 'X.Y': the version the first venv was made
    with (``python: "3.12"``), else the plan's ``python`` param, else 3.11 (bookworm's)."""
    for ps in plan.steps:
        if ps.kind == "venv":
            m = re.fullmatch(r"(?:python)?(\d+\.\d+)", str(getattr(ps.step, "python", "")))
            if m:
                return m[1]
            break
    text = param_text(plan.params.get("python", DEFAULT_PYTHON))
    try:
        v = Version(text)
    except InvalidVersion:
        return DEFAULT_PYTHON
    return f"{v.major}.{v.minor}"


def suite_of(base: str) -> str:
    if m := _DEBIAN.fullmatch(base):
        return m[1]
    if m := _UBUNTU.fullmatch(base):
        return "ubuntu" + (m[1] or m[2])
    return ""


def target_of(plan: Plan) -> Target:
    suite = suite_of(plan.base)
    return Target(target_python(plan), suite, GLIBC.get(suite, DEFAULT_GLIBC))


# --- the inputs hash -----------------------------------------------------------------------


@dataclass
class Inputs:
    """What a plan's lock depends on, normalised, and its hash."""

    data: dict[str, Any]
    digest: str
    params: dict[str, str]  # the plan's own params (built-ins left out): the entry's key
    files: dict[int, list[tuple[str, Path]]]  # pip step number -> (option, local file)


def variant_params(plan: Plan) -> dict[str, str]:
    return {k: param_text(v) for k, v in sorted(plan.params.items()) if k not in BUILTIN_PARAMS}


def requirement_files(plan: Plan, number: int) -> list[tuple[str, Path]]:
    """A pip step's requirements and constraints files on this machine, as the installer is
    given them (``-r``/``-c``, file); those they include, uv reads itself."""
    step: Any = plan.steps[number - 1].step
    return [(i.flag, i.source) for i in getattr(step, "given", [])]


def carried_indexes(plan: Plan, number: int) -> list[str]:
    """The indexes the earlier pip steps of the same venv named (their own index and extra
    indexes): a step is resolved, and installed when locked, with them too, since what it
    depends on may already be installed from there."""
    step: Any = plan.steps[number - 1].step
    out: list[str] = []
    for ps in plan.steps[: number - 1]:
        other: Any = ps.step
        if ps.kind == "pip" and other.python == step.python:
            out += [u for u in [other.index, *other.extra_index] if u and u not in out]
    return [u for u in out if u != step.index and u not in step.extra_index]


def inputs_of(plan: Plan, compat_digest: str) -> Inputs:
    """The normalised inputs of a plan's lock. Built-in params (prefix, cache) and the venv
    paths they make are left out, so the host and the image share a lock; each pip step
    names its venv by number instead."""
    target = target_of(plan)
    venvs: dict[str, int] = {}
    steps = []
    files: dict[int, list[tuple[str, Path]]] = {}
    for ps in plan.steps:
        fields = ps.step.lock_inputs()
        if fields is None:
            continue
        entry: dict[str, Any] = {"kind": ps.kind, **fields}
        if ps.stage != "build":  # a runtime stage's apt step is locked on the bare base
            entry["stage"] = ps.stage
        if ps.kind == "pip":
            step: Any = ps.step
            entry["venv"] = venvs.setdefault(step.python, len(venvs))
            found = requirement_files(plan, ps.number)
            if found:
                files[ps.number] = found
            # every file it reads, included ones too; a project by its pyproject.toml
            read = [(i.flag, i.source / "pyproject.toml" if i.flag == "project" else i.source)
                    for i in step.inputs]
            if read:
                entry["files"] = [(flag, _tree_sha256(path)) for flag, path in read]
        steps.append(entry)
    params = variant_params(plan)
    data = {"format": FORMAT, "python": target.python, "platform": target.platform,
            "base": plan.base, "uv": uv_version(), "compat": compat_digest, "steps": steps}
    digest = "sha256:" + hashlib.sha256(_canonical(data).encode()).hexdigest()
    return Inputs(data, digest, params, files)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


_NESTED = re.compile(r"^\s*(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)", re.MULTILINE)


def _tree_sha256(path: Path, seen: frozenset[Path] = frozenset()) -> str:
    """A requirements file's content and that of the files it names with -r or -c (which
    uv reads too), relative to it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}", path="lock") from None
    digest = hashlib.sha256(data)
    for name in _NESTED.findall(data.decode("utf-8", "replace")):
        nested = (path.parent / name).resolve()
        if nested not in seen and len(seen) < 20 and nested.is_file():
            digest.update(_tree_sha256(nested, seen | {path.resolve()}).encode())
    return digest.hexdigest()


# --- the model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    """One file a locked package may be installed from."""

    file: str
    sha256: str
    url: str = field(default="", compare=False)  # where the resolver saw it; not written


@dataclass
class PipPackage:
    name: str  # canonical (PEP 503)
    version: str
    dists: list[Dist]
    line: int = 0  # in the lock file; 0 when made in memory

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    def requirement(self) -> str:
        """Its line in a hash-checked requirements file."""
        hashes = "".join(f" \\\n    --hash=sha256:{d.sha256}" for d in self.dists)
        return f"{self.name}=={self.version}{hashes}"


@dataclass
class AptPackage:
    name: str
    version: str
    line: int = 0

    @property
    def pin(self) -> str:
        return f"{self.name}={self.version}"


@dataclass
class StepLock:
    """What one apt or pip step installs (or changes) on top of the steps before it."""

    kind: str
    title: str
    pip: list[PipPackage] = field(default_factory=list)
    apt: list[AptPackage] = field(default_factory=list)
    line: int = 0

    @property
    def packages(self) -> list[PipPackage] | list[AptPackage]:
        return self.pip if self.kind == "pip" else self.apt


@dataclass
class Entry:
    inputs: str
    params: list[dict[str, str]]
    python: str = ""
    platform: str = ""
    base: str = ""
    suite: str = ""
    base_digest: str = ""  # a registry image by digest
    base_made: str = ""  # provenance only: how the base was made, when, its image id
    uv: str = ""
    exclude_newer: str = ""
    apt_snapshot: str = ""
    steps: list[StepLock] = field(default_factory=list)
    unlocked: str = ""  # why this could not be locked here; then it locks nothing
    apt_free: str = ""  # why its apt steps are not locked (a host build): only pip is
    line: int = 0

    def content_digest(self) -> str:
        """The locked content (not which params share it, not provenance): what image tags,
        labels and manifests name."""
        data = {"python": self.python, "platform": self.platform, "base": self.base,
                "suite": self.suite, "base_digest": self.base_digest,
                "apt_snapshot": self.apt_snapshot, "apt_free": bool(self.apt_free),
                "steps": [[s.kind, [p.pin for p in s.apt],
                           [[p.pin, [[d.file, d.sha256] for d in p.dists]] for p in s.pip]]
                          for s in self.steps]}
        return "sha256:" + hashlib.sha256(_canonical(data).encode()).hexdigest()


@dataclass
class LockFile:
    path: Path
    recipe: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def display(self) -> str:
        return display(self.path)

    def find(self, inputs: Inputs) -> Match:
        """The entry for these inputs; else, whether the params have a stale one."""
        for entry in self.entries:
            if entry.inputs == inputs.digest:
                return Match("unlocked" if entry.unlocked else "locked", entry, self)
        for entry in self.entries:  # the same params on the same base: made for this
            if inputs.params in entry.params and entry.base == inputs.data["base"]:
                return Match("stale", entry, self)
        return Match("missing", None, self)


@dataclass
class Match:
    state: str  # locked | unlocked | stale | missing
    entry: Entry | None
    file: LockFile | None

    def where(self, package: PipPackage | AptPackage | StepLock | None = None) -> str:
        """'recipes/x.lock:57' for a package's (or the entry's) line."""
        if self.file is None:
            return "the lock made for this build"
        line = package.line if package is not None else (self.entry.line if self.entry else 0)
        return f"{self.file.display}:{line}" if line else self.file.display


def path_for(recipe_path: Path) -> Path:
    return recipe_path.with_suffix(SUFFIX)


# --- the text form -------------------------------------------------------------------------

HEADER = """\
# envkit lock of {recipe}: every package `invoke build` installs for it, exactly.
# Made by `invoke lock --recipe {recipe}`; do not edit: change the recipe, then lock again.
"""


def dump(lock: LockFile) -> str:
    out = [HEADER.format(recipe=lock.recipe).rstrip("\n"),
           f"envkit-lock {FORMAT}", f"recipe {lock.recipe}"]
    for entry in sorted(lock.entries, key=lambda e: sorted(_canonical(p) for p in e.params)):
        out.append("")
        out.append(f"{'unlocked' if entry.unlocked else 'lock'} {entry.inputs}")
        out += [f"  params {_canonical(p)}" for p in sorted(entry.params, key=_canonical)]
        if entry.unlocked:
            out += [f"  base {entry.base}"] if entry.base else []
            out.append(f"  why {_one_line(entry.unlocked)}")
            continue
        for key, value in (("python", entry.python), ("platform", entry.platform),
                           ("base", entry.base), ("base-suite", entry.suite),
                           ("base-digest", entry.base_digest), ("base-made", entry.base_made),
                           ("uv", entry.uv), ("exclude-newer", entry.exclude_newer),
                           ("apt-snapshot", entry.apt_snapshot),
                           ("apt-free", _one_line(entry.apt_free))):
            if value:
                out.append(f"  {key} {value}")
        for step in entry.steps:
            out.append(f"  step {step.kind} {_one_line(step.title)}")
            for a in sorted(step.apt, key=lambda p: p.name):
                out.append(f"    {a.name} {a.version}")
            for p in sorted(step.pip, key=lambda p: p.name):
                out.append(f"    {p.name} {p.version}")
                out += [f"      {d.file} sha256:{d.sha256}"
                        for d in sorted(p.dists, key=lambda d: d.file)]
    return "\n".join(out) + "\n"


def _one_line(text: str) -> str:
    return " ".join(text.split())


_TOKEN = re.compile(r"[^\s]+")
_HEX64 = re.compile(r"sha256:[0-9a-f]{64}")
# What a lock may hold, so that nothing in it can be more than a name and a version where
# it is rendered (apt's command line, a requirements file)
_PIP_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_APT_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
_FILE = re.compile(r"[A-Za-z0-9_.+!-]+\.(?:whl|tar\.gz|zip|tar\.bz2|tgz)")
_SNAPSHOT = re.compile(r"\d{8}T\d{6}Z")
MAX_BYTES = 32 * 1024 * 1024  # the catalog's largest lock is under 100 KB
_ENTRY_KEYS = {"python": "python", "platform": "platform", "base": "base",
               "base-suite": "suite", "base-digest": "base_digest", "base-made": "base_made",
               "uv": "uv", "exclude-newer": "exclude_newer", "apt-snapshot": "apt_snapshot",
               "apt-free": "apt_free"}


def parse(text: str, path: Path) -> LockFile:
    """A lock file's text -> LockFile; every problem at its line, all at once."""
    shown = display(path)
    problems: list[Diagnostic] = []
    lock = LockFile(path, "")
    entry: Entry | None = None
    step: StepLock | None = None
    package: PipPackage | None = None

    def bad(n: int, message: str) -> None:
        problems.append(Diagnostic(shown, n, 1, "lock", message,
                                   "lock again: invoke lock --recipe "
                                   f"{lock.recipe or path.stem}"))

    seen_format = False
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        key, _, rest = raw.strip().partition(" ")
        if indent == 0:
            entry = step = package = None
            if key == "envkit-lock":
                if rest != str(FORMAT):
                    bad(n, f"lock format {rest!r}; this envkit reads format {FORMAT}")
                seen_format = True
            elif key == "recipe" and rest:
                lock.recipe = rest
            elif key in ("lock", "unlocked") and _HEX64.fullmatch(rest):
                entry = Entry(rest, [], line=n, unlocked="?" if key == "unlocked" else "")
                lock.entries.append(entry)
            else:
                bad(n, f"unexpected line {raw.strip()[:60]!r}")
        elif indent == 2 and entry is not None:
            step = package = None
            if key == "params":
                try:
                    params = json.loads(rest)
                except ValueError:
                    params = None
                if not isinstance(params, dict) or not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
                    bad(n, "params must be a JSON object of strings")
                else:
                    entry.params.append(params)
            elif key == "why" and entry.unlocked:
                entry.unlocked = rest or "?"
            elif key == "base" and entry.unlocked and rest:
                entry.base = rest
            elif key in _ENTRY_KEYS and rest and not entry.unlocked:
                if key == "apt-snapshot" and not _SNAPSHOT.fullmatch(rest):
                    bad(n, f"an apt snapshot is YYYYMMDDTHHMMSSZ, not {rest[:40]!r}")
                setattr(entry, _ENTRY_KEYS[key], rest)
            elif key == "step" and not entry.unlocked:
                kind, _, title = rest.partition(" ")
                if kind not in ("apt", "pip"):
                    bad(n, f"a step is apt or pip, not {kind!r}")
                else:
                    step = StepLock(kind, title, line=n)
                    entry.steps.append(step)
            else:
                bad(n, f"unexpected line {raw.strip()[:60]!r}")
        elif indent == 4 and step is not None:
            parts = _TOKEN.findall(raw)
            if len(parts) != 2:
                bad(n, "a package line is NAME VERSION")
            elif step.kind == "apt":
                if not (_APT_NAME.fullmatch(parts[0]) and _APT_VERSION.fullmatch(parts[1])):
                    bad(n, f"not a Debian package and version: {raw.strip()[:60]!r}")
                step.apt.append(AptPackage(parts[0], parts[1], n))
            else:
                if not _PIP_NAME.fullmatch(parts[0]) or _bad_version(parts[1]):
                    bad(n, f"not a normalised Python package and version: "
                           f"{raw.strip()[:60]!r}")
                package = PipPackage(canonicalize_name(parts[0]), parts[1], [], n)
                step.pip.append(package)
        elif indent == 6 and package is not None:
            parts = _TOKEN.findall(raw)
            if len(parts) != 2 or not _HEX64.fullmatch(parts[1]) or not _FILE.fullmatch(
                    parts[0]):
                bad(n, "a file line is FILENAME sha256:HEX")
            else:
                package.dists.append(Dist(parts[0], parts[1].removeprefix("sha256:")))
        else:
            bad(n, f"unexpected line {raw.strip()[:60]!r} (indentation)")
    if not seen_format and not problems:
        bad(1, "not an envkit lock (no 'envkit-lock' line)")
    for e in lock.entries:
        if not e.params:
            bad(e.line, "an entry names no params")
        for s in e.steps:
            for p in s.pip:
                if not p.dists:
                    bad(p.line, f"{p.name} {p.version} has no file to install")
    if problems:
        raise EnvkitError(problems)
    return lock


def _bad_version(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return True
    return False


def load(path: Path) -> LockFile | None:
    """The lock file at ``path``; None when there is none."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise error(f"{display(path)} is over {MAX_BYTES >> 20} MiB; that is not a lock",
                        path="lock")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {display(path)}: {getattr(exc, 'strerror', None) or exc}",
                    path="lock") from None
    return parse(text, path)


def write(lock: LockFile) -> None:
    """Atomically: a reader never sees half a lock."""
    atomic_write(lock.path, dump(lock).encode("utf-8"), 0o644)


# --- a lock applied to a plan --------------------------------------------------------------



@dataclass
class Locked:
    """What the lock says one step of a plan installs: set on the step, rendered by its
    partial (apt pins; a hash-checked requirements file for pip), and in its step hash."""

    step: StepLock
    recipe: str
    where: str  # 'recipes/x.lock:17', the step's line
    file: str = ""  # pip: the requirements file's name in LOCKS_DIR
    snapshot: str = ""  # apt: the Debian snapshot the lock was made against
    suite: str = ""  # apt: the base's suite the versions are for
    carried: list[str] = field(default_factory=list)  # pip: earlier steps' indexes, too

    @property
    def pins(self) -> list[str]:
        return [p.pin for p in self.step.packages]

    def at(self, line: int) -> str:
        """Where a package of this step is: 'recipes/x.lock:57' (the step's place when the
        package has no line, as in a lock made for one build)."""
        if line and self.where.rsplit(":", 1)[-1].isdigit():
            return f"{self.where.rsplit(':', 1)[0]}:{line}"
        return self.where

    def digest(self) -> str:
        data = [self.step.kind, self.snapshot, self.suite, self.carried,
                [p.pin for p in self.step.apt],
                [[p.pin, [d.sha256 for d in p.dists]] for p in self.step.pip]]
        return hashlib.sha256(_canonical(data).encode()).hexdigest()


def requirements_text(locked: Locked, number: int, plan_name: str) -> str:
    """The hash-checked requirements file a locked pip step installs with --no-deps."""
    lines = [f"# {plan_name} step {number}: {locked.step.title}",
             f"# locked in {locked.where}; installed with --require-hashes --no-deps,",
             "# so a file whose hash differs, or a version the index no longer has, fails."]
    for p in sorted(locked.step.pip, key=lambda p: p.name):
        lines += [f"# {p.name} {p.version}: line {p.line}" if p.line else f"# {p.name}",
                  p.requirement()]
    return "\n".join(lines) + "\n"


def apply(plan: Plan, match: Match) -> None:
    """Set each lockable step's Locked from the match's entry (in plan order), and the
    requirements files the pip steps install from."""
    entry = match.entry
    assert entry is not None and not entry.unlocked
    lockable = [ps for ps in plan.steps if ps.step.lock_inputs() is not None
                and not (entry.apt_free and ps.kind == "apt")]
    if len(lockable) != len(entry.steps) or any(
            ps.kind != s.kind for ps, s in zip(lockable, entry.steps, strict=False)):
        raise error(f"{match.where()} does not fit {plan.name}'s steps", path="lock",
                    hint=f"lock again: invoke lock --recipe {plan.name}")
    for ps, step in zip(lockable, entry.steps, strict=True):
        apt = ps.kind == "apt"
        locked = Locked(step, ps.recipe, match.where(step),
                        snapshot=entry.apt_snapshot if apt else "",
                        suite=entry.suite if apt else "")
        if ps.kind == "pip":
            locked.file = f"step-{ps.number}.txt"
            locked.carried = carried_indexes(plan, ps.number)
            plan.generated[f"{LOCKS_DIR}/{locked.file}"] = requirements_text(
                locked, ps.number, plan.name)
        ps.step.locked = locked


_HASH_MISMATCH = re.compile(r"Hash mismatch for `([^`=]+)==([^`]+)`")
_NO_SUCH = re.compile(r"there is no version of ([A-Za-z0-9._-]+)==(\S+?)[ ,]")
_APT_GONE = re.compile(r"\[envkit\] apt: (\S+) (\S+) is locked, but the (archive|base) has "
                       r"(.*?)(?:, newer)?: ")


def explain_step(plan: Plan, number: int, lines: list[str]) -> str:
    """What the output of the plan's failed step ``number`` says of the lock ('' if
    nothing, or no such step): what both backends add to their one-line failure."""
    if not 0 < number <= len(plan.steps):
        return ""
    return explain_failure(plan.steps[number - 1].step.locked, lines)


def explain_failure(locked: Locked | None, lines: list[str]) -> str:
    """What a failed locked step's output says of the lock, in one line: the package, its
    lock line and what went wrong; '' when it says nothing of the lock."""
    if locked is None:
        return ""
    text = "\n".join(lines)
    found = []
    for pattern, why in ((_HASH_MISMATCH, "its file's sha256 differs from the lock"),
                         (_NO_SUCH, "the index does not have it (any more)")):
        for m in pattern.finditer(text):
            found.append(_named(locked, m[1], m[2], why))
    for m in _APT_GONE.finditer(text):
        found.append(_named(locked, m[1], m[2], f"the {m[3]} has {m[4]} now"))
    return "; ".join(dict.fromkeys(found))


def _named(locked: Locked, name: str, version: str, why: str) -> str:
    key = canonicalize_name(name) if locked.step.kind == "pip" else name
    line = next((p.line for p in locked.step.packages
                 if p.name == key and p.version == version), 0)
    return f"{name} {version} ({locked.at(line)}): {why}"
