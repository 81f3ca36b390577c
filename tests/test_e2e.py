"""End to end: real builds on a real Docker engine, and real provisioning on this host.

``-m docker`` tests need a running engine; ``-m network`` tests reach PyPI. Both run
the commands as a user types them, from a scratch folder, so ``build/`` and
``.envkit/`` land there. Behind an intercepting proxy (this machine) pip needs the
host's CA bundle, which is exactly what ``--ca-bundle`` is for.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO, envkit, show

HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def small_recipe(folder: Path, extra_steps: str = "", verify: str = "") -> Path:
    """A venv with one small PyPI package (six), verified by importing it."""
    path = folder / "small.yaml"
    path.write_text(textwrap.dedent("""\
        name: small
        description: a venv with one small PyPI package
        version: 1.0.0
        requires: [python-venv]
        steps:
          - pip:
              packages: ["six==1.17.0"]
        """) + textwrap.indent(textwrap.dedent(extra_steps), "  ") + "verify:\n"
        "  - python_import: {module: six, version: \"==1.17.0\"}\n" + textwrap.dedent(verify))
    return path


# --- docker -------------------------------------------------------------------------------


def image_bytes(image: str, folder: Path) -> Iterator[tuple[str, bytes]]:
    """Every file of every layer of ``docker save IMAGE``, and the image's metadata files."""
    archive = folder / "image.tar"
    subprocess.run(["docker", "save", "-o", str(archive), image], check=True)
    with tarfile.open(archive) as outer:
        for member in outer.getmembers():
            if not member.isfile():
                continue
            data = outer.extractfile(member).read()  # type: ignore[union-attr]
            yield member.name, data
            if member.name.endswith(".tar") or member.name.startswith("blobs/"):
                try:
                    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                        for inner in layer.getmembers():
                            if inner.isfile():
                                f = layer.extractfile(inner)
                                yield f"{member.name}:{inner.name}", f.read() if f else b""
                except tarfile.TarError:
                    pass


@pytest.mark.docker
def test_python_venv_builds_on_our_base_and_verifies(base: str, tmp_path: Path) -> None:
    # no --base: debian:bookworm-slim is the base `invoke base` made, and the shipped lock's
    done = envkit("build", "--recipe", "python-venv", "--ca-bundle", HOST_CA,
                  "--no-cache", cwd=tmp_path)
    assert done.returncode == 0, show(done)
    out = done.stdout
    assert "envkit: builder " in out and ("DOCKER_BUILDKIT=1" in out or "buildx" in out)
    assert "step 1/2 python-venv: system Python: done in" in out
    assert "step 2/2 python-venv: virtual environment: done in" in out
    assert "envkit: installing the locked set of " in out
    assert "all 3 checks passed" in out  # its two, and the installed set against the lock
    tag = re.search(r"envkit: built (envkit/python-venv:[0-9a-f]{12}) in", out)[1]  # type: ignore[index]
    assert (tmp_path / "build/python-venv/Dockerfile").read_text().startswith("# Generated")
    log = (tmp_path / "build/python-venv/build.log").read_text()
    assert "python3.11 -m venv /opt/envkit/venv" in log
    labels = json.loads(subprocess.run(["docker", "inspect", "--format",
                                        "{{json .Config.Labels}}", tag],
                                       capture_output=True, text=True, check=True).stdout)
    assert labels["io.envkit.recipe"] == "python-venv"
    assert labels["io.envkit.build"] == tag.rsplit(":", 1)[1]

    again = envkit("build", "--recipe", "python-venv", cwd=tmp_path)
    assert again.returncode == 0, show(again)  # --ca-bundle auto: the same host bundle
    assert f"envkit: {tag} is already built from this recipe; skipping the build" in again.stdout
    assert "all 3 checks passed" in again.stdout


