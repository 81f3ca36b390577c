"""Air-gapped hand-over: ``invoke export`` writes a folder, ``invoke build --offline`` builds
from it on a machine with no network.

The folder (``export.json`` says what it holds and each file's sha256)::

    image.tar   the built image (docker save: `docker load` or `podman load` reads it)
    base.tar    the image it was built FROM, for a rebuild there
    wheels/     every file the lock names for the pip steps, and the pinned uv's wheel:
                hash-checked, a --find-links folder
    apt/        every .deb the lock names, and their Packages index: a flat apt repository
    files/      each download step's file, named by the sha256 the recipe gives it
    README.txt  the commands on the other side

An offline build checks the folder against the recipe's lock (the same entry, every file's
sha256), loads the base when the engine lacks it, and builds with no network at all: the
folder is a bind mount of the build context on each RUN (in no layer), and the helpers point
pip, uv and apt at it alone (and download steps, by sha256). What neither a lock nor a
recipe pins is refused before anything is fetched: git clones, a uv-managed Python, a
project built from its folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import html.parser
import http.client
import json
import os
import re
import shlex
import shutil
import ssl
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envkit import __version__, paths, proxy
from envkit.backends import engine
from envkit.diagnostics import EnvkitError, error
from envkit.plan import Plan
from envkit.plan import lock as lockmod
from envkit.plan.aptlock import Containers

FORMAT = 1
MANIFEST = "export.json"
TARGET = "/run/envkit/offline"  # where an offline build's RUNs see the folder
ONLINE_KINDS = {"git": "clones a repository", "uv_python": "downloads a CPython build"}
TIMEOUT = 120
BASE_REPO = "envkit-export/base"  # the base's name in base.tar (and in the engine)
_DEB = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~%_-]*\.deb")
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*\.(?:whl|tar\.gz|zip|tar\.bz2)")


# every file an export writes, by the name it gives it (export.json names no other)
_EXPORTED = re.compile(r"image\.tar|base\.tar|apt/Packages|apt/" + _DEB.pattern
                       + r"|wheels/" + _FILE.pattern + r"|files/[0-9a-f]{64}")


# --- what can be exported --------------------------------------------------------------


def refusals(plan: Plan) -> list[str]:
    """Why each step an offline build could not run needs the network, in order."""
    out = []
    for ps in plan.steps:
        what = ONLINE_KINDS.get(ps.kind)
        if what is None and ps.kind == "pip" and getattr(ps.step, "project_input", None):
            what = "builds a project, whose build backend the lock does not pin"
        if what:
            out.append(f"step {ps.number} ({ps.recipe}: {ps.title}) {what}")
    return out


def refuse(plan: Plan) -> None:
    if problems := refusals(plan):
        raise error(f"{plan.name} cannot be built offline: " + "; ".join(problems),
                    path="--recipe", hint="apt and pip steps install from a lock, download "
                    "steps by their sha256; nothing else is fetched offline")


def locked_entry(plan: Plan, recipe: str) -> lockmod.Entry:
    """The saved lock entry the plan installs; an export (and an offline build) needs one."""
    match = plan.lock
    if match is None or match.state == "none":
        raise error(f"{plan.name} has no apt or pip step: there is nothing to export but "
                    "the image", path="--recipe", hint=f"docker save envkit/{plan.name}:latest")
    if match.state != "locked" or match.entry is None:
        state = {"missing": "has no lock entry for these params",
                 "unlocked": "could not be locked", "made": "has no saved lock"}
        raise error(f"{plan.name} {state.get(match.state, match.state)}: an air-gapped "
                    "hand-over installs exactly a saved lock", path="--recipe",
                    hint=f"invoke lock --recipe {recipe}"
                    + "".join(f" --set {k}={v}" for k, v in sorted(plan.params.items())))
    return match.entry


def image_id(value: str) -> str:
    """An image id as docker ('sha256:HEX') and podman ('HEX') give it, compared as HEX."""
    return value.removeprefix("sha256:")


def _mask(url: str) -> str:
    """A URL as a message may show it: no ``user:password@``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


