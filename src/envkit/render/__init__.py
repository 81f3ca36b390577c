"""Render: a plan -> each output format's file (a shell script, a Dockerfile), through
the jinja2 templates.

An output format is one :class:`OutputFormat` in ``FORMATS`` (its template, the file it is
written as, its mode, the linter kind that checks it) and one template: render, render
--out, validate and its linting all route through the registry. A format a backend builds
step by step also gives, from the same render, which recipe step each of its instructions
belongs to (render.stepmap), for the build's progress.

One Environment per process (templates compile once), StrictUndefined so a
typo in a template is an error, not an empty string.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from envkit import __version__, ca, memo, paths
from envkit.diagnostics import EnvkitError, did_you_mean, error
from envkit.files import atomic_write
from envkit.plan import UV_REQUIREMENT, Plan, lock, mirrors, param_text
from envkit.render import stepmap
from envkit.render.quote import FILTERS, QuoteError


@dataclass(frozen=True)
class OutputFormat:
    """One output format: ``--format NAME`` renders ``template`` (under templates/), written
    as ``filename`` with ``mode``; validate lints it as ``lint_kind`` (a key of lint.LINTERS,
    where a format module may register its own linter). ``companions`` gives the other
    files a build of it reads (name -> text); ``context`` the variables its template needs
    beyond the shared ones; ``step_map`` reads the pieces its template marks with
    ``{{ step(n) }}`` (render.stepmap) as the map a backend's progress follows."""

    name: str
    template: str
    filename: str
    lint_kind: str
    summary: str  # what it is, for help texts
    mode: int = 0o644
    companions: Callable[[Plan], dict[str, str]] | None = None
    context: Callable[[Plan], dict[str, object]] | None = None
    step_map: Callable[[list[tuple[int, str]]], stepmap.StepMap] | None = None


@dataclass(frozen=True)
class Rendered:
    """What one render gives: each file's name and text, and the step map of each file
    whose format has one (a Dockerfile's)."""

    files: dict[str, str]
    step_maps: dict[str, stepmap.StepMap]


FORMATS: dict[str, OutputFormat] = {}


def output_format(fmt: OutputFormat) -> OutputFormat:
    """Add a format to the registry (a name is registered once)."""
    if fmt.name in FORMATS:
        raise ValueError(f"output format {fmt.name!r} is registered twice")
    FORMATS[fmt.name] = fmt
    return fmt


def _oneline(value: object) -> str:
    return re.sub(r"\s+", " ", str(value)).strip()


