"""Service identities for mutual TLS: a certificate authority and one certificate per service.

Every gRPC server verifies its callers' client certificates against the CA, and every caller
presents its own. The certificate's common name is the caller's identity ("orchestrator",
"lis-api", "admin", ...): ``core.access`` decides per method which identities may call it.

``marrowscope up`` keeps a local CA in its home (``ensure_local_pki``); the Helm chart makes
its own or takes cert-manager / existing Secrets. Keys are EC P-256. A service's certificate
serves and calls, and names the service (callers check that name: ``ServiceClients`` dials
each peer expecting its identity); the LIS API's and the operator's only call.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Who can hold a certificate: the five gRPC services, the LIS API (a caller only) and the
# operator's command line ("admin").
IDENTITIES = (
    "segmentation",
    "inference",
    "training",
    "curation",
    "orchestrator",
    "lis-api",
    "admin",
)
# Identities that only ever call (no gRPC server): their certificates are client-only and
# name no host, so a stolen one cannot pose as a service.
CLIENT_ONLY = frozenset({"lis-api", "admin"})
CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class TlsMaterial:
    """PEM bytes a process needs for mutual TLS: the CA it trusts, its own chain and key."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None

    @classmethod
    def from_files(cls, ca: Path, cert: Path | None, key: Path | None) -> TlsMaterial:
        return cls(
            ca.read_bytes(),
            cert.read_bytes() if cert else None,
            key.read_bytes() if key else None,
        )


@dataclass(frozen=True)
class IssuedIdentity:
    name: str
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_ca(common_name: str = "Marrowscope local CA") -> IssuedIdentity:
    """A self-signed CA that may sign service certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return IssuedIdentity(common_name, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(
    ca: IssuedIdentity, name: str, hosts: Iterable[str] = (), server: bool = True
) -> IssuedIdentity:
    """A certificate for identity ``name``. A server's (``server``) is valid as server and
    client for ``name`` itself (the TLS server name its callers check), localhost, 127.0.0.1
    and ``hosts``; a client-only one names just ``name`` and may not serve."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([name, *(("localhost", "127.0.0.1", *hosts) if server else ())]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if server:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return IssuedIdentity(name, cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_bytes(data)


@dataclass(frozen=True)
class LocalPki:
    """A folder with ``ca.crt`` / ``ca.key`` and ``<identity>.crt`` / ``<identity>.key``."""

    folder: Path

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"

    def cert_file(self, identity: str) -> Path:
        return self.folder / f"{identity}.crt"

    def key_file(self, identity: str) -> Path:
        return self.folder / f"{identity}.key"

    def material(self, identity: str) -> TlsMaterial:
        return TlsMaterial.from_files(
            self.ca_file, self.cert_file(identity), self.key_file(identity)
        )

    def environment(self, identity: str) -> dict[str, str]:
        """The variables that give a process this identity (server and client side)."""
        return {
            "GRPC_TLS_CA_FILE": str(self.ca_file),
            "GRPC_TLS_CERT_FILE": str(self.cert_file(identity)),
            "GRPC_TLS_KEY_FILE": str(self.key_file(identity)),
        }


def ensure_local_pki(
    folder: Path, identities: Iterable[str] = IDENTITIES, hosts: Iterable[str] = ()
) -> LocalPki:
    """Create the CA once and a certificate for every identity that has none yet (valid for
    ``hosts`` too: the names and addresses peers use to reach the services)."""
    hosts = list(hosts)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    pki = LocalPki(folder)
    ca_key_file = folder / "ca.key"
    fresh_ca = not (pki.ca_file.exists() and ca_key_file.exists())
    if fresh_ca:
        ca = new_ca()
        _write_private(ca_key_file, ca.key_pem)
        pki.ca_file.write_bytes(ca.cert_pem)
    else:
        ca = IssuedIdentity("ca", pki.ca_file.read_bytes(), ca_key_file.read_bytes())
    for identity in identities:
        held = pki.cert_file(identity).exists() and pki.key_file(identity).exists()
        if held and not fresh_ca:  # a new CA re-issues every certificate
            continue
        issued = issue(ca, identity, hosts, server=identity not in CLIENT_ONLY)
        _write_private(pki.key_file(identity), issued.key_pem)
        pki.cert_file(identity).write_bytes(issued.cert_pem)
    return pki