# --- the index: files by name ----------------------------------------------------------


@dataclass(frozen=True)
class IndexFile:
    name: str
    url: str
    sha256: str


class _Links(html.parser.HTMLParser):
    """A PEP 503 page's anchors: (href, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href, self._text = dict(attrs).get("href") or "", ""

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, self._text.strip()))
            self._href = None


def parse_index(page_url: str, body: bytes, content_type: str) -> dict[str, IndexFile]:
    """A project page of a simple index (PEP 691 JSON or PEP 503 HTML): file name -> file."""
    out: dict[str, IndexFile] = {}
    if "json" in content_type:
        for item in json.loads(body).get("files", []):
            url = urllib.parse.urljoin(page_url, item["url"])
            out[item["filename"]] = IndexFile(item["filename"], url,
                                              (item.get("hashes") or {}).get("sha256", ""))
        return out
    links = _Links()
    links.feed(body.decode("utf-8", "replace"))
    for href, text in links.links:
        url = urllib.parse.urljoin(page_url, href)
        path, _, fragment = url.partition("#")
        name = text or urllib.parse.unquote(path.rsplit("/", 1)[-1])
        sha = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else ""
        out[name] = IndexFile(name, path, sha)
    return out


class Fetcher:
    """HTTP(S) with the CA bundle given (else the system's), your proxies, and retries."""

    def __init__(self, ca_bundle: Path | None, tries: int = 3):
        context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context))
        self.tries = tries
        self.pages: dict[str, dict[str, IndexFile]] = {}

    def _fetch(self, url: str, accept: str, read: Any) -> Any:
        """``read(response)`` of ``url``, the whole exchange retried on a network error
        (a reset mid-body too); an answer that will not change (403, 404, 410) is not."""
        request = urllib.request.Request(url, headers={"Accept": accept,
                                                       "User-Agent": f"envkit/{__version__}"})
        last = ""
        for _ in range(self.tries):
            try:
                with self.opener.open(request, timeout=TIMEOUT) as response:
                    return read(response)
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if exc.code in (403, 404, 410):
                    break
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                last = str(getattr(exc, "reason", exc)) or type(exc).__name__
        raise error(f"cannot fetch {_mask(url)}: {last}", path="export",
                    hint="is the index reachable (and trusted: --ca-bundle FILE)?")

    def project(self, index: str, name: str) -> dict[str, IndexFile]:
        url = f"{index.rstrip('/')}/{name}/"
        if url not in self.pages:
            accept = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"
            self.pages[url] = self._fetch(url, accept, lambda response: parse_index(
                response.geturl(), response.read(), response.headers.get("Content-Type", "")))
        return self.pages[url]

    def download(self, url: str, sha256: str, target: Path) -> None:
        """``url`` at ``target`` when its sha256 is ``sha256`` (else an error, nothing kept)."""
        part = target.with_name(target.name + ".part")

        def read(response: Any) -> str:
            digest = hashlib.sha256()
            with open(part, "wb") as fh:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    fh.write(chunk)
            return digest.hexdigest()

        try:
            got = self._fetch(url, "*/*", read)
            if got != sha256:
                raise error(f"{target.name} from {_mask(url)} has sha256 {got}, not {sha256} "
                            "as locked", path="export", hint="the index serves another file "
                            "under this name: lock again only if you trust the change")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)


# --- wheels ----------------------------------------------------------------------------


def _glibc(platform: str) -> tuple[str, tuple[int, int]] | None:
    """'x86_64-manylinux_2_36' -> ('x86_64', (2, 36))."""
    m = re.fullmatch(r"([a-z0-9_]+)-manylinux_(\d+)_(\d+)", platform)
    return (m[1], (int(m[2]), int(m[3]))) if m else None


LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def fits(filename: str, platform: str) -> bool:
    """Whether a wheel installs on the lock's platform (a pure one anywhere)."""
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    target = _glibc(platform)
    for tag in tags:
        if tag.platform == "any":
            return True
        if target is None:
            continue
        arch, glibc = target
        m = re.fullmatch(r"manylinux_(\d+)_(\d+)_(.+)", tag.platform)
        if m and m[3] == arch and (int(m[1]), int(m[2])) <= glibc:
            return True
        legacy, _, tag_arch = tag.platform.partition("_")
        if legacy in LEGACY and tag_arch == arch and LEGACY[legacy] <= glibc:
            return True
    return False


@dataclass
class Wanted:
    file: str
    sha256: str
    indexes: list[str]
    project: str
    why: str  # 'faiss-cpu 1.14.3 (step 4)'


def wheels_wanted(plan: Plan, entry: lockmod.Entry, default_index: str) -> list[Wanted]:
    """Every file the lock names for the plan's pip steps (each with its step's indexes),
    then the pinned uv's wheels for this platform, when a pip step installs with uv."""
    from envkit.render import UV_REQUIREMENT

    out: dict[str, Wanted] = {}
    for ps in plan.steps:
        locked = getattr(ps.step, "locked", None)
        if ps.kind != "pip" or locked is None:
            continue
        step = ps.step
        indexes = [getattr(step, "index", "") or default_index,
                   *getattr(step, "extra_index", []), *locked.carried]
        for package in locked.step.pip:
            for dist in package.dists:
                out.setdefault(dist.file, Wanted(dist.file, dist.sha256, indexes,
                                                 package.name, f"{package.pin} (step "
                                                 f"{ps.number})"))
    if any(rel == UV_REQUIREMENT for _, rel in plan.files):
        text = (paths.data_dir() / "uv.txt").read_text()
        version = lockmod.uv_version()
        hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", text))
        out[f"uv=={version}"] = Wanted("", " ".join(sorted(hashes)), [default_index], "uv",
                                       f"uv {version} (installs the pip steps)")
    return list(out.values())


