"""invoke bake: a docker-bake.json covering every catalog recipe and param variant, its
contexts beside it, checked for structure (there is no buildx binary here); end to end,
the bases pushed to Debian's docker-registry on loopback and one context built FROM the
pushed base, as a remote builder would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import envkit, run_cli, show
from envkit.cli import bake
from envkit.load.catalog import Catalog
from envkit.plan.variants import variants

HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bake")
    done = run_cli("invoke", "bake", "--out", str(out), "--registry", "reg.example:5000/team",
                   "--ca-bundle", HOST_CA, "--platform", "linux/amd64",
                   "--platform", "linux/arm64")
    assert done.returncode == 0, done.stderr
    return out


def test_every_recipe_and_variant_is_a_target_with_its_context(baked: Path) -> None:
    data = json.loads((baked / bake.FILE).read_text())
    assert bake.check(baked / bake.FILE) == []
    catalog = Catalog()
    expected = {bake.target_name(r.name, v.settings) for r in map(catalog.find, catalog.names())
                for v in variants(r, catalog) if v.mirror == "default"}
    assert set(data["target"]) == expected
    assert data["group"]["default"]["targets"] == list(data["target"])
    for name in catalog.names():
        assert data["group"][f"{name}-variants"]["targets"], name
    t = data["target"]["paddle-cpu-paddle-3-2-2"]
    assert t["tags"] == ["reg.example:5000/team/envkit/paddle-cpu:paddle-3.2.2"]
    assert t["platforms"] == ["linux/amd64", "linux/arm64"]
    assert t["secret"] == [f"id=envkit-ca,src={HOST_CA}"]
    assert t["args"]["PIP_CERT"] == "/run/secrets/envkit-ca"
    assert t["cache-to"] == ["type=registry,ref=reg.example:5000/team/envkit/paddle-cpu:"
                             "cache-paddle-3.2.2,mode=max"]
    dockerfile = (baked / t["context"] / "Dockerfile").read_text()
    assert "paddlepaddle==3.2.2" in (baked / t["context"] / "files/envkit/lock/step-4.txt"
                                     ).read_text()  # the variant's lock, as a build installs it
    assert "\nFROM debian:bookworm-slim\n" in dockerfile  # builders pull the recipe's base
    assert (baked / t["context"] / ".dockerignore").read_text().endswith("*\n!files/\n")


def test_the_same_catalog_gives_the_same_bytes(baked: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    done = run_cli("invoke", "bake", "--out", str(again), "--registry", "reg.example:5000/team",
                   "--ca-bundle", HOST_CA, "--platform", "linux/amd64",
                   "--platform", "linux/arm64")
    assert done.returncode == 0, done.stderr
    assert (again / bake.FILE).read_bytes() == (baked / bake.FILE).read_bytes()
    one = sorted(p.relative_to(baked) for p in (baked / "contexts").rglob("*"))
    assert one == sorted(p.relative_to(again) for p in (again / "contexts").rglob("*"))


def test_one_recipe_local_tags_no_registry_cache(tmp_path: Path) -> None:
    quiet = {name: "" for name in bake.by_name(os.environ)}  # the tests' own retry settings
    done = run_cli("invoke", "bake", "--recipe", "python-venv", "--out", str(tmp_path),
                   env=quiet)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / bake.FILE).read_text())
    assert list(data["group"]) == ["default", "python-venv-variants"]
    t = data["target"]["python-venv"]
    assert t["tags"] == ["envkit/python-venv:default"]
    assert "cache-to" not in t and "secret" not in t and "args" not in t
    assert "python-venv-python-3-13" in data["target"]
    assert done.stdout.splitlines()[-1] == (
        f"envkit: cd {tmp_path} && docker buildx bake --builder NAME [--push | --load] "
        "[TARGET|GROUP ...]")


def test_proxies_and_network_settings_are_passed_by_name_never_written(tmp_path: Path
                                                                       ) -> None:
    login = "http://bob:s3cret-pw@proxy.example:3128"
    env = {**{name: "" for name in bake.by_name(os.environ)},  # the tests' own settings
           "HTTPS_PROXY": login, "no_proxy": "localhost,.internal", "PIP_RETRIES": "2",
           "ENVKIT_STALL_TIMEOUT": "soon"}  # not a number: build leaves it out, so does bake
    done = run_cli("invoke", "bake", "--recipe", "python-venv", "--out", str(tmp_path / "b"),
                   env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        f"envkit: cd {tmp_path}/b && docker buildx bake --builder NAME "
        "--set '*.args.HTTPS_PROXY' --set '*.args.no_proxy' --set '*.args.PIP_RETRIES' "
        "[--push | --load] [TARGET|GROUP ...]")
    written = b"".join(p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file())
    for value in (b"s3cret", b"proxy.example", b".internal"):
        assert value not in written and value.decode() not in done.stdout + done.stderr
    assert "args" not in json.loads((tmp_path / "b" / bake.FILE).read_text()
                                    )["target"]["python-venv"]
    assert bake.command(Path("my bakes"), {}) == (
        "cd 'my bakes' && docker buildx bake --builder NAME [--push | --load] "
        "[TARGET|GROUP ...]")


def test_a_recipe_secret_is_sent_only_to_the_targets_that_use_it(recipe, tmp_path: Path
                                                                  ) -> None:
    path = recipe("""
        secrets:
          token: {env: TOKEN}
        steps: [{secrets: [token], run: 'true'}]
    """)
    (tmp_path / "token.txt").write_text("x")
    done = run_cli("invoke", "bake", "--recipe", str(path), "--recipe", "python-venv",
                   "--out", str(tmp_path / "b"), "--secret", f"id=token,src={tmp_path}/token.txt")
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "b" / bake.FILE).read_text())
    assert data["target"]["t"]["secret"] == [f"id=token,src={tmp_path}/token.txt"]
    assert "secret" not in data["target"]["python-venv"]
    bad = run_cli("invoke", "bake", "--recipe", str(path), "--out", str(tmp_path / "c"),
                  "--secret", "id=token,env=TOKEN")
    assert bad.returncode == 1
    assert bad.stderr == ("envkit: --secret: secret token: bake sends files to the builders "
                          "(id=token,src=FILE)\n")


def test_a_registry_that_is_not_one_is_refused(tmp_path: Path) -> None:
    done = run_cli("invoke", "bake", "--out", str(tmp_path), "--registry", "not a registry")
    assert done.returncode == 1
    assert done.stderr.startswith("envkit: --registry: 'not a registry' is not a registry:")
    assert not (tmp_path / bake.FILE).exists()


def test_check_finds_what_a_bake_file_gets_wrong(baked: Path, tmp_path: Path) -> None:
    data = json.loads((baked / bake.FILE).read_text())
    data["target"]["python-venv"]["context"] = "contexts/nowhere"
    data["target"]["python-venv"]["tags"] = ["Bad Tag"]
    data["target"]["python-venv"]["cache-to"] = ["ref=x"]
    data["group"]["default"]["targets"].append("ghost")
    broken = baked / "broken.json"
    broken.write_text(json.dumps(data))
    problems = bake.check(broken)
    assert any(p.startswith("target python-venv: no Dockerfile in") for p in problems)
    assert any(p.startswith("target python-venv: tag 'Bad Tag'") for p in problems)
    assert "target python-venv: cache-to 'ref=x' has no type=" in problems
    assert "group default: no targets ghost" in problems


# --- end to end: a registry on loopback --------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """Debian's docker-registry on a free loopback port, storing under tmp_path."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(f"""\
version: 0.1
storage:
  filesystem:
    rootdirectory: {tmp_path / 'registry'}
