"""``invoke doctor``: each check's logic with fakes (clients, disks, docker and nvidia
scripts, a local HTTPS server with a throwaway CA), the runner's deadlines and crashes,
and the command as a user runs it."""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import ENVKIT, script
from envkit.backends import buildkit, engine
from envkit.diagnostics import error
from envkit.verify import doctor
from envkit.verify.doctor import FAIL, INFO, OK, WARN, Context, Finding

OLD = "Docker version 20.10.24+dfsg1, build 297e128"
NEW = "Docker version 28.2.2, build e6534b4"
PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy",
              "ALL_PROXY", "no_proxy", "NO_PROXY")


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in PROXY_VARS:  # the local HTTPS server is reached directly
        monkeypatch.delenv(var, raising=False)
    buildkit.choose.cache_clear()
    yield
    buildkit.choose.cache_clear()


class FakeClient:
    def __init__(self, info: dict[str, Any] | None = None,
                 version: dict[str, Any] | Exception | None = None):
        self._info = info or {}
        self._version = version if version is not None else {"Version": "20.10.24",
                                                            "ApiVersion": "1.41"}
        self.asked = 0

    def version(self) -> dict[str, Any]:
        if isinstance(self._version, Exception):
            raise self._version
        return self._version

    def info(self) -> dict[str, Any]:
        self.asked += 1
        return self._info


def ctx_with(client: Any = None, raises: Exception | None = None, **kw: Any) -> Context:
    def connect() -> Any:
        if raises is not None:
            raise raises
        return client

    return Context(connect=connect, **kw)


def no_engine_error() -> engine.NoEngine:
    return engine.NoEngine(error("no Docker engine answers at unix:///x.sock: no socket there",
                                 path="engine").diagnostics)


# --- the line -----------------------------------------------------------------------------


def test_lines() -> None:
    assert Finding("engine", OK, "Docker 20.10 at unix:///s").line() == (
        "ok    engine: Docker 20.10 at unix:///s")
    assert Finding("engine", FAIL, "no\nengine", "start\tit").line() == (
        "FAIL  engine: no engine (fix: start it)")
    assert Finding("gpu", INFO, "none").line() == "info  gpu: none"
    assert Finding("ca", WARN, "x" * 1000).line().endswith("x…")


def test_summary() -> None:
    ok, warn = Finding("a", OK, ""), Finding("b", WARN, "")
    assert doctor.summary([ok, ok]) == "doctor: 2 ok: ready"
    assert doctor.summary([ok, warn]) == "doctor: 1 ok, 1 warn: ready (see the warnings)"
    assert doctor.summary([ok, Finding("c", FAIL, ""), Finding("d", FAIL, "")]) == (
        "doctor: 1 ok, 2 fail: not ready (c, d)")


def test_the_registry_in_order() -> None:
    assert list(doctor.all_checks()) == ["engine", "builder", "disk", "ca", "gpu",
                                         "debootstrap", "podman"]


# --- the runner ---------------------------------------------------------------------------


def test_a_crash_is_that_checks_fail() -> None:
    def broken(ctx: Context) -> Finding:
        return {}["missing"]  # type: ignore[no-any-return]

    got = list(doctor.run(Context(), {"broken": broken,
                                      "fine": lambda ctx: Finding("fine", OK, "")}))
    assert got[0].name == "broken" and got[0].status == FAIL
    assert got[0].message == "the check crashed: KeyError: 'missing'"
    assert got[1] == Finding("fine", OK, "")


def test_an_envkit_error_is_a_fail_with_its_hint() -> None:
    def refuses(ctx: Context) -> Finding:
        raise error("it broke", path="x", hint="do this")

    assert doctor.run_one("x", refuses, Context()) == Finding("x", FAIL, "it broke", "do this")


def test_a_hang_is_bounded() -> None:
    def hangs(ctx: Context) -> Finding:
        time.sleep(5)
        return Finding("hangs", OK, "")

    started = time.monotonic()
    got = doctor.run_one("hangs", hangs, Context(), deadline=0.2)
    assert time.monotonic() - started < 2
    assert got.status == FAIL and got.message == "the check did not finish within 0.2s"