def fetch_wheels(fetcher: Fetcher, wanted: list[Wanted], platform: str, folder: Path,
                 out: TextIO) -> list[str]:
    """Each wanted file into ``folder``, its sha256 checked; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for want in wanted:
        if not want.file:  # uv: every locked hash's wheel that installs on this platform
            hashes = set(want.sha256.split())
            files = fetcher.project(want.indexes[0], want.project)
            picks = [f for f in files.values() if f.sha256 in hashes and fits(f.name, platform)]
            if not picks:
                raise error(f"the index {want.indexes[0]} has no wheel of {want.why} for "
                            f"{platform} with the pinned hashes", path="export")
            for f in picks[:1]:
                fetcher.download(f.url, f.sha256, folder / f.name)
                names.append(f.name)
            continue
        found = None
        for index in want.indexes:
            found = fetcher.project(index, want.project).get(want.file)
            if found is not None:
                break
        if found is None or not _FILE.fullmatch(want.file):
            raise error(f"no index of {want.why} serves {want.file} any more",
                        path="export", hint="lock again (invoke lock --upgrade-package "
                        f"{want.project}) if that is what you want")
        target = folder / want.file
        if not target.exists():
            fetcher.download(found.url, want.sha256, target)
        names.append(want.file)
    print(f"envkit: export: {len(names)} Python files, each sha256 checked", file=out,
          flush=True)
    return names


def build_backends(fetcher: Fetcher, names: list[str], index: str, folder: Path,
                   out: TextIO) -> list[str]:
    """An sdist is built at install time, by a backend the lock does not pin: the newest
    setuptools and wheel go along (said, and named in export.json)."""
    sdists = [n for n in names if not n.endswith(".whl")]
    if not sdists:
        return []
    added = []
    for project in ("setuptools", "wheel"):
        releases = []
        for f in fetcher.project(index, project).values():
            if not (f.name.endswith("-py3-none-any.whl") and f.sha256):
                continue
            try:
                version = parse_wheel_filename(f.name)[1]
            except InvalidWheelFilename:
                continue
            if not version.is_prerelease:
                releases.append((version, f))
        best = max(releases, key=lambda vf: vf[0], default=(None, None))[1]
        if best is None:
            raise error(f"the index {index} has no wheel of {project}", path="export")
        fetcher.download(best.url, best.sha256, folder / best.name)
        added.append(best.name)
    are = "is an sdist" if len(sdists) == 1 else "are sdists"
    print(f"envkit: export: {', '.join(sdists)} {are}, built at install: "
          f"{', '.join(added)} go along (newest, not locked)", file=out, flush=True)
    return added


def fetch_downloads(fetcher: Fetcher, plan: Plan, folder: Path, out: TextIO) -> list[str]:
    """Each download step's file (from the first of its URLs that gives the recipe's sha256)
    into ``folder``, named by that sha256; returns the names."""
    names: list[str] = []
    for ps in plan.steps:
        if ps.kind != "download":
            continue
        step: Any = ps.step
        sha, urls = step.sha256, list(step.urls)
        target = folder / sha
        folder.mkdir(parents=True, exist_ok=True)
        why = []
        for url in urls:
            if target.exists():
                break
            try:
                fetcher.download(url, sha, target)
            except EnvkitError as exc:
                why.append(exc.diagnostics[0].message)
        if not target.exists():
            raise error(f"step {ps.number} ({ps.recipe}: {ps.title}): no URL gave the "
                        f"file: {'; '.join(why)}", path="export")
        names.append(sha)
    if names:
        print(f"envkit: export: {len(names)} downloaded files, each sha256 checked", file=out,
              flush=True)
    return names


# --- .debs -----------------------------------------------------------------------------

APT_SCRIPT = r"""
set -euo pipefail
. /usr/local/lib/envkit/helpers.sh
envkit_apt_sources
envkit_apt_get update -qq >&2
mkdir -p /envkit-export/apt
cd /envkit-export/apt
envkit_apt_get download "$@" >&2
# a flat repository's index: each package's control fields, then where and what it is
export LC_ALL=C
for deb in *.deb; do
  dpkg-deb -f "$deb"
  printf 'Filename: ./%s\nSize: %s\nSHA256: %s\n\n' "$deb" "$(stat -c %s "$deb")" \
    "$(sha256sum "$deb" | cut -d ' ' -f 1)"
done > Packages
"""
_MISSING = re.compile(r"E: (?:Version '[^']*' for '[^']*' was not found|Unable to locate "
                      r"package \S+|Can't find a source to download version[^\n]*)")


def apt_pins(entry: lockmod.Entry) -> list[str]:
    return sorted({p.pin for s in entry.steps if s.kind == "apt" for p in s.apt})


def fetch_debs(containers: Containers, image: str, plan: Plan, entry: lockmod.Entry,
               folder: Path, ca_bundle: Path | None, out: TextIO) -> list[str]:
    """The lock's .debs, downloaded by apt in a container of the base (the mirror, snapshot
    and CA a build uses), with their Packages index, into ``folder``."""
    pins = apt_pins(entry)
    folder.mkdir(parents=True, exist_ok=True)
    if not pins:
        (folder / "Packages").write_text("")
        return []
    files = {"/usr/local/lib/envkit/helpers.sh": (paths.data_dir() / "helpers.sh").read_bytes()}
    env = {**proxy.settings(os.environ), **dict(plan.mirror.env()),
           "ENVKIT_MIRRORS_PICKED": "", "BASH_ENV": "",
           "ENVKIT_APT_SNAPSHOT": entry.apt_snapshot}
    if ca_bundle:
        files["/run/secrets/envkit-ca"] = ca_bundle.read_bytes()
        env["ENVKIT_CA"] = "/run/secrets/envkit-ca"
    script = f"set -- {' '.join(shlex.quote(p) for p in pins)}\n{APT_SCRIPT}"
    with tempfile.TemporaryDirectory(prefix="envkit-debs-") as tmp:
        tar_path = Path(tmp) / "apt.tar"
        code, _, err = containers.run_script(image, script, files, env, 1800,
                                             collect=("/envkit-export/apt", tar_path))
        if code != 0:
            if m := _MISSING.search(err):
                raise error(f"apt in {image}: {m[0].removeprefix('E: ')}", path="export",
                            hint="the archive dropped a locked version: lock again "
                            "(--upgrade-package NAME), or lock with --apt-snapshot DATE")
            tail = " | ".join(line.strip() for line in err.strip().splitlines()[-3:])
            raise error(f"downloading the locked .debs in {image} failed (exit {code}): "
                        f"{tail or 'no output'}", path="export",
                        hint="is the apt mirror reachable from a container?")
        names = _unpack(tar_path, folder)
    debs = [n for n in names if n.endswith(".deb")]
    if len(debs) != len(pins):
        raise error(f"apt downloaded {len(debs)} .debs for {len(pins)} locked packages",
                    path="export")
    print(f"envkit: export: {len(debs)} Debian packages and their index", file=out, flush=True)
    return debs


def _unpack(tar_path: Path, folder: Path) -> list[str]:
    """The regular files of the collected ``apt/`` folder, and nothing else, into ``folder``."""
    names = []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            top, _, name = member.name.partition("/")
            if not member.isfile() or top != "apt" or not (
                    name == "Packages" or _DEB.fullmatch(name)):
                continue
            source = tar.extractfile(member)
            assert source is not None
            with open(folder / name, "wb") as fh:
                shutil.copyfileobj(source, fh)
            names.append(name)
    return sorted(names)


# --- the folder ------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


README = """\
An air-gapped hand-over of {recipe} ({params}), made by envkit {version}.