@pytest.fixture(scope="session")
def trixie(client: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trixie base made by `invoke base --suite trixie` in this run (Python 3.13)."""
    done = envkit("base", "--suite", "trixie", cwd=tmp_path_factory.mktemp("trixie"))
    assert done.returncode == 0, show(done)
    assert re.search(r"envkit: envkit/base:trixie \(sha256:\w+, [\d.]+ MB\)", done.stdout)
    return "envkit/base:trixie"


@pytest.mark.docker
def test_python_3_13_comes_from_a_trixie_base_and_faiss_cpu_installs_on_it(
        trixie: str, tmp_path: Path) -> None:
    """python-venv and faiss-cpu with --set python=3.13: debian:trixie-slim, which is the
    trixie base `invoke base` made, Debian's python3.13, faiss's cp313 wheels, as locked."""
    done = envkit("build", "--recipe", "python-venv", "--set", "python=3.13",
                  "--ca-bundle", HOST_CA, cwd=tmp_path)
    assert done.returncode == 0, show(done)
    assert "using envkit/base:trixie (made by invoke base)" in done.stdout
    assert "all 3 checks passed" in done.stdout, show(done)
    tag = re.search(r"envkit: built (envkit/python-venv:[0-9a-f]{12}) in", done.stdout)[1]  # type: ignore[index]
    version = subprocess.run(["docker", "run", "--rm", tag, "python", "--version"],
                             capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r"Python 3\.13\.\d+\n", version), version

    done = envkit("build", "--recipe", "faiss-cpu", "--set", "python=3.13",
                  "--ca-bundle", HOST_CA, cwd=tmp_path)
    assert done.returncode == 0, show(done)
    assert "PASS  installed packages match the lock" in done.stdout, show(done)
    assert re.search(r"all \d+ checks passed", done.stdout), show(done)
    wheel = subprocess.run(["docker", "run", "--rm", "envkit/faiss-cpu:latest", "python", "-c",
                            "import sys, numpy, faiss; print(sys.version_info[:2], "
                            "numpy.__version__, faiss.__version__)"],
                           capture_output=True, text=True, check=True).stdout
    assert wheel.startswith("(3, 13) "), wheel


@pytest.mark.docker
def test_init_from_a_pyproject_with_an_extra_builds_and_its_checks_pass(
        base: str, tmp_path: Path) -> None:
    """invoke init --from pyproject.toml: the recipe it writes locks, builds and verifies
    (the project's package, its dependency and its extra import). With a requirements file
    that includes another and a constraints file added to its pip step: the lock pins their
    packages and the project's dependencies, not the project, which is built from a copy of
    its folder."""
    (tmp_path / "src" / "mypkg").mkdir(parents=True)
    (tmp_path / "src" / "mypkg" / "__init__.py").write_text("import six\nVALUE = 42\n")
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "mypkg"
        version = "0.2.0"
        requires-python = ">=3.10"
        dependencies = ["six==1.17.0"]

        [project.optional-dependencies]
        yaml = ["PyYAML==6.0.2"]
        """))
    done = envkit("init", "--from", "pyproject.toml", cwd=tmp_path)
    assert done.returncode == 0, show(done)
    assert "mypkg.yaml validates" in done.stdout
    import yaml

    (tmp_path / "requirements.txt").write_text("# pins\nidna==3.10\n-r more.txt\n")
    (tmp_path / "more.txt").write_text("certifi==2025.8.3\n")
    (tmp_path / "constraints.txt").write_text("idna<4\n")
    recipe = yaml.safe_load((tmp_path / "mypkg.yaml").read_text())
    recipe["steps"][0]["pip"].update(requirements=["requirements.txt"],
                                     constraints=["constraints.txt"])
    recipe["verify"].append({"python_import": {"module": "certifi"}})
    (tmp_path / "mypkg.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    done = envkit("lock", "--recipe", "./mypkg.yaml", "--ca-bundle", HOST_CA, cwd=tmp_path)
    assert done.returncode == 0, show(done)
    lock = (tmp_path / "mypkg.lock").read_text()
    for pin in ("certifi 2025.8.3", "idna 3.10", "pyyaml 6.0.2", "six 1.17.0"):
        assert f"    {pin}\n" in lock, pin
    assert "    mypkg " not in lock  # the project itself is installed from its folder
    done = envkit("build", "--recipe", "./mypkg.yaml", "--ca-bundle", HOST_CA, cwd=tmp_path)
    assert done.returncode == 0, show(done)
    for check in ("PASS  import mypkg", "PASS  import six", "PASS  import yaml",
                  "PASS  import certifi", "PASS  installed packages match the lock"):
        assert check in done.stdout, show(done)
    # the project's folder is as it was: the build copied it before building the wheel
    assert not list(tmp_path.glob("**/*.egg-info")) and not (tmp_path / "src" / "build").exists()


@pytest.mark.docker
def test_paddle_cpu_builds_verifies_and_is_skipped_the_second_time(base: str,
                                                                   tmp_path: Path) -> None:
    args = ("build", "--recipe", "paddle-cpu", "--ca-bundle", HOST_CA)
    first = envkit(*args, cwd=tmp_path)
    assert first.returncode == 0, show(first)
    assert "all 5 checks passed" in first.stdout
    assert "PASS  paddle.utils.run_check()" in first.stdout
    assert "envkit: tagged envkit/paddle-cpu:latest" in first.stdout
    tag = re.search(r"envkit: image (envkit/paddle-cpu:[0-9a-f]{12}):", first.stdout)[1]  # type: ignore[index]

    run = subprocess.run(["docker", "run", "--rm", tag, "python", "-c",
                          "import paddle; paddle.utils.run_check()"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "PaddlePaddle is installed successfully" in (
        run.stdout + run.stderr), run.stderr

    second = envkit(*args, cwd=tmp_path)
    assert second.returncode == 0, show(second)
    assert f"envkit: {tag} is already built from this recipe; skipping the build" in second.stdout
    assert "all 5 checks passed" in second.stdout

    verify = envkit("verify", "--recipe", "paddle-cpu", "--image", tag, cwd=tmp_path)
    assert verify.returncode == 0 and "all 5 checks passed" in verify.stdout, show(verify)


@pytest.mark.docker
def test_the_ca_bundle_is_in_no_layer_history_or_log(base: str, tmp_path: Path) -> None:
    marker = f"envkit-ca-marker-{uuid.uuid4().hex}"
    bundle = tmp_path / "company-ca.pem"
    bundle.write_text(f"# {marker}\n" + Path(HOST_CA).read_text())
    small_recipe(tmp_path)
    tag = f"envkit-test/small:{uuid.uuid4().hex[:8]}"
    done = envkit("build", "--recipe", "./small.yaml", "--base", base, "--tag", tag,
                  "--ca-bundle", str(bundle), "--no-cache", cwd=tmp_path)
    try:
        assert done.returncode == 0, show(done)
        # pip (uv) reached PyPI through the proxy, for the lock made on the fly and the build
        assert "all 4 checks passed" in done.stdout
        files = list(image_bytes(tag, tmp_path))
        assert any(name.endswith("site-packages/six.py") for name, _ in files)  # searched inside
        assert [name for name, data in files if marker.encode() in data] == []
        history = subprocess.run(["docker", "history", "--no-trunc", tag], capture_output=True,
                                 text=True, check=True).stdout
        inspect = subprocess.run(["docker", "inspect", tag], capture_output=True, text=True,
                                 check=True).stdout
        assert marker not in history and marker not in inspect
        assert str(bundle) not in inspect  # only the in-build mount path, never the file
        for path in (tmp_path / "build").rglob("*"):
            if path.is_file():
                assert marker not in path.read_text(errors="replace"), path
        check = subprocess.run(["docker", "run", "--rm", tag, "bash", "-c",
                                "test ! -e /run/secrets/envkit-ca && echo absent; "
                                "env | grep -c -e PIP_CERT -e SSL_CERT_FILE || true"],
                               capture_output=True, text=True, check=True)
        assert check.stdout.split() == ["absent", "0"]
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


class ConnectProxy:
    """A forward proxy for HTTPS (CONNECT tunnels) that wants a Basic login, on ``host``:
    records each tunnel's target and whether its login was right."""

    def __init__(self, host: str, login: str) -> None:
        import base64
        import socket
        import threading

        self.expected = "Basic " + base64.b64encode(login.encode()).decode()
        self.tunnels: list[tuple[str, bool]] = []
        self.sock = socket.create_server((host, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(conn,), daemon=True).start()

    def _tunnel(self, conn: object) -> None:
        import socket
        import threading

        client: socket.socket = conn  # type: ignore[assignment]
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                data = client.recv(4096)
                if not data:
                    return
                head += data
            lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.partition(":") for line in lines[1:])}
            ok = headers.get("proxy-authorization") == self.expected
            self.tunnels.append((target, ok))
            if method != "CONNECT" or not ok:
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                               b"Proxy-Authenticate: Basic realm=envkit\r\n"
                               b"Content-Length: 0\r\n\r\n")
                return
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=30)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            upstream.settimeout(None)

            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    for s in (src, dst):
                        with contextlib.suppress(OSError):
                            s.shutdown(socket.SHUT_RDWR)

            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join(timeout=60)
            upstream.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.docker
