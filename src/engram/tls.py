"""TLS for the server (REST, SSE, /mcp and gRPC) and the CA files of the clients.

Server: ``tls_cert`` and ``tls_key`` (PEM paths, both or neither) are checked once, before the
server takes its data-dir lock: a missing or unreadable file, a file that is not PEM, or a key
that does not belong to the certificate stops the start with exit code 2 and a message naming
the file (:class:`TlsConfigError`). The same PEM bytes then serve both listeners:

* REST: an ``ssl.SSLContext`` (TLS 1.2 or newer, ALPN ``http/1.1``) handed to uvicorn, so the
  HTTP edge (:mod:`engram.api.rest.connection`) runs unchanged on the decrypted stream;
* gRPC: ``grpc.ssl_server_credentials`` for ``add_secure_port``.

Clients: :func:`client_ssl_context` builds the context that trusts one CA file (for httpx), and
:func:`read_ca` the bytes ``grpc.ssl_channel_credentials`` wants. Both name the file when it
cannot be read.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import InvalidInput

CA_FILE_ENV = "ENGRAM_CA_FILE"


class TlsConfigError(Exception):
    """The TLS settings cannot be served; the message names the setting and the file."""


@dataclass(frozen=True)
class ServerTls:
    cert_file: Path
    key_file: Path
    cert_pem: bytes
    key_pem: bytes
    subject: str
    not_after: datetime | None

    def ssl_context(self) -> ssl.SSLContext:
        """The server context for REST (HTTP/1.1 only: uvicorn's httptools protocol)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def grpc_credentials(self) -> Any:
        import grpc

        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])

    def describe(self) -> str:
        expiry = self.not_after.isoformat() if self.not_after else "unknown"
        return (f"TLS on for REST and gRPC: certificate {self.cert_file} "
                f"(subject {self.subject}, expires {expiry})")


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsConfigError(f"{setting}: the file {path} does not exist") from None
    except IsADirectoryError:
        raise TlsConfigError(f"{setting}: {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise TlsConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def _describe_cert(cert_pem: bytes, cert_file: Path) -> tuple[str, datetime | None]:
    """Subject and expiry of the first certificate in the file (via ``cryptography`` when present)."""
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - cryptography comes with mcp (pyjwt[crypto])
        return "unknown", None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise TlsConfigError(f"tls_cert: {cert_file} is not a PEM certificate") from None
    return cert.subject.rfc4514_string() or "(empty)", cert.not_valid_after_utc


def load_server_tls(cert: str, key: str) -> ServerTls | None:
    """Check ``tls_cert`` / ``tls_key``; ``None`` when both are empty (TLS off)."""
    if not cert and not key:
        return None
    if not cert or not key:
        missing, given = ("tls_key", "tls_cert") if cert else ("tls_cert", "tls_key")
        raise TlsConfigError(f"{given} is set but {missing} is not: TLS needs both the certificate "
                             f"and its private key (or neither, for plain HTTP and gRPC)")
    cert_file, key_file = Path(cert).expanduser(), Path(key).expanduser()
    cert_pem = _read(cert_file, "tls_cert")
    key_pem = _read(key_file, "tls_key")
    subject, not_after = _describe_cert(cert_pem, cert_file)
    tls = ServerTls(cert_file, key_file, cert_pem, key_pem, subject, not_after)
    try:
        tls.ssl_context()
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsConfigError(f"tls_key: the private key in {key_file} does not match the "
                                 f"certificate in {cert_file}") from None
        raise TlsConfigError(f"tls_cert/tls_key: cannot load {cert_file} with {key_file}: {exc}") from None
    return tls


def read_ca(ca_file: str | os.PathLike[str]) -> bytes:
    """The PEM bytes of a CA file (for ``grpc.ssl_channel_credentials``)."""
    path = Path(ca_file).expanduser()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the CA file {path}: {exc.strerror or exc}",
                           example="--ca-file ./ca.pem (the certificate that signed the server's)") from None


def client_ssl_context(ca_file: str | os.PathLike[str]) -> ssl.SSLContext:
    """A client context that trusts the certificates in ``ca_file`` (and checks the host name)."""
    path = Path(ca_file).expanduser()
    read_ca(path)  # a clear error for a missing file
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise InvalidInput(f"the CA file {path} holds no usable PEM certificate: {exc}",
                           example="--ca-file ./ca.pem") from None


def now_utc() -> datetime:
    return datetime.now(UTC)
