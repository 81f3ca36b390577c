"""invoke export and build --offline: an air-gapped hand-over (the image, its base, the
locked wheels and .debs) and a build from it with the network cut.

Unit tests of envkit's own logic (index pages, platform fit, what cannot go offline, the
export's checks, the folder written whole) run by default; the end-to-end test exports a
recipe locked against a local index, then builds it again with no network, with the base
removed from the engine and BuildKit's cache mounts emptied, as on a machine that never saw
it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import FlakyServer, LocalIndex, bridge_gateway, envkit, run_cli, show
from envkit.cli import export
from envkit.diagnostics import EnvkitError
from envkit.load.catalog import Catalog
from envkit.plan import locking, make_plan
from envkit.render import render

HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
HELPERS = Path(__file__).resolve().parents[1] / "src" / "envkit" / "data" / "helpers.sh"


def locked_plan(name: str, settings: dict[str, str] | None = None) -> Any:
    catalog = Catalog()
    recipe = catalog.find(name)
    return make_plan(recipe, catalog, settings or {},
                     locker=locking.Locker(catalog, recipe))


def message(exc: pytest.ExceptionInfo[EnvkitError]) -> str:
    return "\n".join(f"{d.message} | {d.hint}" for d in exc.value.diagnostics)


# --- index pages --------------------------------------------------------------------------


def test_a_pep_691_page_gives_each_file_its_url_and_sha256() -> None:
    body = json.dumps({"files": [
        {"filename": "six-1.17.0-py2.py3-none-any.whl", "url": "../../f/six.whl",
         "hashes": {"sha256": "ab" * 32}},
        {"filename": "six-1.17.0.tar.gz", "url": "https://cdn.example/six.tar.gz",
         "hashes": {}}]}).encode()
    files = export.parse_index("https://idx.example/simple/six/", body,
                               "application/vnd.pypi.simple.v1+json")
    wheel = files["six-1.17.0-py2.py3-none-any.whl"]
    assert wheel.url == "https://idx.example/f/six.whl" and wheel.sha256 == "ab" * 32
    assert files["six-1.17.0.tar.gz"].sha256 == ""


def test_a_pep_503_page_gives_each_anchor_its_url_and_fragment_hash() -> None:
    body = (b'<html><body><a href="../../files/top-1.0-py3-none-any.whl#sha256=' + b"cd" * 32
            + b'" data-requires-python="&gt;=3.8">top-1.0-py3-none-any.whl</a>\n'
            b'<a href="https://h.example/p/top-0.9.tar.gz">top-0.9.tar.gz</a></body></html>')
    files = export.parse_index("http://10.0.0.1:8000/simple/top/", body, "text/html")
    assert files["top-1.0-py3-none-any.whl"].url == (
        "http://10.0.0.1:8000/files/top-1.0-py3-none-any.whl")
    assert files["top-1.0-py3-none-any.whl"].sha256 == "cd" * 32
    assert files["top-0.9.tar.gz"] == export.IndexFile(
        "top-0.9.tar.gz", "https://h.example/p/top-0.9.tar.gz", "")


@pytest.mark.parametrize(("filename", "fits"), [
    ("uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", True),
    ("uv-0.13.9-py3-none-manylinux_2_28_aarch64.whl", False),
    ("uv-0.13.9-py3-none-musllinux_1_1_x86_64.whl", False),
    ("x-1-cp311-cp311-manylinux_2_39_x86_64.whl", False),  # newer glibc than the base's
    ("x-1-cp311-cp311-manylinux1_x86_64.whl", True),
    ("x-1-py3-none-any.whl", True),
    ("x-1.tar.gz", False),
])
def test_a_wheel_fits_the_locks_platform_by_its_tags(filename: str, fits: bool) -> None:
    assert export.fits(filename, "x86_64-manylinux_2_36") is fits


# --- what can go offline, and what an export needs ----------------------------------------


def test_steps_that_fetch_what_no_lock_pins_are_refused_by_name() -> None:
    assert any("clones a repository" in p for p in export.refusals(locked_plan("puck-src")))
    assert export.refusals(locked_plan("gtest-src")) == []  # a download: pinned by sha256
    assert any("downloads a CPython build" in p
               for p in export.refusals(locked_plan("python-venv", {"python": "3.12"})))
    assert export.refusals(locked_plan("faiss-cpu")) == []


def test_an_export_without_a_saved_lock_says_how_to_make_one(tmp_path: Path) -> None:
    recipe = tmp_path / "nolock.yaml"
    recipe.write_text("name: nolock\ndescription: d\nversion: 1.0.0\n"
                      "base: debian:bookworm-slim\nrequires: [python-venv]\nsteps:\n"
                      "  - name: s\n    pip: {packages: [six==1.17.0]}\n")
    catalog = Catalog()
    found = catalog.find(str(recipe))
    plan = make_plan(found, catalog, locker=locking.Locker(catalog, found))
    with pytest.raises(EnvkitError) as exc:
        export.locked_entry(plan, str(recipe))
    assert "has no lock entry" in message(exc) and f"invoke lock --recipe {recipe}" in message(exc)


def test_the_wanted_files_are_the_locks_and_the_pinned_uv() -> None:
    plan = locked_plan("faiss-cpu")
    entry = export.locked_entry(plan, "faiss-cpu")
    wanted = export.wheels_wanted(plan, entry, "https://pypi.org/simple")
    locked = {d.file for s in entry.steps for p in s.pip for d in p.dists}
    assert {w.file for w in wanted if w.file} == locked
    uv = [w for w in wanted if w.project == "uv"]
    pinned = set(re.findall(r"sha256:([0-9a-f]{64})", (HELPERS.parent / "uv.txt").read_text()))
    assert len(uv) == 1 and set(uv[0].sha256.split()) == pinned  # every pinned hash
    assert export.apt_pins(entry) == sorted({p.pin for s in entry.steps for p in s.apt})


# --- fetching -----------------------------------------------------------------------------


@pytest.fixture
def index(tmp_path: Path) -> Any:
    root = tmp_path / "www"
    root.mkdir()
    server = FlakyServer(root)
    yield LocalIndex(root), server, f"http://127.0.0.1:{server.port}"
    server.close()


def test_wheels_come_from_the_steps_index_each_sha256_checked(index: Any, tmp_path: Path
                                                             ) -> None:
    local, _, url = index
    sha = local.publish("top", "1.0")
    want = export.Wanted("top-1.0-py3-none-any.whl", sha, [f"{url}/simple"], "top", "top==1.0")
    out = tmp_path / "w"
    names = export.fetch_wheels(export.Fetcher(None), [want], "x86_64-manylinux_2_36", out,
                                io.StringIO())
    data = (out / names[0]).read_bytes()
    assert names == ["top-1.0-py3-none-any.whl"] and hashlib.sha256(data).hexdigest() == sha


def test_a_file_that_changed_under_its_name_is_refused_and_not_kept(index: Any, tmp_path: Path
                                                                   ) -> None:
    local, _, url = index
    local.publish("top", "1.0")
    want = export.Wanted("top-1.0-py3-none-any.whl", "0" * 64, [f"{url}/simple"], "top",
                         "top==1.0 (step 3)")
    out = tmp_path / "w"
    with pytest.raises(EnvkitError) as exc:
        export.fetch_wheels(export.Fetcher(None), [want], "x86_64-manylinux_2_36", out,
                            io.StringIO())
    assert "not " + "0" * 64 + " as locked" in message(exc)
    assert list(out.iterdir()) == []  # no file, no .part


def test_a_file_the_index_no_longer_lists_names_the_package(index: Any, tmp_path: Path) -> None:
    local, _, url = index
    local.publish("top", "1.0")
    want = export.Wanted("top-0.9-py3-none-any.whl", "1" * 64, [f"{url}/simple"], "top",
                         "top==0.9 (step 3)")
    with pytest.raises(EnvkitError) as exc:
        export.fetch_wheels(export.Fetcher(None), [want], "x86_64-manylinux_2_36",
                            tmp_path / "w", io.StringIO())
    assert "no index of top==0.9 (step 3) serves top-0.9-py3-none-any.whl" in message(exc)
    assert "--upgrade-package top" in message(exc)


def test_an_index_that_does_not_answer_is_said_with_the_url_masked(tmp_path: Path) -> None:
    fetcher = export.Fetcher(None, tries=1)
    with pytest.raises(EnvkitError) as exc:
        fetcher.project("http://user:s3cret@127.0.0.1:9/simple", "top")
    assert "cannot fetch http://***@127.0.0.1:9/simple/top/" in message(exc)
    assert "s3cret" not in message(exc)


def test_a_download_comes_from_the_first_url_that_gives_its_sha256(index: Any, tmp_path: Path
                                                                   ) -> None:
    _, server, url = index
    (server.root / "tool.tar.gz").write_bytes(b"the tool")
    (server.root / "other.tar.gz").write_bytes(b"another file")
    sha = hashlib.sha256(b"the tool").hexdigest()
    recipe = tmp_path / "dl.yaml"
    recipe.write_text(textwrap.dedent(f"""\
        name: dl
        description: d
        version: 1.0.0
        base: debian:bookworm-slim
        steps:
          - name: the tool
            download:
              url: {url}/gone.tar.gz
              mirrors: [{url}/other.tar.gz, {url}/tool.tar.gz]
              sha256: {sha}
              dest: /opt/tool.tar.gz
        """))
    catalog = Catalog()
    plan = make_plan(catalog.find(str(recipe)), catalog)
    names = export.fetch_downloads(export.Fetcher(None, tries=1), plan, tmp_path / "files",
                                   io.StringIO())
    assert names == [sha] and (tmp_path / "files" / sha).read_bytes() == b"the tool"
    (server.root / "tool.tar.gz").write_bytes(b"changed")
    with pytest.raises(EnvkitError) as exc:
        export.fetch_downloads(export.Fetcher(None, tries=1), plan, tmp_path / "again",
                               io.StringIO())
    text = message(exc)
    assert "step 1 (dl: the tool): no URL gave the file" in text and "HTTP 404" in text
    assert text.count(f"not {sha} as locked") == 2 and list((tmp_path / "again").iterdir()) == []


# --- the folder, written whole -----------------------------------------------------------


def test_an_export_replaces_an_earlier_one_only_once_complete(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    with export.staging(out) as tmp:
        (tmp / export.MANIFEST).write_text("{}")
    assert (out / export.MANIFEST).read_text() == "{}"
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())
    with pytest.raises(RuntimeError), export.staging(out) as tmp:
        (tmp / export.MANIFEST).write_text('{"new": 1}')
        raise RuntimeError("interrupted")
    assert (out / export.MANIFEST).read_text() == "{}"  # the old one, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]  # no partial folder left


def test_a_folder_that_is_no_export_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(EnvkitError) as exc, export.staging(tmp_path / "mine"):
        pass
    assert "is not an envkit export: not overwriting it" in message(exc)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "x"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- an offline build's checks ------------------------------------------------------------


def fake_export(folder: Path, plan: Any, **changes: Any) -> Path:
    entry = export.locked_entry(plan, plan.name)
    (folder / "wheels").mkdir(parents=True)
    (folder / "wheels" / "a.whl").write_bytes(b"wheel")
    (folder / "base.tar").write_bytes(b"base")
    data = {"envkit-export": 1, "recipe": plan.name, "params": plan.params,
            "lock": entry.content_digest(),
            "base": {"ref": "envkit/base:bookworm", "id": "sha256:" + "a" * 64},
            "files": {"wheels/a.whl": hashlib.sha256(b"wheel").hexdigest(),
                      "base.tar": hashlib.sha256(b"base").hexdigest(),
                      "image.tar": "0" * 64}, **changes}
    (folder / export.MANIFEST).write_text(json.dumps(data))
    return folder


def test_an_offline_folder_is_checked_against_the_recipe_its_lock_and_its_files(
        tmp_path: Path) -> None:
    plan = locked_plan("faiss-cpu")
    good = export.Offline.open(fake_export(tmp_path / "good", plan))
    good.check(plan, "faiss-cpu")  # image.tar is not read by a build: its absence is fine
    other = export.Offline.open(fake_export(tmp_path / "other", plan, lock="sha256:" + "b" * 64))
    with pytest.raises(EnvkitError) as exc:
        other.check(plan, "faiss-cpu")
    assert "was exported from another lock of faiss-cpu (sha256:bbbb" in message(exc)
    params = export.Offline.open(fake_export(tmp_path / "params", plan,
                                             params={"faiss": "0.1", "python": "3.11"}))
    with pytest.raises(EnvkitError) as exc:
        params.check(plan, "faiss-cpu")
    assert "pass the recipe and --set values it was exported with" in message(exc)
    (tmp_path / "good" / "wheels" / "a.whl").write_bytes(b"tampered")
    with pytest.raises(EnvkitError) as exc:
        good.check(plan, "faiss-cpu")
    assert "a.whl has another sha256 than the export recorded" in message(exc)
    (tmp_path / "good" / "wheels" / "a.whl").unlink()
    with pytest.raises(EnvkitError) as exc:
        good.check(plan, "faiss-cpu")
    assert "a.whl is missing from the export" in message(exc)


@pytest.mark.parametrize("name", ["files/../../envkit/helpers.sh", "wheels/../../x.whl",
                                  "apt/sub/x.deb", "/etc/passwd", "files/" + "A" * 64])
def test_an_export_json_naming_a_file_no_export_writes_is_refused(tmp_path: Path,
                                                                  name: str) -> None:
    plan = locked_plan("faiss-cpu")
    folder = fake_export(tmp_path / "exp", plan)
    data = json.loads((folder / export.MANIFEST).read_text())
    data["files"][name] = "0" * 64
    (folder / export.MANIFEST).write_text(json.dumps(data))
    with pytest.raises(EnvkitError) as exc:
        export.Offline.open(folder)
    assert "names a file no export writes" in message(exc)


def test_an_export_json_of_the_wrong_shape_is_one_clear_error(tmp_path: Path) -> None:
    for broken in ({"envkit-export": 1, "files": []}, {"envkit-export": 1, "files": {},
                                                       "base": "x"}):
        (tmp_path / export.MANIFEST).write_text(json.dumps(broken))
        with pytest.raises(EnvkitError) as exc:
            export.Offline.open(tmp_path)
        assert "lacks its base (ref, id) or its files" in message(exc)


def test_a_linked_file_is_refused(tmp_path: Path) -> None:
    plan = locked_plan("faiss-cpu")
    folder = fake_export(tmp_path / "exp", plan)
    (tmp_path / "elsewhere.whl").write_bytes(b"wheel")
    (folder / "wheels" / "a.whl").unlink()
    (folder / "wheels" / "a.whl").symlink_to(tmp_path / "elsewhere.whl")
    with pytest.raises(EnvkitError) as exc:
        export.Offline.open(folder).check(plan, "faiss-cpu")
    assert "a.whl is a symbolic link" in message(exc)


def test_a_base_is_the_same_image_whether_docker_or_podman_names_its_id(tmp_path: Path
                                                                        ) -> None:
    plan = locked_plan("faiss-cpu")
    offline = export.Offline.open(fake_export(tmp_path / "exp", plan))
    podman_like = SimpleNamespace(image=lambda ref: SimpleNamespace(id="a" * 64))
    assert offline.ensure_base(podman_like, io.StringIO()) == "envkit/base:bookworm"
    other = SimpleNamespace(image=lambda ref: SimpleNamespace(id="sha256:" + "b" * 64))
    with pytest.raises(EnvkitError) as exc:
        offline.ensure_base(other, io.StringIO())
    assert "is bbbbbbbbbbbb, not the export's base aaaaaaaaaaaa" in message(exc)


def test_a_connection_reset_mid_download_is_retried(tmp_path: Path) -> None:
    class Response(io.BytesIO):
        def __init__(self, fail: bool):
            super().__init__(b"the file")
            self.fail = fail

        def read(self, n: int = -1) -> bytes:
            if self.fail:
                raise ConnectionResetError("connection reset by peer")
            return super().read(n)

    answers = [Response(True), Response(False)]
    fetcher = export.Fetcher(None)
    fetcher.opener = SimpleNamespace(open=lambda request, timeout: answers.pop(0))
    sha = hashlib.sha256(b"the file").hexdigest()
    fetcher.download("https://files.example/f.whl", sha, tmp_path / "f.whl")
    assert (tmp_path / "f.whl").read_bytes() == b"the file" and answers == []
    fetcher.opener = SimpleNamespace(open=lambda request, timeout: Response(True))
    with pytest.raises(EnvkitError) as exc:
        fetcher.download("https://files.example/g.whl", sha, tmp_path / "g.whl")
    assert "cannot fetch https://files.example/g.whl: connection reset by peer" in message(exc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.whl"]


def test_sdists_bring_the_newest_final_setuptools_and_wheel(tmp_path: Path) -> None:
    def files(project: str, *versions: str) -> dict[str, export.IndexFile]:
        return {f"{project}-{v}-py3-none-any.whl": export.IndexFile(
            f"{project}-{v}-py3-none-any.whl", f"https://x/{project}-{v}", v) for v in versions}

    fetched: list[str] = []
    fake = SimpleNamespace(
        project=lambda index, name: files(name, "80.1", "81.0b1", "79.0") if name ==
        "setuptools" else files(name, "0.45.1", "0.46.0rc1"),
        download=lambda url, sha, target: fetched.append(target.name))
    added = export.build_backends(fake, ["crcmod-1.7.tar.gz", "six-1.17.0-py3-none-any.whl"],
                                  "https://x", tmp_path, io.StringIO())  # type: ignore[arg-type]
    assert added == fetched == ["setuptools-80.1-py3-none-any.whl",
                                "wheel-0.45.1-py3-none-any.whl"]
    assert export.build_backends(fake, ["six-1.17.0-py3-none-any.whl"], "https://x",
                                 tmp_path, io.StringIO()) == []  # type: ignore[arg-type]


class FakeContainers:
    """An engine's containers (plan.aptlock.Containers) for export's .debs: the script's
    pins are noted, and the collected folder is the files given (or a failure)."""

    def __init__(self, files: dict[str, bytes], code: int = 0, err: str = ""):
        self.files, self.code, self.err = files, code, err
        self.scripts: list[tuple[str, str, dict[str, str]]] = []

    def run_script(self, ref: str, script: str, files: dict[str, bytes], env: dict[str, str],
                   timeout: float, collect: tuple[str, Path] | None = None
                   ) -> tuple[int, str, str]:
        self.scripts.append((ref, script, env))
        assert collect is not None and collect[0] == "/envkit-export/apt"
        with tarfile.open(collect[1], "w") as tar:
            for name, data in self.files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return self.code, "", self.err


def _apt_entry(*pins: tuple[str, str]) -> Any:
    from envkit.plan import lock as lockmod

    return lockmod.Entry("sha256:" + "e" * 64, [{}], steps=[lockmod.StepLock(
        "apt", "t", apt=[lockmod.AptPackage(n, v) for n, v in pins])])


def test_the_locked_debs_come_from_whichever_engine_runs_containers(tmp_path: Path) -> None:
    """Docker or podman alike: apt downloads the pins (an epoch's ':' is '%3a' in the file
    name) in a container of the base; only the .debs and the index are unpacked."""
    catalog = Catalog()
    plan = make_plan(catalog.find("python-venv"), catalog)
    engine = FakeContainers({"apt/Packages": b"Package: cpp\n",
                             "apt/cpp_4%3a12.2.0-3_amd64.deb": b"deb",
                             "apt/../evil.deb": b"x", "apt/notes.txt": b"x"})
    debs = export.fetch_debs(engine, "envkit/base:bookworm",  # type: ignore[arg-type]
                             plan, _apt_entry(("cpp", "4:12.2.0-3")), tmp_path / "apt", None,
                             io.StringIO())
    assert debs == ["cpp_4%3a12.2.0-3_amd64.deb"]
    assert sorted(p.name for p in (tmp_path / "apt").iterdir()) == [
        "Packages", "cpp_4%3a12.2.0-3_amd64.deb"]
    ((ref, script, env),) = engine.scripts
    assert ref == "envkit/base:bookworm" and script.startswith("set -- cpp=4:12.2.0-3\n")
    assert env["ENVKIT_MIRRORS_PICKED"] == ""


def test_a_locked_deb_the_archive_dropped_says_how_to_lock_again(tmp_path: Path) -> None:
    catalog = Catalog()
    plan = make_plan(catalog.find("python-venv"), catalog)
    engine = FakeContainers({}, 100, "E: Version '1.0' for 'x' was not found\n")
    with pytest.raises(EnvkitError) as exc:
        export.fetch_debs(engine, "img", plan, _apt_entry(("x", "1.0")),  # type: ignore[arg-type]
                          tmp_path / "apt", None, io.StringIO())
    assert "apt in img: Version '1.0' for 'x' was not found" in message(exc)
    assert "--upgrade-package NAME" in message(exc)


def test_export_says_before_anything_that_it_cannot_log_in_to_a_private_index(
        tmp_path: Path) -> None:
    recipe = tmp_path / "private.yaml"
    recipe.write_text(textwrap.dedent("""\
        name: private
        description: d
        version: 1.0.0
        base: debian:bookworm-slim
        requires: [python-venv]
        secrets:
          netrc: {env: NETRC}
        steps:
          - name: from the company index
            secrets: [netrc]
            pip: {packages: [six==1.17.0], index: "https://pypi.corp.example/simple"}
        """))
    done = run_cli("invoke", "export", "--recipe", str(recipe), "--target", "docker",
                   "--out", str(tmp_path / "exp"))
    assert done.returncode == 1, done.stdout
    assert ("export fetches the locked wheels without the recipe's secrets: step 3 (private: "
            "from the company index) uses netrc") in done.stderr
    assert not (tmp_path / "exp").exists()


def test_a_folder_that_is_not_an_export_says_what_writes_one(tmp_path: Path) -> None:
    with pytest.raises(EnvkitError) as exc:
        export.Offline.open(tmp_path)
    assert "is not an envkit export (no export.json)" in message(exc)
    (tmp_path / export.MANIFEST).write_text('{"envkit-export": 9}')
    with pytest.raises(EnvkitError) as exc:
        export.Offline.open(tmp_path)
    assert "(format 9, expected 1)" in message(exc)
    (tmp_path / export.MANIFEST).write_text("{not json")
    with pytest.raises(EnvkitError) as exc:
        export.Offline.open(tmp_path)
    assert "cannot read" in message(exc)


def test_the_offline_context_links_the_wheels_and_the_repository(tmp_path: Path) -> None:
    plan = locked_plan("faiss-cpu")
    folder = fake_export(tmp_path / "exp", plan)
    (folder / "apt").mkdir()
    (folder / "apt" / "Packages").write_text("")
    data = json.loads((folder / export.MANIFEST).read_text())
    data["files"]["apt/Packages"] = hashlib.sha256(b"").hexdigest()
    (folder / export.MANIFEST).write_text(json.dumps(data))
    staged = export.Offline.open(folder).stage(tmp_path / "ctx")
    assert staged == tmp_path / "ctx" / "files" / "offline"
    assert sorted(str(p.relative_to(staged)) for p in staged.rglob("*") if p.is_file()) == [
        "apt/Packages", "wheels/a.whl"]  # not base.tar or image.tar: the context stays small


# --- rendering and the helpers ------------------------------------------------------------


def test_an_offline_dockerfile_mounts_the_export_on_every_run_and_passes_hadolint(
        tmp_path: Path) -> None:
    from envkit.render import lint

    plan = locked_plan("faiss-cpu")
    online = render(plan, "dockerfile")
    plan.offline = export.TARGET
    text = render(plan, "dockerfile")
    assert "ARG ENVKIT_OFFLINE=\"/run/envkit/offline\"" in text
    mount = "--mount=type=bind,source=files/offline,target=/run/envkit/offline"
    assert text.count(mount) == text.count("RUN ") - online.count("RUN envkit_record_")
    assert "offline" not in online
    (tmp_path / "Dockerfile").write_text(text)
    assert lint.hadolint([tmp_path / "Dockerfile"]) == []


def helpers(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f". {HELPERS}\n{script}"], capture_output=True,
                          text=True, env={"PATH": os.environ["PATH"], **env})


def test_offline_helpers_point_apt_pip_and_uv_at_the_folder_alone(tmp_path: Path) -> None:
    fake_uv = tmp_path / "uv"
    fake_uv.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake_uv.chmod(0o755)
    done = helpers('envkit_apt_sources; cat "$ENVKIT_APT_LIST"; echo "pip=$PIP_NO_INDEX '
                   '$PIP_FIND_LINKS"; envkit_uv_pip python3 install -r req.txt; '
                   'envkit_uv_pip python3 freeze',
                   {"ENVKIT_OFFLINE": "/run/envkit/offline", "ENVKIT_UV": str(fake_uv),
                    "ENVKIT_APT_STATE": str(tmp_path / "apt"),
                    "ENVKIT_MIRROR_PIP": "https://unreachable.example/simple",
                    "ENVKIT_APT_SNAPSHOT": "20240101T000000Z"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "deb [trusted=yes] file:/run/envkit/offline/apt ./"  # no snapshot
    assert lines[1] == "pip=1 /run/envkit/offline/wheels"
    assert lines[2:10] == ["pip", "install", "--no-config", "--python", "python3",
                           "--no-index", "--find-links", "/run/envkit/offline/wheels"]
    assert lines[-4:] == ["freeze", "--no-config", "--python", "python3"]  # no index flags
    assert "does not answer" not in done.stderr  # no mirror is probed
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / ("ab" * 32)).write_text("tool")
    done = helpers(f'envkit_offline_file {"ab" * 32} out && cat out; '
                   f'envkit_offline_file {"cd" * 32} out2',
                   {"ENVKIT_OFFLINE": str(tmp_path)})
    assert done.stdout == "tool" and done.returncode == 1
    assert f"the export has no file with sha256 {'cd' * 32}: export again" in done.stderr


# --- the tasks ----------------------------------------------------------------------------


def test_offline_builds_are_image_builds(tmp_path: Path) -> None:
    done = run_cli("invoke", "build", "--recipe", "faiss-cpu", "--target", "host",
                   "--offline", str(tmp_path))
    assert done.returncode == 1
    assert "--offline builds an image: --target host provisions this host" in done.stderr
    done = run_cli("invoke", "export", "--recipe", "gtest-src", "--target", "host")
    assert done.returncode == 1 and "--target host builds none" in done.stderr


# --- end to end ---------------------------------------------------------------------------

OFFLINE_BASE = "envkit-test/offline-base:1"


def installed(tag: str) -> str:
    return subprocess.run(["docker", "run", "--rm", "--network", "none", tag, "cat",
                           "/usr/local/share/envkit/installed.txt"],
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.docker
def test_an_export_builds_again_with_the_network_cut(base: str, tmp_path: Path) -> None:
    """Locked against a local index; exported; then the index stops, the base leaves the
    engine, BuildKit's cache mounts are emptied, and the build with no network installs
    exactly what the exported image has."""
    root = tmp_path / "www"
    root.mkdir()
    server = FlakyServer(root, host="0.0.0.0")
    url = f"http://{bridge_gateway()}:{server.port}"
    local = LocalIndex(root / "pypi")
    local.publish("leaf", "1.0")
    local.publish("top", "1.0", "leaf>=1.0")
    (root / "tool.txt").write_text("a tool the recipe downloads\n")
    tool_sha = hashlib.sha256(b"a tool the recipe downloads\n").hexdigest()
    subprocess.run(["docker", "tag", base, OFFLINE_BASE], check=True)
    (tmp_path / "handover.yaml").write_text(textwrap.dedent(f"""\
        name: handover
        description: a Python package with a dependency, handed over to an air-gapped machine
        version: 1.0.0
        base: {OFFLINE_BASE}
        requires: [python-venv]
        steps:
          - name: a Python package with a dependency
            pip: {{packages: ["top==1.0"], index: "{url}/pypi/simple"}}
          - name: curl for the download
            apt: [curl]
          - name: a tool
            download: {{url: "{url}/tool.txt", sha256: {tool_sha}, dest: /opt/tool.txt}}
        verify:
          - python_import: {{module: top, version: "==1.0"}}
        """))
    try:
        done = envkit("lock", "--recipe", "./handover.yaml", "--ca-bundle", HOST_CA,
                      cwd=tmp_path)
        assert done.returncode == 0, show(done)
        out = tmp_path / "handover-export"
        done = envkit("export", "--recipe", "./handover.yaml", "--out", str(out),
                      "--ca-bundle", HOST_CA, cwd=tmp_path)
        assert done.returncode == 0, show(done)
    finally:
        server.close()
    assert "all 4 checks passed" in done.stdout, done.stdout
    data = json.loads((out / export.MANIFEST).read_text())
    tag = data["image"]["tag"]
    wheels = sorted(p.name for p in (out / "wheels").iterdir())
    assert wheels[:2] == ["leaf-1.0-py3-none-any.whl", "top-1.0-py3-none-any.whl"]
    assert wheels[2].startswith("uv-") and len(wheels) == 3
    debs = sorted(p.name for p in (out / "apt").glob("*.deb"))
    packages = (out / "apt" / "Packages").read_text()
    assert len(debs) > 20 and packages.count("\nSHA256: ") == len(debs)
    for rel, sha in data["files"].items():  # every file, as recorded
        assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == sha, rel
    with tarfile.open(out / "image.tar") as tar:  # docker load / podman load read it
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == [tag]
    exported = installed(tag)

    # the other machine: no index, no base, no cache mounts
    saved_as = data["base"]["ref"]
    assert saved_as.startswith("envkit-export/base:") and data["base"]["from"] == OFFLINE_BASE
    subprocess.run(["docker", "rmi", OFFLINE_BASE, saved_as], check=True, capture_output=True)
    subprocess.run(["docker", "builder", "prune", "-f", "--filter", "type=exec.cachemount"],
                   check=True, capture_output=True)
    done = envkit("build", "--recipe", "./handover.yaml", "--offline", str(out), cwd=tmp_path)
    assert done.returncode == 0, show(done)
    assert f"loading the base {saved_as} from {out / 'base.tar'}" in done.stdout
    assert "building offline from" in done.stdout and "all 4 checks passed" in done.stdout
    log = (tmp_path / "build" / "handover" / "build.log").read_text()
    assert "--network none" in log.splitlines()[0]
    assert "file:/run/envkit/offline/apt" in log
    rebuilt = next(line.split()[2].rstrip(":") for line in done.stdout.splitlines()
                   if line.startswith("envkit: image "))
    assert rebuilt != tag and installed(rebuilt) == exported  # the same installed set
    tool = subprocess.run(["docker", "run", "--rm", "--network", "none", rebuilt, "cat",
                           "/opt/tool.txt"], capture_output=True, text=True, check=True)
    assert tool.stdout == "a tool the recipe downloads\n"
    assert (out / "files" / tool_sha).is_file()
    assert not (tmp_path / "build" / "handover" / "files" / "offline").exists()

    # a damaged copy is refused before anything runs
    victim = out / "wheels" / "top-1.0-py3-none-any.whl"
    victim.write_bytes(victim.read_bytes() + b"\0")
    done = envkit("build", "--recipe", "./handover.yaml", "--offline", str(out), cwd=tmp_path)
    assert done.returncode == 1
    assert "top-1.0-py3-none-any.whl has another sha256 than the export recorded" in done.stderr
    subprocess.run(["docker", "rmi", "-f", OFFLINE_BASE, saved_as], capture_output=True)