def test_a_build_goes_through_the_proxy_and_keeps_no_trace_of_its_login(
        base: str, tmp_path: Path) -> None:
    from conftest import bridge_gateway

    password = f"pw-{uuid.uuid4().hex}"
    proxy = ConnectProxy("0.0.0.0", f"build-bot:{password}")
    url = f"http://build-bot:{password}@{bridge_gateway()}:{proxy.port}"
    small_recipe(tmp_path)
    tag = f"envkit-test/small:{uuid.uuid4().hex[:8]}"
    try:
        # --no-lock: only the build's own traffic goes through the proxy (a lock made on
        # the fly would resolve on this host, through it too)
        done = envkit("build", "--recipe", "./small.yaml", "--base", base, "--tag", tag,
                      "--ca-bundle", HOST_CA, "--no-cache", "--no-lock", cwd=tmp_path,
                      env={"HTTPS_PROXY": url, "NO_PROXY": "", "no_proxy": ""})
    finally:
        proxy.close()
    try:
        assert done.returncode == 0, show(done)
        assert "all 3 checks passed" in done.stdout  # no lock: no lock check
        # uv itself and six came from PyPI through the proxy, with the login
        assert ("pypi.org:443", True) in proxy.tunnels, proxy.tunnels
        assert all(ok for _, ok in proxy.tunnels), proxy.tunnels
        files = list(image_bytes(tag, tmp_path))
        assert any(name.endswith("site-packages/six.py") for name, _ in files)
        assert [name for name, data in files if password.encode() in data] == []
        for argv in (["docker", "history", "--no-trunc", tag], ["docker", "inspect", tag]):
            text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            assert password not in text and "build-bot" not in text, argv
        for path in (tmp_path / "build").rglob("*"):
            if path.is_file():
                assert password not in path.read_text(errors="replace"), path
        assert password not in done.stdout + done.stderr
        check = subprocess.run(["docker", "run", "--rm", tag, "bash", "-c",
                                "env | grep -ci proxy || true"],
                               capture_output=True, text=True, check=True)
        assert check.stdout.strip() == "0"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


