"""git: clone a repository and check out a pinned commit, optionally with submodules."""

from __future__ import annotations

from dataclasses import dataclass

from envkit import grammar
from envkit.steps import Problem, Step, checked, kind


@kind
@dataclass
class Git(Step):
    kind = "git"
    summary = ("Clone a git repository at a pinned commit: 'ref' names a branch, tag or "
               "commit, and a branch or tag needs the 'commit' it must be at.")
    slow = True  # fetches or builds: minutes, not seconds
    properties = {
        "url": {"type": "string"},
        "ref": {"type": "string", "description": "Branch, tag or commit to check out."},
        "dest": {"type": "string", "description": "Absolute path of the work tree."},
        "commit": {"type": "string",
                   "description": "The commit the ref must be at (40 lower-case hex digits), "
                                  "checked after checkout; required unless 'ref' is one."},
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
        problems = checked(self, url=grammar.git_url, ref=grammar.git_ref,
                           dest=grammar.abs_path, commit=grammar.git_commit)
        if problems:
            return problems
        if not grammar.git_commit(self.ref):  # the ref is a commit itself
            if self.commit and self.commit != self.ref:
                return [(("commit",), f"ref is the commit {self.ref}; 'commit' says "
                         f"{self.commit}")]
            if self.depth:  # a shallow clone takes a branch or tag, not a commit
                return [(("depth",), "a shallow clone needs a branch or tag as 'ref'")]
            self.commit = self.ref
        elif not self.commit:
            return [(("ref",), f"'{self.ref}' is a branch or tag, and those move: pin the "
                     "commit it must be at with 'commit' (40 hex digits: git rev-parse "
                     f"{self.ref})")]
        return []

    def title(self) -> str:
        return f"git {self.url.rstrip('/').rsplit('/', 1)[-1]} @ {self.ref}"
