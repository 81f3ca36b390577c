"""copy: files from the recipe's folder into the image or onto the host."""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

from envkit import grammar
from envkit.steps import Problem, State, Step, kind

# COPY expands $VARS and globs in its sources, so such paths are refused outright.
_SPECIAL = re.compile(r"[$*?\[\]\\]")


@kind
@dataclass
class Copy(Step):
    kind = "copy"
    summary = "Copy a file or folder from the recipe's folder."
    runs = False  # nothing runs: no secrets
    properties = {
        "src": {"type": "string", "description": "Path relative to the recipe file."},
        "dest": {"type": "string", "description": "Absolute destination path."},
        "mode": {"type": "string", "pattern": "^[0-7]{3,4}$",
                 "errorMessage": "a mode is 3 or 4 octal digits, e.g. '0755'"},
    }
    required = ("src", "dest")

    src: str
    dest: str
    mode: str = ""
    context_path: str = ""  # set by bind: where the file sits in the build context
    source: Path = field(default=Path(), metadata={"hashed": False})  # set by bind

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        for name in ("src", "dest"):
            value = getattr(self, name)
            if _SPECIAL.search(value):
                problems.append(((name,), "must not contain $ * ? [ ] or backslash"))
            elif msg := grammar.path(value):
                problems.append(((name,), msg))
        if self.src.startswith("/") or ".." in self.src.split("/"):
            problems.append((("src",), "must be a relative path inside the recipe's folder"))
        if msg := grammar.abs_path(self.dest):
            problems.append((("dest",), msg))
        if self.mode and int(self.mode, 8) & 0o002:
            problems.append((("mode",), f"{self.mode} is world-writable: anyone in the image "
                             "could change it (e.g. 0755 or 0644)"))
        return problems

    def bind(self, state: State) -> list[Problem]:
        try:
            root = state.recipe_dir.resolve()
            source = (root / self.src).resolve()
            if not source.is_relative_to(root):
                return [(("src",), "resolves outside the recipe's folder")]
            if not source.exists():
                return [(("src",), f"no such file next to the recipe: {self.src}")]
            for path in _files(source):  # a link may not lead out: the image would lack it
                if path.is_symlink() and not path.resolve().is_relative_to(root):
                    return [(("src",), f"{path.relative_to(root)} links outside the folder")]
        except (OSError, RuntimeError) as exc:
            return [(("src",), f"cannot read: {exc}")]
        self.source = source
        self.context_path = f"files/{state.recipe}/{self.src.strip('/')}"
        state.files.append((source, self.context_path))
        return []

    @property
    def is_dir(self) -> bool:
        return self.source.is_dir()

    @property
    def dest_dir(self) -> str:
        return posixpath.dirname(self.dest) or "/"

    @property
    def files_path(self) -> str:
        """The source relative to the files/ folder next to a rendered script."""
        return self.context_path.removeprefix("files/")

    def content_digest(self) -> str:
        digest = hashlib.sha256()
        for path in _files(self.source):
            digest.update(str(path.relative_to(self.source.parent)).encode() + b"\0")
            if path.is_symlink():  # what gets copied is the link, not its target
                digest.update(b"link:" + os.readlink(path).encode())
            elif path.is_file():
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def title(self) -> str:
        return f"copy {self.src} -> {self.dest}"


def _files(root: Path) -> list[Path]:
    return [root] if not root.is_dir() else sorted(p for p in root.rglob("*"))
