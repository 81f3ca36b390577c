"""Verify against the lock: what is installed is exactly what the lock says.

A check like the recipe's own (a row of verify's table), added by envkit when the build
installed a lock. It lists each venv's distributions and, in an image, the Debian
packages, and fails naming each package added, missing or at another version. Expected
beside the locked packages, by name: what a venv seeds (pip, setuptools), what a run
step says it installs (a build from source) and a pip step's own project. In an image
the Debian packages the base had are its own (recorded before step 1); a version the
build took because Debian had dropped the locked one (ENVKIT_APT_VANISHED=newer) is said,
not failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from packaging.utils import canonicalize_name

from envkit import paths
from envkit.checks import Check, sections
from envkit.plan import Plan

SEEDED = ("pip", "setuptools", "wheel")  # what venv and ensurepip put in a new venv
IMAGE_HELPERS = "/usr/local/lib/envkit/helpers.sh"
SHARE = "/usr/local/share/envkit"
MAX_NAMED = 40

_SCRIPT = (
    'ENVKIT_MIRRORS_PICKED=1; . "$0" || exit 3\n'
    'envkit_installed "$@"\n'
    f'if [ -f {SHARE}/base-packages.txt ]; then echo "# base"; cat {SHARE}/base-packages.txt; fi\n'
    f'if [ -f {SHARE}/apt-replaced ]; then echo "# replaced"; cat {SHARE}/apt-replaced; fi\n'
)


@dataclass
class Want:
    version: str
    where: str  # the lock line


@dataclass
class LockCheck(Check):
    kind = "lock"
    pip: dict[str, dict[str, Want]] = field(default_factory=dict)  # python -> name -> want
    extra: dict[str, set[str]] = field(default_factory=dict)  # python -> names also expected
    apt: dict[str, Want] | None = None  # None: Debian packages are not compared (a host)
    helpers: str = IMAGE_HELPERS

    def label(self) -> str:
        return self.name or "installed packages match the lock"

    def command(self) -> list[str]:
        return ["bash", "-c", _SCRIPT, self.helpers, *self.pip]

    def judge(self, code: int, output: str) -> tuple[bool, str]:
        if code != 0:
            return False, f"could not list what is installed (exit {code}): " + (
                output.strip().splitlines() or [""])[-1][:200]
        found = sections(output)
        problems: list[str] = []
        for python, want in self.pip.items():
            have = {canonicalize_name(n): v for n, v in _pairs(found.get(python, []), "==")}
            problems += _compare(f"pip {python}", want, have, self.extra.get(python, set()))
        notes = []
        if self.apt is not None:
            if "base" not in found:
                notes.append("Debian packages not compared: the image has no record of its "
                             "base's packages")
            else:
                have = dict(_pairs(found.get("dpkg", []), " "))
                base = dict(_pairs(found["base"], " "))
                replaced = {n: (old, new) for n, old, new in
                            (line.split() for line in found.get("replaced", [])
                             if len(line.split()) == 3)}
                for name, (old, new) in sorted(replaced.items()):
                    notes.append(f"apt {name} {new} instead of the locked {old} "
                                 "(Debian dropped it; ENVKIT_APT_VANISHED=newer)")
                want = {n: (Want(replaced[n][1], w.where) if n in replaced else w)
                        for n, w in self.apt.items()}
                added = {n: v for n, v in have.items() if n not in base}
                problems += _compare("apt", want, {**{n: v for n, v in have.items()
                                                       if n in want}, **added}, set())
        if problems:
            shown = problems[:MAX_NAMED]
            more = len(problems) - len(shown)
            return False, "; ".join(shown) + (f"; and {more} more" if more else "")
        count = sum(len(w) for w in self.pip.values()) + len(self.apt or {})
        return True, f"{count} locked packages as locked" + (
            f" ({'; '.join(notes)})" if notes else "")


def _pairs(lines: list[str], sep: str) -> list[tuple[str, str]]:
    return [(a, b) for a, _, b in (line.partition(sep) for line in lines) if a and b]


def _compare(where: str, want: dict[str, Want], have: dict[str, str],
             extra: set[str]) -> list[str]:
    problems = []
    for name, w in sorted(want.items()):
        if name not in have:
            problems.append(f"{where}: missing {name} {w.version} ({w.where})")
        elif have[name] != w.version:
            problems.append(f"{where}: {name} is {have[name]}, locked {w.version} ({w.where})")
    for name in sorted(set(have) - set(want) - extra):
        problems.append(f"{where}: added {name} {have[name]} (not in the lock)")
    return problems


def for_plan(plan: Plan, image: bool) -> LockCheck | None:
    """The lock check of a plan whose steps have a lock applied; None without one. In an
    image it sources the helpers the image has; on a host, envkit's own."""
    locked = [ps for ps in plan.steps if ps.step.locked is not None]
    if not locked:
        return None
    pip: dict[str, dict[str, Want]] = {}
    extra: dict[str, set[str]] = {}
    apt: dict[str, Want] = {}
    for ps in plan.steps:
        step: Any = ps.step
        if ps.kind == "venv":
            extra.setdefault(f"{step.path.rstrip('/')}/bin/python", set()).update(SEEDED)
        elif ps.kind == "run" and step.installed:
            extra.setdefault(step.python, set()).update(step.installed)
        elif ps.kind == "pip" and step.locked is not None:
            group = pip.setdefault(step.python, {})
            for p in step.locked.step.pip:
                group[p.name] = Want(p.version, step.locked.at(p.line))
            if step.project_name:  # the recipe's own project, from its folder
                extra.setdefault(step.python, set()).add(step.project_name)
        elif ps.kind == "apt" and step.locked is not None and (
                plan.keep is None or ps.stage == "runtime"):  # two stages: the runtime's own
            for a in step.locked.step.apt:
                apt[a.name] = Want(a.version, step.locked.at(a.line))
    return LockCheck(pip=pip, extra={k: v for k, v in extra.items() if k in pip},
                     apt=apt if image else None,
                     helpers=IMAGE_HELPERS if image else str(paths.data_dir() / "helpers.sh"))

