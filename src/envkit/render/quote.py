"""Quoting for each language a value lands in. Templates pass every value through one.

- ``sh``: one bash word. Plain words stay bare; others go in single quotes; text
  with control characters uses ``$'...'`` so no raw newline ever reaches a
  rendered line (a Dockerfile line would end there).
- ``df_str``: a double-quoted Dockerfile word (ENV, LABEL), with ``"``, ``\\``
  and ``$`` escaped, since Docker expands ``$VAR`` there.
- ``json``: a Dockerfile JSON array (exec form, COPY).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from envkit import envvalue
from envkit.chars import ASCII_CONTROL, BREAKS

_BARE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_CONTROL = ASCII_CONTROL  # inside quotes, other characters are literal


class QuoteError(ValueError):
    pass


def sh(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        raise QuoteError("a NUL character cannot be passed to the shell")
    if _BARE.fullmatch(text) and not text.startswith("="):
        return text
    if not _CONTROL.search(text):
        return "'" + text.replace("'", "'\\''") + "'"
    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif _CONTROL.fullmatch(ch):
            out.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\x{ord(ch):02x}"))
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def sh_posix(value: object) -> str:
    """One word for a POSIX shell (an Apptainer section's /bin/sh), which has no $'...':
    text with a control character is refused."""
    text = value if isinstance(value, str) else str(value)
    if _CONTROL.search(text):
        raise QuoteError(f"a /bin/sh word cannot hold control characters: {text!r}")
    return sh(text)


def sh_posix_env(value: str) -> str:
    """sh_env for a POSIX shell (see sh_posix)."""
    if _CONTROL.search(value):
        raise QuoteError(f"a /bin/sh word cannot hold control characters: {value!r}")
    return sh_env(value)


def sh_cmd(value: object) -> str:
    """A word in command position: quoted if bash would read it as an assignment (X=1)."""
    text = sh(value)
    if re.match(r"[A-Za-z_][A-Za-z0-9_]*\+?=", text):
        return "'" + text + "'"
    return text


def sh_words(values: Iterable[object]) -> str:
    return " ".join(sh(v) for v in values)


def sh_env(value: str) -> str:
    """An env value for bash: literal parts quoted, ${NAME} parts expanded (empty if unset)."""
    out = []
    for kind, text in envvalue.parts(value):
        out.append(f'"${{{text}:-}}"' if kind == "ref" else sh(text))
    return "".join(out) or "''"


def df_str(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if _CONTROL.search(text):
        raise QuoteError(f"a Dockerfile value cannot hold control characters: {text!r}")
    return '"' + re.sub(r'([\\"$])', r"\\\1", text) + '"'


def df_env(value: str) -> str:
    """An env value for Dockerfile ENV: literal parts escaped, ${NAME} parts expanded."""
    out = []
    for kind, text in envvalue.parts(value):
        out.append("${" + text + "}" if kind == "ref" else df_str(text)[1:-1])
    return '"' + "".join(out) + '"'


def df_json(values: Iterable[object]) -> str:
    items = [v if isinstance(v, str) else str(v) for v in values]
    for item in items:
        if "\x00" in item:
            raise QuoteError("a NUL character cannot be passed to a program")
    return json.dumps(items, ensure_ascii=False)


def comment(value: object) -> str:
    """Text for a comment line: control characters become spaces so nothing ends the line."""
    return BREAKS.sub(" ", str(value))


def ident(value: object) -> str:
    text = str(value)
    if not re.fullmatch(envvalue.NAME, text):
        raise QuoteError(f"not a variable name: {text!r}")
    return text


def image(value: object) -> str:
    from envkit import grammar

    text = str(value)
    if msg := grammar.image(text):
        raise QuoteError(msg)
    return text


def df_mounts(caches: Iterable[str] = (),
              secrets: Iterable[tuple[str, str, str]] = (),
              binds: Iterable[tuple[str, str]] = ()) -> str:
    """RUN --mount flags: kinds' cache folders, build secrets as (id, target, mode), then
    files of the build context as (source, target), read-only and in no layer."""
    flags = []
    for target in caches:
        if not re.fullmatch(r"/[A-Za-z0-9_./-]+", target):  # kinds' own constants; be sure
            raise QuoteError(f"unsafe cache mount target: {target!r}")
        flags.append(f"--mount=type=cache,target={target},sharing=locked")
    for sid, target, mode in secrets:
        if not (re.fullmatch(r"[A-Za-z0-9_.-]+", sid) and re.fullmatch(r"/[A-Za-z0-9_./-]+", target)
                and re.fullmatch(r"0[0-7]{3}", mode)):
            raise QuoteError(f"unsafe secret mount: {sid!r} at {target!r}, mode {mode!r}")
        flags.append(f"--mount=type=secret,id={sid},target={target},mode={mode}")
    for source, target in binds:
        if not (re.fullmatch(r"files/[A-Za-z0-9_./-]+", source) and ".." not in source
                and re.fullmatch(r"/[A-Za-z0-9_./-]+", target)):
            raise QuoteError(f"unsafe bind mount: {source!r} at {target!r}")
        flags.append(f"--mount=type=bind,source={source},target={target}")
    return "".join(flag + " \\\n    " for flag in flags)


def df_run(body: str, caches: Iterable[str] = (),
           secrets: Iterable[tuple[str, str, str]] = (),
           binds: Iterable[tuple[str, str]] = ()) -> str:
    """A RUN from a partial's commands (one per line, already quoted), joined with &&."""
    lines = [line for line in body.strip().split("\n") if line.strip()]
    if not lines:
        return ""
    return "RUN " + df_mounts(caches, secrets, binds) + " \\\n && ".join(lines)


def df_env_pairs(pairs: Iterable[tuple[str, str]]) -> str:
    """ENV instructions for several variables. Docker expands every reference in one ENV
    from the environment before it, so a value naming an earlier variable of the same group
    starts a new ENV; the shell script's exports see it set, and so does the image."""
    groups: list[list[str]] = []
    names: set[str] = set()
    for key, value in pairs:
        refs = {text for kind, text in envvalue.parts(value) if kind == "ref"}
        if not groups or refs & names:
            groups.append([])
            names = set()
        groups[-1].append(f"{ident(key)}={df_env(value)}")
        names.add(key)
    return "\n".join("ENV " + " \\\n    ".join(items) for items in groups)


def df_port(value: str) -> str:
    """'8888/tcp' for EXPOSE: a port and a protocol, nothing else."""
    if not re.fullmatch(r"[0-9]{1,5}/(tcp|udp)", value):
        raise QuoteError(f"not a port: {value!r}")
    return value


FILTERS = {
    "df_port": df_port,
    "sh_cmd": sh_cmd,
    "df_mounts": df_mounts,
    "df_run": df_run,
    "df_env_pairs": df_env_pairs,
    "sh": sh,
    "sh_words": sh_words,
    "sh_env": sh_env,
    "sh_posix": sh_posix,
    "sh_posix_words": lambda values: " ".join(sh_posix(v) for v in values),
    "sh_posix_env": sh_posix_env,
    "df_str": df_str,
    "df_env": df_env,
    "df_json": df_json,
    "comment": comment,
    "ident": ident,
    "image": image,
}
