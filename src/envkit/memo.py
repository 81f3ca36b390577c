"""What envkit keeps between runs, keyed by content: a result is reused only for the same
input bytes and the same code that made it, so a stale entry is never found, only unused.

- ``yaml``: a parsed document (data and source positions) per file content and parser;
- ``schema``: the contents that passed the recipe schema, so a later run skips jsonschema;
- ``jinja``: compiled templates (jinja2's own bytecode cache, checked against the source
  and the Python; marshalled code, so only a folder no one else can write is used);
- ``lint``: linter findings per rendered piece (see :mod:`envkit.render.lint`).

The folder is ENVKIT_CACHE (a folder, or ``off``), else $XDG_CACHE_HOME/envkit. It is used
only when it (and the folder it is in, where it exists) belongs to this user and no one else
may write it: an entry skips the checks that made it. Entries are JSON (never pickle),
written atomically; a folder that cannot be written only costs time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def root() -> Path | None:
    given = os.environ.get("ENVKIT_CACHE", "")
    if given == "off":
        return None
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envkit"


def _private(path: Path) -> bool:
    """``path``, where it exists, is this user's and no one else may write it."""
    try:
        st = path.stat()
    except OSError:
        return True  # made by us, 0700, when first written
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def folder(kind: str) -> Path | None:
    base = root()
    if base is None or not (_private(base) and _private(base / kind)):
        return None
    return base / kind


def key(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def get(kind: str, name: str) -> Any:
    """The entry, or None when there is none (or it cannot be read)."""
    where = folder(kind)
    if where is None:
        return None
    try:
        return json.loads((where / name[:2] / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def put(kind: str, name: str, value: Any) -> None:
    where = folder(kind)
    if where is None:
        return
    try:
        text = json.dumps(value, separators=(",", ":"))
        sub = where / name[:2]
        sub.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile("w", dir=sub, delete=False, suffix=".tmp") as f:
            f.write(text)
        os.replace(f.name, sub / f"{name}.json")
    except (OSError, TypeError, ValueError):
        pass