@pytest.mark.docker
def test_without_the_ca_bundle_pip_fails_and_the_failure_names_the_step(base: str,
                                                                          tmp_path: Path) -> None:
    small_recipe(tmp_path)
    # --no-lock: else the lock made for the build fails first, on this host, for the same
    # reason (and says so: test_lock). PIP_RETRIES reaches the build as a build argument:
    # one retry per envkit try instead of the profile's five (40 s of pip's back-off)
    done = envkit("build", "--recipe", "./small.yaml", "--base", base, "--no-cache",
                  "--tag", "envkit-test/small:noca", "--ca-bundle", "none", "--no-lock",
                  cwd=tmp_path, env={"PIP_RETRIES": "1"})
    assert done.returncode == 1, show(done)
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert "the build failed at step 3/3 small: pip six==1.17.0" in errors[0]
    assert "pass --ca-bundle" in errors[0] and "build/small/build.log" in errors[0]
    assert "  | " in done.stdout and "certificate" in done.stdout.lower()
    log = (tmp_path / "build" / "small" / "build.log").read_text()
    assert "Retry(total=0" in log and "Retry(total=1" not in log


@pytest.mark.docker
def test_a_failing_build_step_shows_its_name_and_last_lines(base: str, tmp_path: Path) -> None:
    (tmp_path / "fails.yaml").write_text(textwrap.dedent(f"""\
        name: fails
        description: the second step fails
        version: 1.0.0
        base: {base}
        steps:
          - name: first
            run: echo one
          - name: breaks on purpose
            run: |
              echo "about to fail {uuid.uuid4().hex}"
              exit 7
        """))
    done = envkit("build", "--recipe", "./fails.yaml", "--no-cache", cwd=tmp_path)
    assert done.returncode == 1, show(done)
    assert "the build failed at step 2/2 fails: breaks on purpose" in done.stderr
    assert re.search(r"  \| about to fail [0-9a-f]{32}", done.stdout), done.stdout


@pytest.mark.docker
def test_a_failing_check_fails_the_build(base: str, tmp_path: Path) -> None:
    subprocess.run(["docker", "rmi", "envkit/checked:latest"], capture_output=True)
    (tmp_path / "checked.yaml").write_text(textwrap.dedent(f"""\
        name: checked
        description: one check passes, one fails
        version: 1.0.0
        base: {base}
        steps:
          - run: mkdir -p /opt/here
        verify:
          - file_exists: /opt/here
          - name: this one fails
            command:
              argv: [bash, -c, "echo nope; exit 3"]
        """))
    done = envkit("build", "--recipe", "./checked.yaml", cwd=tmp_path)
    assert done.returncode == 1, show(done)
    assert re.search(r"PASS  exists /opt/here", done.stdout)
    assert re.search(r"FAIL  this one fails .*exit 3, expected 0: nope", done.stdout)
    assert "1 of 2 checks failed" in done.stdout
    assert "checked: verification failed in envkit/checked:" in done.stderr
    latest = subprocess.run(["docker", "image", "inspect", "envkit/checked:latest"],
                            capture_output=True)
    assert latest.returncode != 0  # :latest never names an image that failed its checks
    skipped = envkit("build", "--recipe", "./checked.yaml", "--no-verify", cwd=tmp_path)
    assert skipped.returncode == 0 and "verify" not in skipped.stdout, show(skipped)


