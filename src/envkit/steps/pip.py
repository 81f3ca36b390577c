"""pip: Python packages into the active venv (or the system python3), installed by uv."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib
from packaging.utils import canonicalize_name

from envkit import grammar
from envkit.diagnostics import Diagnostic
from envkit.steps import LOCKS_DIR, Problem, State, Step, checked, each, kind, strings

INPUTS_DIR = "/run/envkit/input"  # where a Docker build mounts a step's files (read-only)
# a file a step reads: relative to the recipe's folder, characters a bind mount takes as is
_INPUT_PATH = re.compile(r"\.|[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*/?")
_EXTRA = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_NESTED = re.compile(r"(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+)(\S+)")
MAX_INCLUDES = 50


@dataclass(frozen=True)
class Input:
    """A file or folder a pip step reads, from the recipe's folder."""

    flag: str  # "-r", "-c" (given to the installer), "include" (named by one), "project"
    rel: str  # relative to the recipe's folder
    source: Path  # on this machine
    context_path: str  # in the build context and in files/ next to a script

    @property
    def files_path(self) -> str:
        return self.context_path.removeprefix("files/")

    @property
    def mount(self) -> str:
        return f"{INPUTS_DIR}/{self.files_path}"

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
                                       "a requirements file goes in 'requirements' (-c files "
                                       "in 'constraints')."),
        "python": {"type": "string",
                   "description": "Interpreter to install for (default: the active venv)."},
        "installer": {"enum": ["uv", "pip"],
                      "description": "uv (default) or pip, for a step that needs pip itself."},
        "requirements": strings(description="Requirements files, relative to the recipe's "
                                            "folder: envkit puts them in the build, and the "
                                            "lock, validate and the compat table read them."),
        "constraints": strings(description="Constraints files (pip's -c), relative to the "
                                           "recipe's folder."),
        "project": {"type": "string",
                    "description": "A local project folder (with a pyproject.toml), relative "
                                   "to the recipe's folder, installed (not editable); its "
                                   "dependencies are locked like any others."},
        "extras": strings(description="The project's extras to install, e.g. [dev, gpu]."),
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
    requirements: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    project: str = ""
    extras: list[str] = field(default_factory=list)
    # set by bind: the files it reads (their content is in content_digest, not their paths)
    inputs: list[Input] = field(default_factory=list, metadata={"hashed": False})
    project_name: str = field(default="", metadata={"hashed": False})  # canonical
    # the project's dependencies are dynamic (its build backend reads them from its files)
    dynamic: bool = field(default=False, metadata={"hashed": False})
    # each requirement a file names, and where (for the compatibility table)
    file_pins: list[tuple[str, Diagnostic]] = field(default_factory=list,
                                                    metadata={"hashed": False})

    def check(self) -> list[Problem]:
        """The grammar of each value; a requirements file goes in ``requirements``."""
        self.options, problems = _options(self.options)
        problems += (each(self.packages, grammar.requirement, ("packages",))
                     + checked(self, index=grammar.url, python=grammar.path)
                     + each(self.extra_index, grammar.url, ("extra_index",))
                     + each(self.requirements, _input_path, ("requirements",))
                     + each(self.constraints, _input_path, ("constraints",))
                     + each(self.extras, _extra, ("extras",)))
        if self.project and (msg := _input_path(self.project)):
            problems.append((("project",), msg))
        if self.extras and not self.project:
            problems.append((("extras",), "extras are a project's: give 'project' too"))
        if self.project and self.installer != "uv":
            problems.append((("project",), "a project is installed with uv (the default "
                             "installer)"))
        if not problems and not (self.packages or self.requirements or self.project):
            problems.append((("packages",), "nothing to install: give packages, "
                             "requirements (files) or a project"))
        return problems

    def bind(self, state: State) -> list[Problem]:
        if not self.python and not state.venv:
            # Debian's own python3 refuses pip installs (PEP 668, externally managed)
            return [(("packages",), "pip needs a venv step before it, or an explicit 'python'")]
        self.python = self.python or state.python
        problems: list[Problem] = []
        self.inputs, self.file_pins = [], []
        for flag, field_name in (("-r", "requirements"), ("-c", "constraints")):
            for i, rel in enumerate(getattr(self, field_name)):
                if rel.endswith("/"):
                    problems.append(((field_name, i), f"{rel!r} ends in '/': a requirements "
                                     "file is a file"))
                    continue
                problems += _read_requirements(self, state, flag, rel, (field_name, i))
        if self.project:
            problems += _read_project(self, state)
        for item in self.inputs:
            state.files.append((item.source, item.context_path))
        return problems

    def content_digest(self) -> str:
        """The files it reads, by their place in the recipe's folder (not this machine's
        path: two checkouts hash alike) and their content, read in chunks."""
        digest = hashlib.sha256()
        for item in self.inputs:
            for path in _tree(item.source):
                digest.update(f"{item.flag}:{item.rel}/{path.relative_to(item.source)}".encode()
                              + b"\0")
                if path.is_file() and not path.is_symlink():
                    with path.open("rb") as fh:
                        while chunk := fh.read(1 << 20):
                            digest.update(chunk)
                elif path.is_symlink():
                    digest.update(b"link:" + os.readlink(path).encode())
        return digest.hexdigest() if self.inputs else ""

    def lock_inputs(self) -> dict[str, Any] | None:
        # the files' paths differ between machines: their content is an input instead
        # (lock.inputs_of); a project counts by its name, extras and pyproject.toml
        data: dict[str, Any] = {"packages": self.packages, "index": self.index,
                                "extra_index": self.extra_index,
                                "options": [o for o in self.options
                                            if not _FILE_OPTION.fullmatch(o)]}
        if self.project:
            data.update(project=self.project_name, extras=sorted(self.extras))
            if self.dynamic:  # what its build reads could be any file: all of them count
                data["project_tree"] = self.content_digest()
        return data

    @property
    def given(self) -> list[Input]:
        """The requirements and constraints files the installer is given (not those they
        include, which it reads itself)."""
        return [i for i in self.inputs if i.flag in ("-r", "-c")]

    @property
    def project_input(self) -> Input | None:
        return next((i for i in self.inputs if i.flag == "project"), None)

    @property
    def project_spec(self) -> str:
        """'name[extra,...]': the project as a PEP 508 name, its folder given at install."""
        extras = f"[{','.join(self.extras)}]" if self.extras else ""
        return f"{self.project_name}{extras}"

    @property
    def project_args(self) -> list[str]:
        """What installs the project itself: its dependencies are the locked set's (or
        resolved with it when there is no lock), so --no-deps when locked; the indexes
        (its build backend comes from there)."""
        return (["--no-deps"] if self.locked is not None else []) + self._index_args([])

    def _index_args(self, carried: list[str]) -> list[str]:
        """The step's index and extra indexes (and ``carried`` ones) as installer options."""
        args = []
        if self.index:
            # uv: --default-index, since the mirror's UV_DEFAULT_INDEX would win over
            # --index-url (both name the same index)
            args += ["--default-index" if self.installer == "uv" else "--index-url", self.index]
        for url in [*self.extra_index, *carried]:
            args += ["--extra-index-url", url]
        return args

    @property
    def install_args(self) -> list[str]:
        """The installer's arguments before the packages (or the locked file): hash-checked
        and without dependencies when locked, the indexes, the author's options (a locked
        install leaves out those of the resolution)."""
        args = ["--require-hashes", "--no-deps"] if self.locked is not None else []
        carried = self.locked.carried if self.locked is not None else []
        args += self._index_args(carried)
        options = (self.options if self.locked is None
                   else [o for o in self.options if not _RESOLUTION.fullmatch(o)])
        if (self.installer == "uv" and (self.extra_index or carried)
                and not any(o.startswith("--index-strategy") for o in options)):
            args.append("--index-strategy=unsafe-best-match")  # pip's way: the best of all
        return args + options

    @property
    def bind_mounts(self) -> list[tuple[str, str]]:
        mounts = []
        if self.locked is not None and self.locked.step.pip:
            mounts.append((f"{LOCKS_DIR}/{self.locked.file}",
                           f"/run/envkit/lock/{self.locked.file}"))
        # a locked install needs none of the requirements files: only the project itself
        needed = [i for i in self.inputs
                  if i.flag == "project" or self.locked is None]
        return mounts + [(i.context_path, i.mount) for i in needed]

    def title(self) -> str:
        files = [f"-r {r}" for r in self.requirements] + [f"-c {c}" for c in self.constraints]
        project = [f"{self.project.rstrip('/')}" + (f"[{','.join(self.extras)}]"
                                                     if self.extras else "")]
        return "pip " + " ".join([*self.packages, *files, *(project if self.project else [])])


