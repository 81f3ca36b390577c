"""download: fetch a file over HTTP(S), check its sha256 before use, optionally extract it."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from envkit import grammar
from envkit.steps import Problem, Step, checked, each, kind


@kind
@dataclass
class Download(Step):
    kind = "download"
    summary = "Download a file, verify its sha256 before anything uses it, optionally extract."
    slow = True  # fetches or builds: minutes, not seconds
    properties = {
        "url": {"type": "string"},
        "mirrors": {"type": "array", "items": {"type": "string", "minLength": 1},
                    "description": "Other URLs of the same file, tried in order when one "
                                   "fails; the sha256 is checked whichever answers."},
        "sha256": {"type": "string", "minLength": 1,
                   "description": "64 lower-case hex digits (may come from a param)."},
        "dest": {"type": "string", "description": "Absolute path of the downloaded file."},
        "extract": {"type": "string", "description": "Directory to extract the archive into."},
        "strip_components": {"type": "integer", "minimum": 0},
    }
    required = ("url", "sha256", "dest")
    cache_mounts = ("/var/cache/envkit",)  # {{ cache }}: big downloads stay out of layers

    url: str
    sha256: str
    dest: str
    mirrors: list[str] = field(default_factory=list)
    extract: str = ""
    strip_components: int = 0

    def check(self) -> list[Problem]:
        problems = checked(self, url=grammar.url, dest=grammar.abs_path,
                           extract=grammar.abs_path)
        problems += each(self.mirrors, grammar.url, ("mirrors",))
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):  # checked once params are bound
            problems.append((("sha256",), "a sha256 is 64 lower-case hex digits, "
                             f"got {self.sha256!r}"))
        name = posixpath.basename(self.dest)
        if not problems and (self.dest.endswith("/") or name in ("", ".", "..")):
            problems.append((("dest",), f"must name the file to write, got {self.dest!r}"))
        if self.strip_components and not self.extract:
            problems.append((("strip_components",), "only applies with 'extract'"))
        return problems

    @property
    def urls(self) -> list[str]:
        return [self.url, *self.mirrors]

    @property
    def dest_dir(self) -> str:
        return posixpath.dirname(self.dest.rstrip("/")) or "/"

    @property
    def is_zip(self) -> bool:
        return self.dest.lower().endswith(".zip")

    def title(self) -> str:
        return f"download {posixpath.basename(self.dest)}"
