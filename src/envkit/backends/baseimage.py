"""Base images without a registry: debootstrap a Debian root, ``docker import`` it.

For air-gapped machines, networks where Docker Hub is blocked, and for our
own tests. ``settle`` finds a recipe's base in an engine's store (``ensure``: Docker's): there,
else pulled, else (for ``debian:<suite>[-slim]``) the base ``invoke base`` makes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from envkit.backends import engine, logged
from envkit.diagnostics import error

DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
STABLE = ("bullseye", "bookworm", "trixie")  # suites with -updates and -security
DEBIAN = re.compile(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-slim)?")
_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def default_tag(suite: str) -> str:
    return f"envkit/base:{suite}"


def hub_path(ref: str) -> str:
    """'debian:bookworm' -> 'library/debian:bookworm'; '' for a ref on another registry."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        if first not in ("docker.io", "index.docker.io"):
            return ""
        ref = rest
    return ref if "/" in ref else f"library/{ref}"


@dataclass
class Store:
    """What settling a base asks of an engine's image store (Docker's, podman's)."""

    where: str  # 'on this engine', "in podman's store"
    has: Callable[[str], bool]
    pull: Callable[[str], str]  # '' once pulled, else why not
    tag: Callable[[str, str], None]  # (an image here, the ref to give it)
    make: Callable[[str, str], None]  # (suite, tag): debootstrap and import
    copy: Callable[[str], bool] = lambda ref: False  # from another store on this machine
    load: str = "docker load it"
    target: str = ""  # ' --target podman': how invoke base makes one for this store


def settle(store: Store, ref: str, out: TextIO, registries: list[str] | None = None) -> str:
    """The base to build on: ``ref`` itself when the store has it (or copies it from
    another store here) or can pull it (through the mirror profile's registries first),
    else the envkit base of the same Debian suite (made here if missing and possible)."""
    if store.has(ref) or store.copy(ref):
        return ref
    path = hub_path(ref)
    for registry in (registries or []) if path else []:
        mirrored = f"{registry}/{path}"
        why = store.pull(mirrored)
        if why:
            print(f"envkit: registry mirror {registry} cannot give {ref} ({why})", file=out)
            continue
        store.tag(mirrored, ref)
        print(f"envkit: pulled {ref} through {registry}", file=out)
        return ref
    why = store.pull(ref)
    if not why:
        print(f"envkit: pulled {ref}", file=out)
        return ref
    m = DEBIAN.fullmatch(ref)
    if not m:
        raise error(f"base image {ref} is not {store.where} and cannot be pulled: {why}",
                    path="base", hint=f"{store.load}, or pass --base IMAGE (invoke base"
                    f"{store.target} makes a Debian base without a registry)")
    suite, local = m[1], default_tag(m[1])
    if store.has(local) or store.copy(local):
        print(f"envkit: {ref} cannot be pulled ({why}); using {local} (made by invoke base)",
              file=out)
        return local
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        raise error(f"base image {ref} is not {store.where} and cannot be pulled: {why}",
                    path="base", hint=f"make one without a registry: invoke base{store.target} "
                    f"--suite {suite} (needs root and debootstrap), or pass --base IMAGE")
    print(f"envkit: {ref} cannot be pulled ({why}); making {local} with debootstrap "
          f"(invoke base{store.target}; about a minute)", file=out, flush=True)
    store.make(suite, local)
    return local


def ensure(client: Any, ref: str, out: TextIO, registries: list[str] | None = None) -> str:
    """:func:`settle` on the Docker engine's store."""
    def tag(image: str, to: str) -> None:
        repo, name = engine.split_ref(to)
        client.images.get(image).tag(repo, name)

    return settle(Store("on this engine", lambda r: engine.image(client, r) is not None,
                        lambda r: engine.pull(client, r), tag,
                        lambda suite, local: make(client, suite, local, DEFAULT_MIRROR, out)),
                  ref, out, registries)


class Phases:
    """debootstrap's progress as one line per phase (retrieving, extracting, unpacking,
    configuring ...), with the time so far and the packages the last phase handled: it
    prints a line per package, and a minute of silence looks like a hang."""

    def __init__(self, out: TextIO):
        self.out, self.phase, self.count, self.start = out, "", 0, time.monotonic()

    def __call__(self, line: str) -> None:
        if not line.startswith("I: "):
            return
        words = line[3:].split()
        phase = words[0].rstrip(".").lower() if words else ""
        if phase == self.phase:
            self.count += 1
            return
        done = f" ({self.count} packages)" if self.count > 1 else ""
        self.phase, self.count = phase, 1
        elapsed = time.monotonic() - self.start
        print(f"envkit: debootstrap {elapsed:4.0f}s{done}: {line[3:].strip()[:100]}",
              file=self.out, flush=True)


def check_suite(suite: str) -> str:
    if not re.fullmatch(r"[a-z]+", suite):
        raise error(f"'{suite}' is not a Debian suite name", path="--suite",
                    hint="e.g. bookworm")
    return suite


