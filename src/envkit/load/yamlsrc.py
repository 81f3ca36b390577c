"""YAML -> plain data, remembering where every value came from.

PyYAML's ``compose`` gives nodes with marks; we build dicts, lists and scalars
ourselves so that we can record the mark of every path, reject duplicate keys
and non-safe tags, and bound size, depth and alias expansion before anything
else sees the data.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from envkit import chars, memo
from envkit.chars import format_problem
from envkit.diagnostics import Diagnostic, EnvkitError, Path_, format_path

# A recipe is a page of YAML, not a data set (the catalog's largest file, compat.yaml, is
# 18 KB and 1,100 nodes). Pure-Python PyYAML reads under 1 MB/s and 15,000 nodes/s, and the
# schema check costs up to 0.3 ms a node: these keep a hostile file well under 2 s.
MAX_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 5_000  # in the file, and again after alias expansion ("billion laughs")
MAX_SCALAR = 64 * 1024

_SAFE_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_SURROGATE = re.compile("[\ud800-\udfff]")
_FORMAT_HINT = "delete it (an editor that shows invisible characters finds it)"


@dataclass
class Document:
    """Plain data plus the position of each value and each mapping key."""

    file: str
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    raw: dict[Path_, str] = field(default_factory=dict)  # scalar source text, for hints

    def where(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """(line, col), 1-based, of the value (or key) at ``path`` or its nearest ancestor."""
        table = self.key_marks if key else self.marks
        if key and path not in table:
            table = self.marks
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            p = p[:-1]
        return self.marks.get((), (1, 1))

    def schema_problems(self, schema: dict[str, Any], data: Any) -> list[Diagnostic]:
        """``data`` (this document's, or a default for it) against a JSON Schema, each
        error at its line: for data files, which need no friendlier wording."""
        import json

        from envkit.load.schema import validator_key

        name = memo.key(json.dumps([schema, data], sort_keys=True, ensure_ascii=False),
                        validator_key())
        if memo.get("schema", name) is True:
            return []
        import jsonschema

        out = [self.diag(tuple(e.absolute_path), e.message)
               for e in jsonschema.Draft202012Validator(schema).iter_errors(data)]
        if not out:
            memo.put("schema", name, True)
        return out

    def diag(self, path: Path_, message: str, hint: str = "", *, key: bool = False) -> Diagnostic:
        line, col = self.where(path, key=key)
        return Diagnostic(self.file, line, col, format_path(path), message, hint)


class _Builder:
    def __init__(self, doc: Document):
        self.doc = doc
        self.nodes = 0
        self.errors: list[Diagnostic] = []
        self.constructor = yaml.SafeLoader("")

    def _mark(self, node: yaml.Node) -> tuple[int, int]:
        return (node.start_mark.line + 1, node.start_mark.column + 1)

    def _err(self, node: yaml.Node, path: Path_, message: str, hint: str = "") -> None:
        line, col = self._mark(node)
        self.errors.append(Diagnostic(self.doc.file, line, col, format_path(path), message, hint))

    def build(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Abort(node, path, f"document expands to more than {MAX_NODES} nodes",
                         "aliases expanding too far?")
        if depth >= MAX_DEPTH:  # the root is depth 0
            raise _Abort(node, path, f"nesting deeper than {MAX_DEPTH} levels")
        self.doc.marks[path] = self._mark(node)
        tag = node.tag
        if isinstance(node, yaml.MappingNode):
            if tag != "tag:yaml.org,2002:map":
                return self._bad_tag(node, path)
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._err(key_node, path, "merge keys ('<<') are not supported",
                              "write the keys out")
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self._err(key_node, path, "a mapping key must be a plain string")
                    continue
                if key_node.tag not in _SAFE_TAGS and key_node.tag != _TIMESTAMP:
                    self._bad_tag(key_node, path)  # never constructed; refused all the same
                    continue
                key = key_node.value
                if msg := format_problem(key):
                    self._err(key_node, (*path, key), msg, _FORMAT_HINT)
                    continue
                if key in out:
                    first = self.doc.key_marks.get((*path, key), (0, 0))
                    self._err(key_node, (*path, key), "duplicate key",
                              f"first defined at line {first[0]}")
                    continue
                self.doc.key_marks[(*path, key)] = self._mark(key_node)
                out[key] = self.build(value_node, (*path, key), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            if tag != "tag:yaml.org,2002:seq":
                return self._bad_tag(node, path)
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        # scalar
        if len(node.value) > MAX_SCALAR:
            self._err(node, path, f"value is longer than {MAX_SCALAR} characters")
            return ""
        self.doc.raw[path] = node.value
        if tag == _TIMESTAMP:  # YAML 1.1 turns 2024-01-01 into a date; we keep the text
            return node.value
        if tag not in _SAFE_TAGS:
            return self._bad_tag(node, path)
        try:
            value = self.constructor.construct_object(node)
        except (ValueError, KeyError, IndexError, yaml.YAMLError):  # e.g. !!int one
            self._err(node, path, f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}")
            return None
        if isinstance(value, str) and "\x00" in value:
            self._err(node, path, "NUL characters are not allowed")
            return ""
        if isinstance(value, str) and _SURROGATE.search(value):
            self._err(node, path, "lone surrogate characters (\\ud800-\\udfff) are not allowed")
            return ""
        if isinstance(value, str) and (msg := format_problem(value)):
            self._err(node, path, msg, _FORMAT_HINT)
            return ""
        return value

    def _bad_tag(self, node: yaml.Node, path: Path_) -> None:
        self._err(node, path, f"tag '{node.tag}' is not allowed", "plain YAML only")
        return None


class _Abort(Exception):
    def __init__(self, node: yaml.Node, path: Path_, message: str, hint: str = ""):
        super().__init__(message)
        self.node, self.path, self.message, self.hint = node, path, message, hint


def _line_col(data: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset`` in text or bytes."""
    newline = "\n" if isinstance(data, str) else b"\n"
    before = data[:offset]
    return before.count(newline) + 1, offset - (before.rfind(newline) + 1) + 1  # type: ignore[arg-type]


class _Composer(yaml.SafeLoader):
    """PyYAML's composer, counting nodes and levels as it goes: it recurses once per level,
    and pure-Python parsing costs about 65 us a node, so a hostile file is stopped early."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file, self.count, self.depth = file, 0, 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.count += 1
        self.depth += 1
        if self.count > MAX_NODES or self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            if self.depth > MAX_DEPTH:
                message, hint = f"nesting deeper than {MAX_DEPTH} levels", ""
            else:
                message, hint = f"more than {MAX_NODES} nodes", "a recipe is a page of YAML"
            raise EnvkitError(Diagnostic(self.file, mark.line + 1, mark.column + 1, "(yaml)",
                                         message, hint))
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _compose(text: str, file: str) -> list[yaml.Node]:
    """The documents of ``text``, stopping at the second: one recipe per file."""
    loader = _Composer(text, file)
    try:
        nodes = []
        while len(nodes) < 2 and loader.check_node():
            nodes.append(loader.get_node())
        return nodes
    except (ValueError, OverflowError):  # PyYAML's chr() of an escape past U+10FFFF
        mark = loader.get_mark()
        raise yaml.scanner.ScannerError(
            "while scanning a double-quoted scalar", None,
            "an escape names no Unicode character (the last is \\U0010FFFF)", mark) from None
    finally:
        loader.dispose()


@functools.cache
def _code() -> str:
    """What decides a parse besides the text: this module, its character rules, PyYAML."""
    return memo.key(Path(__file__).read_bytes(), Path(chars.__file__).read_bytes(),
                    yaml.__version__)


def _paths(table: dict[Path_, Any]) -> list[list[Any]]:
    return [[list(path), value] for path, value in table.items()]


def _table(rows: list[list[Any]]) -> dict[Path_, Any]:
    return {tuple(path): (tuple(v) if isinstance(v, list) else v) for path, v in rows}


def load_text(text: str, file: str) -> Document:
    """``text`` parsed; a text parsed cleanly before comes from the cache (memo), since
    pure-Python PyYAML reads about 15,000 nodes a second."""
    name = memo.key(_code(), text)
    if (hit := memo.get("yaml", name)) is not None:
        try:
            return Document(file, hit["data"], _table(hit["marks"]), _table(hit["key_marks"]),
                            _table(hit["raw"]))
        except (KeyError, TypeError, ValueError):
            pass
    doc = _parse(text, file)
    memo.put("yaml", name, {"data": doc.data, "marks": _paths(doc.marks),
                            "key_marks": _paths(doc.key_marks), "raw": _paths(doc.raw)})
    return doc


def _parse(text: str, file: str) -> Document:
    doc = Document(file, None)
    try:
        nodes = _compose(text, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or "syntax error"
        cm = exc.context_mark
        if exc.context and cm and (cm.line, cm.column) != (mark.line, mark.column):
            problem += f" ({exc.context} at line {cm.line + 1}, column {cm.column + 1})"
        diag = Diagnostic(file, line, col, "(yaml)", f"invalid YAML: {problem}")
        raise EnvkitError(diag) from None
    except yaml.reader.ReaderError as exc:  # a control character; it knows the offset only
        line, col = _line_col(text, exc.position)
        diag = Diagnostic(file, line, col, "(yaml)",
                          f"control character {chr(exc.character)!r} is not allowed",
                          "write it as an escape in a double-quoted string")
        raise EnvkitError(diag) from None
    if not nodes or nodes[0] is None or (len(nodes) == 1 and nodes[0].tag.endswith(":null")
                                          and not nodes[0].value):
        raise EnvkitError(Diagnostic(file, 1, 1, "(top)", "the file is empty",
                                     "a recipe is a mapping: name, description, version, steps"))
    if len(nodes) > 1:
        raise EnvkitError(Diagnostic(file, nodes[1].start_mark.line + 1, 1, "(top)",
                                     "more than one YAML document", "one recipe per file"))
    builder = _Builder(doc)
    try:
        doc.data = builder.build(nodes[0], (), 0)
    except _Abort as abort:
        builder._err(abort.node, abort.path, abort.message, abort.hint)
        raise EnvkitError(builder.errors[-1:]) from None
    except RecursionError:
        diag = Diagnostic(file, 1, 1, "(top)", "document nests too deeply")
        raise EnvkitError(diag) from None
    if builder.errors:
        raise EnvkitError(builder.errors)
    return doc


def load_file(path: Path, display: str | None = None) -> Document:
    """Read and parse one YAML file; every problem becomes an EnvkitError."""
    name = display or str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; only a regular file is read
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):  # a directory fails above, at open
                raise EnvkitError(Diagnostic(name, 0, 0, "(file)", "not a regular file"))
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        diag = Diagnostic(name, 0, 0, "(file)", f"cannot read: {exc.strerror or exc}")
        raise EnvkitError(diag) from None
    if len(raw) > MAX_BYTES:
        raise EnvkitError(Diagnostic(name, 0, 0, "(file)",
                                     f"file is larger than {MAX_BYTES // 1024} KiB")) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        diag = Diagnostic(name, line, col, "(file)", f"not UTF-8: byte 0x{raw[exc.start]:02x}")
        raise EnvkitError(diag) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return load_text(text, name)
