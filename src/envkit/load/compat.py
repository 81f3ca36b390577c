"""The compatibility table (``recipes/compat.yaml``): which releases exist for which Python
and CUDA, and what goes with a CUDA version. Data, loaded once per catalog.

The plan uses it twice: a ``cuda`` param brings derived values (``{{ cuda_tag }}``,
``{{ cuda_image }}``, ...), and every pip requirement on a package the table lists must
match a release that exists for the plan's Python and CUDA, else the error lists the
releases that do. Versions are compared with ``packaging``, never as strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envkit.diagnostics import Diagnostic, EnvkitError
from envkit.load.yamlsrc import load_file

FILE = "compat.yaml"
_VERSION = {"type": "string", "minLength": 1}
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "cuda": {"type": "object", "additionalProperties": {
            "type": "object",
            "properties": {
                "tag": {"type": "string", "pattern": "^cu[0-9]+$"},
                "image": {"type": "string"},
                "driver": {"type": "string"},
                "runfile": {"type": "object", "properties": {
                    "url": {"type": "string"}, "sha256": {"type": "string",
                                                          "pattern": "^[0-9a-f]{64}$"}},
                    "required": ["url", "sha256"], "additionalProperties": False},
            },
            "required": ["tag", "image"], "additionalProperties": False}},
        "packages": {"type": "object", "additionalProperties": {
            "type": "array", "items": {
                "type": "object",
                "properties": {
                    "version": _VERSION, "python": {"type": "string"},
                    "cuda": {"type": "array", "items": {"type": "string"}},
                    "with": {"type": "object", "additionalProperties": _VERSION},
                },
                "required": ["version", "python"], "additionalProperties": False}}},
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Release:
    version: Version
    python: SpecifierSet
    cuda: tuple[str, ...] | None  # None: not a CUDA build
    goes_with: dict[str, Version] = field(default_factory=dict)

    def fits(self, python: Version | None, cuda: str | None) -> bool:
        if python is not None and not self.python.contains(python, prereleases=True):
            return False
        return cuda is None or self.cuda is None or cuda in self.cuda


@dataclass
class Table:
    cuda: dict[str, dict[str, Any]] = field(default_factory=dict)
    packages: dict[str, list[Release]] = field(default_factory=dict)
    file: str = ""

    def derived(self, cuda: str) -> dict[str, str]:
        """The values a ``cuda`` param brings: cuda_tag, cuda_image, cuda_driver, ..."""
        row = self.cuda.get(cuda, {})
        out = {f"cuda_{k}": str(v) for k, v in row.items() if isinstance(v, str)}
        for k, v in row.get("runfile", {}).items():
            out[f"cuda_runfile_{k}"] = v
        return out


def load(path: Path) -> Table:
    """The table at ``path``; an empty one when the catalog has none."""
    if not path.is_file():
        return Table()
    doc = load_file(path)
    problems = doc.schema_problems(_SCHEMA, doc.data or {})
    if problems:
        raise EnvkitError(problems)
    data = doc.data or {}
    table = Table(cuda={str(k): v for k, v in data.get("cuda", {}).items()}, file=doc.file)
    for name, rows in data.get("packages", {}).items():
        releases = []
        for i, row in enumerate(rows):
            at = ("packages", name, i)
            try:
                cuda = row.get("cuda")
                for j, c in enumerate(cuda or ()):
                    if c not in table.cuda:
                        problems.append(doc.diag((*at, "cuda", j),
                                                 f"CUDA {c} is not under 'cuda:' in {FILE}"))
                releases.append(Release(
                    Version(row["version"]), SpecifierSet(row["python"]),
                    tuple(cuda) if cuda is not None else None,
                    {canonicalize_name(k): Version(v) for k, v in row.get("with", {}).items()}))
            except (InvalidVersion, InvalidSpecifier) as exc:
                problems.append(doc.diag(at, str(exc)))
        table.packages[canonicalize_name(name)] = releases
    if problems:
        raise EnvkitError(problems)
    return table


@dataclass
class Pin:
    """One pip requirement of a plan, and where it is written."""

    requirement: str
    where: Diagnostic  # its position; message and hint are filled in on a finding


def _public(spec: SpecifierSet) -> tuple[SpecifierSet, str]:
    """'==2.5.1+cu124' -> ('==2.5.1', 'cu124'): rows list public versions."""
    local = ""
    parts = []
    for s in spec:
        version = s.version
        if "+" in version and s.operator in ("==", "==="):
            version, local = version.split("+", 1)
        parts.append(f"{s.operator}{version}")
    return SpecifierSet(",".join(parts)), local


def check(table: Table, pins: list[Pin], python: str | None, cuda: str | None
          ) -> list[Diagnostic]:
    """Every pin on a listed package must match a release for this Python and CUDA."""
    if not table.packages:
        return []
    py = _python(python)
    problems: list[Diagnostic] = []
    chosen: dict[str, tuple[Pin, list[Release]]] = {}
    for pin in pins:
        try:
            req = Requirement(pin.requirement)
        except InvalidRequirement:
            continue  # the grammar check reports it
        name = canonicalize_name(req.name)
        releases = table.packages.get(name)
        if not releases:
            continue
        if req.marker and py is not None and not req.marker.evaluate(
                {"python_version": f"{py.major}.{py.minor}", "python_full_version": str(py)}):
            continue  # pip skips it on this Python
        spec, local = _public(req.specifier)
        target = _target(python, cuda)
        if local.startswith("cu") and cuda and local != table.cuda.get(cuda, {}).get("tag"):
            problems.append(_at(pin, f"{pin.requirement} is a build for {local}, but cuda is "
                                f"{cuda} ({table.cuda.get(cuda, {}).get('tag', '?')})",
                                f"use the +{table.cuda.get(cuda, {}).get('tag', '')} build "
                                "or choose another cuda"))
            continue
        try:
            matching = [r for r in releases if spec.contains(r.version, prereleases=True)]
        except ValueError:  # a version of more than 4300 digits: Python refuses the int
            matching = []
        fitting = [r for r in matching if r.fits(py, cuda)]
        if fitting:
            chosen[name] = (pin, fitting)
            continue
        valid = sorted({r.version for r in releases if r.fits(py, cuda)}, reverse=True)
        listed = ", ".join(map(str, valid[:12])) + (", ..." if len(valid) > 12 else "")
        why = ("no such release is known" if not matching
               else "it exists only for " + _ranges(matching))
        problems.append(_at(pin, f"{req.name}{spec} does not exist for {target}: {why}",
                            f"valid for {target}: {listed or 'none'} (see {FILE})"))
    # A pinned pair must go together; an unpinned partner only needs one fitting release
    # that is the pair (pip would pick it).
    for name, (_, fits) in chosen.items():
        if len(fits) != 1:
            continue
        release = fits[0]
        for other, version in release.goes_with.items():
            if other in chosen and version not in {r.version for r in chosen[other][1]}:
                other_pin, other_fits = chosen[other]
                got = ", ".join(str(r.version) for r in other_fits)
                problems.append(_at(other_pin, f"{other} {got} does not go with {name} "
                                    f"{release.version}",
                                    f"{name} {release.version} goes with {other} {version} "
                                    f"({FILE})"))
    return problems


def _ranges(releases: list[Release]) -> str:
    parts = []
    for r in releases:
        text = f"Python {r.python}"
        if r.cuda is not None:
            text += " with CUDA " + "/".join(r.cuda)
        parts.append(text)
    return "; ".join(dict.fromkeys(parts))


def _python(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return Version(text)
    except ValueError:  # InvalidVersion, or more than 4300 digits
        return None


def _target(python: str | None, cuda: str | None) -> str:
    parts = [f"Python {python}"] if python else []
    if cuda:
        parts.append(f"CUDA {cuda}")
    return " and ".join(parts) or "any Python"


def _at(pin: Pin, message: str, hint: str) -> Diagnostic:
    w = pin.where
    return Diagnostic(w.file, w.line, w.col, w.path, message, hint)
