"""The recipe JSON Schema: the single source of what a recipe may contain.

It is assembled from the step and check kinds, so a new kind lands in the
schema by existing. ``recipe.schema.json`` in the package is this schema
written out (``invoke schema``), for editors; a test keeps the two equal.
The validator is built once per process.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envkit import __version__, envvalue, memo, paths, secrets
from envkit.checks import CHECKS
from envkit.diagnostics import Diagnostic, EnvkitError, did_you_mean
from envkit.load.yamlsrc import Document
from envkit.steps import REGISTRY

if TYPE_CHECKING:  # jsonschema is imported when a document is first checked
    import jsonschema

SCHEMA_ID = "https://envkit.invalid/recipe.schema.json"
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"  # what useradd accepts everywhere
MAX_ERRORS = 100

_PARAM = {
    "type": "object",
    "properties": {
        "type": {"enum": ["string", "int", "bool", "choice", "version"]},
        "description": {"type": "string"},
        "default": {"type": ["string", "integer", "boolean"]},
        "values": {"type": "array", "items": {"type": ["string", "integer"]}, "minItems": 1,
                   "description": "Allowed values of a choice param."},
        "pattern": {"type": "string", "description": "Regex a string param must match."},
        "minimum": {"type": "integer", "description": "Smallest value of an int param."},
        "maximum": {"type": "integer", "description": "Largest value of an int param."},
        "range": {"type": "string",
                  "description": "Version specifier a version param must satisfy, e.g. "
                                 "'>=3.8,<3.14'."},
    },
    "required": ["type", "default"],
    "additionalProperties": False,
    "allOf": [{"if": {"properties": {"type": {"const": "choice"}}},
               "then": {"required": ["values"]}}],
}


_WHEN = {"type": "object", "minProperties": 1,
         "additionalProperties": {"anyOf": [
             {"type": ["string", "integer", "boolean"]},
             {"type": "array", "minItems": 1,
              "items": {"type": ["string", "integer", "boolean"]}}]},
         "description": "Only when each named param has this value (or one of these "
                        "values), e.g. {gpu: true} or {python: ['3.9', '3.11']}."}


_USER_NAME = {"type": "string", "pattern": USER_PATTERN,
              "errorMessage": "a user name is lower-case letters, digits, _ and -"}

_USES = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
         "uniqueItems": True,
         "description": "Secrets (ids declared under 'secrets') this step gets."}


def _items(title: str, kinds: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "properties": {"name": {"type": "string", "minLength": 1},
                       "when": _WHEN, **extra,
                       **{k: kinds[k].schema() for k in sorted(kinds)}},
        "additionalProperties": False,
        "oneOf": [{"required": [k]} for k in sorted(kinds)],
    }


@functools.cache
def recipe_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "envkit recipe",
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN,
                     "errorMessage": "a name is up to 100 lower-case letters, digits, . _ -"},
            "description": {"type": "string", "minLength": 1},
            "version": {"type": "string", "minLength": 1},
            "base": {"anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "object", "required": ["by"],
                 "properties": {"by": {"type": "string", "pattern": f"^{envvalue.NAME}$"}},
                 "additionalProperties": {"type": "string", "minLength": 1}}],
                "description": "Base image, or {by: PARAM, VALUE: image, ...} to choose one "
                               "by a param's value; --base overrides it."},
            "user": {"anyOf": [
                _USER_NAME,
                {"type": "object", "required": ["name"], "additionalProperties": False,
                 "properties": {
                     "name": _USER_NAME,
                     "uid": {"type": "integer", "minimum": 1, "maximum": 60000,
                             "description": "User and group id (default 1000); not 0: root"},
                     "home": {"type": "string", "pattern": "^/",
                              "errorMessage": "an absolute path"}}}],
                "description": "The image runs as this user, not root (the steps still run "
                               "as root). A name, or {name, uid, home}."},
            "params": {"type": "object",
                       "propertyNames": {"pattern": f"^{envvalue.NAME}$"},
                       "additionalProperties": _PARAM},
            "requires": {"type": "array",
                         "items": {"type": "string", "pattern": NAME_PATTERN}},
            "workdir": {"type": "string", "minLength": 1,
                        "description": "The image's working folder (absolute)."},
            "expose": {"type": "array", "items": {"anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "minLength": 1}]},
                       "description": "Ports the image's command listens on: 8888, "
                                      "'8888/udp' or '{{ port }}'; verify checks each TCP "
                                      "port answers when the command runs."},
            "entrypoint": {"type": "array", "minItems": 1,
                           "items": {"type": "string", "minLength": 1},
                           "description": "The image's entrypoint, exec form (no shell)."},
            "cmd": {"type": "array", "items": {"type": "string"},
                    "description": "The image's command (arguments to the entrypoint), exec "
                                   "form."},
            "python": {"type": "string", "minLength": 1,
                       "description": "The Pythons this recipe's pins install on, as a PEP 440 "
                                      "specifier set, e.g. '>=3.10,<3.14': the shared "
                                      "'python' param offers only these in a plan with it."},
            "env": envvalue.SCHEMA,
            "secrets": {**secrets.SCHEMA,
                        "description": "Secrets by id, given at build time (--secret); "
                                       "steps name the ones they use."},
            "runtime": {
                "type": "object", "additionalProperties": False, "minProperties": 1,
                "properties": {
                    "apt": {"type": "array", "items": {"type": "string", "minLength": 1},
                            "description": "Debian packages the result needs to run (shared "
                                           "libraries, an interpreter), locked like any apt "
                                           "step."},
                    "keep": {"type": "array", "items": {"type": "string", "minLength": 1},
                             "description": "Absolute paths the runtime stage copies from the "
                                            "build stage (each venv is kept anyway)."}},
                "description": "Build in two stages: the steps run in a build stage with the "
                               "toolchain; the image is a runtime stage on the same base with "
                               "only these packages and paths. A recipe without it keeps its "
                               "toolchain (the host script is the same either way)."},
            "steps": {"type": "array", "items": _items("step", REGISTRY, {"secrets": _USES})},
            "verify": {"type": "array", "items": _items("check", CHECKS, {})},
        },
        "required": ["name", "description", "version"],
        "additionalProperties": False,
    }


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    import jsonschema

    cls = jsonschema.validators.validator_for(recipe_schema())
    return cls(recipe_schema())


def shipped_schema_path() -> Path:
    return paths.package_dir() / "recipe.schema.json"


def schema_text() -> str:
    return json.dumps(recipe_schema(), indent=2, sort_keys=True) + "\n"


@functools.cache
def _digest() -> str:
    """The schema and what judges it: envkit's version and jsonschema's installed files
    (found, not imported: a render whose recipe passed before never imports it)."""
    return memo.key(schema_text(), __version__, validator_key())


def validator_key() -> str:
    import importlib.util

    spec = importlib.util.find_spec("jsonschema")
    try:
        st = Path(spec.origin).stat() if spec and spec.origin else None
    except OSError:
        st = None
    return f"{spec.origin if spec else ''}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}"


def validate(doc: Document) -> list[Diagnostic]:
    """The schema's problems with a recipe; none for data that passed this schema before
    (memo: jsonschema costs more than all of a render's own work)."""
    name = memo.key(_digest(), json.dumps(doc.data, sort_keys=True, ensure_ascii=False))
    if memo.get("schema", name) is True:
        return []
    out = _validate(doc)
    if not out:
        memo.put("schema", name, True)
    return out


def _validate(doc: Document) -> list[Diagnostic]:
    # jsonschema takes up to 0.3 ms an error: a file of thousands of mistakes gets the first
    errors = list(itertools.islice(_validator().iter_errors(doc.data), MAX_ERRORS + 1))
    out = [d for err in errors[:MAX_ERRORS] for d in _explain(err, doc)]
    # An unknown key already says what is wrong with its object; drop the echo.
    unknown = {d.path for d in out if d.message.startswith("unknown")}
    out = sorted({d for d in out if not (d.message.startswith(("a step needs", "a check needs"))
                                         and any(u.startswith(d.path + ".") for u in unknown))})
    if len(errors) > MAX_ERRORS:  # the load skips only broken parts, so it needs them all
        raise EnvkitError(out)
    return out


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string",
               list: "list", dict: "mapping", type(None): "null"}