def test_the_engine_is_asked_once() -> None:
    calls: list[int] = []
    client = FakeClient({"DockerRootDir": "/nowhere"})

    def connect() -> Any:
        calls.append(1)
        return client

    ctx = Context(connect=connect)
    assert ctx.client() is client and ctx.client() is client and calls == [1]
    failing = ctx_with(raises=no_engine_error())
    assert failing.info() is None
    with pytest.raises(engine.NoEngine):
        failing.client()


# --- engine -------------------------------------------------------------------------------


def test_engine_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    got = doctor.check_engine(ctx_with(FakeClient()))
    assert got == Finding("engine", OK,
                          "Docker 20.10.24 (API 1.41) at unix:///var/run/docker.sock")


def test_engine_missing_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = f"unix://{tmp_path / 'nowhere' / 'docker.sock'}"
    monkeypatch.setenv("DOCKER_HOST", where)
    for var in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(var, raising=False)
    got = doctor.check_engine(Context())
    assert got.status == FAIL
    assert got.message == f"no Docker engine answers at {where}: no socket there"
    assert got.fix == doctor.ENGINE_FIX and "--target host" in got.fix
    host = doctor.check_engine(Context(target="host"))
    assert host.status == WARN and host.message.endswith("; --target host needs none")
    assert "--target host" not in host.fix


def test_engine_refuses_this_user() -> None:
    refused = error("the Docker engine at unix:///s refuses this user: permission denied "
                    "(join the docker group or use root)", path="engine")
    got = doctor.check_engine(ctx_with(raises=refused))
    assert got.status == FAIL
    assert got.message == "the Docker engine at unix:///s refuses this user: permission denied"
    assert "docker group" in got.fix and "usermod" in got.fix


def test_engine_that_pings_but_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///s")
    got = doctor.check_engine(ctx_with(FakeClient(version=RuntimeError("boom"))))
    assert got.status == FAIL and "answers a ping but not a version query: boom" in got.message
    assert doctor.check_engine(ctx_with(FakeClient(version=RuntimeError("x")),
                                        target="host")).status == WARN


# --- builder ------------------------------------------------------------------------------


def fake_docker(tmp_path: Path, version: str, buildx: str = "", name: str = "docker") -> Path:
    bx = f"echo {buildx!r}; exit 0" if buildx else "exit 1"
    return script(tmp_path / name, f"""\
        case "$1" in
          buildx) {bx} ;;
          --version) echo {version!r} ;;
          *) exit 1 ;;
        esac
        """)


def test_builder_old_client(tmp_path: Path) -> None:
    client = fake_docker(tmp_path, OLD)
    got = doctor.check_builder(Context(docker=str(client)))
    assert got == Finding("builder", OK, f"BuildKit through {client} 20.10.24 with "
                          "DOCKER_BUILDKIT=1 (envkit.docker)")


def test_builder_says_why_not_the_docker_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    old.mkdir()
    fake_docker(new, NEW)
    fake_docker(old, OLD)
    monkeypatch.setenv("PATH", f"{new}:{old}")
    monkeypatch.setattr(buildkit, "_clients", lambda: [str(new / "docker"), str(old / "docker")])
    got = doctor.check_builder(Context())
    assert got == Finding("builder", OK, f"BuildKit through {old}/docker 20.10.24 with "
                          f"DOCKER_BUILDKIT=1; skipped {new}/docker 28.2.2 has no buildx plugin")


def test_builder_buildx(tmp_path: Path) -> None:
    client = fake_docker(tmp_path, NEW, buildx="github.com/docker/buildx v0.14.1 59582b4")
    got = doctor.check_builder(Context(docker=str(client)))
    assert got.status == OK and "buildx (github.com/docker/buildx v0.14.1" in got.message


def test_builder_without_buildkit(tmp_path: Path) -> None:
    client = fake_docker(tmp_path, NEW)
    got = doctor.check_builder(Context(docker=str(client)))
    assert got.status == FAIL
    assert got.message == (f"no docker client here builds with BuildKit: {client} 28.2.2 has "
                           "no buildx plugin")
    assert got.fix.startswith("install Debian's docker.io") and "envkit.docker" in got.fix
    assert doctor.check_builder(Context(docker=str(client), target="host")).status == WARN


