"""The Docker engine through its Python SDK: is it there, images, verify containers.

Builds do not go through the SDK (it has no BuildKit, docker/docker-py#2230);
see ``buildkit``. The SDK is imported when first needed: listing and rendering
never pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from envkit.checks import Runner
from envkit.diagnostics import EnvkitError, error

CHECK_TIMEOUT = 600  # seconds one verify check may take
# on check containers: "HOST/BOOT/PIDNS:PID:START" of the envkit that runs them
CHECK_LABEL = "io.envkit.verify"
GONE = "its container was removed while the check ran (by someone else)"


class NoEngine(EnvkitError):
    """Nothing listens where the engine should be: the host target can stand in."""


def where() -> str:
    """The engine's address as the docker CLI sees it: DOCKER_HOST, else the current
    docker context (rootless Docker, Docker Desktop), else the default socket."""
    return os.environ.get("DOCKER_HOST") or _context_host() or "unix:///var/run/docker.sock"


def _context_host() -> str:
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        name = os.environ.get("DOCKER_CONTEXT") or json.loads(
            (config / "config.json").read_text()).get("currentContext", "")
        if not name or name == "default":
            return ""
        meta = config / "contexts/meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
        host = json.loads(meta.read_text())["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ""
    return host if isinstance(host, str) else ""


def connect(timeout: float = 300) -> Any:
    """A client of an engine that answers, or an error saying how to get one. Only an
    engine that is not there at all raises NoEngine (the host target can stand in)."""
    import docker
    import requests

    try:
        if os.environ.get("DOCKER_HOST"):
            client = docker.from_env(timeout=10)  # also reads DOCKER_TLS_VERIFY, DOCKER_CERT_PATH
        else:
            client = docker.DockerClient(base_url=where(), timeout=10)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        reason = _reason(exc)
        fix = ("start it (dockerd, or systemctl start docker), set DOCKER_HOST, "
               "or use --target host")
        if reason.startswith("permission denied"):
            raise error(f"the Docker engine at {where()} refuses this user: {reason}",
                        path="engine") from None
        raise NoEngine(error(f"no Docker engine answers at {where()}: {reason}",
                             path="engine", hint=fix).diagnostics) from None
    client.api.timeout = timeout  # pings are quick; image imports and waits are not
    return client


def lost() -> str:
    """After a failure: '' while the engine still answers, else why not. It answered at
    first, so it went away mid-way (stopped, restarted, its socket gone)."""
    try:
        connect().close()
    except EnvkitError as exc:
        return exc.diagnostics[0].message
    return ""


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker, reason in (("FileNotFoundError", "no socket there"),
                           ("ConnectionRefusedError", "connection refused"),
                           ("Timeout", "no answer within 10s"),
                           ("PermissionError",
                            "permission denied (join the docker group or use root)")):
        if marker in text or marker in type(exc).__name__:
            return reason
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:200]


def image(client: Any, ref: str) -> Any | None:
    """The image with this reference on the engine, or None."""
    import docker

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        if exc.status_code == 404:
            return None
        raise error(f"cannot inspect image {ref}: {exc.explanation or exc}",
                    path="engine") from None


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a registry port is not a tag; ``repo@sha256:..`` ->
    (repo, 'sha256:..'), which the SDK's pull turns back into a digest."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo.rsplit(":", 1)[0] if ":" in repo.rsplit("/", 1)[-1] else repo, digest
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def pull(client: Any, ref: str) -> str:
    """Pull ``ref``; '' when it worked, else why not (one line)."""
    import docker
    import requests

    repo, tag = split_ref(ref)
    try:
        client.images.pull(repo, tag=tag)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        text = getattr(exc, "explanation", None) or str(exc)
        return text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return ""


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "kB") else f"{value:.2f} {unit}"
        value /= 1000
    return f"{n} B"


# What gives the Docker engine's containers the GPUs (doctor's fix when it cannot)
GPU_FIX = ("install the NVIDIA Container Toolkit, run nvidia-ctk runtime configure "
           "--runtime=docker, restart dockerd")


def gpu_runtime(client: Any) -> bool:
    """The engine can give containers the GPUs: its nvidia runtime, or the NVIDIA Container
    Toolkit's hook (docker run --gpus)."""
    import shutil

    try:
        runtimes = (client.info() or {}).get("Runtimes") or {}
    except Exception:  # an engine that cannot say: no GPU for the checks
        return False
    # the hook is looked for on this machine: it says something only of a local engine
    local = not os.environ.get("DOCKER_HOST", "").startswith(("tcp://", "ssh://", "http"))
    return "nvidia" in runtimes or (local and shutil.which("nvidia-container-runtime-hook")
                                    is not None)