def make(client: Any, suite: str, tag: str, mirror: str, out: TextIO) -> str:
    """debootstrap --variant=minbase, tidy, ``docker import``; returns the image id."""
    repo, version = engine.split_ref(tag)
    result: list[Any] = []

    def importer(tar: IO[bytes], changes: list[str]) -> None:
        result.append(client.api.import_image(src=tar, repository=repo, tag=version,
                                              changes=changes, stream_src=True))

    def discard() -> None:
        with contextlib.suppress(Exception):
            client.images.remove(tag, force=True)

    debootstrap(suite, mirror, out, importer, tag, discard)
    image = engine.image(client, tag)
    if image is None:
        raise error(f"docker import of {tag} failed: {str(result)[:200]}", path="base")
    return str(image.id)


def debootstrap(suite: str, mirror: str, out: TextIO,
                importer: Callable[[IO[bytes], list[str]], None], tag: str,
                discard: Callable[[], None] | None = None) -> None:
    """A minbase root of ``suite``, tidied, streamed as a tar to ``importer`` (with the
    image settings to apply) as image ``tag``; a truncated tar never becomes a base
    (``discard`` removes what the importer made of it)."""
    check_suite(suite)
    if os.geteuid() != 0:
        raise error("debootstrap needs root", path="base", hint="run as root (sudo invoke base)")
    if not shutil.which("debootstrap"):
        raise error("debootstrap is not installed", path="base",
                    hint="apt-get install debootstrap")
    with _scratch(out) as tmp:
        root, log = tmp / "rootfs", tmp / "debootstrap.log"
        # in a process group of its own: on Ctrl-C or SIGTERM its dpkg and chroot go too
        code, recent = logged.run(["debootstrap", "--variant=minbase", suite, str(root), mirror],
                                  log, Phases(out), env=os.environ)
        if code != 0:
            tail = " | ".join(line.strip() for line in recent[-3:])
            raise error(f"debootstrap {suite} failed (exit {code}): {tail}",
                        path="base", hint=f"is {mirror} reachable, and is '{suite}' a suite?")
        _tidy(root, suite, mirror)
        print(f"envkit: importing {tag}", file=out, flush=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "--one-file-system",
                                "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            assert tar.stdout is not None
            importer(tar.stdout, [f"ENV {_PATH}", 'CMD ["bash"]',
                                  f"LABEL io.envkit.base=debootstrap-{suite}"])
        finally:
            if tar.stdout:
                tar.stdout.close()
            code = tar.wait()
        if code != 0:  # a truncated root must not become a base
            if discard is not None:
                discard()
            raise error(f"tar of the debootstrap root failed (exit {code}); {tag} not made",
                        path="base")


@contextlib.contextmanager
def _scratch(out: TextIO) -> Iterator[Path]:
    """A folder for the root, removed afterwards. debootstrap mounts /proc (and more) in
    the root and leaves them mounted when it is stopped or fails: those are unmounted
    first, and while anything stays mounted below the folder (or the mount table cannot be
    read) it is left in place, never removed through a mount into the host's files."""
    # the real path: /proc/self/mounts names mounts by it, not through a symlinked /var/tmp
    tmp = Path(os.path.realpath(tempfile.mkdtemp(prefix="envkit-base-", dir="/var/tmp")))
    try:
        yield tmp
    finally:
        with logged.shielded():  # a second Ctrl-C must not leave it half done
            _clear_scratch(tmp, out)


def _clear_scratch(tmp: Path, out: TextIO) -> None:
    for point in sorted(_mounts_under(tmp) or [], key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True)
    stuck = _mounts_under(tmp)
    if stuck is None:
        why = "/proc/self/mounts cannot be read, so what is mounted in it is unknown"
    elif stuck:
        why = f"{', '.join(stuck)} would not unmount"
    else:
        done = subprocess.run(["rm", "-rf", "--one-file-system", str(tmp)],
                              capture_output=True, text=True)
        if done.returncode == 0:
            return
        why = f"rm failed: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}"
    print(f"envkit: left {tmp} in place: {why} (see to that, then remove it)", file=out,
          flush=True)


def _mounts_under(folder: Path) -> list[str] | None:
    """Every mount point at or below ``folder``; None if the mount table cannot be read."""
    try:
        text = Path("/proc/self/mounts").read_text()
    except OSError:
        return None
    # the kernel writes a space in a path as \040, a tab as \011 and so on
    points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split(" ")[1])
              for line in text.splitlines() if line.count(" ") >= 2]
    return [p for p in points if p == str(folder) or p.startswith(f"{folder}/")]


# As Debian's -slim images do: docs, manuals and translations never get installed.
_SLIM = """\
# envkit base: like Debian's -slim images, no docs, manuals or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""


def _tidy(root: Path, suite: str, mirror: str) -> None:
    """Sources with updates and security, slim dpkg settings, no caches or logs."""
    (root / "etc/dpkg/dpkg.cfg.d/envkit-slim").write_text(_SLIM)
    for folder in ("usr/share/info", "usr/share/man", "usr/share/groff", "usr/share/lintian",
                   "usr/share/linda", "usr/share/locale"):
        for path in (root / folder).glob("*"):
            _remove(path)
    for doc in (root / "usr/share/doc").glob("*"):
        for path in doc.iterdir() if doc.is_dir() and not doc.is_symlink() else ():
            if path.name != "copyright":
                _remove(path)
    lines = [f"deb {mirror} {suite} main"]
    if suite in STABLE:
        lines += [f"deb {mirror} {suite}-updates main", f"deb {SECURITY} {suite}-security main"]
    (root / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
    for pattern in ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                    "var/log/*.log", "var/cache/debconf/*-old", "var/log/apt/*"):
        for path in root.glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
