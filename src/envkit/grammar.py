"""Grammar checks for values that have one: package names, versions, URLs, paths.

Each returns an error message, or '' when the value is fine. Kinds call these
after params are bound, so a value given with ``--set`` is checked too.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from envkit.chars import BREAKS, format_problem

_CONTROL = BREAKS
_APT = re.compile(r"[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?")
_URL = re.compile(r"(https?|ftp)://[A-Za-z0-9.-]+(:[0-9]+)?(/[^\s\x00-\x1f\x7f]*)?")
_GIT_URL = re.compile(
    r"((https?|ssh|git|file)://[^\s\x00-\x1f\x7f]+|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s\x00-\x1f\x7f]+)"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GIT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]*")
_SHA1 = re.compile(r"[0-9a-f]{40}")
# Docker image reference: [registry[:port]/]path[:tag][@digest], lower-case path.
_IMAGE = re.compile(
    r"([a-zA-Z0-9.-]+(:[0-9]+)?/)?[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
)


def single_line(value: str) -> str:
    if _CONTROL.search(value):
        return "must not contain control characters or newlines"
    return format_problem(value)


def requirement(value: str) -> str:
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        first = str(exc).splitlines()[0]
        return f"not a valid pip requirement (PEP 508): {first}"
    return ""


def requirement_name(value: str) -> str:
    """A PEP 508 requirement's distribution name, canonical ('PyYAML>=6' -> 'pyyaml');
    '' for what is not a requirement."""
    from packaging.utils import canonicalize_name

    try:
        return canonicalize_name(Requirement(value).name)
    except InvalidRequirement:
        return ""


def specifier(value: str) -> str:
    try:
        SpecifierSet(value)
    except InvalidSpecifier:
        return f"not a valid version specifier: {value!r} (e.g. '>=2.6,<3')"
    return ""


def version(value: str) -> str:
    try:
        Version(value)
    except ValueError:  # InvalidVersion, or a number Python will not convert (> 4300 digits)
        return f"not a valid version: {value!r}"
    return ""


class TooSlow(ValueError):
    pass


def matches(pattern: str, text: str, *, whole: bool = False, flags: int = 0,
            seconds: float = 0.5) -> bool:
    """re.fullmatch (``whole``) or re.search, stopped after ``seconds`` with TooSlow: a
    recipe's own pattern may backtrack for ever, as (a+)+$ does. re checks for signals
    while it matches; only the main thread gets them: elsewhere, or while another timer
    runs, there is no limit."""
    find = re.fullmatch if whole else re.search
    if (threading.current_thread() is not threading.main_thread() or os.name != "posix"
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):  # a timer of someone else's
        return find(pattern, text, flags) is not None
    armed = True

    def stop(signum: int, frame: Any) -> None:
        if armed:  # not once the match has returned: the alarm may come just after
            raise TooSlow(f"pattern {pattern!r} takes too long to match {_short(text)} "
                          "(nested repeats such as (a+)+ backtrack)")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return find(pattern, text, flags) is not None
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)


def _short(text: str) -> str:
    return repr(text) if len(text) <= 80 else f"{len(text)} characters of text"


def regex(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}, (((...)))
        return f"not a valid regular expression: {exc}"
    return ""


def apt_package(value: str) -> str:
    if _APT.fullmatch(value):
        return ""
    return (f"not a Debian package name: {value!r} "
            "(lower-case letters, digits, '+-.', optional =version)")


def url(value: str) -> str:
    if msg := credential(value):
        return msg
    return "" if _URL.fullmatch(value) else f"not an http(s) URL: {value!r}"


def git_url(value: str) -> str:
    if msg := credential(value):
        return msg
    return "" if _GIT_URL.fullmatch(value) else f"not a git URL: {value!r}"


# scheme://userinfo@ anywhere in a text: a URL that carries a user and maybe a password
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*)://([^/?#\s@'\"]+)@")
CREDENTIAL_HINT = ("give it as a secret: declare it under 'secrets:' (a .netrc file, or a "
                   "token from an environment variable) and name it in the step's 'secrets'")


def credential(text: str) -> str:
    """A message when ``text`` holds a URL with a credential in it, else ''. The message
    never repeats the credential. A login name alone in an ssh URL (ssh://git@host) is no
    secret; any other user part is one (a token is often given as the user)."""
    for m in _USERINFO.finditer(text):
        scheme, info = m.group(1).lower(), m.group(2)
        if scheme.endswith("ssh") and ":" not in info:
            continue
        host = re.match(r"[^/?#\s'\"]*", text[m.end():]).group(0)  # type: ignore[union-attr]
        return (f"a credential in a URL ({scheme}://***@{host}/...) would be written into the "
                "rendered files and the logs")
    return ""


def git_ref(value: str) -> str:
    if _GIT_REF.fullmatch(value) and ".." not in value and not value.endswith((".lock", "/")):
        return ""
    return f"not a git ref: {value!r}"


def git_commit(value: str) -> str:
    return "" if _SHA1.fullmatch(value) else "a commit is 40 lower-case hex digits"


def identifier(value: str) -> str:
    return "" if _IDENT.fullmatch(value) else f"not a variable name: {value!r}"


def image(value: str) -> str:
    return "" if _IMAGE.fullmatch(value) else f"not a Docker image reference: {value!r}"


def image_registry(value: str) -> str:
    """A registry host, e.g. docker.m.daocloud.io or registry.local:5000."""
    if re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+(:[0-9]+)?",
                    value):
        return ""
    return f"not a registry host: {value!r} (e.g. docker.m.daocloud.io)"


def abs_path(value: str) -> str:
    if not value.startswith("/"):
        return f"must be an absolute path: {value!r}"
    return single_line(value)


def path(value: str) -> str:
    if not value:
        return "must not be empty"
    return single_line(value)