def gpu_request() -> list[Any]:
    """Every GPU, as `docker run --gpus all` asks for them."""
    import docker

    return [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]


def container_runner(client: Any, ref: str, timeout: float = CHECK_TIMEOUT,
                     name: str = "", gpu: bool = False) -> Runner:
    """Run each argv in a fresh container of ``ref``: no network, removed afterwards, with
    every GPU when ``gpu``. ``name`` is what messages call the image (``ref`` may be its id)."""
    import docker
    import requests

    name = name or ref

    def run(argv: list[str]) -> tuple[int, str]:
        try:
            return attempt(argv)
        except requests.RequestException:
            if why := lost():
                raise error(f"the Docker engine went away while a check ran in {name} "
                            f"({' '.join(argv)[:60]}): {why}", path="engine",
                            hint="start it again and rerun") from None
            raise

    def attempt(argv: list[str]) -> tuple[int, str]:
        try:
            # the argv exactly, as a check says: not as arguments to an image's ENTRYPOINT
            extra = {"device_requests": gpu_request()} if gpu else {}
            container = client.containers.create(ref, entrypoint=argv[:1], command=argv[1:],
                                                 network_disabled=True,
                                                 labels={CHECK_LABEL: owner()}, **extra)
        except docker.errors.APIError as exc:
            raise EnvkitError(error(f"cannot create a container of {name}: "
                                    f"{exc.explanation or exc}", path="verify").diagnostics
                              ) from None
        try:
            try:
                container.start()
            except docker.errors.NotFound:
                return 125, GONE
            except docker.errors.APIError as exc:  # e.g. the program is not in the image
                return 127, str(exc.explanation or exc)
            try:
                code = container.wait(timeout=timeout).get("StatusCode", 1)
                output = container.logs(stdout=True, stderr=True)
            except docker.errors.NotFound:
                return 125, GONE
            except requests.RequestException:
                if lost():  # not a timeout: the engine went away (run() says so)
                    raise
                with contextlib.suppress(docker.errors.APIError):
                    container.kill()
                return 124, f"timed out after {timeout:.0f}s"
            return int(code), output.decode("utf-8", "replace")
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)

    return run


def run_script(client: Any, ref: str, script: str, files: dict[str, bytes],
               env: dict[str, str], timeout: float = CHECK_TIMEOUT,
               collect: tuple[str, Path] | None = None) -> tuple[int, str, str]:
    """Run a bash script in a fresh container of ``ref`` with the default network, the
    ``files`` (absolute path -> content) put in first; (exit code, stdout, stderr). The
    container is labelled as a check's, so a killed envkit's is swept away later.
    ``collect`` = (folder in the container, tar file here): after a script that succeeded,
    that folder is copied out as a tar archive."""
    import docker
    import requests

    try:
        container = client.containers.create(ref, entrypoint=["/bin/bash", "-c"],
                                             command=[script], environment=env,
                                             labels={CHECK_LABEL: owner()})
    except docker.errors.APIError as exc:
        raise error(f"cannot create a container of {ref}: {exc.explanation or exc}",
                    path="engine") from None
    try:
        try:
            container.put_archive("/", tar_files(files))
            container.start()
        except docker.errors.APIError as exc:
            raise error(f"cannot run a script in {ref}: {exc.explanation or exc}",
                        path="engine") from None
        try:
            code = container.wait(timeout=timeout).get("StatusCode", 1)
        except requests.RequestException:
            if why := lost():
                raise error(f"the Docker engine went away while a script ran in {ref}: {why}",
                            path="engine", hint="start it again and rerun") from None
            with contextlib.suppress(docker.errors.APIError):
                container.kill()
            return 124, "", f"timed out after {timeout:.0f}s"
        try:
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
        except docker.errors.APIError as exc:
            raise error(f"cannot read a script's output in {ref}: {exc.explanation or exc}",
                        path="engine") from None
        if collect is not None and code == 0:
            folder, tar_path = collect
            try:
                stream, _ = container.get_archive(folder)
                with open(tar_path, "wb") as fh:
                    for chunk in stream:
                        fh.write(chunk)
            except docker.errors.APIError as exc:
                raise error(f"cannot copy {folder} out of a container of {ref}: "
                            f"{exc.explanation or exc}", path="engine") from None
        return int(code), out, err
    finally:
        with contextlib.suppress(docker.errors.APIError, requests.RequestException):
            container.remove(force=True)