def _input_path(value: str) -> str:
    if msg := grammar.single_line(value):
        return msg
    if not _INPUT_PATH.fullmatch(value) or ".." in value.split("/"):
        return (f"{value!r}: a path relative to the recipe's folder, inside it, of letters, "
                "digits and . _ - / (e.g. requirements.txt or app/requirements-gpu.txt)")
    return ""


def _extra(value: str) -> str:
    return "" if _EXTRA.fullmatch(value) else f"{value!r} is not an extra's name"


def _tree(root: Path) -> list[Path]:
    return [root] if not root.is_dir() else sorted(p for p in root.rglob("*")
                                                   if not skipped(p, root))


# What a project folder holds that is not the project: VCS data, caches, builds, venvs.
# Left out of its hash and of the build context.
# At any depth: VCS data, caches, venvs, egg-info, .env files (secrets). At the top only:
# build outputs (a subpackage may be called build).
PROJECT_SKIP = (".git", ".hg", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache",
                ".ruff_cache", ".tox", ".nox", "*.egg-info", ".envkit", ".env", ".env.*")
PROJECT_TOP_SKIP = ("build", "dist")


def skipped(path: Path, root: Path) -> bool:
    """What of a project folder stays out of its hash and of the build context."""
    parts = path.relative_to(root).parts
    if parts and parts[0] in PROJECT_TOP_SKIP:
        return True
    if any((root.joinpath(*parts[:i]) / "files" / "envkit" / "helpers.sh").is_file()
           for i in range(1, len(parts) + 1)):
        return True  # a folder envkit rendered into (invoke render --out inside the project)
    return any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in PROJECT_SKIP)