http:
  addr: 127.0.0.1:{port}
""")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v2/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.docker
def test_push_base_puts_the_base_where_builders_reach_it(base: str, registry: str,
                                                         tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text("""\
name: tiny
description: one step on the recipe's base
version: 1.0.0
base: debian:bookworm-slim
steps:
  - run: echo baked > /etc/baked
""")
    out = tmp_path / "bake"
    done = envkit("bake", "--recipe", "./tiny.yaml", "--out", str(out), "--push-base",
                  registry, cwd=tmp_path)
    assert done.returncode == 0, show(done)
    assert f"envkit: base debian:bookworm-slim: pushed as {registry}/library/debian@sha256:" \
        in done.stdout
    with urllib.request.urlopen(f"http://{registry}/v2/_catalog") as answer:
        assert json.load(answer)["repositories"] == ["library/debian"]
    dockerfile = (out / "contexts/tiny/Dockerfile").read_text()
    pushed = next(ln[5:] for ln in dockerfile.splitlines() if ln.startswith("FROM "))
    assert pushed.startswith(f"{registry}/library/debian@sha256:")
    # a builder that has only the registry: the pushed base, then the context, built
    subprocess.run(["docker", "rmi", pushed], capture_output=True)
    tag = f"envkit-bake-test/{os.getpid()}:1"
    build = subprocess.run(["/usr/bin/docker", "build", "--progress=plain", "-t", tag,
                            str(out / "contexts/tiny")],
                           env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True,
                           text=True)
    try:
        assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
        assert f"FROM {pushed}" in build.stderr  # BuildKit fetched it from the registry
        ran = subprocess.run(["docker", "run", "--rm", tag, "cat", "/etc/baked",
                              "/etc/debian_version"], capture_output=True, text=True, check=True)
        assert ran.stdout.startswith("baked\n12.")
    finally:
        subprocess.run(["docker", "rmi", "-f", tag, pushed], capture_output=True)