def _block(value: object) -> str:
    """Trim the blank lines around a partial's output; inside, every character stays."""
    return str(value).strip("\n")


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """jinja2's, but a folder that cannot be written (or read) only costs time."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, ValueError, EOFError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs (memo): jinja2 checks each against its source
    and the running Python, so an edited template compiles anew. Marshalled code: only in
    a folder of this user's that no one else may write (memo.folder)."""
    folder = memo.folder("jinja")
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return _BytecodeCache(str(folder))


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(paths.templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters.update(FILTERS)
    env.filters["oneline"] = _oneline
    env.filters["rendered"] = str  # text a partial already quoted, or the author's own script
    env.filters["block"] = _block  # a partial's output, trimmed to sit between two lines
    env.globals["ca_vars"] = ca.VARS
    env.globals["ca_secret"] = [(ca.SECRET_ID, ca.TARGET, "0444")]  # every RUN; absent unless given
    env.globals["network_env"] = mirrors.NETWORK_ENV
    env.globals["retry_env"] = mirrors.RETRY_ENV
    env.globals["uv_env"] = UV_ENV
    env.globals["uv_version"] = lock.uv_version()
    env.globals["helpers"] = (paths.data_dir() / "helpers.sh").read_text()
    env.globals["step"] = stepmap.mark  # where a step's text begins; render takes it out
    env.globals["partial"] = functools.cache(
        lambda kind: env.get_template(f"steps/{kind}.j2").module)  # a step kind's macros
    return env


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise error(f"unknown format '{fmt}'", path="--format",
                    hint=did_you_mean(fmt, FORMATS) or " or ".join(FORMATS))
    return fmt


# uv's settings in images and scripts: copies out of its cache (a cache mount is another
# file system), bytecode compiled at install as pip does (a read-only image cannot write
# __pycache__ later), and never a Python of its own.
UV_ENV = (("UV_LINK_MODE", "copy"), ("UV_COMPILE_BYTECODE", "1"),
          ("UV_PYTHON_DOWNLOADS", "never"))
MANIFEST = "files/envkit/manifest.json"  # in the build context; the image keeps it
OFFLINE_CONTEXT = "files/offline"  # an offline build's wheels/ and apt/ (invoke export)


def pythons(plan: Plan) -> list[str]:
    """Every interpreter a pip step installs for, in order: the image records each one's
    packages."""
    return list(dict.fromkeys(ps.step.python for ps in plan.steps  # type: ignore[attr-defined]
                              if ps.kind == "pip"))


def lock_state(plan: Plan) -> dict[str, str]:
    """What the manifest and the labels say of the lock the build used."""
    match = plan.lock
    if match is None:
        return {"state": "off"}
    out = {"state": match.state}
    if match.file is not None:
        out["file"] = match.file.path.name  # next to the recipe (plan.source)
    if match.entry is not None and match.state in ("locked", "made"):
        entry = match.entry
        out.update(digest=entry.content_digest(), inputs=entry.inputs)
        if entry.base_made:
            out["base_made"] = entry.base_made
        if entry.base_digest:
            out["base_digest"] = entry.base_digest
    return out


def manifest(plan: Plan) -> str:
    """The image's manifest.json: the recipe, its params, the plan hash, the base and the
    lock. No secret reaches it: secrets are never in a plan."""
    data = {"envkit": __version__, "recipe": plan.name, "version": plan.version,
            "source": plan.source, "params": plan.params, "mirror": plan.mirror.name,
            "hash": plan.hash, "base": plan.base, "image": plan.from_image,
            "lock": lock_state(plan)}
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


output_format(OutputFormat("shell", "script.sh.j2", "install.sh", "shell",
                           "a bash script that installs on this host", mode=0o755))
output_format(OutputFormat("dockerfile", "Dockerfile.j2", "Dockerfile", "dockerfile",
                           "a Dockerfile for BuildKit",
                           companions=lambda plan: {MANIFEST: manifest(plan)},
                           step_map=stepmap.dockerfile))


def render(plan: Plan, fmt: str) -> str:
    """The text of one format's file."""
    return _render(plan, fmt)[0]


def _render(plan: Plan, fmt: str) -> tuple[str, stepmap.StepMap | None]:
    spec = FORMATS[check_format(fmt)]
    template = environment().get_template(spec.template)
    params_text = " ".join(f"{k}={param_text(v)}" for k, v in plan.params.items())
    state = lock_state(plan)
    try:
        text = template.render(plan=plan, version=__version__, params_text=params_text,
                               params_json=json.dumps(plan.params, sort_keys=True),
                               uses_uv=any(rel == UV_REQUIREMENT for _, rel in plan.files),
                               uses_inputs=any(getattr(ps.step, "inputs", None)
                                               for ps in plan.steps),
                               locks_apt=any(ps.kind == "apt" and ps.step.locked is not None
                                             for ps in plan.steps),
                               pythons=pythons(plan),
                               offline_binds=([(OFFLINE_CONTEXT, plan.offline)]
                                              if plan.offline else []),
                               lock_label=state.get("digest", state["state"]),
                               **(spec.context(plan) if spec.context else {}))
        text, pieces = stepmap.cut(text.lstrip("\n"))
    except QuoteError as exc:  # validation should have stopped this value; never emit it
        raise error(f"cannot render {plan.name}: {exc}", file=plan.source, path=fmt) from None
    return text, (spec.step_map(pieces) if spec.step_map is not None else None)


# The formats of their own modules (each registers itself with output_format).
from envkit.render import apptainer as _apptainer  # noqa: E402,F401


def render_all(plan: Plan, formats: list[str]) -> Rendered:
    """Each format's file name and text: what a backend writes and builds from (with the
    manifest a Dockerfile copies into the image), and the step maps, from one render."""
    texts: dict[str, str] = {}
    maps: dict[str, stepmap.StepMap] = {}
    for fmt in formats:
        name = FORMATS[fmt].filename
        texts[name], step_map = _render(plan, fmt)
        if step_map is not None:
            maps[name] = step_map
    for fmt in formats:
        if (companions := FORMATS[fmt].companions) is not None:
            texts.update(companions(plan))
    return Rendered(texts, maps)


def write_outputs(plan: Plan, formats: list[str], out: Path) -> list[Path]:
    """Render every format first, then write each file atomically (temp file + rename)."""
    return write_rendered(plan, render_all(plan, formats).files, out)


def write_rendered(plan: Plan, texts: dict[str, str], out: Path) -> list[Path]:
    """Rendered files (from render_all) and the files the plan copies, each written
    atomically (temp file + rename) into ``out``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = []
        modes = {fmt.filename: fmt.mode for fmt in FORMATS.values()}
        for name, text in [*texts.items(), *sorted(plan.generated.items())]:
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            mode = modes.get(name, 0o755 if name.endswith(".sh") else 0o644)
            atomic_write(target, text.encode(), mode)
            written.append(target)
        projects = {i.context_path for ps in plan.steps
                    for i in getattr(ps.step, "inputs", []) if i.flag == "project"}
        for source, rel in plan.files:
            written.append(_copy_in(source, out / rel, project=rel in projects, out=out))
    except OSError as exc:
        raise EnvkitError(error(f"cannot write to {out}: {exc.strerror or exc}",
                                path="--out").diagnostics) from None
    return written


def _copy_in(source: Path, target: Path, project: bool = False,
             out: Path | None = None) -> Path:
    """A file or folder into the build context; a project without its VCS data, caches,
    builds and venvs (pip.PROJECT_SKIP), and never the output folder itself (a project
    may be the folder it is rendered into)."""
    from envkit.steps.pip import skipped

    out_real = out.resolve() if out is not None else None

    def ignore(folder: str, names: list[str]) -> set[str]:
        left = {n for n in names if project and skipped(Path(folder) / n, source)}
        if out_real is not None:
            left |= {n for n in names if (Path(folder) / n).resolve() == out_real}
        return left

    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            shutil.copytree(source, staging / "t", symlinks=True, ignore=ignore)
            for path in (staging / "t", *(staging / "t").rglob("*")):
                if not path.is_symlink():  # as for files: never group- or world-writable
                    path.chmod(path.stat().st_mode & 0o7755)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "t", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        atomic_write(target, source.read_bytes(), source.stat().st_mode & 0o777 & ~0o022)
    return target