def _inside(state: State, rel: str) -> tuple[Path | None, str]:
    """A path of the recipe's folder, and why not (outside it, missing, a link out)."""
    try:
        root = state.recipe_dir.resolve()
        source = (root / rel).resolve()
        if not source.is_relative_to(root):
            return None, "resolves outside the recipe's folder"
        if not source.exists():
            return None, f"no such file next to the recipe: {rel}"
        for path in _tree(source):
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                return None, f"{path.relative_to(root)} links outside the recipe's folder"
            if not os.access(path, os.R_OK):
                return None, f"cannot read {path.relative_to(root)} (permissions)"
    except (OSError, RuntimeError) as exc:
        return None, f"cannot read {rel}: {exc}"
    return source, ""


def _shown(state: State, rel: str) -> str:
    """The file as messages name it: next to the recipe as the recipe is named."""
    folder = os.path.dirname(state.recipe_file)
    return f"{folder}/{rel}" if folder else rel


def _read_requirements(step: Pip, state: State, flag: str, rel: str,
                       at: tuple[str, int]) -> list[Problem]:
    """A requirements (or constraints) file and those it names with -r/-c, each checked
    line by line: a problem inside one is at its own file and line."""
    source, why = _inside(state, rel)
    if source is None:
        return [(at, why)]
    if source.is_dir():
        return [(at, f"{rel} is a folder: a requirements file is a file")]
    todo, seen = [(flag, rel, source)], set()
    while todo:
        kind, name, path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        if len(seen) > MAX_INCLUDES:
            return [(at, f"{rel} includes more than {MAX_INCLUDES} files")]
        step.inputs.append(Input(kind, name, path, f"files/{state.recipe}/{name}"))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [(at, f"cannot read {name}: {exc}")]
        field_at = f"{state.step_path}.{at[0]}[{at[1]}]"
        for number, _text, col, problem, hint, found in _lines(text):
            where = _shown(state, name)
            if problem:
                state.problems.append(Diagnostic(where, number, col, field_at, problem, hint))
                continue
            if found[0] == "req":
                step.file_pins.append((found[1], Diagnostic(where, number, col, field_at, "")))
                continue
            nested = os.path.normpath(os.path.join(os.path.dirname(name), found[1]))
            if _input_path(nested):
                state.problems.append(Diagnostic(where, number, col, field_at,
                                                 f"{found[1]} is not a file inside the "
                                                 "recipe's folder"))
                continue
            inner, why = _inside(state, nested)
            if inner is None:
                state.problems.append(Diagnostic(where, number, col, field_at, why))
                continue
            todo.append(("include", nested, inner))
    return []


_HASH = re.compile(r"(^|\s)--hash[= ]\S+")
# Options a requirements file may hold that change nothing envkit decides
_HARMLESS = re.compile(r"--(pre|prefer-binary|only-binary|no-binary)(?:[= ].*)?")


def logical_lines(text: str) -> list[tuple[int, str, int]]:
    """(first line number, text, column) of each line of a requirements file that says
    something: backslash continuations joined, comments and pip-compile's --hash options
    (the lock pins hashes) taken out, blank lines left out."""
    out = []
    logical, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw if not logical else logical + raw
        if line.endswith("\\"):
            logical, start = line[:-1], start or number
            continue
        first, logical, start = start or number, "", 0
        body = _HASH.sub("", re.sub(r"(^|\s)#.*$", "", line)).strip()
        if body:
            out.append((first, body, len(line) - len(line.lstrip()) + 1))
    return out


