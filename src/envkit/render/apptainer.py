"""The Apptainer output format: a definition file (``--format apptainer``) and its linter.

HPC clusters that forbid Docker run Apptainer. The definition bootstraps from the same
base as the Dockerfile (a registry image, or with ``docker-daemon`` one that only the
local engine has, such as ``invoke base``'s), copies the rendered folder in with
``%files``, and its ``%post`` runs install.sh, the shell format of the same plan. Then
``%environment`` holds what the steps export, ``%test`` the recipe's checks (run at the
end of ``apptainer build`` and by ``apptainer test``), ``%labels`` the recipe, its hash
and its params, ``%runscript`` the entrypoint and command. A recipe with ``runtime:`` gets
the Dockerfile's two stages: the build stage runs install.sh, and the image is a runtime
stage that copies the kept paths ``from build`` and runs runtime.sh (its apt step alone).

A CA bundle and secrets are never written in: they are files in a folder bound over
/mnt for the build (``apptainer build --bind DIR:/mnt``), as BuildKit's secret mounts.

Linting: spython (the parser hpccm's and neurodocker's users convert with) must read the
file and find its base; each section that runs (``%post``, ``%environment``, ``%test``,
``%runscript``) goes through shellcheck for the shell it runs in; and a line of a section
body must not start with ``%``, where Apptainer would open a section.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from envkit.plan import BUILD, Plan
from envkit.render import MANIFEST, OutputFormat, lint, manifest, output_format, render
from envkit.render.quote import QuoteError

KIND = "apptainer"
FILENAME = "envkit.def"
# Sections Apptainer reads (https://apptainer.org/docs/user/main/definition_files.html)
SECTIONS = ("setup", "files", "post", "environment", "runscript", "startscript", "test",
            "labels", "help", "arguments", "app", "appinstall", "appenv", "apprun",
            "applabels", "appfiles", "apphelp", "apptest", "appstart")
# The sections that run, and the shell each runs in unless ``-c`` says otherwise.
SHELLS = {"post": "sh", "environment": "sh", "runscript": "sh", "test": "sh",
          "startscript": "sh"}
_SECTION = re.compile(r"%(\w+)(?:[ \t]+(.*))?$")
_STAGE = re.compile(r"bootstrap:", re.IGNORECASE)  # a stage's first header line
_STAGE_NAME = re.compile(r"stage:", re.IGNORECASE)
_UNNAMED = "spython-base"  # spython's name for a file's one unnamed stage


def environment(plan: Plan) -> list[tuple[str, str]]:
    """What a container of the image starts with: what each step exports, in order (the
    shell script's exports), or with two stages what the Dockerfile's runtime stage sets."""
    if plan.keep is not None:
        return list(plan.runtime_env)
    return [pair for ps in plan.build_steps for pair in ps.step.env()]


def checks(plan: Plan) -> list[dict[str, Any]]:
    """The checks of what the image holds, each as it judges itself inside it: a host's
    (one stage keeps the build's toolchain), or with two stages the runtime image's, as
    Docker's. Image-only checks (a port answers) need a network of the container's own,
    which Apptainer does not give."""
    rows = []
    for check in [*(plan.build_checks if plan.keep is None else []), *plan.checks]:
        argv, code, regex = check.standalone()
        rows.append({"label": check.label(), "argv": argv, "exit_code": code, "regex": regex})
    return rows


# ``%files`` runs each path through /bin/sh to expand globs (Apptainer's expandPath), so a
# path that stage copies must hold no character a shell reads: envkit's bare words
_STAGE_PATH = re.compile(r"/[A-Za-z0-9_@%+=:,./-]*")


def stage_files(plan: Plan) -> list[str] | None:
    """What the runtime stage copies from the build stage (the Dockerfile's COPY --from):
    None for one stage. A path a shell would read otherwise is refused, not rendered."""
    if plan.keep is None:
        return None
    for path in plan.keep:
        if not _STAGE_PATH.fullmatch(path):
            raise QuoteError(f"Apptainer's %files reads its paths with /bin/sh: {path!r} has "
                             "a character it would expand; keep paths of letters, digits "
                             "and _@%+=:,./-")
    return list(plan.keep)


def runtime_plan(plan: Plan) -> Plan | None:
    """A two-stage plan's runtime steps (its apt step) as a plan of their own, numbered
    from 1, for the script the runtime stage runs; None when it has none."""
    if plan.keep is None or not plan.runtime_steps:
        return None
    steps = [dataclasses.replace(ps, number=i, stage=BUILD)
             for i, ps in enumerate(plan.runtime_steps, 1)]
    return dataclasses.replace(plan, steps=steps, keep=None, runtime_env=[], checks=[],
                               build_checks=[], image_checks=[])


def _context(plan: Plan) -> dict[str, object]:
    return {"environment": environment(plan), "checks": checks(plan),
            "stage_files": stage_files(plan), "runtime_script": runtime_plan(plan) is not None}


def _companions(plan: Plan) -> dict[str, str]:
    """What %files copies in besides the plan's files: install.sh, which %post runs (with
    two stages, the build stage's), the runtime stage's runtime.sh, and the manifest the
    image keeps."""
    out = {"install.sh": render(plan, "shell"), MANIFEST: manifest(plan)}
    if (runtime := runtime_plan(plan)) is not None:
        out["runtime.sh"] = render(runtime, "shell")
    return out


output_format(OutputFormat(KIND, "apptainer.def.j2", FILENAME, KIND,
                           "an Apptainer definition file (HPC clusters without Docker)",
                           companions=_companions, context=_context))


def sections(text: str) -> list[tuple[str, str, int, list[str]]]:
    """Each section as Apptainer splits the file: (name, its options, the line of its
    header, its body's lines). A line opens a section when it starts with % and a name;
    a stage's header (``Bootstrap:`` at the start of a line) ends the section before it."""
    out: list[tuple[str, str, int, list[str]]] = []
    open_ = False
    for number, line in enumerate(text.splitlines(), 1):
        m = _SECTION.match(line)
        if m and m.group(1).lower() in SECTIONS:
            out.append((m.group(1).lower(), m.group(2) or "", number, []))
            open_ = True
        elif _STAGE.match(line):
            open_ = False
        elif open_:
            out[-1][3].append(line)
    return out


def _shell(options: str, default: str) -> str:
    m = re.search(r"-c\s+(\S+)", options)
    return Path(m.group(1)).name if m else default


def lint_structure(files: list[Path]) -> list[lint.Finding]:
    """spython reads each file, finds its base and its stages; no line of a section's body
    starts with % (Apptainer would open a section there)."""
    out: list[lint.Finding] = []
    for f in files:
        text = f.read_text()
        out += _parse(f, text)
        lines = text.splitlines()
        first = next((i for i, ln in enumerate(lines) if _SECTION.match(ln)), len(lines))
        out += [lint.Finding(f, i + 1, "apptainer", "section", "error",
                             f"'{ln.split()[0]}' is no section Apptainer knows; a line of a "
                             "section's body must not start with %")
                for i, ln in enumerate(lines) if i >= first and ln.startswith("%")
                and not (_SECTION.match(ln) and ln[1:].split()[0].lower() in SECTIONS)]
    return out


def lint_definitions(files: list[Path]) -> list[lint.Finding]:
    """:func:`lint_structure`, and each section that runs through shellcheck as the shell
    it runs in (the pieces validate lints, :func:`_split`): a whole file at a time, each
    finding on its line of the file."""
    out = lint_structure(files)
    scripts: dict[Path, tuple[Path, int, int]] = {}  # script -> file, offset, prelude
    for f in files:
        for n, (kind, text, offset, prelude) in enumerate(_split(f.read_text())):
            if kind == SECTION_KIND:
                script = f.with_name(f"{f.name}.{n}.sh")
                script.write_text(text)
                scripts[script] = (f, offset, prelude)
    for finding in lint.shellcheck(sorted(scripts)):
        f, offset, prelude = scripts[finding.file]
        if finding.line > prelude:  # not on the shell line envkit put before the body
            out.append(lint.Finding(f, finding.line - prelude + offset, finding.tool,
                                    finding.code, finding.level, finding.message))
    return out


def _parse(f: Path, text: str) -> list[lint.Finding]:
    def finding(line: int, message: str) -> lint.Finding:
        return lint.Finding(f, line, "spython", "parse", "error", message)

    head = next((i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith("From:")), 0)
    want = text.splitlines()[head - 1].split(":", 1)[1].strip() if head else ""
    if not head:
        return [finding(1, "no From: header")]
    from spython.logger import bot
    from spython.logger.message import QUIET
    from spython.main.parse.parsers import SingularityParser

    # spython's logger writes its warnings to the terminal itself: quiet, and no history
    # kept (never sys.stdout swapped: the linters run in threads, and validate prints)
    bot.level, bot.history = QUIET, []
    try:
        recipe = SingularityParser(str(f)).recipe
    except (Exception, SystemExit) as exc:  # spython exits on what it cannot read
        return [finding(0, f"spython cannot read it: {exc}")]
    found = [layer.fromHeader for layer in recipe.values()]
    if want.lower() not in found:
        return [finding(head, f"spython reads the base as {found}, not {want!r}")]
    # spython takes a section's first line holding 'stage:' (or any holding 'bootstrap:')
    # for a header: the stages it reads must be the file's (unnamed: spython's default)
    declared = [ln.split(":", 1)[1].strip().lower() for ln in text.splitlines()
                if _STAGE_NAME.match(ln)] or [_UNNAMED]
    if list(recipe) != declared:
        return [finding(head, f"spython reads the stages {list(recipe)}, the file has "
                        f"{declared}: a line holding 'stage:', 'from:' or 'bootstrap:' "
                        "reads as a header to it")]
    return []


def _normalize(text: str) -> str:
    """%help and %labels name the variant (params, hash): blank for the linters, which read
    neither, so the variants of a recipe are linted once."""
    lines = text.splitlines()
    for name, _, start, body in sections(text):
        if name in ("help", "labels"):
            lines[start:start + len(body)] = [""] * len(body)
    return "\n".join(lines) + "\n"


def _split(text: str) -> list[tuple[str, str, int, int]]:
    """What validate lints of a definition (lint.pieces): the file, for its structure (help
    and labels blanked: they name the variant), and each section that runs on its own, its
    shell on a line before it, so a section many recipes share (%post) is linted once."""
    out = [(KIND, _normalize(text), 0, 0)]
    for name, options, start, body in sections(text):
        if name in SHELLS and any(b.strip() for b in body):
            shell = _shell(options, SHELLS[name])
            out.append((SECTION_KIND, f"# shellcheck shell={shell}\n" + "\n".join(body) + "\n",
                        start, 1))
    return out


SECTION_KIND = "apptainer-section"  # a section's body, as shellcheck reads it
lint.LINTERS[KIND] = (".def", (lint_structure,))
lint.LINTERS[SECTION_KIND] = (".sh", ("shellcheck",))
lint.SPLITTERS[KIND] = _split
