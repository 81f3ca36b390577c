"""``invoke doctor``: is this machine ready to build? One function per check.

Each check takes a ``Context`` and returns a ``Finding`` (a status, one line saying what
it found, one line saying how to fix it); none prints. ``run`` calls them in order, each
in a thread with a deadline, so a check that hangs or crashes becomes that check's
``fail`` line and never stops the others. A check that is not required in the context
(the engine with ``--target host``, the GPU without ``--gpu``) says ``warn`` or
``info``, never ``fail``.
"""

from __future__ import annotations

import os
import shutil
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envkit import backends, ca
from envkit.backends import FAIL, INFO, OK, WARN, buildkit, engine
from envkit.diagnostics import EnvkitError

GIB = 1024**3
MIN_FREE = 5 * GIB  # below this a build fails: ML images and their layers are GBs
LOW_FREE = 20 * GIB  # below this a second image or the layer cache may not fit
DEADLINE = 60.0  # seconds one check may take before it counts as failed
HTTPS_TIMEOUT = 8.0  # seconds for one TLS handshake and request
TOOL_TIMEOUT = 10.0  # seconds for nvidia-smi, debootstrap --version
ENGINE_TIMEOUT = 10.0  # seconds for the engine's ping, version and info
PYPI = "https://pypi.org/simple"
ENGINE_FIX = "start dockerd (or systemctl start docker), set DOCKER_HOST, or use --target host"
HOST_ENGINE_FIX = "to build images: start dockerd (or systemctl start docker) or set DOCKER_HOST"
TOOLKIT_FIX = engine.GPU_FIX


@dataclass(frozen=True)
class Finding:
    name: str
    status: str  # ok, info, warn, fail
    message: str
    fix: str = ""

    def line(self) -> str:
        label = "FAIL" if self.status == FAIL else self.status
        text = f"{label:<5} {self.name}: {_one_line(self.message)}"
        return text + (f" (fix: {_one_line(self.fix)})" if self.fix else "")


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _public_roots() -> str | None:
    """Mozilla's roots as certifi ships them: what pip in a fresh image trusts."""
    try:
        import certifi
    except ImportError:
        return None
    path = certifi.where()
    return path if os.path.isfile(path) else None


def _connect() -> Any:
    return engine.connect(timeout=ENGINE_TIMEOUT)


@dataclass
class Context:
    """What the checks look at: the options, and the engine asked once for all."""

    target: str = ""  # "", host or a backend (docker, podman)
    gpu: bool = False
    ca_bundle: str = "auto"  # auto, none or a file
    indexes: tuple[str, ...] = (PYPI,)  # the mirror profile's pip indexes, in order
    docker: str = ""  # envkit.docker: the client to build with
    cwd: Path = field(default_factory=Path.cwd)  # where build/ and .envkit/ go
    public_ca: str | None = field(default_factory=_public_roots)
    connect: Callable[[], Any] = _connect
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _engine: tuple[Any, BaseException | None] | None = field(default=None, init=False,
                                                             repr=False)

    @property
    def host(self) -> bool:
        return self.target == "host"

    @property
    def no_docker(self) -> bool:
        """The target builds without the Docker engine (on this host, or another engine)."""
        return self.target not in ("", "docker")

    def needed(self, required: bool) -> str:
        """The status of a missing thing: fail when required, else warn."""
        return FAIL if required else WARN

    def client(self) -> Any:
        """The engine's client (asked once), or the exception connecting raised."""
        if not self._lock.acquire(timeout=DEADLINE):
            raise TimeoutError("the engine did not answer in time")
        try:
            if self._engine is None:
                try:
                    self._engine = (self.connect(), None)
                except Exception as exc:  # kept: every check that asks gets the same answer
                    self._engine = (None, exc)
            client, exc = self._engine
        finally:
            self._lock.release()
        if exc is not None:
            raise exc
        return client

    def info(self) -> dict[str, Any] | None:
        """The engine's ``docker info``, or None when no engine answers."""
        try:
            info = self.client().info()
        except Exception:
            return None
        return info if isinstance(info, dict) else None


Check = Callable[[Context], Finding]
CHECKS: dict[str, Check] = {}


