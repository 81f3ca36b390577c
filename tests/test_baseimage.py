"""Base images without an engine: debootstrap's root tidied and removed safely, and
how a recipe's base is found (present, pulled, a registry mirror, the envkit base, made)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pytest

from backend_fakes import FakeImages, fake_client, one_line
from envkit.backends import baseimage
from envkit.diagnostics import EnvkitError

pytestmark = pytest.mark.usefixtures("fresh_choice")


def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    for folder in ("etc/apt", "etc/dpkg/dpkg.cfg.d", "usr/share/doc/pkg", "usr/share/man/man1",
                   "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt",
                   "usr/share/locale/de/LC_MESSAGES", "usr/bin"):
        (root / folder).mkdir(parents=True)
    files = {
        "usr/share/doc/pkg/copyright": "c", "usr/share/doc/pkg/changelog.gz": "z",
        "usr/share/man/man1/x.1": "m", "var/lib/apt/lists/foo_Packages": "p",
        "var/lib/apt/lists/lock": "", "var/cache/apt/pkgcache.bin": "b",
        "var/cache/apt/srcpkgcache.bin": "b", "var/cache/apt/archives/a.deb": "d",
        "var/cache/apt/archives/lock": "", "var/log/dpkg.log": "l",
        "var/log/apt/history.log": "h", "usr/share/locale/de/LC_MESSAGES/x.mo": "mo",
        "usr/bin/bash": "#!", "etc/apt/sources.list": "deb old stuff\n",
    }
    for rel, text in files.items():
        (root / rel).write_text(text)
    (root / "usr/share/doc/linked").symlink_to("pkg")
    return root


def test_tidy_a_stable_suite(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    baseimage._tidy(root, "bookworm", "http://mirror.example/debian")
    kept = ["usr/share/doc/pkg/copyright", "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial", "var/cache/apt/archives/lock", "usr/bin/bash",
            "usr/share/man", "usr/share/locale", "usr/share/doc/linked"]
    gone = ["usr/share/doc/pkg/changelog.gz", "usr/share/man/man1",
            "var/lib/apt/lists/foo_Packages", "var/lib/apt/lists/lock",
            "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin",
            "var/cache/apt/archives/a.deb", "var/log/dpkg.log", "var/log/apt/history.log",
            "usr/share/locale/de"]
    assert [p for p in kept if not os.path.lexists(root / p)] == []
    assert [p for p in gone if os.path.lexists(root / p)] == []
    assert (root / "etc/apt/sources.list").read_text() == (
        "deb http://mirror.example/debian bookworm main\n"
        "deb http://mirror.example/debian bookworm-updates main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n")
    slim = (root / "etc/dpkg/dpkg.cfg.d/envkit-slim").read_text()
    assert "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n" in slim
    assert "path-exclude /usr/share/man/*\n" in slim


def test_tidy_sid_has_no_updates_or_security(tmp_path: Path) -> None:
    root = fake_root(tmp_path)
    baseimage._tidy(root, "sid", baseimage.DEFAULT_MIRROR)
    assert (root / "etc/apt/sources.list").read_text() == (
        "deb http://deb.debian.org/debian sid main\n")


def test_make_refuses_a_bad_suite_before_running_anything(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    def forbidden(*args: object, **kw: object) -> None:
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(baseimage.subprocess, "run", forbidden)
    monkeypatch.setattr(baseimage.subprocess, "Popen", forbidden)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    client = fake_client(FakeImages())
    with pytest.raises(EnvkitError) as info:
        baseimage.make(client, "Bookworm; rm", "envkit/base:x", baseimage.DEFAULT_MIRROR,
                       io.StringIO())
    text = one_line(info.value)
    assert "--suite: 'Bookworm; rm' is not a Debian suite name" in text
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EnvkitError, match="debootstrap needs root"):
        baseimage.make(client, "bookworm", "envkit/base:x", baseimage.DEFAULT_MIRROR,
                       io.StringIO())


def scratch_in(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """baseimage's scratch folders go into ``folder`` (mkdtemp's other arguments kept)."""
    real = baseimage.tempfile.mkdtemp
    monkeypatch.setattr(baseimage.tempfile, "mkdtemp",
                        lambda **kw: real(**{**kw, "dir": folder}))


def bind(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    done = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
@pytest.mark.parametrize("umount_works", [True, False])
def test_the_scratch_root_is_removed_without_reaching_through_a_mount(
        umount_works: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As debootstrap leaves /proc mounted in its root when it is stopped: here a folder of
    ours stands in for the host's /proc, and it must come out whole."""
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "precious").write_text("keep\n")
    scratch_in(monkeypatch, tmp_path)
    real_run = subprocess.run
    if not umount_works:
        monkeypatch.setattr(baseimage.subprocess, "run", lambda argv, **kw: real_run(
            ["false"] if argv[0] == "umount" else argv, **kw))
    out = io.StringIO()
    try:
        with baseimage._scratch(out) as tmp:
            bind(host_dir, tmp / "rootfs/proc")
            (tmp / "rootfs/etc").mkdir()
        assert (host_dir / "precious").read_text() == "keep\n"
        if umount_works:
            assert not tmp.exists() and out.getvalue() == ""
            assert str(tmp) not in Path("/proc/mounts").read_text()
        else:
            assert tmp.exists()
            assert out.getvalue() == (
                f"envkit: left {tmp} in place: {tmp}/rootfs/proc would not unmount (see to "
                "that, then remove it)\n")
    finally:
        for line in Path("/proc/mounts").read_text().splitlines():
            if str(tmp_path) in line.split(" ")[1]:
                real_run(["umount", "--lazy", line.split(" ")[1]], check=True)