@pytest.mark.docker
def test_target_docker_without_an_engine_says_so(tmp_path: Path) -> None:
    done = envkit("build", "--recipe", "python-venv", "--target", "docker", cwd=tmp_path,
                  env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "no Docker engine answers at unix://" in done.stderr and "--target host" in done.stderr


# --- host ---------------------------------------------------------------------------------


@pytest.mark.network
def test_host_target_provisions_and_verifies(tmp_path: Path) -> None:
    small_recipe(tmp_path)
    done = envkit("build", "--recipe", "./small.yaml", "--target", "host",
                  "--ca-bundle", HOST_CA, cwd=tmp_path)
    assert done.returncode == 0, show(done)
    env = tmp_path / ".envkit/envs/small"
    assert f"provisioning small on this host into {env}" in done.stdout
    assert "all 4 checks passed" in done.stdout  # with the pip steps' lock, made here
    assert (env / "venv/bin/python").exists() and (env / "install.log").exists()
    manifest = json.loads((env / "envkit.json").read_text())
    assert manifest["recipe"] == "small" and manifest["params"]["prefix"] == str(env)

    verify = envkit("verify", "--recipe", "./small.yaml", "--env", str(env), cwd=tmp_path)
    assert verify.returncode == 0 and "all 3 checks passed" in verify.stdout, show(verify)
    # (verify alone holds it to the recipe's lock: small.yaml has none, so three checks)

    (env / "venv/bin/python").unlink()  # break it: verify must notice
    broken = envkit("verify", "--recipe", "./small.yaml", "--env", str(env), cwd=tmp_path)
    assert broken.returncode == 1 and "FAIL" in broken.stdout, show(broken)


@pytest.mark.network
def test_no_engine_falls_back_to_the_host(tmp_path: Path) -> None:
    small_recipe(tmp_path)
    done = envkit("build", "--recipe", "./small.yaml", "--ca-bundle", HOST_CA, cwd=tmp_path,
                  env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert done.returncode == 0, show(done)
    first = done.stdout.splitlines()[0]
    assert first.startswith("envkit: no Docker engine answers at unix://")
    assert first.endswith("provisioning on this host instead (--target docker insists on an "
                          "engine)")
    assert "all 4 checks passed" in done.stdout


@pytest.mark.network
def test_host_apt_steps_only_check_without_allow_system(tmp_path: Path) -> None:
    small_recipe(tmp_path, extra_steps="""\
          - apt: [bash, envkit-no-such-package]
        """)
    done = envkit("run", "--recipe", "./small.yaml", "--ca-bundle", HOST_CA, cwd=tmp_path)
    assert done.returncode == 1, show(done)
    assert "missing Debian packages: envkit-no-such-package" in done.stdout
    assert "small: the script failed (exit 1) at step 4/4" in done.stderr, done.stderr
    assert not (tmp_path / ".envkit/envs/small/envkit.json").exists()


# --- the catalog: recipes that need only Debian packages and PyPI --------------------------

CATALOG_BUILDS = ["faiss-cpu", "paddle-full", "transformers", "jupyter", "postgres-client",
                  "gtest-src"]


def _record(figures: dict[str, object]) -> None:
    """Build time and image size, for the closing note: one JSON line per build."""
    if path := os.environ.get("ENVKIT_E2E_REPORT"):
        with open(path, "a") as fh:
            fh.write(json.dumps(figures) + "\n")


@pytest.mark.docker
@pytest.mark.parametrize("name", CATALOG_BUILDS)
def test_catalog_recipe_builds_and_verifies(name: str, base: str, tmp_path: Path) -> None:
    import time

    started = time.perf_counter()
    # no --base: the recipe's debian:bookworm-slim is the base `invoke base` made, so the
    # build installs the catalog's shipped lock
    done = envkit("build", "--recipe", name, "--ca-bundle", HOST_CA, cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, show(done)
    assert re.search(r"all \d+ checks passed", done.stdout), show(done)
    assert f"envkit: installing the locked set of {REPO}/recipes/{name}.lock" in done.stdout
    assert "PASS  installed packages match the lock" in done.stdout
    assert f"envkit: tagged envkit/{name}:latest" in done.stdout
    size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}",
                           f"envkit/{name}:latest"], capture_output=True, text=True, check=True)
    _record({"recipe": name, "seconds": round(seconds, 1),
             "image_mb": round(int(size.stdout) / 1e6, 1)})


