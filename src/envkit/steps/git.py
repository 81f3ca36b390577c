"""git: clone a repository at a ref, optionally with submodules and a pinned commit."""

from __future__ import annotations

from dataclasses import dataclass

from .. import grammar
from . import Problem, Step, checked, kind


@kind
@dataclass
class Git(Step):
    kind = "git"
    summary = "Clone a git repository and check out a ref (pin 'commit' to make it exact)."
    properties = {
        "url": {"type": "string"},
        "ref": {"type": "string", "description": "Branch, tag or commit to check out."},
        "dest": {"type": "string", "description": "Absolute path of the work tree."},
        "commit": {"type": "string",
                   "description": "Expected commit after checkout (40 lower-case hex digits); "
                                  "a mismatch stops the run."},
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
        return checked(self, url=grammar.git_url, ref=grammar.git_ref, dest=grammar.abs_path,
                       commit=grammar.git_commit)

    def title(self) -> str:
        return f"git {self.url.rstrip('/').rsplit('/', 1)[-1]} @ {self.ref}"
