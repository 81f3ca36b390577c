"""The Docker engine through its SDK, with fake clients: refs, sizes, where it is, images."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from backend_fakes import FakeImages, api_error, fake_client, one_line
from envkit.backends import engine
from envkit.diagnostics import EnvkitError

pytestmark = pytest.mark.usefixtures("fresh_choice")


HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(("ref", "expected"), [
    ("debian", ("debian", "latest")),
    ("debian:bookworm-slim", ("debian", "bookworm-slim")),
    ("envkit/base:bookworm", ("envkit/base", "bookworm")),
    ("localhost:5000/team/img", ("localhost:5000/team/img", "latest")),
    ("localhost:5000/team/img:1.2", ("localhost:5000/team/img", "1.2")),
    ("registry.example.com:443/debian:12", ("registry.example.com:443/debian", "12")),
])
def test_split_ref(ref: str, expected: tuple[str, str]) -> None:
    assert engine.split_ref(ref) == expected


def test_split_ref_with_a_digest() -> None:
    ref = f"debian@sha256:{HEX}"
    images = FakeImages()
    engine.pull(fake_client(images), ref)
    # what docker-py's images.pull(repo, tag=...) needs to fetch exactly this image
    assert images.pulled == [("debian", f"sha256:{HEX}")]
    assert engine.split_ref(ref) == ("debian", f"sha256:{HEX}")


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"), (999, "999 B"), (1000, "1 kB"), (12_345, "12 kB"), (123_456_789, "123.46 MB"),
    (5_000_000_000, "5.00 GB"), (7_000_000_000_000, "7000.00 GB"),
])
def test_size_text(n: int, text: str) -> None:
    assert engine.size_text(n) == text


def test_where(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert engine.where() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "")
    assert engine.where() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2375")
    assert engine.where() == "tcp://10.0.0.2:2375"


def test_connect_without_an_engine(no_engine: str) -> None:
    with pytest.raises(EnvkitError) as info:
        engine.connect(timeout=5)
    text = one_line(info.value)
    assert f"engine: no Docker engine answers at {no_engine}: no socket there" in text
    assert "--target host" in text








def test_engine_image_and_pull() -> None:
    img = SimpleNamespace(id="sha256:1")
    images = FakeImages({"a:1": img})
    client = fake_client(images)
    assert engine.image(client, "a:1") is img
    assert engine.image(client, "b:1") is None
    assert engine.pull(client, "localhost:5000/b") == ""
    assert images.pulled == [("localhost:5000/b", "latest")]
    images.pull_error = "pull access denied for b\nsecond line"
    assert engine.pull(client, "b:2") == "pull access denied for b"
    client404 = fake_client(FakeImages(get_error=api_error(404, "gone")))
    assert engine.image(client404, "a:1") is None
    client500 = fake_client(FakeImages(get_error=api_error(500, "engine broke")))
    with pytest.raises(EnvkitError) as info:
        engine.image(client500, "a:1")
    assert "cannot inspect image a:1: engine broke" in one_line(info.value)


def test_where_follows_the_docker_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    import hashlib

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert engine.where() == "unix:///var/run/docker.sock"  # no config at all
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": "rootless"}))
    meta = tmp_path / "contexts/meta" / hashlib.sha256(b"rootless").hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": "rootless", "Endpoints": {"docker": {"Host": "unix:///run/user/1000/d.sock"}}}))
    assert engine.where() == "unix:///run/user/1000/d.sock"
    monkeypatch.setenv("DOCKER_CONTEXT", "default")
    assert engine.where() == "unix:///var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "tcp://h:2375")
    assert engine.where() == "tcp://h:2375"


def test_a_refused_user_is_not_a_missing_engine(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_reason", lambda exc: "permission denied (join the docker "
                        "group or use root)")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/x.sock")
    with pytest.raises(EnvkitError) as info:
        engine.connect()
    assert not isinstance(info.value, engine.NoEngine)
    assert "refuses this user: permission denied" in one_line(info.value)
    monkeypatch.undo()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/x.sock")
    with pytest.raises(engine.NoEngine):
        engine.connect()


def test_an_image_is_saved_under_the_name_asked_for(tmp_path: Path) -> None:
    """docker save by name: the archive tags the image as asked, whatever tag it lists first
    (an export's base has several here: envkit/base:bookworm, a test's own, a registry's)."""
    asked: list[str] = []

    def get_image(ref: str) -> list[bytes]:
        asked.append(ref)
        return [b"tar ", b"bytes"]

    client = SimpleNamespace(api=SimpleNamespace(get_image=get_image))
    engine.save(client, "envkit-test/offline-base:1", tmp_path / "base.tar")
    assert asked == ["envkit-test/offline-base:1"]
    assert (tmp_path / "base.tar").read_bytes() == b"tar bytes"