def check(name: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[name] = fn
        return fn

    return register


# --- the checks ------------------------------------------------------------------------


@check("engine")
def check_engine(ctx: Context) -> Finding:
    where = engine.where()
    spare = f"; --target {ctx.target} needs none" if ctx.no_docker else ""
    try:
        client = ctx.client()
    except engine.NoEngine as exc:
        diag = exc.diagnostics[0]
        return Finding("engine", ctx.needed(not ctx.no_docker), diag.message + spare,
                       HOST_ENGINE_FIX if ctx.no_docker else ENGINE_FIX)
    except EnvkitError as exc:  # connect's other error: the engine refuses this user
        diag = exc.diagnostics[0]
        if "refuses this user" in diag.message:
            message = diag.message.split(" (join")[0]
            return Finding("engine", ctx.needed(not ctx.no_docker), message + spare,
                           "add this user to the docker group (usermod -aG docker USER, "
                           "then log in again) or run as root")
        return Finding("engine", ctx.needed(not ctx.no_docker), diag.message + spare,
                       diag.hint or ENGINE_FIX)
    try:
        version = client.version()
    except Exception as exc:  # it answered the ping, then went away or broke
        return Finding("engine", ctx.needed(not ctx.no_docker),
                       f"the engine at {where} answers a ping but not a version query: "
                       f"{getattr(exc, 'explanation', None) or exc}{spare}",
                       "restart dockerd (systemctl restart docker) and look at its log")
    server = version.get("Version", "?") if isinstance(version, dict) else "?"
    api = version.get("ApiVersion", "") if isinstance(version, dict) else ""
    return Finding("engine", OK, f"Docker {server}{f' (API {api})' if api else ''} at {where}")


@check("builder")
def check_builder(ctx: Context) -> Finding:
    spare = f"; --target {ctx.target} needs none" if ctx.no_docker else ""
    try:
        builder = buildkit.choose(ctx.docker)
    except EnvkitError as exc:
        diag = exc.diagnostics[0]
        return Finding("builder", ctx.needed(not ctx.no_docker), diag.message + spare,
                       diag.hint)
    note = " (envkit.docker)" if ctx.docker else ""
    first = shutil.which("docker")
    if not ctx.docker and first and os.path.realpath(first) != os.path.realpath(builder.client):
        _, why = buildkit.probe(first)  # say why the docker first on PATH is not the one
        note = f"; skipped {why}" if why else ""
    return Finding("builder", OK, f"BuildKit through {builder.about}{note}")


def _gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB"


@check("disk")
def check_disk(ctx: Context) -> Finding:
    places: list[tuple[str, Path]] = [("build/", ctx.cwd)]
    note = ""
    if not ctx.host and (info := ctx.info()) is not None:
        root = str(info.get("DockerRootDir") or "")
        if not root:
            note = "; the engine does not say where its data is"
        elif not engine.where().startswith("unix://"):
            note = f"; the engine's {root} is on another machine, not checked"
        elif not os.path.isdir(root):
            note = f"; the engine's {root} is not visible here, not checked"
        else:
            places.append(("the engine's data", Path(root)))
    parts, worst, short = [], OK, []
    rank = {OK: 0, WARN: 1, FAIL: 2}
    for label, path in places:
        try:
            free = shutil.disk_usage(path).free
        except OSError as exc:
            parts.append(f"cannot measure {path} ({label}): {exc.strerror or exc}")
            worst = max(worst, WARN, key=rank.__getitem__)
            continue
        status = FAIL if free < MIN_FREE else WARN if free < LOW_FREE else OK
        worst = max(worst, status, key=rank.__getitem__)
        if status != OK:
            short.append(label)
        parts.append(f"{_gib(free)} free in {path} ({label})")
    message = ", ".join(parts) + note
    if worst == OK:
        return Finding("disk", OK, message)
    limit = (f"below {_gib(MIN_FREE)} a build fails" if worst == FAIL
             else f"below {_gib(LOW_FREE)} ML images may not fit")
    fixes = []
    if "build/" in short:
        fixes.append("run envkit from a folder on a bigger disk")
    if "the engine's data" in short:
        fixes.append("docker builder prune and docker image prune, or move the engine's "
                     "data-root (/etc/docker/daemon.json)")
    return Finding("disk", worst, f"{message}; {limit}", "; ".join(fixes) or "free some space")


def _https(url: str, cafile: str | None) -> tuple[str, str]:
    """A TLS handshake and a HEAD request to ``url`` trusting only ``cafile``:
    ('ok', ''), ('cert', why the certificate was refused) or ('net', why no answer)."""
    context = ssl.create_default_context(cafile=cafile)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(urllib.request.Request(url, method="HEAD"), timeout=HTTPS_TIMEOUT):
            return "ok", ""
    except urllib.error.HTTPError:  # any HTTP answer came through a verified connection
        return "ok", ""
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, ssl.SSLCertVerificationError):
            return "cert", reason.verify_message or str(reason)
        if isinstance(reason, TimeoutError):
            return "net", f"no answer within {HTTPS_TIMEOUT:.0f}s"
        if isinstance(reason, ssl.SSLError):
            return "net", f"TLS handshake failed: {reason.reason or reason}"
        text = getattr(reason, "strerror", None) or str(reason)
        return "net", str(text)


