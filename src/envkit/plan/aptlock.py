"""Locking apt steps: the exact Debian packages each one installs, on the real base.

apt's own solver decides, in a container of the base image, through the same helpers a
build uses (mirror profile, CA bundle, an optional snapshot date): ``apt-get install -s``
of every apt step's packages so far, so each step's locked set is what it pulls in on top
of the base and the earlier steps, dependencies included, with their versions. The base's
own packages are read too: the image records them, and verify compares what a build added
with the lock.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TextIO

from envkit import paths, proxy
from envkit.diagnostics import EnvkitError, error
from envkit.plan.lock import AptPackage, StepLock

TIMEOUT = 900
_INST = re.compile(r"Inst (\S+) (?:\[\S+\] )?\((\S+) ")
_MISSING = re.compile(r"E: (?:Unable to locate package|Version '[^']*' for '[^']*' was not "
                      r"found|Package '[^']*' has no installation candidate)[^\n]*")

SCRIPT = r"""
set -euo pipefail
. /usr/local/lib/envkit/helpers.sh
envkit_apt_sources
envkit_apt_get update -qq >&2
echo "== suite $(envkit_os_suite)"
echo '== base'
dpkg-query -W -f '${Package} ${Version}\n'
# versions an earlier lock chose: kept where the archive still has them
declare -A prefer=()
for spec in ${ENVKIT_APT_PREFER:-}; do prefer[${spec%%=*}]=${spec#*=}; done
i=0
for job in "$@"; do
  echo "== job $i"
  # shellcheck disable=SC2086
  out=$(envkit_apt_get install -s --no-install-recommends $job)
  keep=()
  while read -r name; do
    want=${prefer[$name]:-}
    if [ -n "$want" ] && [ -n "$(envkit_apt_cache show "$name=$want" 2>/dev/null)" ]; then
      keep+=("$name=$want")
    fi
  done < <(printf '%s\n' "$out" | sed -n 's/^Inst \([^ ]*\) .*/\1/p')
  if ((${#keep[@]})); then
    # shellcheck disable=SC2086
    out=$(envkit_apt_get install -s --no-install-recommends $job "${keep[@]}") ||
      out=$(envkit_apt_get install -s --no-install-recommends $job)
  fi
  printf '%s\n' "$out" | sed -n '/^Inst /p'
  i=$((i + 1))
done
"""


class Containers(Protocol):
    """What locking (and export's .debs) ask of an image engine; the docker and podman
    backends are each one. The plan layer names what it needs and is handed an engine."""

    def ensure_base(self, ref: str, out: TextIO, registries: list[str]) -> str:
        """The base in the engine's store (pulled, or made without a registry): its ref."""
        ...

    def provenance(self, ref: str) -> tuple[str, str]:
        """(how the image was made when no registry knows it, its registry digest or '')."""
        ...

    def run_script(self, ref: str, script: str, files: dict[str, bytes], env: dict[str, str],
                   timeout: float, collect: tuple[str, Path] | None = None
                   ) -> tuple[int, str, str]:
        """A bash script in a fresh container of ``ref`` with the default network, the
        ``files`` (absolute path -> content) put in first: (exit code, stdout, stderr).
        ``collect`` = (folder in the container, tar file here): after a script that
        succeeded, that folder copied out as a tar archive whose top entry is its name."""
        ...


@dataclass
class AptJob:
    title: str
    packages: list[str]
    fresh: bool = False  # starts a new stage: simulated on the bare base, not after the others


@dataclass
class Simulation:
    base: dict[str, str]  # the base image's packages and versions
    steps: list[StepLock]
    suite: str = ""  # the base's release, as its /etc/os-release says


def simulate(containers: Containers, image: str, jobs: list[AptJob], env: dict[str, str],
             ca_bundle: Path | None = None, prefer: dict[str, str] | None = None,
             snapshot: str = "") -> Simulation:
    """Each apt job's packages, in order, as apt would install them on ``image``; a
    package in ``prefer`` keeps that version where the archive still has it."""
    files = {"/usr/local/lib/envkit/helpers.sh": (paths.data_dir() / "helpers.sh").read_bytes()}
    # your proxies reach apt in the container (a container's environment, in no image)
    env = {**proxy.settings(os.environ), **env, "ENVKIT_MIRRORS_PICKED": "", "BASH_ENV": "",
           "ENVKIT_APT_PREFER": " ".join(f"{n}={v}" for n, v in sorted((prefer or {}).items())),
           "ENVKIT_APT_SNAPSHOT": snapshot}  # the archive as of that day, as builds see it
    if ca_bundle:
        files["/run/secrets/envkit-ca"] = ca_bundle.read_bytes()
        env["ENVKIT_CA"] = "/run/secrets/envkit-ca"
    so_far: list[str] = []
    args = []
    for job in jobs:
        if job.fresh:
            so_far = []
        so_far += [p for p in job.packages if p not in so_far]
        args.append(" ".join(shlex.quote(p) for p in so_far))
    argv = " ".join(shlex.quote(a) for a in args)
    code, out, err = containers.run_script(image, f"set -- {argv}\n{SCRIPT}", files, env,
                                           TIMEOUT)
    if code != 0:
        if m := _MISSING.search(err):
            raise EnvkitError(error(f"apt in {image}: {m[0].removeprefix('E: ')}",
                                    path="apt").diagnostics)
        tail = " | ".join(line.strip() for line in err.strip().splitlines()[-3:])
        raise error(f"apt in {image} failed (exit {code}): {tail or 'no output'}", path="apt",
                    hint="is the apt mirror reachable from a container?")
    return _parse(out, jobs)


def _parse(out: str, jobs: list[AptJob]) -> Simulation:
    base: dict[str, str] = {}
    results: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    suite = ""
    for line in out.splitlines():
        if line.startswith("== suite"):
            suite = line.removeprefix("== suite").strip()
        elif line == "== base":
            current = base
        elif line.startswith("== job "):
            results.append({})
            current = results[-1]
        elif current is base:
            name, _, version = line.partition(" ")
            if name and version:
                base[name.split(":", 1)[0]] = version
        elif current is not None and (m := _INST.match(line)):
            current[m[1].split(":", 1)[0]] = m[2]
    if len(results) != len(jobs):
        raise error(f"apt gave {len(results)} answers for {len(jobs)} steps", path="apt")
    steps = []
    before: dict[str, str] = {}
    for job, result in zip(jobs, results, strict=True):
        if job.fresh:
            before = {}
        delta = {n: v for n, v in result.items() if before.get(n) != v}
        steps.append(StepLock("apt", job.title,
                              apt=[AptPackage(n, v) for n, v in sorted(delta.items())]))
        before.update(result)
    return Simulation(base, steps, suite if re.fullmatch(r"[a-z0-9.]+", suite) else "")
