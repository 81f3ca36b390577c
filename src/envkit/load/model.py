"""Load: a recipe file -> a validated, typed Recipe that remembers its source positions.

Values may hold ``{{ name }}`` placeholders for params; they are bound by the
plan, which knows every recipe a recipe requires.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet

from envkit import grammar
from envkit import secrets as secretmod
from envkit.chars import BREAKS
from envkit.checks import CHECKS
from envkit.diagnostics import Diagnostic, EnvkitError, Path_, format_path
from envkit.load import schema
from envkit.load.yamlsrc import Document, load_file
from envkit.steps import REGISTRY

PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_BOOL_TEXT = {"true": True, "yes": True, "on": True, "1": True,
              "false": False, "no": False, "off": False, "0": False}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: Any
    values: tuple[Any, ...] = ()
    description: str = ""
    pattern: str = ""
    minimum: int | None = None  # int
    maximum: int | None = None  # int
    range: str = ""  # version: a specifier it must satisfy
    # a choice narrowed by the recipes of a plan (python): the values before, which a
    # required recipe's `when` may still name
    offered: tuple[Any, ...] = field(default=(), compare=False)

    def coerce(self, value: Any) -> Any:
        """A value from YAML or ``--set`` as this param's type; ValueError says why not."""
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in _BOOL_TEXT:
                return _BOOL_TEXT[str(value).lower()]
            raise ValueError(f"expected true or false, got {value!r}")
        if self.type == "int":
            if isinstance(value, bool):
                raise ValueError(f"expected an integer, got {value!r}")
            try:
                number = int(str(value).strip(), 10)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"{number} is less than the minimum, {self.minimum}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"{number} is more than the maximum, {self.maximum}")
            return number
        if self.type == "choice":
            for allowed in self.values:
                if str(allowed) == str(value):
                    return allowed
            choices = ", ".join(str(v) for v in self.values)
            raise ValueError(f"{value!r} is not one of: {choices}")
        text = value if isinstance(value, str) else str(value)
        if msg := grammar.single_line(text):
            raise ValueError(msg)
        if self.type == "version":
            if msg := grammar.version(text):
                raise ValueError(f"{msg} (PEP 440, e.g. 3.11 or 2.6.2)")
            if self.range and not SpecifierSet(self.range).contains(text, prereleases=True):
                raise ValueError(f"{text} is not {self.range}")
        if self.pattern and not grammar.matches(self.pattern, text, whole=True):
            raise ValueError(f"{text!r} does not match {self.pattern}")
        return text

    def variants(self) -> list[Any]:
        """The values `validate` renders: every choice, both booleans, else the default."""
        if self.type == "choice":
            return list(self.values)
        if self.type == "bool":
            return [False, True]
        return [self.default]


# Accounts and groups every Debian base has (base-passwd, plus _apt and the groups of
# base-files): the image's user must be a new one, since useradd or groupadd of one of these
# fails, and a recipe must not run its image as a system account by name.
SYSTEM_ACCOUNTS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt", "systemd-network",
    "systemd-timesync", "messagebus", "adm", "tty", "disk", "kmem", "dialout", "fax", "voice",
    "cdrom", "floppy", "tape", "sudo", "audio", "dip", "operator", "src", "shadow", "utmp",
    "video", "sasl", "plugdev", "staff", "users", "nogroup", "input", "sgx", "kvm", "render",
    "crontab",
})


@dataclass(frozen=True)
class User:
    """The image's user: not root. Steps run as root; the image and its checks do not."""

    name: str
    uid: int = 1000
    home: str = ""

    @property
    def home_dir(self) -> str:
        return self.home or f"/home/{self.name}"


@dataclass
class Item:
    """A step or a check as written: its kind, its raw value and where it is."""

    kind: str
    name: str
    raw: Any
    path: Path_  # e.g. ('steps', 3, 'pip')
    when: dict[str, Any] = field(default_factory=dict)  # params that must have these values
    secrets: list[str] = field(default_factory=list)  # ids of the secrets a step uses


RUN_FIELDS = ("workdir", "expose", "entrypoint", "cmd")  # how the image runs


@dataclass
class Recipe:
    name: str
    description: str
    version: str
    path: Path
    doc: Document
    base: str = ""
    params: dict[str, Param] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    python: str = ""  # a specifier set: the Pythons its pins install on ('' = any)
    # how the image runs, as written (params bound by the plan); None: not set here
    workdir: str | None = None
    expose: list[Any] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, Any] = field(default_factory=dict)
    steps: list[Item] = field(default_factory=list)
    verify: list[Item] = field(default_factory=list)
    secrets: dict[str, secretmod.Secret] = field(default_factory=dict)
    user: User | None = None
    runtime: dict[str, Any] | None = None  # {apt: [...], keep: [...]}: a two-stage build
    problems: list[Diagnostic] = field(default_factory=list)  # found on load
    unusable: set[str] = field(default_factory=set)  # params whose declaration is broken

    @property
    def folder(self) -> Path:
        return self.path.parent


