"""Secrets a recipe declares by id: a private index's .netrc, a git token, an API key.

Values are given at build or run time (``--secret id=ID,src=FILE``, ``--secret
id=ID,env=VAR``, or ``ENVKIT_SECRET_<ID>`` / ``ENVKIT_SECRET_<ID>_FILE`` in the
environment) and never reach a rendered file, a layer, the image history, a label
or a log: a Docker build mounts each one (a BuildKit secret) on the steps that use
it, the shell script copies it into a private folder it removes when it ends, and
envkit's logs show ``***`` where its text would be.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from envkit import envvalue
from envkit.diagnostics import EnvkitError, did_you_mean, error

ID = r"[a-z0-9][a-z0-9_.-]{0,63}"
MODES = ("file", "value")
MAX_BYTES = 1024 * 1024
# Variables a secret must not replace: the shell's and envkit's own.
RESERVED = re.compile(r"PATH|HOME|BASH_ENV|ENV|IFS|SHELL|LD_\w+|ENVKIT_\w+")

SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": f"^{ID}$"},
    "additionalProperties": {
        "type": "object",
        "properties": {
            "env": {"type": "string", "pattern": f"^{envvalue.NAME}$",
                    "description": "The variable the steps that use it get."},
            "as": {"enum": list(MODES),
                   "description": "file (default): the variable is the path of a file holding "
                                  "the secret; value: the variable holds the secret itself."},
            "required": {"type": "boolean", "description": "Default true: no build without it."},
            "description": {"type": "string"},
        },
        "required": ["env"],
        "additionalProperties": False,
    },
}


class Secret(NamedTuple):
    id: str
    env: str
    mode: str = "file"
    required: bool = True
    description: str = ""

    @property
    def source_var(self) -> str:
        """Where the shell script (and envkit, when no --secret names it) looks for it."""
        return "ENVKIT_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", self.id).upper()

    @property
    def target(self) -> str:
        return f"/run/secrets/{self.id}"


def declare(spec: dict[str, Any], sid: str) -> Secret:
    return Secret(sid, spec["env"], spec.get("as", "file"), spec.get("required", True),
                  spec.get("description", ""))


def check(secret: Secret) -> str:
    if RESERVED.fullmatch(secret.env):
        return f"'{secret.env}' is not for a secret: the shell or envkit needs it"
    return ""


# --- giving secrets to a build ------------------------------------------------------------


@dataclass(frozen=True)
class Given:
    """Where one secret comes from: a file, or a variable of envkit's environment."""

    id: str
    src: str = ""
    env: str = ""


def parse(flags: list[str]) -> dict[str, Given]:
    """``--secret id=ID,src=FILE`` or ``--secret id=ID,env=VAR`` (Docker's spelling)."""
    out: dict[str, Given] = {}
    for flag in flags:
        fields: dict[str, str] = {}
        for part in flag.split(","):
            key, sep, value = part.partition("=")
            key = {"source": "src", "type": ""}.get(key.strip(), key.strip())
            if not sep or key not in ("id", "src", "env", ""):
                raise error(f"expected id=ID,src=FILE or id=ID,env=VAR, got {flag!r}",
                            path="--secret")
            if key:
                fields[key] = value
        if not fields.get("id") or bool(fields.get("src")) == bool(fields.get("env")):
            raise error(f"expected id=ID and one of src=FILE or env=VAR, got {flag!r}",
                        path="--secret")
        out[fields["id"]] = Given(fields["id"], fields.get("src", ""), fields.get("env", ""))
    return out


@dataclass
class Provided:
    """Each secret the plan uses, as a file only envkit's user can read, and the texts a log
    must not show."""

    files: dict[str, Path] = field(default_factory=dict)
    redact: list[str] = field(default_factory=list)

    def env(self, secrets: Mapping[str, Secret]) -> dict[str, str]:
        """For the shell script: ENVKIT_SECRET_<ID>_FILE of each given secret."""
        return {secrets[sid].source_var + "_FILE": str(path) for sid, path in self.files.items()}


@contextlib.contextmanager
def provide(used: Mapping[str, Secret], given: Mapping[str, Given],
            environ: Mapping[str, str] | None = None) -> Iterator[Provided]:
    """Find every secret the plan uses; fail before anything runs when a required one is
    missing. Values from variables go into a private temporary folder, removed afterwards."""
    environ = os.environ if environ is None else environ
    for sid in given:
        if sid not in used:
            raise error(f"the recipe uses no secret '{sid}'", path="--secret",
                        hint=did_you_mean(sid, used) or
                        ("its secrets: " + ", ".join(used) if used else "it declares none"))
    values = {sid: _value(secret, given.get(sid), environ) for sid, secret in used.items()}
    missing = [error(f"secret '{sid}' is required and was not given", path="--secret",
                     hint=f"pass --secret id={sid},src=FILE (or env=VAR), or set "
                          f"{secret.source_var}_FILE or {secret.source_var}").diagnostics[0]
               for sid, secret in used.items() if secret.required and values[sid] is None]
    if missing:
        raise EnvkitError(missing)
    tmp = Path(tempfile.mkdtemp(prefix="envkit-secrets."))  # mode 0700
    try:
        out = Provided()
        for sid, data in values.items():
            if data is None:
                continue
            path = tmp / sid
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            out.files[sid] = path
            out.redact += redactions(data)
        yield out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _value(secret: Secret, given: Given | None, environ: Mapping[str, str]) -> bytes | None:
    src = given.src if given else environ.get(secret.source_var + "_FILE", "")
    var = given.env if given else (secret.source_var if secret.source_var in environ else "")
    if src:
        try:
            with open(Path(src).expanduser(), "rb") as fh:
                data = fh.read(MAX_BYTES + 1)
        except OSError as exc:
            raise error(f"cannot read secret '{secret.id}' from {src}: "
                        f"{exc.strerror or exc}", path="--secret") from None
        if len(data) > MAX_BYTES:
            raise error(f"secret '{secret.id}' in {src} is over 1 MiB", path="--secret")
        return data
    if var:
        if var not in environ:
            raise error(f"secret '{secret.id}': the variable {var} is not set", path="--secret")
        return environ[var].encode()
    return None


def redactions(data: bytes) -> list[str]:
    """What a log must not show of a secret: its text, each line of it, and each word of
    8 or more characters (a password or token inside a .netrc line)."""
    text = data.decode("utf-8", "replace")
    out = {text.strip()}
    for line in text.splitlines():
        out.add(line.strip())
        out.update(word for word in line.split() if len(word) >= 8)
    return sorted((s for s in out if len(s) >= 4), key=len, reverse=True)


def redact(line: str, texts: list[str]) -> str:
    for text in texts:  # longest first, so a line is masked before the words in it
        if text in line:
            line = line.replace(text, "***")
    return line
