"""The podman backend (``--target podman``): the same Dockerfile, built by ``podman build``.

For machines with no Docker daemon, or that must run rootless. podman (buildah inside)
builds the rendered Dockerfile as it is: cache mounts, secret mounts (the CA bundle and
the recipe's secrets, in no layer), build args, labels. ``--format docker`` keeps the
Dockerfile's ``SHELL``, which the OCI image format has no field for. Checks run with
``podman run`` in a fresh container of the image, without network, removed afterwards.

A base podman does not have is taken from the Docker engine's store when one answers
(``docker-daemon:``), else pulled, else, for ``debian:<suite>``, the base ``invoke base
--target podman`` makes with debootstrap and ``podman import``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from envkit.backends import (
    FAIL,
    INFO,
    OK,
    WARN,
    BuildRequest,
    Disabled,
    Health,
    Image,
    NoBackend,
    backend,
    baseimage,
    buildkit,
    doctor_check,
    engine,
    logged,
    made_by,
    tool,
)
from envkit.checks import Runner
from envkit.diagnostics import EnvkitError, error

NAME = "podman"
# The one error this sandbox (and some CI runners) give on `podman run`: the container's
# rlimits cannot be raised, and podman sets some by default.
_RLIMIT = re.compile(r"error setting rlimit|setrlimit", re.IGNORECASE)
RLIMIT_FIX = ("give podman no default ulimits: a file /etc/containers/containers.conf.d/"
              "ulimits.conf (or ~/.config/containers/containers.conf) with [containers] and "
              "default_ulimits = []")


# GPUs reach a podman container as CDI devices (podman run --device nvidia.com/gpu=all),
# described by a spec in one of the folders podman reads, which NVIDIA's Container Toolkit
# writes (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/cdi-support.html)
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))
CDI_GPUS = "nvidia.com/gpu"
GPU_FIX = ("install the NVIDIA Container Toolkit and run nvidia-ctk cdi generate "
           "--output=/etc/cdi/nvidia.yaml")


def cdi_spec(dirs: tuple[Path, ...] | None = None) -> Path | None:
    """The CDI spec that gives NVIDIA's GPUs (its kind is nvidia.com/gpu, with devices) in
    ``dirs`` (default CDI_DIRS), if there is one."""
    import yaml  # a spec is YAML or JSON, which YAML reads too

    for folder in CDI_DIRS if dirs is None else dirs:
        for spec in sorted([*folder.glob("*.yaml"), *folder.glob("*.json")]):
            try:
                data = yaml.safe_load(spec.read_text())
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and data.get("kind") == CDI_GPUS and data.get("devices"):
                return spec
    return None


def _exe() -> str | None:
    """ENVKIT_PODMAN: the podman to use, or ``off`` for none; else podman on PATH."""
    given = os.environ.get("ENVKIT_PODMAN", "")
    if given == "off":
        return None
    return given or shutil.which("podman")


class Podman:
    """The podman CLI as an image backend."""

    name = NAME
    gpu_fix = GPU_FIX

    def __init__(self, exe: str, version: str):
        self.exe, self.version = exe, version

    def about(self) -> str:
        return f"{self.exe} {self.version} (podman build --format docker)"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, *args], capture_output=True, text=True,
                              errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)

    # --- images ------------------------------------------------------------------------

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        done = self._run("image", "inspect", "--format", "json", ref)
        if done.returncode != 0:
            if "image not known" in done.stderr or "no such image" in done.stderr.lower():
                return None
            raise error(f"podman cannot inspect {ref}: {_first(done.stderr)}", path="engine")
        data = json.loads(done.stdout or "[]")
        return data[0] if data else None

    @staticmethod
    def _labels(item: dict[str, Any]) -> dict[str, str]:
        return dict(item.get("Labels") or (item.get("Config") or {}).get("Labels") or {})

    def image(self, ref: str) -> Image | None:
        item = self._inspect(ref)
        if item is None:
            return None
        return Image(str(item["Id"]), self._labels(item), int(item.get("Size") or 0))

    def provenance(self, ref: str) -> tuple[str, str]:
        item = self._inspect(ref)
        if item is None:
            return "", ""
        # podman gives an image only it has a digest under localhost/: no registry's
        digests = [d for d in item.get("RepoDigests") or [] if not d.startswith("localhost/")]
        return made_by(self._labels(item), str(item.get("Created", "")),
                       f"sha256:{item['Id']}", bool(digests)), (digests[0] if digests else "")

    def run_script(self, ref: str, script: str, files: dict[str, bytes], env: dict[str, str],
                   timeout: float, collect: tuple[str, Path] | None = None
                   ) -> tuple[int, str, str]:
        """As the Docker engine's: a container created, the files copied in (a tar on
        stdin), started attached; the environment's values reach podman through its own
        environment (``-e NAME``), never its command line (a proxy's login, say)."""
        box = f"envkit-script-{uuid.uuid4().hex[:12]}"
        create = [self.exe, "create", "--name", box,
                  "--label", f"{engine.CHECK_LABEL}={engine.owner()}",
                  "--entrypoint", '["/bin/bash", "-c"]',
                  *(a for key in sorted(env) for a in ("-e", key)), ref, script]
        child_env = {**os.environ, **env}
        try:
            done = subprocess.run(create, capture_output=True, text=True, errors="replace",
                                  env=child_env, stdin=subprocess.DEVNULL, timeout=300)
            if done.returncode != 0:
                raise error(f"cannot create a container of {ref}: {_first(done.stderr)}",
                            path="engine")
            copied = subprocess.run([self.exe, "cp", "-", f"{box}:/"],
                                    input=engine.tar_files(files), capture_output=True,
                                    timeout=300)
            if copied.returncode != 0:
                raise error(f"cannot put files into a container of {ref}: "
                            f"{_first(copied.stderr.decode('utf-8', 'replace'))}",
                            path="engine")
            try:
                ran = subprocess.run([self.exe, "start", "--attach", box], capture_output=True,
                                     text=True, errors="replace", stdin=subprocess.DEVNULL,
                                     timeout=timeout)
            except subprocess.TimeoutExpired:
                return 124, "", f"timed out after {timeout:.0f}s"
            state = self._run("inspect", "--format", "{{.State.ExitCode}}", box)
            code = int(state.stdout.strip()) if state.stdout.strip().isdigit() else ran.returncode
            if code in (125, 126, 127) and _RLIMIT.search(ran.stderr):
                raise error(f"podman cannot start a container of {ref} here: "
                            f"{_first(ran.stderr)}", path="engine", hint=RLIMIT_FIX)
            if collect is not None and code == 0:
                folder, tar_path = collect
                with open(tar_path, "wb") as fh:
                    got = subprocess.run([self.exe, "cp", f"{box}:{folder}", "-"], stdout=fh,
                                         stderr=subprocess.PIPE, timeout=1800)
                if got.returncode != 0:
                    raise error(f"cannot copy {folder} out of a container of {ref}: "
                                f"{_first(got.stderr.decode('utf-8', 'replace'))}",
                                path="engine")
            return code, ran.stdout, ran.stderr
        except (OSError, subprocess.TimeoutExpired) as exc:  # create, cp: podman is stuck
            raise error(f"podman cannot run a script in a container of {ref}: {exc}",
                        path="engine", hint="podman info says more") from None
        finally:
            self._run("rm", "--force", box)

    def tag(self, image: Image, repo: str, tag: str) -> None:
        done = self._run("tag", image.id, f"{repo}:{tag}")
        if done.returncode != 0:
            raise error(f"podman cannot tag {image.id[:12]} as {repo}:{tag}: "
                        f"{_first(done.stderr)}", path="engine")

    def save(self, ref: str, path: Path) -> None:
        # docker-archive: what `docker load` reads too
        done = self._run("save", "--format", "docker-archive", "-o", str(path), ref,
                         timeout=3600)
        if done.returncode != 0:
            raise error(f"podman cannot save {ref}: {_first(done.stderr)}", path="engine")

    def load(self, path: Path) -> None:
        done = self._run("load", "--input", str(path), timeout=3600)
        if done.returncode != 0:
            raise error(f"podman cannot load {path}: {_first(done.stderr)}", path="engine")

    def remove(self, ref: str) -> None:
        self._run("rmi", "--force", ref)

    def pull(self, ref: str) -> str:
        """'' when ``ref`` (a registry ref or ``docker-daemon:...``) is now here, else why not."""
        done = self._run("pull", "--quiet", ref, timeout=1800)
        return "" if done.returncode == 0 else _first(done.stderr)

    def ensure_base(self, ref: str, out: TextIO, registries: list[str]) -> str:
        """``ref`` when podman has it or gets it (from the Docker engine's store, a
        registry mirror, the registry), else the envkit base of its Debian suite: podman's
        own, the Docker engine's, or made here with debootstrap."""
        def tag(image: str, to: str) -> None:
            self._run("tag", image, to)

        return baseimage.settle(baseimage.Store(
            "in podman's store", lambda r: self.image(r) is not None, self.pull, tag,
            lambda suite, local: self.make_base(suite, local, baseimage.DEFAULT_MIRROR, out),
            copy=lambda r: self._from_docker(r, out), load="podman load it",
            target=" --target podman"), ref, out, registries)

    def _from_docker(self, ref: str, out: TextIO) -> bool:
        """Copy ``ref`` from the Docker engine's store, when one answers and has it."""
        try:
            client = engine.connect(timeout=60)
        except EnvkitError:
            return False
        try:
            if engine.image(client, ref) is None:
                return False
        finally:
            client.close()
        why = self.pull(f"docker-daemon:{ref}")
        if why:
            print(f"envkit: cannot copy {ref} from the Docker engine: {why}", file=out)
            return False
        print(f"envkit: copied {ref} from the Docker engine's store", file=out, flush=True)
        return True

    def make_base(self, suite: str, tag: str, mirror: str, out: TextIO) -> str:
        def importer(tar: Any, changes: list[str]) -> None:
            argv = [self.exe, "import"]
            for change in changes:
                argv += ["--change", change]
            done = subprocess.run([*argv, "-", tag], stdin=tar, capture_output=True,
                                  text=True, errors="replace")
            if done.returncode != 0:
                raise error(f"podman import of {tag} failed: {_first(done.stderr)}",
                            path="base")

        baseimage.debootstrap(suite, mirror, out, importer, tag, lambda: self.remove(tag))
        made = self.image(tag)
        if made is None:
            raise error(f"podman import of {tag} left no image", path="base")
        return made.id

    # --- build ---------------------------------------------------------------------------

    def build(self, request: BuildRequest) -> buildkit.Outcome:
        progress = Progress(request.titles, request.steps.every(), request.out,
                            request.verbose)
        argv = [self.exe, "build", "--format", "docker", "--layers",
                "-f", str(request.context / "Dockerfile")]
        for tag in request.tags:
            argv += ["-t", tag]
        for key, value in sorted(request.labels.items()):
            argv += ["--label", f"{key}={value}"]
        for sid, src in sorted(request.secrets.items()):
            argv += ["--secret", f"id={sid},src={src}"]
        for key, value in sorted(request.build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for key in sorted(request.env_args):  # podman reads a bare NAME from its environment
            argv += ["--build-arg", key]
        if request.no_cache:
            argv.append("--no-cache")
        if request.network:
            argv += ["--network", request.network]
        argv.append(str(request.context))
        started = time.monotonic()
        code, recent = logged.run(argv, request.log, progress.feed, env=os.environ,
                                  redact=request.redact)
        progress.flush()
        seconds = time.monotonic() - started
        if code == 0:
            return buildkit.Outcome(True, seconds, progress, [])
        tail = progress.failed.lines[-20:] if progress.failed else recent[-20:]
        return buildkit.Outcome(False, seconds, progress, tail)

    # --- checks --------------------------------------------------------------------------

    def checks(self, image: Image, name: str, gpu: bool, out: TextIO,
               timeout: float = engine.CHECK_TIMEOUT) -> Runner:
        devices = ["--device", f"{CDI_GPUS}=all"] if gpu else []  # every GPU, as --gpus all

        def run(argv: list[str]) -> tuple[int, str]:
            box = f"envkit-check-{uuid.uuid4().hex[:12]}"
            cmd = [self.exe, "run", "--rm", "--name", box, "--network", "none",
                   "--label", f"{engine.CHECK_LABEL}={engine.owner()}", *devices,
                   "--entrypoint", json.dumps(argv[:1]), image.id, *argv[1:]]
            try:
                done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, timeout=timeout)
            except subprocess.TimeoutExpired:
                self._run("rm", "--force", box)
                return 124, f"timed out after {timeout:.0f}s"
            text = done.stdout.decode("utf-8", "replace")
            if done.returncode in (125, 126) and _RLIMIT.search(text):
                raise error(f"podman cannot start a container of {name} here: "
                            f"{_first(text)}", path="engine", hint=RLIMIT_FIX)
            return done.returncode, text

        return run

    def sweep(self) -> int:
        """Check containers a killed envkit on this host left (its process is gone)."""
        done = self._run("ps", "--all", "--filter", f"label={engine.CHECK_LABEL}",
                         "--format", "{{.ID}} {{.Labels}}")
        removed = 0
        for line in done.stdout.splitlines() if done.returncode == 0 else []:
            box, _, labels = line.partition(" ")
            m = re.search(re.escape(engine.CHECK_LABEL) + r":(\S+?)[ \]]", labels + " ")
            if m and engine.orphaned(m[1]):
                self._run("rm", "--force", box)
                removed += 1
        return removed

    def gpu(self) -> bool:
        """Checks can have the GPUs: a CDI spec names them (podman runs on this machine)."""
        return cdi_spec() is not None

    def lost(self) -> str:
        done = self._run("version", "--format", "{{.Client.Version}}", timeout=30)
        return "" if done.returncode == 0 else f"podman does not answer: {_first(done.stderr)}"


def _first(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:300]


@backend(NAME, order=20)
def connect() -> Podman:
    exe = _exe()
    if exe is None:
        if os.environ.get("ENVKIT_PODMAN") == "off":
            raise Disabled(error("podman is off (ENVKIT_PODMAN=off)", path="engine",
                                 hint="unset ENVKIT_PODMAN").diagnostics)
        raise NoBackend(error("podman is not installed", path="engine",
                              hint="apt-get install podman").diagnostics)
    try:
        done = subprocess.run([exe, "version", "--format", "{{.Client.Version}}"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NoBackend(error(f"podman does not run: {exc}", path="engine").diagnostics
                        ) from None
    if done.returncode != 0:
        raise NoBackend(error(f"podman does not run: {_first(done.stderr)}",
                              path="engine").diagnostics)
    return Podman(exe, done.stdout.strip())


@doctor_check(NAME)
def health(target: str) -> Health:
    """podman for --target podman (and instead of a missing Docker engine): it runs, and a
    container of an image it has starts (some machines cannot raise a container's rlimits,
    which podman sets by default)."""
    required = target == NAME
    use = "--target podman builds with it"
    try:
        podman = connect()
    except EnvkitError as exc:
        diag = exc.diagnostics[0]
        return Health(FAIL if required else INFO, f"{diag.message}: {use}", diag.hint)
    code, text = tool([podman.exe, "images", "--quiet", "--noheading"])
    if code != 0 or not text.split():
        return Health(OK, f"podman {podman.version} ({podman.exe}): {use}; no image yet to "
                      "try a container with")
    code, text = tool([podman.exe, "run", "--rm", "--network", "none", "--entrypoint",
                        '["true"]', text.split()[0]])
    if code != 0:
        return Health(FAIL if required else WARN,
                      f"podman {podman.version} cannot start a container: "
                      f"{text.strip().splitlines()[-1] if text.strip() else code}",
                      RLIMIT_FIX if _RLIMIT.search(text) else "podman info says more")
    return Health(OK, f"podman {podman.version} ({podman.exe}), a container starts: {use}")


# --- progress -----------------------------------------------------------------------------

_STEP = re.compile(r"(?:\[(\d+)/\d+\] )?STEP (\d+)/(\d+): ")
_CACHED = re.compile(r"--> Using cache ")
_END = re.compile(r"--> [0-9a-f]{6,}\s*$")
_ERROR = re.compile(r"Error: building at STEP ")


class Progress(buildkit.Progress):
    """buildah's output (``STEP k/M: INSTRUCTION``, ``--> Using cache``, ``--> ID``) as one
    line per recipe step, as BuildKit's is."""

    def __init__(self, titles: dict[int, str], stages_: list[list[int]], out: TextIO,
                 verbose: bool = False):
        super().__init__(titles, {str(i): s for i, s in enumerate(stages_)}, out, verbose)
        self.stages_ = stages_
        self.current: buildkit.StepLog | None = None
        self.started = 0.0

    def feed(self, line: str) -> None:
        if self.verbose:
            print(line, file=self.out, flush=True)
        if m := _STEP.match(line):
            self._close("done")
            stage = int(m[1] or 1) - 1
            k = int(m[2])
            steps = self.stages_[stage] if stage < len(self.stages_) else []
            number = steps[k - 1] if 0 < k <= len(steps) else 0
            self.current = None
            if number in self.titles:
                self.current = self.logs.setdefault(number, buildkit.StepLog(
                    number, self.titles[number]))
                self.started = time.monotonic()
            return
        log = self.current
        if log is None:
            return
        if _CACHED.match(line):
            if not log.state:
                log.state = "cached"
                self._say(log, "cached")
            self.current = None
        elif _END.match(line):
            self._close("done")
        elif _ERROR.match(line):
            log.state = "failed"
            log.lines.append(line)
            self.failed = self.failed or log
            self.current = None
        else:
            log.lines = [*log.lines[-199:], line]
            if not log.state:
                log.state = "running"
                self._say(log, "running")

    def _close(self, state: str) -> None:
        """The instruction that was running finished (its image id, or the next STEP)."""
        log = self.current
        if log is None:
            return
        log.seconds += time.monotonic() - self.started
        if log.state in ("", "running"):
            log.state = state
            self._say(log, f"done in {log.seconds:.1f}s")
        self.current = None

    def flush(self) -> None:
        if self.current is not None and self.current.state == "running":
            self.failed = self.failed or self.current  # the build stopped inside it
            self.current.state = "failed"
        super().flush()