def load_recipe(path: Path, display: str | None = None) -> Recipe:
    """Parse, schema-check and type one recipe file.

    Problems do not stop the load: a part with an error is left out and the rest
    is still checked, here and by the plan, so one run reports every problem.
    They are kept in ``Recipe.problems``; the plan raises them with its own.
    """
    doc = load_file(path, display)
    if not isinstance(doc.data, dict):
        got = type(doc.data).__name__ if doc.data is not None else "nothing"
        got = {"list": "a list", "str": "a string", "int": "a number", "float": "a number",
               "bool": "a boolean"}.get(got, got)
        raise EnvkitError(doc.diag((), f"a recipe must be a mapping, got {got}",
                                   "start with 'name:', 'description:', 'version:'"))
    problems = schema.validate(doc)
    broken = {d.path for d in problems}

    def ok(*path: str | int) -> bool:
        here = format_path(path)
        return not any(b == here or b.startswith((here + ".", here + "[")) for b in broken)

    data = doc.data

    def field_or(key: str, fallback: Any) -> Any:
        """The field, unless the field itself is wrong (errors inside are filtered later)."""
        return data[key] if key in data and key not in broken else fallback

    raw_params = {k: v for k, v in field_or("params", {}).items() if ok("params", k)}
    params, more = _params(doc, raw_params)
    problems += more
    unusable = set(data.get("params", {}) if isinstance(data.get("params"), dict) else ())
    unusable -= set(params)
    problems += _placeholders(doc, data)
    version = field_or("version", "0")
    if ok("version") and "version" in data and (
            msg := grammar.single_line(version) or grammar.version(version)):
        problems.append(doc.diag(("version",), msg, "PEP 440, e.g. '1.0.0'"))
    description = field_or("description", "")
    if BREAKS.search(description.replace("\n", " ").replace("\t", " ")):
        problems.append(doc.diag(("description",), "must not contain control characters"))
    name = field_or("name", path.stem)
    requires = [r for i, r in enumerate(field_or("requires", [])) if ok("requires", i)]
    for i, req in enumerate(requires):
        if req == name:
            problems.append(doc.diag(("requires", i), "a recipe cannot require itself"))
        elif req in requires[:i]:
            problems.append(doc.diag(("requires", i), f"'{req}' is listed twice"))
    steps = _items(field_or("steps", []), "steps", REGISTRY, ok)
    declared, more = _secrets(doc, field_or("secrets", {}), steps, ok)
    problems += more
    python = field_or("python", "")
    if python and (msg := grammar.single_line(python) or grammar.specifier(python)):
        problems.append(doc.diag(("python",), msg, "a PEP 440 specifier set, e.g. '>=3.10'"))
        python = ""
    user = _user(field_or("user", None))
    if user is not None and user.name in SYSTEM_ACCOUNTS:
        at = ("user",) if isinstance(data.get("user"), str) else ("user", "name")
        problems.append(doc.diag(at, f"'{user.name}' is a system account or group of every "
                                     "Debian base: the image's user must be a new one",
                                 "choose a name of your own, e.g. 'app' or 'dev'"))
        user = None
    return Recipe(
        name=name, description=description, version=version,
        path=path, doc=doc, base=field_or("base", "") if ok("base") else "", params=params,
        requires=list(dict.fromkeys(r for r in requires if r != name)), python=python,
        **{key: field_or(key, None) if ok(key) else None for key in RUN_FIELDS},
        env={k: v for k, v in field_or("env", {}).items() if ok("env", k)},
        steps=steps, verify=_items(field_or("verify", []), "verify", CHECKS, ok),
        secrets=declared, user=user,
        runtime=field_or("runtime", None) if ok("runtime") else None,
        problems=sorted(set(problems)), unusable=unusable,
    )


def _items(values: list[dict[str, Any]], where: str, kinds: dict[str, Any],
           ok: Any) -> list[Item]:
    items = []
    for i, value in enumerate(values):
        if not ok(where, i):
            continue
        kind = next(k for k in value if k in kinds)
        items.append(Item(kind, value.get("name", ""), value[kind], (where, i, kind),
                          value.get("when", {}), value.get("secrets", [])))
    return items


def _user(raw: Any) -> User | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return User(raw)
    return User(raw["name"], raw.get("uid", 1000), raw.get("home", ""))


def _secrets(doc: Document, raw: dict[str, Any], steps: list[Item], ok: Any
             ) -> tuple[dict[str, secretmod.Secret], list[Diagnostic]]:
    """Declared secrets; one that no step uses is a mistake (a typo, or a leftover)."""
    declared: dict[str, secretmod.Secret] = {}
    problems = []
    used = {sid for item in steps for sid in item.secrets}
    sources: dict[str, str] = {}
    for sid, spec in raw.items():
        if not ok("secrets", sid):
            continue
        secret = secretmod.declare(spec, sid)
        if msg := secretmod.check(secret):
            problems.append(doc.diag(("secrets", sid, "env"), msg))
            continue
        if (other := sources.setdefault(secret.source_var, sid)) != sid:
            problems.append(doc.diag(("secrets", sid), f"'{sid}' and '{other}' are both given "
                                     f"as {secret.source_var}", "rename one"))
            continue
        if sid not in used:
            problems.append(doc.diag(("secrets", sid), f"no step uses secret '{sid}'",
                                     "name it in a step's 'secrets', or remove it"))
        declared[sid] = secret
    return declared, problems