_SCHEMA_TYPES = {"object": "mapping", "array": "list"}


def _type_of(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _matches(branch: dict[str, Any], value: Any) -> bool:
    types = branch.get("type")
    if types is None:
        return ("const" in branch and isinstance(value, str)) or "enum" in branch
    types = [types] if isinstance(types, str) else types
    vt = _type_of(value)
    return any(_SCHEMA_TYPES.get(t, t) == vt or (t == "number" and vt == "integer")
               for t in types)


def _explain(err: jsonschema.ValidationError, doc: Document) -> list[Diagnostic]:
    path = tuple(err.absolute_path)
    value = err.instance
    v = err.validator
    if "propertyNames" in err.schema_path:  # the instance is the key; point at it
        return [doc.diag((*path, value), f"invalid name {value!r}",
                         "letters, digits and '_', not starting with a digit", key=True)]
    if v == "anyOf" or (v == "oneOf" and not _is_kind_choice(err)):
        branches = err.validator_value
        fitting = [i for i, b in enumerate(branches) if _matches(b, value)]
        if len(fitting) == 1:
            sub = [e for e in err.context if e.schema_path and e.schema_path[0] == fitting[0]]
            if sub:
                return [d for e in sub for d in _explain(e, doc)]
        wanted = sorted({_describe(b) for b in branches})
        hint = ""
        if "list" in wanted and isinstance(value, str | int | float):
            hint = f"write a list: [{value}]"
        return [doc.diag(path, f"expected {' or '.join(wanted)}, got {_type_of(value)}", hint)]
    if v == "oneOf":
        kinds = [b["required"][0] for b in err.validator_value]
        what = err.schema.get("title", "item")
        if not isinstance(value, dict):  # the type error says it already
            return []
        present = [k for k in kinds if k in value]
        if not present:
            return [doc.diag(path, f"a {what} needs one kind key", f"one of: {', '.join(kinds)}")]
        found = " and ".join(f"'{k}'" for k in present)
        return [doc.diag(path, f"a {what} has exactly one kind key, found {found}",
                         f"split it into {len(present)} {what}s")]
    if v == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        what = err.schema.get("title")
        out = []
        for key in value:
            if key in allowed:
                continue
            hint = did_you_mean(key, allowed)
            if what in ("step", "check"):
                message = f"unknown {what} kind '{key}'"
                kinds = (k for k in allowed if k not in ("name", "when", "secrets"))
                hint = hint or "kinds: " + ", ".join(kinds)
            else:
                message = f"unknown key '{key}'"
                hint = hint or ("allowed: " + ", ".join(allowed) if allowed else "")
            out.append(doc.diag((*path, key), message, hint, key=True))
        return out
    if v == "required":
        missing = [k for k in err.validator_value if isinstance(value, dict) and k not in value]
        return [doc.diag(path, f"missing required field '{k}'") for k in missing]
    if v == "type":
        expected = err.validator_value
        expected = [expected] if isinstance(expected, str) else expected
        names = " or ".join(_SCHEMA_TYPES.get(t, t) for t in expected)
        hint = ""
        if "string" in expected and path in doc.raw and not isinstance(value, str | None):
            hint = f'quote it: "{doc.raw[path]}"'
        return [doc.diag(path, f"expected {names}, got {_type_of(value)}", hint)]
    if v == "enum":
        choices = [str(c) for c in err.validator_value]
        hint = did_you_mean(str(value), choices)
        return [doc.diag(path, f"expected one of {', '.join(choices)}, got {value!r}", hint)]
    if v == "const":
        return [doc.diag(path, f"expected {err.validator_value!r}, got {value!r}")]
    if v == "pattern":
        message = err.schema.get("errorMessage") or f"does not match {err.validator_value}"
        return [doc.diag(path, f"{message}, got {value!r}")]
    if v == "minItems":
        return [doc.diag(path, "must not be empty" if err.validator_value == 1
                         else f"needs at least {err.validator_value} items")]
    if v == "minLength":
        return [doc.diag(path, "must not be empty")]
    return [doc.diag(path, err.message)]


def _is_kind_choice(err: jsonschema.ValidationError) -> bool:
    return all(set(b) == {"required"} for b in err.validator_value)


def _describe(branch: dict[str, Any]) -> str:
    if "const" in branch:
        return repr(branch["const"])
    t = branch.get("type", "value")
    if isinstance(t, list):
        return " or ".join(_SCHEMA_TYPES.get(x, x) for x in t)
    return _SCHEMA_TYPES.get(t, t)