def tar_files(files: dict[str, bytes]) -> bytes:
    """``files`` (absolute path -> content) as a tar archive rooted at / (what a container
    is given before a script runs in it)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def save(client: Any, ref: str, path: Path) -> None:
    """``ref`` as an image archive (``docker save REF``: what docker and podman load),
    streamed. By the name given, so the archive tags the image as ``ref`` (the SDK's
    ``Image.save(named=True)`` takes whichever tag the image lists first)."""
    import docker

    try:
        with open(path, "wb") as fh:
            for chunk in client.api.get_image(ref):
                fh.write(chunk)
    except docker.errors.APIError as exc:
        raise error(f"cannot save {ref}: {exc.explanation or exc}", path="engine") from None


def load(client: Any, path: Path) -> None:
    """An image archive into the engine's store (``docker load``), streamed."""
    import docker

    try:
        with open(path, "rb") as fh:
            client.images.load(fh)
    except docker.errors.ImageLoadError as exc:
        raise error(f"cannot load {path}: {exc}", path="engine",
                    hint="the archive is damaged: copy it again") from None
    except docker.errors.APIError as exc:
        raise error(f"cannot load {path}: {exc.explanation or exc}", path="engine") from None


def _here() -> str:
    """This host, boot and PID namespace: where a pid in a label names a process. '?' in
    it when that cannot be told (then no container is ever judged orphaned)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
        pidns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "?"
    return f"{socket.gethostname()}/{boot}/{pidns}"


def _started(pid: int) -> str:
    """When the process started (clock ticks since boot), '' if there is none: a pid the
    kernel has given to another process since has another start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return fields[19] if len(fields) > 19 else ""  # field 22 of proc(5)


def owner() -> str:
    """What a check container's label says of the envkit that made it: host, boot and PID
    namespace, its pid and when that process started."""
    return f"{_here()}:{os.getpid()}:{_started(os.getpid())}"


def orphaned(label: str) -> bool:
    """Whether the envkit a check container's label names (owner()) is gone: one that ran
    on this host, boot and PID namespace, whose process no longer runs (or is another)."""
    here = _here()
    where, _, rest = label.partition(":")
    pid, _, started = rest.partition(":")
    if "?" in here or where != here or not started or not (pid.isascii() and pid.isdigit()):
        return False
    return len(pid) <= 10 and _started(int(pid)) != started


def sweep_checks(client: Any) -> int:
    """Remove the check containers an envkit left behind when it was killed or lost the
    engine mid-check: only those whose envkit ran on this host, boot and PID namespace
    and is gone. Any other's (a running verify's, another machine's) stay. How many went."""
    import docker
    import requests

    if "?" in _here():
        return 0
    removed = 0
    with contextlib.suppress(docker.errors.APIError, requests.RequestException):
        for container in client.containers.list(all=True, filters={"label": CHECK_LABEL},
                                                ignore_removed=True):
            if not orphaned((container.labels or {}).get(CHECK_LABEL, "")):
                continue
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
                removed += 1
    return removed
