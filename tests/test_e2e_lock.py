"""End to end: locks on a real engine, against a package index and an apt repository
served from this machine (build containers reach them on the bridge network).

``-m docker``: the base comes from conftest's fixture (made by `invoke base`); the apt
repository is a flat one, made with dpkg-deb and dpkg-scanpackages, that a base image of
the test's own lists as a source.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FlakyServer, LocalIndex, bridge_gateway, envkit, show
from envkit.plan import lock as lockmod
from test_e2e import HOST_CA

pytestmark = pytest.mark.docker

APT_BASE = "envkit-test/aptbase:1"


class AptRepo:
    """A flat apt repository (``deb [trusted=yes] URL ./``) of tiny packages."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.debs: dict[tuple[str, str], Path] = {}

    def publish(self, name: str, version: str, depends: str = "") -> None:
        work = self.root.parent / f"build-{name}-{version}"
        (work / "DEBIAN").mkdir(parents=True)
        control = (f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                   "Maintainer: envkit tests <t@example.com>\nDescription: a test package\n")
        if depends:
            control += f"Depends: {depends}\n"
        (work / "DEBIAN" / "control").write_text(control)
        deb = self.root / f"{name}_{version}_all.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(work), str(deb)],
                       check=True, capture_output=True)
        shutil.rmtree(work)
        self.debs[(name, version)] = deb
        self._index()

    def remove(self, name: str, version: str) -> None:
        self.debs.pop((name, version)).unlink()
        self._index()

    def _index(self) -> None:
        done = subprocess.run(["dpkg-scanpackages", "-m", "."], cwd=self.root,
                              capture_output=True, text=True, check=True)
        (self.root / "Packages").write_text(done.stdout)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FlakyServer, str]]:
    root = tmp_path / "www"
    root.mkdir()
    server = FlakyServer(root, host="0.0.0.0")
    yield server, f"http://{bridge_gateway()}:{server.port}"
    server.close()


def apt_base(client: Any, base: str, url: str) -> str:
    """The test base: conftest's, with the served apt repository among its sources."""
    dockerfile = (f"FROM {base}\nRUN echo 'deb [trusted=yes] {url}/apt ./' > "
                  "/etc/apt/sources.list.d/envkit-test.list\n")
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=APT_BASE, rm=True)
    return APT_BASE


