"""memo: what runs keep between them, keyed by content, is never served stale or unsafe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envkit import memo
from envkit.diagnostics import EnvkitError
from envkit.load import schema, yamlsrc
from envkit.load.catalog import Catalog


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "memo"
    monkeypatch.setenv("ENVKIT_CACHE", str(folder))
    return folder


def _same(a: yamlsrc.Document, b: yamlsrc.Document) -> None:
    assert (a.file, a.data, a.marks, a.key_marks, a.raw) == (b.file, b.data, b.marks,
                                                             b.key_marks, b.raw)


def test_a_cached_document_is_the_parsed_one_for_every_catalog_file(cache: Path) -> None:
    for path in sorted(Catalog().root.glob("*.yaml")):
        text = path.read_text()
        first = yamlsrc.load_text(text, str(path))  # parsed, then stored
        assert list(cache.glob("yaml/*/*.json")), "the parse was kept"
        again = yamlsrc.load_text(text, str(path))  # from the cache
        _same(first, again)
        _same(first, yamlsrc._parse(text, str(path)))


def test_an_edit_is_parsed_anew_and_a_broken_entry_is_ignored(cache: Path) -> None:
    doc = yamlsrc.load_text("a: 1\n", "x.yaml")
    assert doc.data == {"a": 1}
    assert yamlsrc.load_text("a: 2\n", "x.yaml").data == {"a": 2}
    for entry in cache.glob("yaml/*/*.json"):
        entry.write_text("{not json")
    assert yamlsrc.load_text("a: 1\n", "x.yaml").data == {"a": 1}
    for entry in cache.glob("yaml/*/*.json"):
        entry.write_text(json.dumps({"data": "wrong shape"}))
    assert yamlsrc.load_text("a: 1\n", "x.yaml").data == {"a": 1}


def test_errors_are_never_cached(cache: Path) -> None:
    for _ in range(2):
        with pytest.raises(EnvkitError, match="duplicate key"):
            yamlsrc.load_text("a: 1\na: 2\n", "x.yaml")
    assert not list(cache.glob("yaml/*/*.json"))


def test_the_schema_is_skipped_only_for_data_that_passed_it(cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    good = yamlsrc.load_text("name: a\ndescription: d\nversion: '1'\n", "a.yaml")
    assert schema.validate(good) == []
    calls = []
    real = schema._validate
    monkeypatch.setattr(schema, "_validate", lambda doc: calls.append(doc) or real(doc))
    assert schema.validate(good) == []
    assert calls == [], "a pass is remembered"
    bad = yamlsrc.load_text("name: a\ndescription: d\nversion: '1'\nstep: []\n", "a.yaml")
    assert any("unknown" in d.message for d in schema.validate(bad))
    assert any("unknown" in d.message for d in schema.validate(bad)), "a failure is not kept"
    assert len(calls) == 2


def test_off_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVKIT_CACHE", "off")
    assert memo.folder("yaml") is None
    yamlsrc.load_text("a: 1\n", "x.yaml")
    memo.put("yaml", "ab" * 32, {"x": 1})
    assert memo.get("yaml", "ab" * 32) is None


def test_an_unwritable_cache_costs_only_time(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ENVKIT_CACHE", str(blocker))
    assert yamlsrc.load_text("a: 1\n", "x.yaml").data == {"a": 1}
    memo.put("yaml", "cd" * 32, {"a": 1})  # no error either


def test_a_value_json_cannot_write_leaves_no_file(cache: Path) -> None:
    memo.put("yaml", "ef" * 32, {"a": object()})
    assert not [p for p in cache.rglob("*") if p.is_file()]


@pytest.mark.parametrize("how", ["world-writable", "another user's"])
def test_a_cache_others_may_write_is_not_used(cache: Path, how: str) -> None:
    """An entry skips the checks that made it (and jinja's is code): a cache folder anyone
    else may write is ignored, never trusted."""
    import os

    yamlsrc.load_text("a: 1\n", "x.yaml")
    assert memo.folder("yaml") is not None
    if how == "world-writable":
        cache.chmod(0o777)
    else:
        os.chown(cache, 65534, 65534)
    assert memo.folder("yaml") is None and memo.folder("jinja") is None
    for entry in cache.glob("yaml/*/*.json"):  # even a poisoned entry is never read
        entry.write_text(json.dumps({"data": {"a": 2}, "marks": [], "key_marks": [],
                                     "raw": []}))
    assert yamlsrc.load_text("a: 1\n", "x.yaml").data == {"a": 1}


def test_a_template_cache_that_cannot_be_written_costs_only_time(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jinja2

    from envkit import render

    def refuse(self: object, bucket: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(jinja2.FileSystemBytecodeCache, "dump_bytecode", refuse)
    monkeypatch.setattr(jinja2.FileSystemBytecodeCache, "load_bytecode", refuse)
    bcc = render._bytecode_cache()
    assert bcc is not None
    env = jinja2.Environment(loader=jinja2.DictLoader({"t": "{{ 1 + 1 }}"}), bytecode_cache=bcc)
    assert env.get_template("t").render() == "2"
