"""The Apptainer output format: a definition file (``--format apptainer``) and its linter.

HPC clusters that forbid Docker run Apptainer. The definition bootstraps from the same
base as the Dockerfile (a registry image, or with ``docker-daemon`` one that only the
local engine has, such as ``invoke base``'s), copies the rendered folder in with
``%files``, and its ``%post`` runs install.sh, the shell format of the same plan. Then
``%environment`` holds what the steps export, ``%test`` the recipe's checks (run at the
end of ``apptainer build`` and by ``apptainer test``), ``%labels`` the recipe, its hash
and its params, ``%runscript`` the entrypoint and command.

A CA bundle and secrets are never written in: they are files in a folder bound over
/mnt for the build (``apptainer build --bind DIR:/mnt``), as BuildKit's secret mounts.

Linting: spython (the parser hpccm's and neurodocker's users convert with) must read the
file and find its base; each section that runs (``%post``, ``%environment``, ``%test``,
``%runscript``) goes through shellcheck for the shell it runs in; and a line of a section
body must not start with ``%``, where Apptainer would open a section.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from envkit.plan import Plan
from envkit.render import MANIFEST, OutputFormat, lint, manifest, output_format, render

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


def environment(plan: Plan) -> list[tuple[str, str]]:
    """What a container of the image starts with: what each step exports, in order (the
    shell script's exports; the image keeps one stage, as a host does)."""
    return [pair for ps in plan.build_steps for pair in ps.step.env()]


def checks(plan: Plan) -> list[dict[str, Any]]:
    """The checks a host runs (an Apptainer image keeps the build's toolchain), each as it
    judges itself inside the image. Image-only checks (a port answers) need a network of
    the container's own, which Apptainer does not give."""
    rows = []
    for check in [*plan.build_checks, *plan.checks]:
        argv, code, regex = check.standalone()
        rows.append({"label": check.label(), "argv": argv, "exit_code": code, "regex": regex})
    return rows


def _context(plan: Plan) -> dict[str, object]:
    return {"environment": environment(plan), "checks": checks(plan)}


def _companions(plan: Plan) -> dict[str, str]:
    """What %files copies in besides the plan's files: install.sh, which %post runs, and
    the manifest the image keeps."""
    return {"install.sh": render(plan, "shell"), MANIFEST: manifest(plan)}


output_format(OutputFormat(KIND, "apptainer.def.j2", FILENAME, KIND,
                           "an Apptainer definition file (HPC clusters without Docker)",
                           companions=_companions, context=_context))


def sections(text: str) -> list[tuple[str, str, int, list[str]]]:
    """Each section as Apptainer splits the file: (name, its options, the line of its
    header, its body's lines). A line opens a section when it starts with % and a name."""
    out: list[tuple[str, str, int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        m = _SECTION.match(line)
        if m and m.group(1).lower() in SECTIONS:
            out.append((m.group(1).lower(), m.group(2) or "", number, []))
        elif out:
            out[-1][3].append(line)
    return out


def _shell(options: str, default: str) -> str:
    m = re.search(r"-c\s+(\S+)", options)
    return Path(m.group(1)).name if m else default


def lint_definitions(files: list[Path]) -> list[lint.Finding]:
    """spython reads each file and finds its base; each section that runs goes through
    shellcheck as the shell it runs in (the other lines blank, so lines match)."""
    out: list[lint.Finding] = []
    scripts: dict[Path, Path] = {}
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
        for n, (name, options, start, body) in enumerate(sections(text)):
            if name not in SHELLS or not any(b.strip() for b in body):
                continue
            shell = _shell(options, SHELLS[name])
            blank = [""] * len(lines)
            blank[0] = f"# shellcheck shell={shell}"
            blank[start:start + len(body)] = body
            script = f.with_name(f"{f.name}.{n}.{name}.sh")
            script.write_text("\n".join(blank) + "\n")
            scripts[script] = f
    for finding in lint.shellcheck(sorted(scripts)):
        out.append(lint.Finding(scripts[finding.file], finding.line, finding.tool,
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
    return []


def _normalize(text: str) -> str:
    """%help and %labels name the variant (params, hash): blank for the linters, which read
    neither, so the variants of a recipe are linted once."""
    lines = text.splitlines()
    for name, _, start, body in sections(text):
        if name in ("help", "labels"):
            lines[start:start + len(body)] = [""] * len(body)
    return "\n".join(lines) + "\n"


lint.LINTERS[KIND] = (".def", (lint_definitions,))
lint.NORMALIZERS[KIND] = _normalize