def _host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


@check("ca")
def check_ca(ctx: Context) -> Finding:
    try:
        bundle = ca.choose(ctx.ca_bundle)
    except EnvkitError as exc:
        return Finding("ca", FAIL, exc.diagnostics[0].message,
                       "pass --ca-bundle with a PEM bundle, e.g. "
                       "/etc/ssl/certs/ca-certificates.crt")
    if bundle is not None:
        try:
            ssl.create_default_context(cafile=str(bundle))
        except (ssl.SSLError, OSError) as exc:
            return Finding("ca", FAIL, f"{bundle} does not load as a CA bundle: {exc}",
                           "pass --ca-bundle with a PEM bundle")
    trust = str(bundle) if bundle else ctx.public_ca
    without = "--ca-bundle none" if ctx.ca_bundle == "none" else "auto found no bundle"
    silent: dict[str, list[str]] = {}  # why -> the indexes that did not answer so
    for index in ctx.indexes:
        kind, why = _https(index, trust)
        if kind == "net":
            silent.setdefault(why, []).append(_host_of(index))
            continue
        host = _host_of(index)
        fell = f"; {_silent(silent)}: builds fall back to {host}" if silent else ""
        if kind == "cert" and bundle is None:
            return Finding("ca", FAIL, f"HTTPS to {host} is intercepted ({why}) and builds "
                           f"trust only public roots ({without}){fell}",
                           "pass --ca-bundle /etc/ssl/certs/ca-certificates.crt or your "
                           "company's CA bundle")
        if kind == "cert":
            return Finding("ca", FAIL, f"{bundle} does not verify HTTPS to {host}: {why}{fell}",
                           "pass --ca-bundle with your company's CA bundle")
        if bundle is None:
            message = (f"no CA bundle ({without}): public roots verify {index} (HTTPS is "
                       "not intercepted)")
        else:
            message = f"{bundle} verifies {index}{_interception(index, ctx.public_ca)}"
        if silent:
            return Finding("ca", WARN, message + fell,
                           "pick a --mirror whose pip index answers from here")
        return Finding("ca", OK, message)
    return Finding("ca", WARN, f"{_silent(silent)}: {bundle or 'public roots'} not tried on "
                   "a real handshake", "check the network or proxy, or pick another --mirror")


def _silent(silent: dict[str, list[str]]) -> str:
    return "; ".join(f"no answer from {', '.join(hosts)} ({why})"
                     for why, hosts in silent.items())


def _interception(index: str, public: str | None) -> str:
    """Whether public roots alone would do: if not, the network intercepts HTTPS."""
    if public is None:
        return ""
    kind, why = _https(index, public)
    if kind == "cert":
        return (f"; HTTPS here is intercepted (public roots alone fail: {why}), so builds "
                "need this bundle")
    if kind == "ok":
        return "; public roots alone verify it too (HTTPS is not intercepted)"
    return ""


def _run(argv: list[str]) -> tuple[int, str]:
    return backends.tool(argv, TOOL_TIMEOUT)


