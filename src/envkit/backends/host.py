"""The host backend: the rendered shell script, run on this machine into a prefix.

Everything a recipe builds goes under ``.envkit/envs/NAME`` (the ``prefix``
param). apt steps only check that the packages are installed unless the user
allows system changes; the script reads that from ENVKIT_SYSTEM.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TextIO

from envkit import ca, envvalue, paths, proxy
from envkit.backends import logged
from envkit.checks import Runner, local_runner, sections
from envkit.diagnostics import error
from envkit.plan import UV_REQUIREMENT, Plan
from envkit.plan import resolver as resolve
from envkit.plan.lock import explain_step
from envkit.render import lock_state, pythons, write_outputs
from envkit.secrets import Provided

ENVS = Path(".envkit") / "envs"
MANIFEST = "envkit.json"
SCRIPT = "install.sh"
LOG = "install.log"
_FAILED = re.compile(r"\[envkit\] step (\d+/\d+) failed after \d+s: (.*)$")


def env_dir(name: str) -> Path:
    return (Path.cwd() / ENVS / name).absolute()


def base_environment() -> dict[str, str]:
    """This process's environment without the virtualenv envkit itself may run in."""
    env = dict(os.environ)
    venv = env.pop("VIRTUAL_ENV", "")
    env.pop("PYTHONHOME", None)
    if venv:
        bin_dir = os.path.join(venv, "bin")
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if p and os.path.realpath(p) != os.path.realpath(bin_dir))
    return env


def environment(plan: Plan, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the script leaves: each step's variables, in order."""
    env = dict(base_environment() if base is None else base)
    pairs: list[tuple[str, str]] = []
    for ps in plan.steps:
        pairs += ps.step.env()
    for key, value in pairs:
        env[key] = "".join(env.get(text, "") if kind == "ref" else text
                           for kind, text in envvalue.parts(value))
    return env


def runner(plan: Plan) -> Runner:
    return local_runner(env=environment(plan))


def provision(plan: Plan, target: Path, out: TextIO, *, allow_system: bool = False,
              ca_bundle: Path | None = None, verbose: bool = False, fresh: bool = False,
              from_step: int = 0, secrets: Provided | None = None) -> float:
    """Render the script into ``target`` and run it; returns the seconds it took. Steps that
    finished in an earlier run, unchanged, are skipped (the script keeps stamps in
    ``target/.envkit-state``) unless ``fresh``; ``from_step`` reruns from that step on."""
    if allow_system and os.geteuid() != 0:
        raise error("--allow-system installs Debian packages, which needs root", path="host",
                    hint="run as root, or install the missing packages yourself")
    write_outputs(plan, ["shell"], target)
    (target / MANIFEST).unlink(missing_ok=True)  # present again only if this run succeeds
    env = base_environment()
    env["ENVKIT_SYSTEM"] = "install" if allow_system else "check"
    if any(rel == UV_REQUIREMENT for _, rel in plan.files):
        env["ENVKIT_UV"] = resolve.uv_bin()  # envkit's own pinned uv: nothing to download
    if ca_bundle:
        env.update(ca.env(str(ca_bundle)))
    for name in [k for k in env if k.startswith("ENVKIT_SECRET_")]:
        del env[name]  # only what --secret or envkit found below, as files
    given = secrets or Provided()
    env.update(given.env(plan.secrets))
    started = time.monotonic()

    def show(line: str) -> None:
        if verbose or line.startswith("[envkit] "):
            print("  " + line.removeprefix("[envkit] "), file=out, flush=True)

    args = ["--fresh"] if fresh else ["--from-step", str(from_step)] if from_step else []
    code, recent = logged.run(["bash", str(target / SCRIPT), *args], target / LOG, show,
                              env=env, cwd=target,
                              redact=[*given.redact, *proxy.redactions(env)])
    seconds = time.monotonic() - started
    if code != 0:
        failing = next((m for ln in reversed(recent) if (m := _FAILED.match(ln))), None)
        if not verbose:  # the tools' last lines; envkit's own were shown as they came
            for line in [ln for ln in recent if not ln.startswith("[envkit] ")][-20:]:
                print(f"  | {line}", file=out)
        where = f" at step {failing[1]} {failing[2]}" if failing else ""
        number = int(failing[1].split("/")[0]) if failing else 0
        lock_says = explain_step(plan, number, recent)
        raise error(f"{plan.name}: the script failed (exit {code}){where}"
                    + (f": {lock_says}" if lock_says else ""),
                    path="host", hint=ca.hint(recent, ca_bundle) + f"full log: {target / LOG}")
    manifest = {"recipe": plan.name, "version": plan.version, "hash": plan.hash,
                "params": plan.params, "mirror": plan.mirror.name, "lock": lock_state(plan),
                "installed": _installed(plan, env)}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return seconds


def _installed(plan: Plan, env: dict[str, str]) -> dict[str, list[str]]:
    """What the environment holds, as the image's manifest has it: each venv's pip freeze
    and this host's Debian packages."""
    import subprocess

    script = 'ENVKIT_MIRRORS_PICKED=1; . "$0"; envkit_installed "$@"'
    pythons_ = [p for p in pythons(plan) if os.path.exists(p)]
    done = subprocess.run(["bash", "-c", script, str(paths.data_dir() / "helpers.sh"),
                           *pythons_], capture_output=True, text=True, env=environment(plan, env),
                          check=False)
    return {(title if title == "dpkg" else f"pip {title}"): lines
            for title, lines in sections(done.stdout).items()}


def manifest(target: Path) -> dict[str, object]:
    try:
        data = json.loads((target / MANIFEST).read_text())
    except (OSError, ValueError):
        raise error(f"{target} is not an environment envkit provisioned (no {MANIFEST})",
                    path="--env", hint="invoke build --target host makes one") from None
    return data if isinstance(data, dict) else {}