def test_mount_points_decode_the_kernels_escapes(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\n"
                      "proc /var/tmp/envkit-base-x/a\\040b/proc proc rw 0 0\n"
                      "proc /var/tmp/envkit-base-xy/proc proc rw 0 0\n")
    real_path = baseimage.Path
    monkeypatch.setattr(baseimage, "Path", lambda p: real_path(
        mounts if p == "/proc/self/mounts" else p))
    assert baseimage._mounts_under(real_path("/var/tmp/envkit-base-x")) == [
        "/var/tmp/envkit-base-x/a b/proc"]
    mounts.unlink()
    assert baseimage._mounts_under(real_path("/var/tmp/envkit-base-x")) is None


def test_the_scratch_root_stays_when_the_mount_table_cannot_be_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseimage, "_mounts_under", lambda folder: None)
    scratch_in(monkeypatch, tmp_path)
    out = io.StringIO()
    with baseimage._scratch(out) as tmp:
        (tmp / "rootfs").mkdir()
    assert (tmp / "rootfs").is_dir()
    assert out.getvalue() == (
        f"envkit: left {tmp} in place: /proc/self/mounts cannot be read, so what is mounted "
        "in it is unknown (see to that, then remove it)\n")


def test_the_scratch_root_path_is_the_real_one(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/self/mounts names mounts by their real path, not through a symlinked /var/tmp."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    scratch_in(monkeypatch, tmp_path / "link")
    with baseimage._scratch(io.StringIO()) as tmp:
        assert tmp.parent == tmp_path / "real"
    assert list((tmp_path / "real").iterdir()) == []


@pytest.fixture
def no_make(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    def make(client: Any, suite: str, tag: str, mirror: str, out: Any) -> str:
        calls.append((suite, tag, mirror))
        return "sha256:made"

    monkeypatch.setattr(baseimage, "make", make)
    return calls


def test_ensure_present_image(no_make: list[tuple[Any, ...]]) -> None:
    images = FakeImages({"debian:bookworm-slim": SimpleNamespace(id="sha256:1")})
    out = io.StringIO()
    assert baseimage.ensure(fake_client(images), "debian:bookworm-slim", out) == (
        "debian:bookworm-slim")
    assert images.pulled == [] and out.getvalue() == "" and no_make == []


def test_ensure_pulls(no_make: list[tuple[Any, ...]]) -> None:
    images = FakeImages()
    out = io.StringIO()
    assert baseimage.ensure(fake_client(images), "debian:bookworm-slim", out) == (
        "debian:bookworm-slim")
    assert images.pulled == [("debian", "bookworm-slim")]
    assert out.getvalue() == "envkit: pulled debian:bookworm-slim\n"


def test_ensure_a_foreign_image_that_cannot_be_pulled(no_make: list[tuple[Any, ...]]) -> None:
    ref = "registry.example.com:5000/team/img:1"
    images = FakeImages(pull_error="pull access denied for team/img")
    with pytest.raises(EnvkitError) as info:
        baseimage.ensure(fake_client(images), ref, io.StringIO())
    text = one_line(info.value)
    assert f"base image {ref} is not on this engine and cannot be pulled: " in text
    assert "pull access denied for team/img" in text
    assert images.pulled == [("registry.example.com:5000/team/img", "1")]
    assert "envkit/base" not in " ".join(images.asked) and no_make == []


def test_ensure_falls_back_to_the_envkit_base(no_make: list[tuple[Any, ...]]) -> None:
    images = FakeImages({"envkit/base:bookworm": SimpleNamespace(id="sha256:b")},
                        pull_error="dial tcp: lookup registry-1.docker.io: no such host")
    out = io.StringIO()
    got = baseimage.ensure(fake_client(images), "docker.io/library/debian:bookworm-slim", out)
    assert got == "envkit/base:bookworm"
    assert out.getvalue() == (
        "envkit: docker.io/library/debian:bookworm-slim cannot be pulled (dial tcp: lookup "
        "registry-1.docker.io: no such host); using envkit/base:bookworm (made by invoke base)\n")
    assert no_make == []


def test_ensure_without_a_base_and_not_root(monkeypatch: pytest.MonkeyPatch,
                                            no_make: list[tuple[Any, ...]]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    images = FakeImages(pull_error="no such host")
    with pytest.raises(EnvkitError) as info:
        baseimage.ensure(fake_client(images), "debian:bookworm", io.StringIO())
    text = one_line(info.value)
    assert "base image debian:bookworm is not on this engine and cannot be pulled: no such host" \
        in text
    assert "invoke base --suite bookworm" in text
    assert no_make == []


def test_ensure_makes_the_base_as_root(monkeypatch: pytest.MonkeyPatch,
                                       no_make: list[tuple[Any, ...]]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(baseimage.shutil, "which", lambda name: f"/usr/sbin/{name}")
    out = io.StringIO()
    images = FakeImages(pull_error="no such host")
    assert baseimage.ensure(fake_client(images), "debian:trixie-slim", out) == (
        "envkit/base:trixie")
    assert no_make == [("trixie", "envkit/base:trixie", baseimage.DEFAULT_MIRROR)]
    assert "making envkit/base:trixie with debootstrap" in out.getvalue()


def test_ensure_pulls_through_the_registry_mirrors_first(no_make: list[tuple[Any, ...]]
                                                         ) -> None:
    class Tagging(FakeImages):
        def pull(self, repo: str, tag: str | None = None) -> Any:
            if repo.startswith("dead.example"):
                self.pulled.append((repo, tag or ""))
                raise docker.errors.APIError("500", explanation="no such host")
            image = super().pull(repo, tag)
            image.tag = lambda r, t: self.present.__setitem__(f"{r}:{t}", image)
            return image

    images = Tagging()
    out = io.StringIO()
    got = baseimage.ensure(fake_client(images), "debian:bookworm-slim", out,
                           ["dead.example", "docker.m.daocloud.io"])
    assert got == "debian:bookworm-slim" and "debian:bookworm-slim" in images.present
    assert images.pulled == [("dead.example/library/debian", "bookworm-slim"),
                             ("docker.m.daocloud.io/library/debian", "bookworm-slim")]
    assert "registry mirror dead.example cannot give debian:bookworm-slim (no such host)" in (
        out.getvalue())
    assert "pulled debian:bookworm-slim through docker.m.daocloud.io" in out.getvalue()


@pytest.mark.parametrize("ref, path", [
    ("debian:bookworm", "library/debian:bookworm"),
    ("nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04", "nvidia/cuda:12.4.1-cudnn-devel-ubuntu22.04"),
    ("docker.io/library/ubuntu:22.04", "library/ubuntu:22.04"),
    ("nvcr.io/nvidia/pytorch:24.01", ""),
    ("localhost:5000/x:1", ""),
])
def test_only_docker_hub_refs_go_through_a_registry_mirror(ref: str, path: str) -> None:
    assert baseimage.hub_path(ref) == path


def test_debootstrap_progress_is_one_line_a_phase() -> None:
    from envkit.backends import baseimage

    out = io.StringIO()
    phases = baseimage.Phases(out)
    for line in ["I: Retrieving InRelease", "I: Checking Release signature",
                 "I: Retrieving libc6 2.36-9", "I: Retrieving dpkg 1.21", "W: a warning",
                 "I: Extracting libc6...", "I: Extracting dpkg...", "I: Extracting bash...",
                 "I: Base system installed successfully."]:
        phases(line)
    lines = out.getvalue().splitlines()
    assert [line.split(": ", 2)[2] for line in lines] == [
        "Retrieving InRelease", "Checking Release signature", "Retrieving libc6 2.36-9",
        "Extracting libc6...", "Base system installed successfully."]
    assert "(2 packages)" in lines[3] and "(3 packages)" in lines[4]
    assert all(line.startswith("envkit: debootstrap ") for line in lines)


def test_a_ref_of_another_registry_is_pulled_from_it_not_a_mirror() -> None:
    pulled: list[str] = []
    store = baseimage.Store("on this engine", lambda ref: False,
                            lambda ref: pulled.append(ref) or "", lambda a, b: None,
                            lambda suite, tag: None)
    out = io.StringIO()
    assert baseimage.settle(store, "nvcr.io/nvidia/pytorch:24.01", out,
                            ["docker.m.daocloud.io"]) == "nvcr.io/nvidia/pytorch:24.01"
    assert pulled == ["nvcr.io/nvidia/pytorch:24.01"]


def test_a_base_another_store_has_is_copied_before_any_pull() -> None:
    """podman's case: the Docker engine's store is asked before a registry."""
    copied: list[str] = []
    store = baseimage.Store("in podman's store", lambda ref: False,
                            lambda ref: pytest.fail(f"pulled {ref}"), lambda a, b: None,
                            lambda suite, tag: None, copy=lambda ref: copied.append(ref) or True)
    assert baseimage.settle(store, "debian:bookworm-slim", io.StringIO()) == "debian:bookworm-slim"
    assert copied == ["debian:bookworm-slim"]
