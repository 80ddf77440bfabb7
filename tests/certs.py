"""Throwaway X.509 material for TLS tests: a private CA, a server and a client certificate.

Real LINSTOR installations put the controller behind HTTPS with certificates from their
own CA and often require client certificates (mTLS). The tests need the same shapes
without openssl on the machine or files in the repository, so everything is generated
here in memory with ``cryptography`` and written to a temp dir. EC P-256 keys keep the
generation in milliseconds; certificates live a day, which is all a test run needs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "linstor-volume-plugin tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(valid: bool) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC)
    if valid:
        return now - dt.timedelta(minutes=5), now + dt.timedelta(days=1)
    return now - dt.timedelta(days=2), now - dt.timedelta(days=1)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Private keys are written 0600 from the start, as a real key must never be world readable."""
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path: Path, *certs: x509.Certificate) -> None:
    """Leaf first, then its issuers: the order a TLS peer sends its chain in."""
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA that can issue server and client certificates, and intermediate CAs.

    A root is self-signed; an intermediate (see :meth:`intermediate`) carries its issuer's
    chain, so the certificates it issues are written with the intermediate appended, as
    cert-manager and most site CAs hand them out.
    """

    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()  # issuers above this CA, up to (not incl.) the root

    @classmethod
    def create(cls, name: str = "test-ca") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        return cls(name, key, cls._ca_cert(name, key, _name(name), key, path_length=1))

    def intermediate(self, name: str) -> CertificateAuthority:
        """A CA signed by this one; what it issues verifies against this CA's root."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self._ca_cert(name, key, self.cert.subject, self.key, path_length=0)
        return CertificateAuthority(name, key, cert, (cert, *self.chain))

    @staticmethod
    def _ca_cert(
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: x509.Name,
        issuer_key: ec.EllipticCurvePrivateKey,
        path_length: int,
    ) -> x509.Certificate:
        not_before, not_after = _validity(True)
        return (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
            )
            .sign(issuer_key, hashes.SHA256())
        )

    def write(self, path: Path) -> Path:
        _write_cert(path, self.cert)
        return path

    def issue(
        self,
        common_name: str,
        cert_path: Path,
        key_path: Path,
        *,
        server: bool,
        valid: bool = True,
        server_names: tuple[str, ...] = SERVER_NAMES,
        server_addresses: tuple[str, ...] = SERVER_ADDRESSES,
    ) -> tuple[Path, Path]:
        """A leaf certificate for a server (SANs for this host by default) or a client (clientAuth)."""
        key = ec.generate_private_key(ec.SECP256R1())
        not_before, not_after = _validity(valid)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if server:
            alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in server_names]
            alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in server_addresses]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        _write_cert(cert_path, cert, *self.chain)
        _write_key(key_path, key)
        return cert_path, key_path


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for one mTLS setup: the CA both sides trust, the server's and a client's pair."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def emulator_args(self, require_client_cert: bool = True) -> tuple[str, ...]:
        """``linstor-emulator serve`` flags for HTTPS, with client verification by default."""
        args = ("--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key))
        if require_client_cert:
            args += ("--tls-client-ca", str(self.ca_cert))
        return args


def make_tls_files(directory: Path, ca_name: str = "test-ca") -> TlsFiles:
    """A fresh CA with one server and one client certificate, written under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority.create(ca_name)
    server_cert, server_key = ca.issue(
        "linstor-controller", directory / "server.crt", directory / "server.key", server=True
    )
    client_cert, client_key = ca.issue(
        "linstor-client", directory / "client.crt", directory / "client.key", server=False
    )
    return TlsFiles(
        ca_cert=ca.write(directory / "ca.crt"),
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
    )