@check("gpu")
def check_gpu(ctx: Context) -> Finding:
    gpus, driver_why = [], "no nvidia-smi on PATH (no NVIDIA driver)"
    if smi := shutil.which("nvidia-smi"):
        code, text = _run([smi, "-L"])
        gpus = [ln.strip() for ln in text.splitlines() if ln.startswith("GPU ")]
        if code != 0 or not gpus:
            driver_why = f"nvidia-smi finds no GPU ({_one_line(text, 120) or f'exit {code}'})"
    found = [t for t in ("nvidia-ctk", "nvidia-container-runtime",
                         "nvidia-container-runtime-hook") if shutil.which(t)]
    missing, fixes = [], []
    if not gpus:
        missing.append(driver_why)
        fixes.append("install the NVIDIA driver")
    about = [f"{len(gpus)} GPU{'s' * (len(gpus) != 1)} ({gpus[0]})"] if gpus else []
    if ctx.no_docker and not ctx.host:  # another engine says whether its containers get them
        try:
            other = backends.load()[ctx.target]()
            gives, fix = other.gpu(), other.gpu_fix
        except EnvkitError as exc:  # its own check says why, and how to fix it
            gives, fix = False, exc.diagnostics[0].message
        if gives:
            about.append(f"{ctx.target}'s GPU devices")
        else:
            missing.append(f"{ctx.target} gives its containers no GPU")
            fixes.append(fix)
    elif not ctx.host:
        info = ctx.info()
        runtimes = sorted((info or {}).get("Runtimes") or {})
        if "nvidia" in runtimes:
            about.append("the engine's runtime nvidia")
        elif "nvidia-container-runtime-hook" in found:
            about.append("the NVIDIA Container Toolkit's hook (docker run --gpus)")
        else:
            seen = (f"the engine's runtimes are {', '.join(runtimes)}" if runtimes
                    else "no engine to ask")
            missing.append(f"no NVIDIA container runtime ({seen}"
                           f"{'; ' + ', '.join(found) + ' on PATH' if found else ''})")
            fixes.append("run nvidia-ctk runtime configure --runtime=docker, restart dockerd"
                         if "nvidia-ctk" in found else TOOLKIT_FIX)
    if not missing:
        return Finding("gpu", OK, ", ".join(about))
    message = "; ".join([*missing, *about])
    if ctx.gpu:
        return Finding("gpu", FAIL, message + " (--gpu asks for one)", "; ".join(fixes))
    if gpus or found or about:  # half set up: worth saying
        return Finding("gpu", WARN, message + " (GPU recipes will not see a GPU)",
                       "; ".join(fixes))
    return Finding("gpu", INFO, "no NVIDIA GPU or container toolkit: CPU recipes only "
                   "(--gpu makes one required)")


@check("debootstrap")
def check_debootstrap(ctx: Context) -> Finding:
    use = "invoke base can make a Debian base image without a registry"
    tool = shutil.which("debootstrap")
    if not tool:
        return Finding("debootstrap", INFO, "not installed: without a registry, invoke base "
                       "cannot make a Debian base image", "apt-get install debootstrap")
    if os.geteuid() != 0:
        return Finding("debootstrap", INFO, f"installed, but not root: {use} only as root",
                       "run invoke base as root (sudo)")
    code, text = _run([tool, "--version"])
    version = text.splitlines()[0] if code == 0 and text else "debootstrap"
    return Finding("debootstrap", OK, f"{version}, root: {use}")


# --- running them ----------------------------------------------------------------------


def run_one(name: str, fn: Check, ctx: Context, deadline: float = DEADLINE) -> Finding:
    """``fn(ctx)`` in a thread: a crash or a hang is this check's FAIL, not doctor's."""
    box: list[Finding | BaseException] = []

    def target() -> None:
        try:
            box.append(fn(ctx))
        except BaseException as exc:  # reported below, whatever it is
            box.append(exc)

    thread = threading.Thread(target=target, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(deadline)
    if not box:
        return Finding(name, FAIL, f"the check did not finish within {deadline:g}s",
                       "see what hangs (docker, the network) and run envkit doctor again")
    got = box[0]
    if isinstance(got, Finding):
        return got
    if isinstance(got, EnvkitError):
        diag = got.diagnostics[0]
        return Finding(name, FAIL, diag.message, diag.hint)
    return Finding(name, FAIL, f"the check crashed: {type(got).__name__}: {got}",
                   "please report it with this line")


def _backend_check(name: str, fn: Callable[[str], backends.Health]) -> Check:
    def run_it(ctx: Context) -> Finding:
        health = fn(ctx.target)
        return Finding(name, health.status, health.message, health.fix)

    return run_it


def all_checks() -> dict[str, Check]:
    """doctor's own checks (the Docker engine's among them: the disk and GPU checks ask the
    same engine), then each other engine's, registered by its backend module (podman's in
    backends/podman.py)."""
    out = dict(CHECKS)
    for name, fn in backends.doctor_checks().items():
        out.setdefault(name, _backend_check(name, fn))
    return out


def run(ctx: Context, checks: dict[str, Check] | None = None,
        deadline: float = DEADLINE) -> Iterator[Finding]:
    """Each check in turn, its finding as soon as it is known (doctor prints it then)."""
    for name, fn in (checks or all_checks()).items():
        yield run_one(name, fn, ctx, deadline)


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.status == s) for s in (OK, INFO, WARN, FAIL)}
    text = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    failed = [f.name for f in findings if f.status == FAIL]
    if failed:
        return f"doctor: {text}: not ready ({', '.join(failed)})"
    return f"doctor: {text}: ready" + (" (see the warnings)" if counts[WARN] else "")
