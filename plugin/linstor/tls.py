"""TLS to the LINSTOR controller: one SSLContext, from files or PEM contents, and no file written.

``LS_ROOT_CA``, ``LS_USER_CERTIFICATE`` and ``LS_USER_KEY`` hold either a path or the PEM
contents themselves (as golinstor reads them, see :mod:`plugin.config`). Contents never
reach a disk: the CA is loaded from memory (``cadata``), and the certificate and key,
which OpenSSL loads only by name, through an anonymous in-memory file
(``memfd_create``, opened as ``/proc/self/fd/N``) that is closed as soon as they are
loaded. A process killed at any moment therefore leaves no key behind.

Everything is loaded once, when the LINSTOR client is made (daemons make it at start-up),
so an unusable file or value is named then, not on every request; the context is handed
to ``requests`` through :class:`ContextAdapter`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH

from plugin.errors import InvalidArgument

PEM_MARKER = "-----BEGIN"


def is_pem(value: str | None) -> bool:
    """Whether a TLS setting holds PEM contents rather than a path."""
    return bool(value) and str(value).lstrip().startswith(PEM_MARKER)


def _where(value: str) -> str:
    """How a message names a setting's value: its path, never the contents (they may be a key)."""
    return "the PEM contents given" if is_pem(value) else value


class _PassphraseNeeded(Exception):
    pass


def _no_passphrase() -> bytes:
    # A daemon cannot type a passphrase; without this OpenSSL would prompt on the terminal.
    raise _PassphraseNeeded


@contextmanager
def _in_memory(contents: str) -> Iterator[str]:
    """A name OpenSSL can open for ``contents``, backed by memory only; gone when closed."""
    fd = os.memfd_create("linstor-plugin-tls", os.MFD_CLOEXEC)
    try:
        data = (contents.strip() + "\n").encode()
        while data:
            data = data[os.write(fd, data) :]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _system_ca_bundle() -> str:
    """The CAs ``requests`` trusts when no CA is configured (its bundle, or one named in the environment)."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH


def _verifying_context(root_ca: str | None) -> ssl.SSLContext:
    try:
        if root_ca is None:
            bundle = _system_ca_bundle()
            if os.path.isdir(bundle):
                return ssl.create_default_context(capath=bundle)
            return ssl.create_default_context(cafile=bundle)
        if is_pem(root_ca):
            return ssl.create_default_context(cadata=root_ca.strip() + "\n")
        return ssl.create_default_context(cafile=root_ca)
    except (ssl.SSLError, ValueError, OSError) as exc:
        if root_ca is None:
            raise InvalidArgument(
                f"the system CA bundle {_system_ca_bundle()} is not usable ({exc})"
            ) from None
        raise InvalidArgument(
            f"root_ca (LS_ROOT_CA): {_where(root_ca)} holds no usable PEM CA certificate ({exc})"
        ) from None


def _load_client_certificate(context: ssl.SSLContext, certificate: str, key: str | None) -> str | None:
    """Load the client certificate and key; returns OpenSSL's complaint when the key is not
    the certificate's (both usable, so it is left to the requests, see :class:`ClientTls`)."""
    if is_pem(certificate):
        has_certificate = "-----BEGIN CERTIFICATE-----" in certificate
    else:
        try:
            with open(certificate, "rb") as handle:
                has_certificate = b"-----BEGIN CERTIFICATE-----" in handle.read()
        except OSError as exc:
            raise InvalidArgument(
                f"user_certificate (LS_USER_CERTIFICATE): cannot read {certificate} ({exc.strerror})"
            ) from None
    if not has_certificate:
        raise InvalidArgument(
            f"user_certificate (LS_USER_CERTIFICATE): {_where(certificate)} holds no PEM certificate"
        )
    what = (
        f"user_key (LS_USER_KEY): {_where(key)}"
        if key
        else f"user_certificate (LS_USER_CERTIFICATE): {_where(certificate)}"
    )
    with ExitStack() as stack:
        cert_path = stack.enter_context(_in_memory(certificate)) if is_pem(certificate) else certificate
        key_path = stack.enter_context(_in_memory(key)) if key and is_pem(key) else key
        try:
            context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
        except _PassphraseNeeded:
            raise InvalidArgument(
                f"{what} is encrypted; the plugin needs the key without a passphrase"
            ) from None
        except ssl.SSLError as exc:
            if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
                return str(exc)
            raise InvalidArgument(
                f"{what} is not a usable PEM private key for {_where(certificate)} ({exc})"
            ) from None
    return None


@dataclass(frozen=True)
class ClientTls:
    """What HTTPS connections to the controller use.

    ``handshake_error`` is set when the key is usable but not the certificate's: every
    HTTPS request then fails with it, as a handshake would, and the LINSTOR client's
    hint names both settings.
    """

    context: ssl.SSLContext
    handshake_error: str | None = None


def client_tls(root_ca: str | None, certificate: str | None, key: str | None) -> ClientTls | None:
    """The TLS setup for HTTPS to the controller, or None when no TLS setting is given.

    Raises :class:`InvalidArgument` naming the setting whose file or contents cannot be used.
    """
    if not root_ca and not certificate:
        return None
    context = _verifying_context(root_ca or None)
    mismatch = _load_client_certificate(context, certificate, key or None) if certificate else None
    return ClientTls(context, mismatch)


class ContextAdapter(HTTPAdapter):
    """HTTPS through one prepared SSLContext: its CA and client certificate, and nothing else.

    ``requests`` would otherwise add a CA bundle of its own (certifi, or
    ``REQUESTS_CA_BUNDLE`` from the environment) to every connection, widening what
    ``LS_ROOT_CA`` allows, and would want the client certificate as file names.
    """

    def __init__(self, tls: ClientTls, **kwargs: Any) -> None:
        self._tls = tls
        self._context = tls.context
        super().__init__(**kwargs)

    def fails_every_call(self, url: str) -> bool:
        """Whether every request to ``url`` fails as a handshake would (see :class:`ClientTls`)."""
        return bool(self._tls.handshake_error) and url.lower().startswith("https://")

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        if self.fails_every_call(str(request.url)):
            raise requests.exceptions.SSLError(self._tls.handshake_error, request=request)
        return super().send(request, *args, **kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["ssl_context"] = self._context
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def build_connection_pool_key_attributes(
        self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, _ = super().build_connection_pool_key_attributes(request, verify, cert)
        return host_params, {"cert_reqs": "CERT_REQUIRED", "ssl_context": self._context}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None
        conn.cert_file = None
        conn.key_file = None