def _lines(text: str) -> list[tuple[int, str, int, str, str, tuple[str, str]]]:
    """(line, text, column, problem, hint, ("req"|"include", value)) for each line that
    says something (logical_lines)."""
    out = []
    for first, body, col in logical_lines(text):
        if msg := grammar.credential(body):
            out.append((first, body, col, msg, "give the index login as a secret", ("", "")))
        elif m := _NESTED.fullmatch(body):
            out.append((first, body, col, "", "", ("include", m[2])))
        elif body.startswith("-"):
            if _HARMLESS.fullmatch(body):
                continue
            out.append((first, body, col, f"{body.split()[0]} is not read here: an index "
                        "is the step's 'index' or the mirror profile's, and an editable "
                        "install is a 'project'", "leave only requirements and -r/-c lines",
                        ("", "")))
        elif msg := grammar.requirement(body):
            out.append((first, body, col, msg, "", ("", "")))
        else:
            out.append((first, body, col, "", "", ("req", body)))
    return out


def _read_project(step: Pip, state: State) -> list[Problem]:
    source, why = _inside(state, step.project.rstrip("/"))
    if source is None:
        return [(("project",), why)]
    pyproject = source / "pyproject.toml"
    if not source.is_dir() or not pyproject.is_file():
        return [(("project",), f"{step.project} has no pyproject.toml: a project is a folder "
                 "with one (PEP 621 [project] table)")]
    shown = _shown(state, f"{step.project.rstrip('/')}/pyproject.toml")
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        line = int(m[1]) if (m := re.search(r"at line (\d+)", str(exc))) else 0
        state.problems.append(Diagnostic(shown, line, 0, f"{state.step_path}.project",
                                         f"not valid TOML: {exc}"))
        return []
    table = data.get("project")
    name = table.get("name") if isinstance(table, dict) else None
    if not isinstance(name, str) or not _EXTRA.fullmatch(name):
        state.problems.append(Diagnostic(shown, 0, 0, f"{state.step_path}.project",
                                         "no [project] name (PEP 621)",
                                         "envkit installs PEP 621 projects"))
        return []
    step.project_name = canonicalize_name(name)
    extras_table = table.get("optional-dependencies") or {}
    deps = table.get("dependencies") or []
    if not isinstance(extras_table, dict) or not isinstance(deps, list) or any(
            not isinstance(v, list) for v in extras_table.values()):
        state.problems.append(Diagnostic(shown, 0, 0, f"{state.step_path}.project",
                                         "[project] dependencies must be a list and "
                                         "optional-dependencies a table of lists (PEP 621)"))
        return []
    dynamic = table.get("dynamic") or []
    if isinstance(dynamic, list) and {"dependencies", "optional-dependencies"} & set(dynamic):
        step.dynamic = True  # the lock covers the whole tree: its build decides them
    offered = {canonicalize_name(e) for e in extras_table}
    for i, extra in enumerate(step.extras):
        if canonicalize_name(extra) not in offered:
            return [(("extras", i), f"{name} has no extra {extra!r}"
                     + (f" (it has: {', '.join(sorted(offered))})" if offered else ""))]
    text = pyproject.read_text(encoding="utf-8").splitlines()
    wanted = list(deps)
    for extra, group in extras_table.items():
        if canonicalize_name(extra) in {canonicalize_name(e) for e in step.extras}:
            wanted += list(group)
    for req in wanted:
        if not isinstance(req, str):
            continue
        number = next((n for n, ln in enumerate(text, 1) if req in ln), 0)
        at = f"{state.step_path}.project"
        where = Diagnostic(shown, number, 0, at, "")
        if msg := grammar.requirement(req):
            state.problems.append(Diagnostic(shown, number, 0, at, msg))
        else:
            step.file_pins.append((req, where))
    # apart from the recipe's other files: a project may be the recipe's own folder ('.')
    rel = step.project.rstrip("/")
    context = f"files/{state.recipe}/_project" + ("" if rel == "." else f"/{rel}")
    step.inputs.append(Input("project", rel, source, context))
    return []


# -r FILE, -rFILE, "-r FILE", --requirement FILE, --requirement=FILE; the same for -c
_FILE_FLAG = re.compile(r"(-r|--requirement|-c|--constraint)(?:(?:=| +)(.*))?|(-[rc])(\S.*)")


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
            flag = m.group(1) or m.group(3)
            field_name = "requirements" if flag in ("-r", "--requirement") else "constraints"
            path = m.group(2) if m.group(1) else m.group(4)
            if path is None and i < len(options) and not options[i].startswith("-"):
                path, i = options[i], i + 1  # the file is the next item
            example = (path or "requirements.txt").strip()
            problems.append((at, f"a requirements file is the step's {field_name}: "
                                 f"{field_name}: [{example}] (a path next to the recipe; "
                                 "envkit puts it in the build, and the lock, validate "
                                 "--resolve and the compat table read it)"))
        elif not value.startswith("-"):
            problems.append((at, f"{value!r} is not an option (options start with '-'): a "
                                 "requirements file goes in 'requirements', packages in "
                                 "'packages'"))
        else:
            out.append(value)
    return out, problems