# --- disk ---------------------------------------------------------------------------------


def fake_disks(monkeypatch: pytest.MonkeyPatch, free: dict[Path, float]) -> None:
    def disk_usage(path: Path) -> Any:
        if Path(path) not in free:
            raise FileNotFoundError(2, "No such file or directory")
        return SimpleNamespace(total=0, used=0, free=int(free[Path(path)] * doctor.GIB))

    monkeypatch.setattr(doctor.shutil, "disk_usage", disk_usage)


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    cwd, root = tmp_path / "work", tmp_path / "docker"
    cwd.mkdir()
    root.mkdir()
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    return cwd, root


def disk(cwd: Path, root: Path, **kw: Any) -> Finding:
    return doctor.check_disk(ctx_with(FakeClient({"DockerRootDir": str(root)}), cwd=cwd, **kw))


def test_disk_plenty(places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, root = places
    fake_disks(monkeypatch, {cwd: 80, root: 120.25})
    assert disk(cwd, root) == Finding("disk", OK, f"80.0 GiB free in {cwd} (build/), "
                                      f"120.2 GiB free in {root} (the engine's data)")


def test_disk_low_engine(places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, root = places
    fake_disks(monkeypatch, {cwd: 80, root: 12})
    got = disk(cwd, root)
    assert got.status == WARN and got.message.endswith("; below 20.0 GiB ML images may not fit")
    assert "docker builder prune" in got.fix and "bigger disk" not in got.fix


def test_disk_too_little_here(places: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
                              ) -> None:
    cwd, root = places
    fake_disks(monkeypatch, {cwd: 4.5, root: 12})
    got = disk(cwd, root)
    assert got.status == FAIL and got.message.endswith("; below 5.0 GiB a build fails")
    assert "bigger disk" in got.fix and "docker builder prune" in got.fix


def test_disk_host_target_and_no_engine(places: tuple[Path, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, root = places
    fake_disks(monkeypatch, {cwd: 30, root: 1})
    assert disk(cwd, root, target="host") == Finding("disk", OK,
                                                     f"30.0 GiB free in {cwd} (build/)")
    got = doctor.check_disk(ctx_with(raises=no_engine_error(), cwd=cwd))
    assert got == Finding("disk", OK, f"30.0 GiB free in {cwd} (build/)")


def test_disk_remote_engine_and_unmeasurable(places: tuple[Path, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, root = places
    fake_disks(monkeypatch, {cwd: 30})
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    got = disk(cwd, root)
    assert got.status == OK and got.message.endswith(
        f"; the engine's {root} is on another machine, not checked")
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    got = disk(cwd, root)
    assert got.status == WARN and f"cannot measure {root} (the engine's data)" in got.message


# --- CA bundle: a local HTTPS server with a throwaway CA ------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A CA that signed the server's certificate for 127.0.0.1, and another CA."""
    if not shutil.which("openssl"):
        pytest.fail("the openssl CLI is needed (apt-get install openssl)")
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name in ("ca", "other"):
        openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt",
                "-days", "2", "-subj", f"/CN=envkit test {name}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                  "basicConstraints=critical,CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=serverAuth\n"
                                  "authorityKeyIdentifier=keyid\n")
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt",
            cwd=d)
    return SimpleNamespace(dir=d, ca=str(d / "ca.crt"), other=str(d / "other.crt"),
                           cert=str(d / "server.crt"), key=str(d / "server.key"))


class Index(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def index(pki: SimpleNamespace) -> Iterator[str]:
    """The URL of a pip index served over HTTPS on loopback with the CA's certificate."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Index)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert, pki.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed() -> str:
    """An HTTPS URL on loopback where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"https://127.0.0.1:{port}/simple"


def ca_check(bundle: str, indexes: list[str], public: str | None) -> Finding:
    return doctor.check_ca(Context(ca_bundle=bundle, indexes=tuple(indexes), public_ca=public))


def test_ca_the_right_bundle_on_an_intercepted_network(pki: SimpleNamespace, index: str
                                                       ) -> None:
    got = ca_check(pki.ca, [index], public=pki.other)  # public roots do not know our CA
    assert got.status == OK
    assert got.message.startswith(f"{Path(pki.ca).resolve()} verifies {index}; HTTPS here is "
                                  "intercepted (public roots alone fail: ")
    assert got.message.endswith("so builds need this bundle")


def test_ca_the_right_bundle_without_interception(pki: SimpleNamespace, index: str) -> None:
    got = ca_check(pki.ca, [index], public=pki.ca)
    assert got.status == OK
    assert got.message.endswith("; public roots alone verify it too (HTTPS is not intercepted)")


def test_ca_the_wrong_bundle(pki: SimpleNamespace, index: str) -> None:
    got = ca_check(pki.other, [index], public=pki.other)
    assert got.status == FAIL
    assert got.message.startswith(f"{Path(pki.other).resolve()} does not verify HTTPS to "
                                  "127.0.0.1:")
    assert "unable to get local issuer certificate" in got.message
    assert got.fix == "pass --ca-bundle with your company's CA bundle"


def test_ca_none_on_an_intercepted_network(pki: SimpleNamespace, index: str) -> None:
    got = ca_check("none", [index], public=pki.other)
    assert got.status == FAIL
    assert "is intercepted" in got.message and "(--ca-bundle none)" in got.message
    assert got.fix.startswith("pass --ca-bundle /etc/ssl/certs/ca-certificates.crt")
    fine = ca_check("none", [index], public=pki.ca)
    assert fine == Finding("ca", OK, f"no CA bundle (--ca-bundle none): public roots verify "
                           f"{index} (HTTPS is not intercepted)")


def test_ca_unreachable_is_a_warning(pki: SimpleNamespace, closed: str) -> None:
    got = ca_check(pki.ca, [closed], public=pki.other)
    assert got.status == WARN
    assert got.message.startswith(f"no answer from {closed.split('/')[2]} (")
    assert "not tried on a real handshake" in got.message
    assert "network or proxy" in got.fix


def test_ca_a_mirror_that_does_not_answer_falls_back(pki: SimpleNamespace, index: str,
                                                     closed: str) -> None:
    got = ca_check(pki.ca, [closed, index], public=pki.ca)
    assert got.status == WARN
    assert got.message.startswith(f"{Path(pki.ca).resolve()} verifies {index}")
    assert got.message.endswith(f": builds fall back to {index.split('/')[2]}")
    assert "pick a --mirror" in got.fix


def test_ca_bad_bundle_files(tmp_path: Path, index: str) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a certificate\n")
    got = ca_check(str(text), [index], public=None)
    assert got.status == FAIL and got.message == f"{text} holds no PEM certificate"
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    got = ca_check(str(broken), [index], public=None)
    assert got.status == FAIL and "does not load as a CA bundle" in got.message
    missing = ca_check(str(tmp_path / "nope.pem"), [index], public=None)
    assert missing.status == FAIL and "cannot read the CA bundle" in missing.message


# --- GPU ----------------------------------------------------------------------------------


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty PATH folder for fake nvidia tools (and nothing else on PATH)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    return folder


def nvidia_smi(bin_dir: Path, gpus: int = 1) -> None:
    lines = "\n".join(f"echo 'GPU {i}: NVIDIA A100-SXM4-40GB (UUID: GPU-{i})'"
                      for i in range(gpus))
    script(bin_dir / "nvidia-smi", f'[ "$1" = -L ] || exit 2\n{lines}\n')


RUNC = {"runc": {"path": "runc"}}
NVIDIA = {**RUNC, "nvidia": {"path": "nvidia-container-runtime"}}


def gpu(runtimes: dict[str, Any] | None, **kw: Any) -> Finding:
    client = FakeClient({"Runtimes": runtimes}) if runtimes is not None else None
    return doctor.check_gpu(ctx_with(client, raises=None if client else no_engine_error(),
                                     **kw))


def test_gpu_ready(bin_dir: Path) -> None:
    nvidia_smi(bin_dir, gpus=2)
    assert gpu(NVIDIA, gpu=True) == Finding(
        "gpu", OK, "2 GPUs (GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-0)), the engine's "
        "runtime nvidia")


def test_gpu_through_the_toolkits_hook(bin_dir: Path) -> None:
    nvidia_smi(bin_dir)
    script(bin_dir / "nvidia-container-runtime-hook", "exit 0\n")
    got = gpu(RUNC, gpu=True)
    assert got.status == OK and "hook (docker run --gpus)" in got.message


def test_gpu_absent_is_information(bin_dir: Path) -> None:
    got = gpu(RUNC)
    assert got.status == INFO and "CPU recipes only" in got.message and got.fix == ""


def test_gpu_absent_with_gpu_is_a_fail(bin_dir: Path) -> None:
    got = gpu(RUNC, gpu=True)
    assert got.status == FAIL
    assert got.message == ("no nvidia-smi on PATH (no NVIDIA driver); no NVIDIA container "
                           "runtime (the engine's runtimes are runc) (--gpu asks for one)")
    assert got.fix == "install the NVIDIA driver; " + doctor.TOOLKIT_FIX
    assert "nvidia-ctk runtime configure --runtime=docker" in got.fix


def test_gpu_driver_without_the_toolkit_configured(bin_dir: Path) -> None:
    nvidia_smi(bin_dir)
    script(bin_dir / "nvidia-ctk", "exit 0\n")
    got = gpu(RUNC)
    assert got.status == WARN
    assert "no NVIDIA container runtime (the engine's runtimes are runc; nvidia-ctk on PATH)" \
        in got.message
    assert got.fix == "run nvidia-ctk runtime configure --runtime=docker, restart dockerd"


def test_gpu_nvidia_smi_that_finds_none(bin_dir: Path) -> None:
    script(bin_dir / "nvidia-smi", 'echo "NVIDIA-SMI has failed because it couldn\'t '
           'communicate with the NVIDIA driver."; exit 9\n')
    got = gpu(NVIDIA, gpu=True)
    assert got.status == FAIL and got.message.startswith(
        "nvidia-smi finds no GPU (NVIDIA-SMI has failed because it couldn't communicate")
    assert got.fix == "install the NVIDIA driver"


def test_gpu_on_the_host_needs_only_the_driver(bin_dir: Path) -> None:
    nvidia_smi(bin_dir)
    assert gpu(None, target="host", gpu=True).status == OK
    (bin_dir / "nvidia-smi").unlink()
    got = gpu(None, target="host", gpu=True)
    assert got.status == FAIL and got.fix == "install the NVIDIA driver"
    assert "container runtime" not in got.message


# --- debootstrap --------------------------------------------------------------------------


def test_debootstrap(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = doctor.check_debootstrap(Context())
    assert got.status == INFO and got.fix == "apt-get install debootstrap"
    script(bin_dir / "debootstrap", 'echo "debootstrap 1.0.128+nmu2+deb12u2"\n')
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    got = doctor.check_debootstrap(Context())
    assert got.status == INFO and "not root" in got.message and "sudo" in got.fix
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    assert doctor.check_debootstrap(Context()) == Finding(
        "debootstrap", OK, "debootstrap 1.0.128+nmu2+deb12u2, root: invoke base can make a "
        "Debian base image without a registry")


# --- the command --------------------------------------------------------------------------


def envkit(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([ENVKIT, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


@pytest.fixture
def offline(tmp_path: Path, closed: str) -> dict[str, str]:
    """No engine (DOCKER_HOST at a missing socket) and HTTPS through a proxy that is not
    there, so nothing leaves this machine."""
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARS and not k.startswith("DOCKER_")}
    proxy = closed.replace("https://", "http://").removesuffix("/simple")
    return {**env, "DOCKER_HOST": f"unix://{tmp_path / 'nowhere' / 'docker.sock'}",
            "https_proxy": proxy, "HTTPS_PROXY": proxy}


def test_cli_without_an_engine(tmp_path: Path, offline: dict[str, str]) -> None:
    done = envkit("doctor", cwd=tmp_path, env=offline)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"FAIL  engine: no Docker engine answers at {offline['DOCKER_HOST']}: "
                        f"no socket there (fix: {doctor.ENGINE_FIX})")
    assert [ln.split(":")[0].split()[-1] for ln in lines[:-1]] == list(doctor.all_checks())
    assert any(ln.startswith("warn  ca: no answer from ") for ln in lines)
    assert lines[-1].startswith("doctor: ") and "not ready (engine" in lines[-1]
    assert done.stderr.startswith("envkit: doctor: ")
    assert "failed: engine" in done.stderr and len(done.stderr.splitlines()) == 1


def test_cli_host_target_needs_no_engine(tmp_path: Path, offline: dict[str, str]) -> None:
    done = envkit("doctor", "--target", "host", cwd=tmp_path, env=offline)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("warn  engine: no Docker engine answers at ")
    assert "; --target host needs none (fix: to build images: start dockerd" in done.stdout
    assert done.stdout.splitlines()[-1].endswith(": ready (see the warnings)")
    assert done.stderr == ""


def test_cli_bad_options(tmp_path: Path, offline: dict[str, str]) -> None:
    done = envkit("doctor", "--target", "cloud", cwd=tmp_path, env=offline)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == "envkit: --target: unknown target 'cloud' (docker or podman or host)\n"
    done = envkit("doctor", "--mirror", "tunaa", cwd=tmp_path, env=offline)
    assert done.returncode == 1 and "unknown mirror profile 'tunaa'" in done.stderr


@pytest.mark.docker
def test_doctor_on_this_machine(tmp_path: Path) -> None:
    """The real engine, the real clients, the real network: ready, and says which builder."""
    done = envkit("doctor", cwd=tmp_path, env=dict(os.environ))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok    engine: Docker ")
    assert "\nok    builder: BuildKit through " in done.stdout
    assert done.stdout.splitlines()[-1].startswith("doctor: ")


# --- podman ---------------------------------------------------------------------------------


def fake_podman(tmp_path: Path, run: str) -> Path:
    """A podman that knows one image; ``run`` is what `podman run` does."""
    from conftest import script

    return script(tmp_path / "podman", f"""\
        case $1 in
          version) echo 4.3.1 ;;
          images) echo 0123456789ab ;;
          run) {run} ;;
        esac
        """)


@pytest.mark.parametrize(("target", "status"), [("", "info"), ("podman", "fail")])
def test_podman_not_there_matters_only_to_its_target(monkeypatch: pytest.MonkeyPatch,
                                                     target: str, status: str) -> None:
    monkeypatch.setenv("ENVKIT_PODMAN", "")
    monkeypatch.setenv("PATH", "/nonexistent")
    found = doctor.all_checks()["podman"](Context(target=target))
    assert (found.status, found.message) == (
        status, "podman is not installed: --target podman builds with it")
    assert found.fix == "apt-get install podman"


def test_podman_that_cannot_start_a_container_says_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = fake_podman(tmp_path, "echo 'Error: runc: runc create failed: unable to start "
                      "container process: error during container init: error setting rlimits "
                      "for ready process: error setting rlimit type 7: operation not "
                      "permitted: OCI permission denied' >&2; exit 126")
    monkeypatch.setenv("ENVKIT_PODMAN", str(exe))
    found = doctor.all_checks()["podman"](Context(target="podman"))
    assert found.status == "fail"
    assert found.message.startswith("podman 4.3.1 cannot start a container: Error: runc")
    assert "default_ulimits = []" in found.fix
    assert doctor.all_checks()["podman"](Context()).status == "warn"


def test_podman_that_runs_containers_is_ok(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_PODMAN", str(fake_podman(tmp_path, "exit 0")))
    found = doctor.all_checks()["podman"](Context(target="podman"))
    assert (found.status, found.message) == (
        "ok", f"podman 4.3.1 ({tmp_path / 'podman'}), a container starts: --target podman "
        "builds with it")