@pytest.mark.docker
def test_an_unreachable_mirror_falls_back_and_says_so(base: str, tmp_path: Path) -> None:
    """tuna, ustc and aliyun do not answer from this machine: the helper moves on to the
    next profile, per tool, and the build still works from upstream."""
    small_recipe(tmp_path)
    done = envkit("build", "--recipe", str(tmp_path / "small.yaml"), "--base", base,
                  "--ca-bundle", HOST_CA, "--mirror", "tuna", cwd=tmp_path)
    assert done.returncode == 0, show(done)
    log = (tmp_path / "build" / "small" / "build.log").read_text()
    assert ("[envkit] pip mirror https://pypi.tuna.tsinghua.edu.cn/simple does not answer; "
            "using https://pypi.org/simple") in log
    assert ("[envkit] pip mirror https://mirrors.ustc.edu.cn/pypi/simple "
            "does not answer either") in log
    assert ("[envkit] apt mirror http://mirrors.tuna.tsinghua.edu.cn does not answer; "
            "using the default") in log


# --- a source build in two stages ----------------------------------------------------------


@pytest.mark.docker
def test_a_source_build_ships_its_runtime_stage_without_the_toolchain(base: str,
                                                                      tmp_path: Path) -> None:
    """lapack-src builds in two stages: the image verifies (the locked runtime packages, the
    libraries, a program linked at build time runs) and holds no compiler. Its build stage,
    built from the same Dockerfile and cache, is the single-stage image it replaces."""
    import time

    from envkit import ca

    started = time.perf_counter()
    done = envkit("build", "--recipe", "lapack-src", "--ca-bundle", HOST_CA, cwd=tmp_path)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, show(done)
    assert re.search(r"all \d+ checks passed", done.stdout), show(done)
    assert "PASS  installed packages match the lock" in done.stdout
    image = "envkit/lapack-src:latest"
    probe = subprocess.run(["docker", "run", "--rm", image, "bash", "-c",
                            "for c in gcc cc gfortran cmake make; do command -v $c; done; "
                            "dpkg-query -W -f '${Package}\\n' | grep -E "
                            "'^(gcc(-[0-9]+)?|g\\+\\+(-[0-9]+)?|gfortran(-[0-9]+)?|cpp(-[0-9]+)?"
                            "|cmake|make|libc6-dev|libgfortran5)$'; true"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["libgfortran5"], probe.stdout  # no compiler, no headers
    # the build stage: envkit's own command again (the same Dockerfile, build args and
    # secret: every layer from the cache), stopped at the build stage and tagged apart
    context = tmp_path / "build" / "lapack-src"
    argv = (context / "build.log").read_text().splitlines()[0].removeprefix("$ ").split(" ")
    assert f"id={ca.SECRET_ID},src={HOST_CA}" in argv
    at = argv.index("-t")
    argv[at:at + 2] = ["-t", "envkit/lapack-src:build", "--target", "build"]
    stage = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path,
                           env={**os.environ, "DOCKER_BUILDKIT": "1"}, timeout=1800)
    assert stage.returncode == 0, stage.stderr[-3000:]
    runs = set(re.findall(r"^#(\d+) \[build +\d+/\d+\] RUN ", stage.stderr, re.M))
    cached = set(re.findall(r"^#(\d+) CACHED$", stage.stderr, re.M))
    assert runs and runs <= cached, stage.stderr[-3000:]  # nothing compiled again
    sizes = {}
    for tag in ("latest", "build"):
        got = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}",
                              f"envkit/lapack-src:{tag}"], capture_output=True, text=True,
                             check=True)
        sizes[tag] = int(got.stdout)
    base_size = int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", base],
                                   capture_output=True, text=True, check=True).stdout)
    assert sizes["latest"] < sizes["build"] / 2, sizes
    _record({"recipe": "lapack-src", "seconds": round(seconds, 1),
             "image_mb": round(sizes["latest"] / 1e6, 1),
             "build_stage_mb": round(sizes["build"] / 1e6, 1),
             "base_mb": round(base_size / 1e6, 1)})
