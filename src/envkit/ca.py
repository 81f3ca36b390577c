"""A custom CA bundle for HTTPS through an intercepting proxy (company networks).

In a Docker build the bundle is the BuildKit secret ``envkit-ca``, mounted on
every RUN and named by build args that exist only while the build runs, so no
layer and no image setting keeps it. On the host the same variables point at
the file itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from envkit.diagnostics import error

SECRET_ID = "envkit-ca"
TARGET = "/run/secrets/envkit-ca"
# Each tool's own setting: apt reads ENVKIT_CA through its partial's -o option.
VARS = ("ENVKIT_CA", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS")
_MAX = 16 * 1024 * 1024
_TLS = re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|SSL certificate problem"
                  r"|server certificate verification failed|invalid peer certificate",
                  re.IGNORECASE)  # the last one is uv's (rustls)


HOST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's, with any CA the admin added


def choose(value: str) -> Path | None:
    """``auto`` (the default): $SSL_CERT_FILE or the host's bundle, when there is one;
    ``none``: no bundle; anything else: that file, checked."""
    if value in ("", "auto"):
        for found in (os.environ.get("SSL_CERT_FILE", ""), HOST_BUNDLE):
            if found and os.path.isfile(found):
                return bundle(found)
        return None
    if value == "none":
        return None
    return bundle(value)


def bundle(path: str) -> Path:
    """The bundle file, checked: readable and holding at least one PEM certificate."""
    file = Path(path).expanduser()
    try:
        with file.open("rb") as fh:
            head = fh.read(_MAX + 1)
    except OSError as exc:
        raise error(f"cannot read the CA bundle {path}: {exc.strerror or exc}",
                    path="--ca-bundle") from None
    if len(head) > _MAX:
        raise error(f"{path} is over 16 MiB; that is not a CA bundle", path="--ca-bundle")
    if b"-----BEGIN CERTIFICATE-----" not in head:
        raise error(f"{path} holds no PEM certificate", path="--ca-bundle",
                    hint="Debian's bundle is /etc/ssl/certs/ca-certificates.crt")
    return file.resolve()


def env(target: str) -> dict[str, str]:
    """Every tool's CA setting, pointing at ``target``."""
    return dict.fromkeys(VARS, target)


def hint(lines: Iterable[str], given: Path | None) -> str:
    """'pass --ca-bundle' when a failure's last lines show a certificate check failing."""
    if not any(_TLS.search(line) for line in lines):
        return ""
    if given:
        return (f"a certificate check failed although {given} was trusted: is the proxy's CA "
                "in it? pass --ca-bundle with your company's bundle; ")
    return ("HTTPS is intercepted on this network? pass --ca-bundle "
            "/etc/ssl/certs/ca-certificates.crt or your company's bundle; ")
