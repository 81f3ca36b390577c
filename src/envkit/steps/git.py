"""git: clone a repository at a ref, optionally with submodules and a pinned commit."""

from __future__ import annotations

from dataclasses import dataclass

from .. import grammar
from . import Problem, Step, kind


@kind
@dataclass
class Git(Step):
    kind = "git"
    summary = "Clone a git repository and check out a ref (pin 'commit' to make it exact)."
    properties = {
        "url": {"type": "string"},
        "ref": {"type": "string", "description": "Branch, tag or commit to check out."},
        "dest": {"type": "string", "description": "Absolute path of the work tree."},
        "commit": {"type": "string", "pattern": "^[0-9a-f]{40}$",
                   "errorMessage": "a commit is 40 lower-case hex digits",
                   "description": "Expected commit after checkout; a mismatch stops the run."},
        "submodules": {"type": "boolean"},
        "depth": {"type": "integer", "minimum": 1,
                  "description": "Shallow clone of a branch or tag."},
    }
    required = ("url", "ref", "dest")

    url: str
    ref: str
    dest: str
    commit: str = ""
    submodules: bool = False
    depth: int = 0

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        if msg := grammar.git_url(self.url):
            problems.append((("url",), msg))
        if msg := grammar.git_ref(self.ref):
            problems.append((("ref",), msg))
        if msg := grammar.abs_path(self.dest):
            problems.append((("dest",), msg))
        return problems

    def title(self) -> str:
        return f"git {self.url.rstrip('/').rsplit('/', 1)[-1]} @ {self.ref}"