def _params(doc: Document, raw: dict[str, Any]) -> tuple[dict[str, Param], list[Diagnostic]]:
    params: dict[str, Param] = {}
    problems: list[Diagnostic] = []
    for name, spec in raw.items():
        at: Path_ = ("params", name)
        if spec.get("pattern") and (msg := grammar.regex(spec["pattern"])):
            problems.append(doc.diag((*at, "pattern"), msg))
            continue
        values = tuple(spec.get("values", ()))
        if len(set(map(str, values))) != len(values):
            problems.append(doc.diag((*at, "values"), "values are listed twice"))
        if spec["type"] != "choice" and "values" in spec:
            problems.append(doc.diag((*at, "values"), "only a choice param has values",
                                     "use type: choice"))
        for key, kind in (("minimum", "int"), ("maximum", "int"), ("range", "version"),
                          ("pattern", "string")):
            if key in spec and spec["type"] != kind:
                article = "an" if kind == "int" else "a"
                problems.append(doc.diag((*at, key), f"only {article} {kind} param has '{key}'"))
        if spec.get("range") and (msg := grammar.specifier(spec["range"])):
            problems.append(doc.diag((*at, "range"), msg))
            continue
        param = Param(name, spec["type"], spec["default"], values,
                      spec.get("description", ""), spec.get("pattern", ""),
                      spec.get("minimum"), spec.get("maximum"), spec.get("range", ""))
        try:
            default = param.coerce(spec["default"])
            if param.type in ("string", "version") and not isinstance(spec["default"], str):
                raise ValueError(f"expected a string, got {spec['default']!r}")
        except ValueError as exc:
            raw_text = doc.raw.get((*at, "default"), "")
            unquoted = param.type == "string" and not isinstance(spec["default"], str)
            hint = f'quote it: "{raw_text}"' if unquoted and raw_text else ""
            problems.append(doc.diag((*at, "default"), str(exc), hint))
            continue
        params[name] = dataclasses.replace(param, default=default)
    return params, problems


def _placeholders(doc: Document, data: dict[str, Any]) -> list[Diagnostic]:
    """Only ``{{ name }}`` is allowed: recipes hold no template logic, and no half of a
    placeholder is left for bash or Docker to read literally."""
    problems = []
    for path, text in walk_strings({k: data[k] for k in ("base", "env", "steps", "verify")
                                    if k in data}):
        if "{%" in text:
            problems.append(doc.diag(path, "template logic ('{%') is not allowed in recipes",
                                     "use params and {{ name }}"))
            continue
        bad = [m.group(0) for m in PLACEHOLDER.finditer(text) if not _NAME.fullmatch(m.group(1))]
        for placeholder in bad:
            problems.append(doc.diag(path, f"bad placeholder {placeholder!r}",
                                     "only {{ name }} of a param"))
        if not bad and (half := _half_placeholder(PLACEHOLDER.sub("", text))):
            problems.append(doc.diag(path, half, "a placeholder is {{ name }}, on one line"))
    return problems


def _half_placeholder(text: str) -> str:
    """'{{' left once placeholders are taken out, or a '}}' that closes no '{' (a shell's
    ${A:-${B}} and awk's {if(x){print}} close their own braces)."""
    if (at := text.find("{{")) >= 0:
        return f"unclosed placeholder {_around(text, at)!r}: '{{{{' without '}}}}'"
    depth = 0
    for i, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0 and text.startswith("}}", i):
                return f"'}}}}' without '{{{{': {_around(text, i)!r}"
            depth = max(depth - 1, 0)
    return ""


def _around(text: str, at: int) -> str:
    line_start = text.rfind("\n", 0, at) + 1
    line_end = text.find("\n", at)
    line = text[line_start: line_end if line_end >= 0 else len(text)]
    return line if len(line) <= 60 else line[max(0, at - line_start - 20):][:60]


def placeholder_names(text: str) -> list[str]:
    return [m.group(1).strip() for m in PLACEHOLDER.finditer(text)]


def walk_strings(value: Any, path: Path_ = ()) -> list[tuple[Path_, str]]:
    """Every string value in a nested value, with its path."""
    out: list[tuple[Path_, str]] = []
    if isinstance(value, str):
        out.append((path, value))
    elif isinstance(value, dict):
        for k, v in value.items():
            out.extend(walk_strings(v, (*path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(walk_strings(v, (*path, i)))
    return out
