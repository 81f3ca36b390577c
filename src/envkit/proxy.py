"""A company network's proxy: HTTP_PROXY, HTTPS_PROXY, FTP_PROXY, ALL_PROXY and NO_PROXY
(and their lowercase twins, which apt and curl read) from envkit's environment reach
every build, host run and apt simulation, and nothing keeps them.

- Docker builds get them as build arguments. Docker predefines exactly these ARGs: a
  RUN sees them, while the image's history and config never record them, and they are not
  part of the cache key. envkit's Dockerfile never declares them (an ``ARG HTTP_PROXY``
  would put the value in the history), so a rendered file never holds one.
- A host run inherits them with the rest of the environment; apt's simulation for the
  lock gets them in its container's environment (a container, not an image).
- A login in a proxy URL (``http://user:password@proxy:3128``) is masked in every log
  envkit writes or shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "ALL_PROXY", "NO_PROXY")
VARS = tuple(v for name in NAMES for v in (name, name.lower()))


def settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables ``environ`` sets (non-empty), by name, in a fixed order."""
    return {var: environ[var] for var in VARS if environ.get(var)}


def redactions(environ: Mapping[str, str]) -> list[str]:
    """What a log must not show of the proxies' logins: each URL's ``user:password`` and
    password, as written and decoded, longest first."""
    out: set[str] = set()
    for var, value in settings(environ).items():
        if var.upper() == "NO_PROXY":
            continue
        for url in value.split(","):
            url = url.strip()
            netloc = urlsplit(url if "://" in url else "http://" + url).netloc
            if "@" not in netloc:
                continue
            userinfo = netloc.rpartition("@")[0]
            password = userinfo.partition(":")[2]
            out.update({userinfo, unquote(userinfo), password, unquote(password)})
    return sorted((s for s in out if len(s) >= 3), key=len, reverse=True)