Run the image there:
    docker load -i image.tar          # or: podman load -i image.tar
    docker run --rm -it {tag}

Or build it again there, with no network, from this folder alone (envkit and its
catalog at the same lock):
    invoke build --recipe {recipe}{sets} --offline THIS_FOLDER

wheels/ is a pip --find-links folder, apt/ a flat apt repository
(deb [trusted=yes] file:/PATH/apt ./); export.json lists every file with its sha256.
"""


@contextlib.contextmanager
def staging(out_dir: Path) -> Iterator[Path]:
    """A folder beside ``out_dir`` that becomes it whole, or is removed: an earlier export
    there is replaced only once this one is complete; any other non-empty folder is refused."""
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file())):
        raise error(f"{out_dir} exists and is not an envkit export: not overwriting it",
                    path="--out", hint="name a new folder, or remove that one")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # a folder as any other the user makes, not mkdtemp's 0700
    try:
        yield tmp
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
            os.replace(out_dir, old / "x")
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write(backend: Any, plan: Plan, recipe: str, tag: str, out_dir: Path,
          ca_bundle: Path | None, out: TextIO) -> Path:
    """The hand-over of a built ``tag`` of ``plan`` into ``out_dir``."""
    entry = locked_entry(plan, recipe)
    refuse(plan)
    default_index = next((u for u in plan.mirror.candidates("pip") if u != "-"),
                         "https://pypi.org/simple")
    fetcher = Fetcher(ca_bundle)
    base_image = backend.image(plan.from_image)
    if base_image is None:
        raise error(f"the base {plan.from_image} is gone from the engine", path="export")
    with staging(out_dir) as tmp:
        wheels = fetch_wheels(fetcher, wheels_wanted(plan, entry, default_index),
                              entry.platform, tmp / "wheels", out)
        extra = build_backends(fetcher, wheels, default_index, tmp / "wheels", out)
        downloads = fetch_downloads(fetcher, plan, tmp / "files", out)
        debs = fetch_debs(backend, plan.from_image, plan, entry, tmp / "apt",
                          ca_bundle, out)
        # the base under a tag of its own: an archive keeps tags, never a digest reference
        # (a base the lock pins by digest would come back nameless)
        base_ref = f"{BASE_REPO}:{image_id(base_image.id)[:12]}"
        backend.tag(base_image, *base_ref.split(":"))
        print(f"envkit: export: saving {tag} and its base {plan.from_image} (as {base_ref})",
              file=out, flush=True)
        backend.save(tag, tmp / "image.tar")
        backend.save(base_ref, tmp / "base.tar")
        files = {rel: sha256_file(tmp / rel) for rel in
                 ["image.tar", "base.tar", "apt/Packages",
                  *(f"apt/{n}" for n in debs), *(f"files/{n}" for n in downloads),
                  *(f"wheels/{n}" for n in sorted({*wheels, *extra}))]}
        data = {"envkit-export": FORMAT, "envkit": __version__, "recipe": plan.name,
                "params": plan.params, "lock": entry.content_digest(),
                "python": entry.python, "platform": entry.platform, "suite": entry.suite,
                "image": {"tag": tag, "id": (backend.image(tag) or base_image).id},
                "base": {"ref": base_ref, "from": plan.from_image, "id": base_image.id},
                "build_backends": sorted(extra), "files": files}
        (tmp / MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        sets = "".join(f" --set {k}={v}" for k, v in sorted(plan.params.items()))
        (tmp / "README.txt").write_text(README.format(
            recipe=plan.name, params=", ".join(f"{k}={v}" for k, v in plan.params.items()),
            version=__version__, tag=tag, sets=sets))
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    more = f", {len(downloads)} downloads" if downloads else ""
    print(f"envkit: exported {plan.name} to {out_dir} ({engine.size_text(size)}: the image, "
          f"its base, {len(wheels) + len(extra)} Python files, {len(debs)} .debs{more})",
          file=out, flush=True)
    return out_dir


# --- an offline build ------------------------------------------------------------------


@dataclass
class Offline:
    folder: Path
    data: dict[str, Any]

    @classmethod
    def open(cls, folder: Path) -> Offline:
        manifest = folder / MANIFEST
        try:
            data = json.loads(manifest.read_text())
        except FileNotFoundError:
            raise error(f"{folder} is not an envkit export (no {MANIFEST})",
                        path="--offline", hint="invoke export --recipe NAME --out DIR "
                        "writes one") from None
        except (OSError, ValueError) as exc:
            raise error(f"cannot read {manifest}: {exc}", path="--offline") from None
        if not isinstance(data, dict) or data.get("envkit-export") != FORMAT:
            raise error(f"{manifest} is not an export this envkit reads (format "
                        f"{data.get('envkit-export') if isinstance(data, dict) else '?'}, "
                        f"expected {FORMAT})", path="--offline")
        base, files = data.get("base"), data.get("files")
        if not (isinstance(base, dict) and isinstance(base.get("ref"), str)
                and isinstance(base.get("id"), str) and isinstance(files, dict)
                and all(isinstance(v, str) for v in files.values())):
            raise error(f"{manifest} lacks its base (ref, id) or its files (name: sha256)",
                        path="--offline", hint="export again")
        for rel in files:
            if not (isinstance(rel, str) and _EXPORTED.fullmatch(rel)):
                raise error(f"{manifest} names a file no export writes: {str(rel)[:80]!r}",
                            path="--offline", hint="export again; never edit export.json")
        return cls(folder, data)

    def check(self, plan: Plan, recipe: str) -> None:
        """The export is of this recipe, these params and this lock, and every file is whole."""
        d = self.data
        if d.get("recipe") != plan.name or d.get("params") != plan.params:
            raise error(f"{self.folder} holds {d.get('recipe')} with params {d.get('params')}, "
                        f"not {plan.name} with {plan.params}", path="--offline",
                        hint="pass the recipe and --set values it was exported with")
        entry = locked_entry(plan, recipe)
        if d.get("lock") != entry.content_digest():
            raise error(f"{self.folder} was exported from another lock of {plan.name} "
                        f"({d.get('lock')}); the lock here is {entry.content_digest()}",
                        path="--offline", hint="export again from this lock, or build with "
                        "the lock the export was made from")
        refuse(plan)
        for rel, sha in sorted(d.get("files", {}).items()):
            if rel == "image.tar":
                continue  # not read by a build
            path = self.folder / rel
            if path.is_symlink():
                raise error(f"{path} is a symbolic link; an export holds its files",
                            path="--offline", hint="copy the folder with its files, not links")
            if not path.is_file():
                raise error(f"{path} is missing from the export", path="--offline",
                            hint="copy the whole folder, or export again")
            if sha256_file(path) != sha:
                raise error(f"{path} has another sha256 than the export recorded ({sha})",
                            path="--offline", hint="the copy is damaged or was changed: "
                            "copy it again, or export again")

    def ensure_base(self, backend: Any, out: TextIO) -> str:
        """The base the export was built FROM, loaded from base.tar when the engine lacks it."""
        ref, want = self.data["base"]["ref"], self.data["base"]["id"]
        have = backend.image(ref)
        if have is None:
            print(f"envkit: loading the base {ref} from {self.folder / 'base.tar'}", file=out,
                  flush=True)
            backend.load(self.folder / "base.tar")
            have = backend.image(ref)
        if have is None:
            raise error(f"{self.folder / 'base.tar'} did not give {ref}", path="--offline")
        if image_id(have.id) != image_id(want):
            raise error(f"the engine's {ref} is {image_id(have.id)[:12]}, not the export's "
                        f"base {image_id(want)[:12]}", path="--offline",
                        hint=f"remove it (docker rmi {ref}) and build again: base.tar is loaded")
        return ref

    def stage(self, context: Path) -> Path:
        """The wheels and the apt repository into the build context (hard links where the
        file system allows): files/offline, which each RUN mounts."""
        target = context / "files" / "offline"
        shutil.rmtree(target, ignore_errors=True)
        for sub in ("wheels", "apt", "files"):
            (target / sub).mkdir(parents=True, exist_ok=True)
        for rel in self.data.get("files", {}):
            if rel.startswith(("wheels/", "apt/", "files/")):
                source, dest = self.folder / rel, target / rel
                try:
                    os.link(source, dest)
                except OSError:
                    shutil.copyfile(source, dest)
        return target


def offline_error(what: str) -> EnvkitError:
    return error(f"--offline builds an image: {what}", path="--offline",
                 hint="start the Docker engine (or podman), or build without --offline")


def export(opts: Any, out_dir: Path | None, out: TextIO) -> Path:
    """``invoke export``: build the recipe at its saved lock (or find it built), then write
    the hand-over. Everything that would stop it is said before the build."""
    from envkit.cli import build
    from envkit.load.catalog import Catalog
    from envkit.plan import locking

    catalog = Catalog()
    recipe = catalog.find(opts.recipe)
    if opts.target == "host":
        raise error("export hands over an image: --target host builds none", path="--target",
                    hint="--target docker or podman")
    backend, refused = build.connect(opts.target, opts.docker, out)
    plan = build._plan(opts, catalog, locker=locking.Locker(catalog, recipe))
    refuse(plan)
    secret = [f"step {ps.number} ({ps.recipe}: {ps.title}) uses "
              + ", ".join(x.id for x in ps.step.secrets)
              for ps in plan.steps if ps.kind == "pip" and ps.step.secrets]
    if secret:  # a private index's login: the fetcher here sends none
        raise error(f"export fetches the locked wheels without the recipe's secrets: "
                    f"{'; '.join(secret)}", path="--recipe",
                    hint="export from a mirror that needs no login (--mirror NAME)")
    locked_entry(plan, opts.recipe)  # a recipe without a saved lock: said before the build
    if refused is not None:
        raise refused
    if backend is None:
        raise error("export needs an engine to build and save the image, and none is there",
                    path="--target", hint="start the Docker engine (or install podman)")
    tag = build.build_image(backend, opts, catalog, plan, out)
    return write(backend, plan, opts.recipe, tag, out_dir or Path("export") / plan.name,
                 opts.ca_bundle, out)
