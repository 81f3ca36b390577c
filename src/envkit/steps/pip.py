"""pip: Python packages into the active venv (or the system python3), installed by uv."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .. import grammar
from . import LOCKS_DIR, Problem, State, Step, checked, each, kind, strings

# Options that only steer the resolution: a locked install has done it already.
_RESOLUTION = re.compile(r"--(requirement|constraint)=.+|--pre|--prerelease=.+|--upgrade|-U")
_FILE_OPTION = re.compile(r"--(requirement|constraint)=.+")


@kind
@dataclass
class Pip(Step):
    kind = "pip"
    summary = ("Install Python packages into the active venv: with uv (pinned, hash-checked), "
               "exactly the locked set when the recipe has a lock.")
    slow = True  # fetches or builds: minutes, not seconds
    properties = {
        "packages": strings(description="PEP 508 requirements, e.g. numpy==2.1.3 (may be "
                                        "empty when options give a requirements file)."),
        "index": {"type": "string", "description": "Index URL for this step only."},
        "extra_index": strings(description="Extra index URLs for this step."),
        "options": strings(description="Extra arguments for the installer (uv pip install's, "
                                       "or pip install's with installer: pip), e.g. --no-deps; "
                                       "a requirements file: -r FILE or --requirement=FILE "
                                       "(-c for constraints)."),
        "python": {"type": "string",
                   "description": "Interpreter to install for (default: the active venv)."},
        "installer": {"enum": ["uv", "pip"],
                      "description": "uv (default) or pip, for a step that needs pip itself."},
    }
    required = ()
    shorthand = "packages"
    cache_mounts = ("/root/.cache/pip", "/root/.cache/uv", "/root/.cache/envkit")

    packages: list[str] = field(default_factory=list)
    index: str = ""
    extra_index: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    python: str = ""
    installer: str = "uv"

    def check(self) -> list[Problem]:
        """The grammar of each value; the options come out in one form, each requirements
        or constraints file as --requirement=FILE or --constraint=FILE."""
        self.options, problems = _options(self.options)
        problems += (each(self.packages, grammar.requirement, ("packages",))
                     + checked(self, index=grammar.url, python=grammar.path)
                     + each(self.extra_index, grammar.url, ("extra_index",)))
        if not problems and not self.packages and not any(
                o.startswith("--requirement=") for o in self.options):
            problems.append((("packages",), "nothing to install: give packages, or a "
                             "requirements file in options (-r FILE)"))
        return problems

    def bind(self, state: State) -> list[Problem]:
        if not self.python and not state.venv:
            # Debian's own python3 refuses pip installs (PEP 668, externally managed)
            return [(("packages",), "pip needs a venv step before it, or an explicit 'python'")]
        self.python = self.python or state.python
        return []

    def lock_inputs(self) -> dict[str, Any] | None:
        # a requirements file's path may hold the prefix, which differs between a host and
        # an image: its content is an input instead (lock.inputs_of)
        return {"packages": self.packages, "index": self.index,
                "extra_index": self.extra_index,
                "options": [o for o in self.options if not _FILE_OPTION.fullmatch(o)]}

    @property
    def install_args(self) -> list[str]:
        """The installer's arguments before the packages (or the locked file): hash-checked
        and without dependencies when locked, the indexes, the author's options (a locked
        install leaves out those of the resolution)."""
        args = ["--require-hashes", "--no-deps"] if self.locked is not None else []
        if self.index:
            # uv: --default-index, since the mirror's UV_DEFAULT_INDEX would win over
            # --index-url (both name the same index)
            args += ["--default-index" if self.installer == "uv" else "--index-url", self.index]
        carried = self.locked.carried if self.locked is not None else []
        for url in [*self.extra_index, *carried]:
            args += ["--extra-index-url", url]
        options = (self.options if self.locked is None
                   else [o for o in self.options if not _RESOLUTION.fullmatch(o)])
        if (self.installer == "uv" and (self.extra_index or carried)
                and not any(o.startswith("--index-strategy") for o in options)):
            args.append("--index-strategy=unsafe-best-match")  # pip's way: the best of all
        return args + options

    @property
    def bind_mounts(self) -> list[tuple[str, str]]:
        if self.locked is None or not self.locked.step.pip:
            return []
        return [(f"{LOCKS_DIR}/{self.locked.file}", f"/run/envkit/lock/{self.locked.file}")]

    def title(self) -> str:
        files = [f"-r {o.split('=', 1)[1]}" for o in self.options
                 if o.startswith("--requirement=")]
        return "pip " + " ".join([*self.packages, *files])


# -r FILE, -rFILE, "-r FILE", --requirement FILE, --requirement=FILE; the same for -c
_FILE_FLAG = re.compile(r"(-r|--requirement|-c|--constraint)(?:(?:=| +)(.*))?|(-[rc])(\S.*)")
_LONG = {"-r": "--requirement", "-c": "--constraint"}


def _options(options: list[str]) -> tuple[list[str], list[Problem]]:
    out: list[str] = []
    problems: list[Problem] = []
    i = 0
    while i < len(options):
        value, at = options[i], ("options", i)
        i += 1
        if msg := grammar.single_line(value):
            problems.append((at, msg))
            continue
        if m := _FILE_FLAG.fullmatch(value):
            flag = _LONG.get(m.group(1) or m.group(3), m.group(1) or m.group(3))
            path = m.group(2) if m.group(1) else m.group(4)
            if path is None:  # the file is the next item
                if i == len(options) or options[i].startswith("-"):
                    problems.append((at, f"{value} needs a file after it, e.g. "
                                         f"[{value}, requirements.txt]"))
                    continue
                path, i = options[i], i + 1
            if not path.strip():
                problems.append((at, f"{value} needs a file after it"))
                continue
            out.append(f"{flag}={path.strip()}")
        elif not value.startswith("-"):
            problems.append((at, f"{value!r} is not an option (options start with '-'): a "
                                 "requirements file is -r FILE, and packages go in 'packages'"))
        else:
            out.append(value)
    return out, problems