@pytest.fixture
def world(client: Any, base: str, served: tuple[FlakyServer, str],
          tmp_path: Path) -> dict[str, Any]:
    """A recipe with an apt step and a pip step whose dependencies come from the served
    repository and index, locked while only version 1.0 of each dependency exists."""
    server, url = served
    index = LocalIndex(server.root / "pypi")
    index.publish("leaf", "1.0")
    index.publish("top", "1.0", "leaf>=1.0")
    repo = AptRepo(server.root / "apt")
    repo.publish("envkit-dep", "1.0")
    repo.publish("envkit-top", "1.0", "envkit-dep (>= 1.0)")
    apt_base(client, base, url)
    recipe = tmp_path / "locked.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        name: locked
        description: a Debian and a Python package whose dependencies move on
        version: 1.0.0
        base: {APT_BASE}
        requires: [python-venv]
        steps:
          - name: a Debian package with a dependency
            apt: [envkit-top]
          - name: a Python package with a dependency
            pip: {{packages: ["top==1.0"], index: "{url}/pypi/simple"}}
        verify:
          - python_import: {{module: top, version: "==1.0"}}
        """))
    done = envkit("lock", "--recipe", "./locked.yaml", "--ca-bundle", HOST_CA, cwd=tmp_path)
    assert done.returncode == 0, show(done)
    assert re.search(r"locked \[python=3\.11\]: locked: 2 pip packages, \d+ Debian packages",
                     done.stdout), done.stdout
    lock = lockmod.load(tmp_path / "locked.lock")
    assert lock is not None
    return {"index": index, "repo": repo, "url": url, "tmp": tmp_path, "lock": lock}


def installed(tag: str) -> list[str]:
    """[envkit-dep's version, leaf's version] in the image."""
    done = subprocess.run(["docker", "run", "--rm", tag, "bash", "-c",
                           "dpkg-query -W -f '${Version}\\n' envkit-dep; "
                           "python -c 'import leaf; print(leaf.__version__)'"],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def rmi(*tags: str) -> None:
    subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True)


def test_a_lock_holds_dependencies_of_dependencies_that_moved_on(world: dict[str, Any]) -> None:
    """Locked while only 1.0 of each existed; after 1.1 is published, the locked build
    still installs 1.0 (neither is a top-level pin), the unlocked one gets 1.1; then Debian
    drops the locked version: the build fails in one line, or with the catalog's CI policy
    takes the newer one and says so."""
    tmp = world["tmp"]
    world["index"].publish("leaf", "1.1")
    world["repo"].publish("envkit-dep", "1.1")
    on, off, newer = (f"envkit-test/locked:{uuid.uuid4().hex[:8]}" for _ in range(3))
    try:
        done = envkit("build", "--recipe", "./locked.yaml", "--tag", on, "--ca-bundle", HOST_CA,
                      cwd=tmp)
        assert done.returncode == 0, show(done)
        assert "envkit: installing the locked set of locked.lock" in done.stdout
        assert "PASS  installed packages match the lock" in done.stdout
        assert installed(on) == ["1.0", "1.0"]

        done = envkit("build", "--recipe", "./locked.yaml", "--tag", off, "--no-lock",
                      "--ca-bundle", HOST_CA, cwd=tmp)
        assert done.returncode == 0, show(done)
        assert "--no-lock: building from the recipe alone" in done.stdout
        assert installed(off) == ["1.1", "1.1"]

        world["repo"].remove("envkit-dep", "1.0")  # a point release replaced it
        gone = envkit("build", "--recipe", "./locked.yaml", "--no-cache", "--tag", on,
                      "--ca-bundle", HOST_CA, cwd=tmp,
                      env={"ENVKIT_APT_VANISHED": "fail"})  # CI's own policy is newer
        assert gone.returncode == 1, show(gone)
        [line] = gone.stderr.splitlines()
        dep = next(p for s in world["lock"].entries[0].steps for p in s.apt
                   if p.name == "envkit-dep")
        assert "the build failed at step 3/4 locked: a Debian package with a dependency" in line
        assert f"envkit-dep 1.0 (locked.lock:{dep.line}): the archive has 1.1 now" in line
        assert ("[envkit] apt: envkit-dep 1.0 is locked, but the archive has 1.1: run invoke "
                "lock --recipe locked --upgrade-package envkit-dep, or lock with "
                "--apt-snapshot DATE") in gone.stdout

        ci = envkit("build", "--recipe", "./locked.yaml", "--no-cache", "--tag", newer,
                    "--ca-bundle", HOST_CA, cwd=tmp, env={"ENVKIT_APT_VANISHED": "newer"})
        assert ci.returncode == 0, show(ci)
        assert "ENVKIT_APT_VANISHED=newer" in ci.stdout
        assert re.search(r"PASS  installed packages match the lock .*apt envkit-dep 1\.1 "
                         r"instead of the locked 1\.0", ci.stdout), ci.stdout
        assert installed(newer) == ["1.1", "1.0"]
    finally:
        rmi(on, off, newer)


def test_verify_names_each_package_that_drifted_from_the_lock(world: dict[str, Any],
                                                              client: Any) -> None:
    tmp, url = world["tmp"], world["url"]
    world["index"].publish("leaf", "1.1")
    world["index"].publish("other", "1.0")
    tag = f"envkit-test/locked:{uuid.uuid4().hex[:8]}"
    drift = f"envkit-test/drift:{uuid.uuid4().hex[:8]}"
    try:
        done = envkit("build", "--recipe", "./locked.yaml", "--tag", tag, "--ca-bundle", HOST_CA,
                      cwd=tmp)
        assert done.returncode == 0, show(done)
        # by hand, after the build: another version, one added, one removed
        container = client.containers.run(tag, [
            "bash", "-c", f"python -m pip install -q --index-url {url}/pypi/simple "
            f"--trusted-host {url.split('//')[1].split(':')[0]} leaf==1.1 "
            "other==1.0 && python -m pip uninstall -q -y top && apt-get purge -y -q "
            "envkit-top"], detach=True)
        assert container.wait()["StatusCode"] == 0, container.logs()
        repo, name = drift.split(":")
        container.commit(repo, name)
        container.remove()
        done = envkit("verify", "--recipe", "./locked.yaml", "--image", drift, cwd=tmp)
        assert done.returncode == 1, show(done)
        row = next(ln for ln in done.stdout.splitlines() if "match the lock" in ln)
        steps = world["lock"].entries[0].steps
        leaf = next(p for s in steps for p in s.pip if p.name == "leaf")
        top = next(p for s in steps for p in s.pip if p.name == "top")
        etop = next(p for s in steps for p in s.apt if p.name == "envkit-top")
        assert row.lstrip().startswith("FAIL")
        for text in (f"leaf is 1.1, locked 1.0 (locked.lock:{leaf.line})",
                     f"missing top 1.0 (locked.lock:{top.line})",
                     "added other 1.0 (not in the lock)",
                     f"apt: missing envkit-top 1.0 (locked.lock:{etop.line})"):
            assert text in row, row
        assert "verification failed" in done.stderr
    finally:
        rmi(tag, drift)


def test_a_tampered_hash_fails_the_build_at_its_step(world: dict[str, Any]) -> None:
    tmp = world["tmp"]
    leaf = next(p for s in world["lock"].entries[0].steps for p in s.pip if p.name == "leaf")
    file = tmp / "locked.lock"
    file.write_text(file.read_text().replace(leaf.dists[0].sha256, "0" * 64))
    tag = f"envkit-test/locked:{uuid.uuid4().hex[:8]}"
    try:
        done = envkit("build", "--recipe", "./locked.yaml", "--tag", tag, "--ca-bundle",
                      HOST_CA, cwd=tmp)
        assert done.returncode == 1, show(done)
        [line] = done.stderr.splitlines()
        assert "the build failed at step 4/4 locked: a Python package with a dependency" in line
        assert f"leaf 1.0 (locked.lock:{leaf.line}): its file's sha256 differs from the " \
               "lock" in line
    finally:
        rmi(tag)


def test_two_no_cache_builds_of_faiss_cpu_install_the_same_set(base: str,
                                                               tmp_path: Path) -> None:
    """Same lock, same installed set: pip freeze and dpkg-query -W of two builds that share
    no layer are identical, and what the lock says."""
    tags = [f"envkit-test/faiss:{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        listings = []
        for tag in tags:
            done = envkit("build", "--recipe", "faiss-cpu", "--no-cache", "--tag", tag,
                          "--ca-bundle", HOST_CA, cwd=tmp_path)
            assert done.returncode == 0, show(done)
            listings.append(subprocess.run(
                ["docker", "run", "--rm", tag, "cat", "/usr/local/share/envkit/installed.txt"],
                capture_output=True, text=True, check=True).stdout)
        assert listings[0] == listings[1]
        lines = listings[0].splitlines()
        assert "faiss-cpu==1.15.1" in lines and "numpy==2.4.6" in lines
        assert "# dpkg" in lines and any(ln.startswith("libgomp1 ") for ln in lines)
        manifest = subprocess.run(["docker", "run", "--rm", tags[0], "cat",
                                   "/usr/local/share/envkit/manifest.json"],
                                  capture_output=True, text=True, check=True).stdout
        assert '"file": "faiss-cpu.lock"' in manifest and '"state": "locked"' in manifest
    finally:
        rmi(*tags)
