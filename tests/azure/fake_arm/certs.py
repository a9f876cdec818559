"""A throw-away CA and one serving certificate for every loopback host the harness uses.

The Azure SDK refuses bearer tokens over plain HTTP, so the fake ARM server and Azurite both
serve HTTPS. Python clients trust the CA through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``,
which point at a bundle of certifi's roots plus this CA (so nothing else in the process loses
its trust store while the harness runs).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.pki import self_signed_ca, signed_leaf

# Every name the SDK may dial: ARM on 127.0.0.1 / localhost, blob storage on
# ``{account}.blob.core.localhost`` (the storage SDK only recognises hosts containing
# ``.blob.core.``), and the other storage kinds for completeness.
SERVER_NAMES = (
    "localhost",
    "*.localhost",
    "*.core.localhost",
    "*.blob.core.localhost",
    "*.dfs.core.localhost",
    "*.file.core.localhost",
    "*.queue.core.localhost",
    "*.table.core.localhost",
)


@dataclass(frozen=True)
class TestPKI:
    """Paths of the PEM files (``ca_bundle`` = certifi roots + the CA)."""

    ca_cert: Path
    ca_bundle: Path
    server_cert: Path
    server_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _certifi_roots() -> bytes:
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return b""
    return Path(certifi.where()).read_bytes()


def make_pki(directory: Path) -> TestPKI:
    """Write a fresh CA and a server certificate for :data:`SERVER_NAMES` into ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=2)
    ca_cert, ca_key = self_signed_ca("amlops-azure-test-ca", not_before, not_after, path_length=0)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    sans += [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    localhost = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert, key = signed_leaf(
        ca_cert, ca_key, localhost, ExtendedKeyUsageOID.SERVER_AUTH, not_before, not_after, sans
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    pki = TestPKI(
        ca_cert=directory / "ca.crt",
        ca_bundle=directory / "ca-bundle.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )
    pki.ca_cert.write_bytes(ca_pem)
    pki.ca_bundle.write_bytes(_certifi_roots() + b"\n" + ca_pem)
    pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(_key_pem(key))
    pki.server_key.chmod(0o600)
    return pki
