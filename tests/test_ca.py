"""The CA bundle: which files are accepted, the variables builds and scripts get, the hints."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend_fakes import one_line
from envkit import ca
from envkit.diagnostics import EnvkitError

DEBIAN_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.mark.skipif(not DEBIAN_BUNDLE.is_file(), reason="no Debian CA bundle here")
def test_ca_bundle_accepts_debians_bundle() -> None:
    assert ca.bundle(str(DEBIAN_BUNDLE)) == DEBIAN_BUNDLE.resolve()


def test_ca_bundle_accepts_a_pem_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pem = tmp_path / "my.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ca.bundle("~/my.pem") == pem.resolve()


def test_ca_bundle_refusals(tmp_path: Path) -> None:
    empty = tmp_path / "no-certs.pem"
    empty.write_text("just text\n")
    big = tmp_path / "big.pem"
    with open(big, "wb") as fh:
        fh.write(b"-----BEGIN CERTIFICATE-----\n")
        fh.truncate(16 * 1024 * 1024 + 1)
    cases = {
        str(tmp_path / "missing.pem"): "cannot read the CA bundle",
        str(tmp_path): "cannot read the CA bundle",
        str(empty): "holds no PEM certificate",
        str(big): "is over 16 MiB; that is not a CA bundle",
    }
    for path, message in cases.items():
        with pytest.raises(EnvkitError) as info:
            ca.bundle(path)
        text = one_line(info.value)
        assert "--ca-bundle: " in text and message in text and path in text, text


def test_ca_env() -> None:
    env = ca.env("/run/secrets/envkit-ca")
    assert list(env) == list(ca.VARS)
    assert set(env.values()) == {"/run/secrets/envkit-ca"}
    assert {"ENVKIT_CA", "PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
            "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS"} == set(env)


def test_ca_auto_none_and_a_stale_ssl_cert_file(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "gone.pem"))
    assert ca.choose("auto") == Path(ca.HOST_BUNDLE).resolve()  # falls back to the host's
    assert ca.choose("none") is None
    mine = tmp_path / "mine.pem"
    mine.write_text(Path(ca.HOST_BUNDLE).read_text())
    monkeypatch.setenv("SSL_CERT_FILE", str(mine))
    assert ca.choose("") == mine.resolve()


def test_ca_hint_with_and_without_a_bundle() -> None:
    lines = ["SSL: CERTIFICATE_VERIFY_FAILED certificate verify failed"]
    assert "pass --ca-bundle /etc/ssl/certs" in ca.hint(lines, None)
    given = ca.hint(lines, Path("/x.pem"))
    assert "although /x.pem was trusted" in given
    assert ca.hint(["all fine"], None) == ""
