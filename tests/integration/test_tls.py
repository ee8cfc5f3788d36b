"""TLS (SPEC §10) against a real server: REST, SSE, gRPC and the CLI over TLS with a CA made here.

The test builds its own CA and a server certificate for 127.0.0.1 / localhost with ``cryptography``,
starts ``engram start`` with ``tls_cert`` / ``tls_key``, and checks that clients holding the CA
get through, clients without it are refused, plain text to the TLS ports fails without hurting
the server, the HTTP edge limits still apply inside TLS, and bad TLS settings stop the start
with exit code 2 before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engram.cli.main import cli
from engram.client import EngramClient
from engram.client.grpc import GrpcClient
from engram.client.http import EngramConnectionError
from engram.errors import EngramError, MemoryNotFound
from engram.testing import EngramProcess
from engram.testing.mcp import stdio_session, structured, text_of

TCP_CLOSE = 7  # Linux tcpi_state after a reset
HEADER_TIMEOUT = 2.0  # http_header_timeout_seconds of the server: also bounds the TLS handshake


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_key: Path  # a key that belongs to no certificate here


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_pki(root: Path) -> Pki:
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "engram test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, encipher_only=False,
                                     decipher_only=False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "engram-test-server")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    root.mkdir(parents=True, exist_ok=True)
    pki = Pki(ca=root / "ca.pem", cert=root / "server.pem", key=root / "server.key",
              other_key=root / "other.key")
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pki.key)
    _write_key(_key(), pki.other_key)
    return pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[EngramProcess]:
    server = EngramProcess.start(tmp_path_factory.mktemp("tls"), spaces=["alpha", "slow"], settings={
        "tls_cert": str(pki.cert), "tls_key": str(pki.key),
        "http_header_timeout_seconds": HEADER_TIMEOUT, "http_max_header_bytes": 8192,
        "stream_heartbeat_seconds": 0.5,
        # a stalled SSE reader is dropped within seconds (test_stalled_sse_reader_is_reset_over_tls)
        "subscriber_queue_depth": 64, "subscriber_max_lag_seconds": 2.0,
    })
    yield server
    server.stop()


def _ids(result: object) -> list[str]:
    memories = result.memories  # type: ignore[attr-defined]
    return [i.memory.id for i in list(memories.vivid) + list(memories.associated)]


def test_state_file_and_log_say_tls(srv: EngramProcess) -> None:
    assert srv.state["http_url"].startswith("https://127.0.0.1:")
    assert srv.state["tls"] is True
    assert "TLS on for REST and gRPC" in srv.logs() and "CN=engram-test-server" in srv.logs()
    assert srv.stdout().startswith("engram serving REST on https://")


def test_rest_round_trip_with_the_ca(srv: EngramProcess, pki: Pki) -> None:
    with EngramClient(srv.http_url, space="alpha", ca_file=pki.ca) as mem:
        mem.remember("the espresso machine is on the third floor", id="rest-tls")
        assert "rest-tls" in _ids(mem.recall("espresso machine", max_results=5))
        assert mem.health()["status"] in ("ok", "degraded")


def test_sse_over_tls_receives_an_event(srv: EngramProcess, pki: Pki) -> None:
    verify = ssl.create_default_context(cafile=str(pki.ca))
    headers = {"X-Memory-Space": "alpha", "Accept": "text/event-stream"}
    with httpx.Client(verify=verify, timeout=httpx.Timeout(10.0)) as http, \
            http.stream("GET", srv.http_url + "/api/v1/stream/memories", headers=headers) as resp:
        assert resp.status_code == 200
        lines = resp.iter_lines()
        assert next(lines).startswith(": subscribed")
        with EngramClient(srv.http_url, space="alpha", ca_file=pki.ca) as mem:
            mem.remember("a memory announced over TLS", id="sse-tls")
        for line in lines:
            if line.startswith("data:") and "sse-tls" in line:
                break
        else:
            pytest.fail("the stream ended before the stored event arrived")


def test_mcp_over_tls(srv: EngramProcess, pki: Pki) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "tls-test", "version": "1"}}}
    resp = httpx.post(srv.http_url + "/mcp", json=init, timeout=10,
                      verify=ssl.create_default_context(cafile=str(pki.ca)),
                      headers={"Accept": "application/json, text/event-stream", "X-Memory-Space": "alpha"})
    assert resp.status_code == 200, resp.text
    assert "serverInfo" in resp.text


def test_mcp_stdio_client_mode_with_ca_file(srv: EngramProcess, pki: Pki) -> None:
    """``engram mcp --url https://... --ca-file`` sends its tool calls to the server over TLS."""
    args = ["--space", "alpha", "--url", srv.http_url, "--ca-file", str(pki.ca)]

    async def scenario() -> str:
        async with stdio_session(args, {"ENGRAM_EMBEDDER": "hash"}) as s:
            stored = await s.call_tool("remember", {"content": "an MCP memory sent over TLS"})
            assert not stored.is_error, text_of(stored)
            return str(structured(stored)["memory_id"])

    memory_id = asyncio.run(scenario())
    with EngramClient(srv.http_url, space="alpha", ca_file=pki.ca) as mem:
        assert mem.get(memory_id).content == "an MCP memory sent over TLS"


def _rest_subscribers(srv: EngramProcess, verify: ssl.SSLContext, space: str) -> float:
    text = httpx.get(srv.http_url + "/metrics", verify=verify, timeout=10).text
    prefix = f'engram_stream_subscribers{{memory_space="{space}",transport="rest"}}'
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


@pytest.mark.slow  # 15-50 s here: thousands of events must fill the kernel's and the TLS layer's buffers
def test_stalled_sse_reader_is_reset_over_tls(srv: EngramProcess, pki: Pki) -> None:
    """A TLS subscriber that stops reading is dropped and its TCP connection reset, as in plain text
    (api/rest/sse.py reaches the socket under the TLS transport); writers are never blocked."""
    verify = ssl.create_default_context(cafile=str(pki.ca))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, filled at once
    raw.settimeout(10)
    raw.connect(("127.0.0.1", srv.http_port))
    stalled = verify.wrap_socket(raw, server_hostname="127.0.0.1")
    stalled.sendall(b"GET /api/v1/stream/memories HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Memory-Space: slow\r\n"
                    b"Accept: text/event-stream\r\n\r\n")
    head = b""
    while b": subscribed" not in head:
        head += stalled.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")  # subscribed; from here on it never reads
    stop = threading.Event()
    failures: list[str] = []

    def writer(w: int) -> None:
        with EngramClient(srv.http_url, space="slow", ca_file=pki.ca, timeout=30) as mem:
            n = 0
            while not stop.is_set():
                try:
                    mem.remember(f"w{w} n{n} " + "payload " * 500)  # ~4 KB events fill buffers fast
                except EngramError as exc:
                    failures.append(str(exc))
                n += 1

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while _rest_subscribers(srv, verify, "slow") != 0:
            assert time.monotonic() < deadline, "the stalled TLS subscriber was never dropped"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:3]
    deadline = time.monotonic() + 10
    while stalled.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] != TCP_CLOSE:
        assert time.monotonic() < deadline, "the stalled TLS connection was not reset"
        time.sleep(0.05)
    stalled.close()
    with EngramClient(srv.http_url, space="slow", ca_file=pki.ca) as mem:
        assert mem.health()["status"] in ("ok", "degraded")


def test_grpc_round_trip_with_the_ca(srv: EngramProcess, pki: Pki) -> None:
    with GrpcClient(srv.grpc_target, space="alpha", ca_file=pki.ca, timeout=10) as c:
        c.remember("the bike shed is behind the parking lot", id="grpc-tls")
        assert "grpc-tls" in _ids(c.recall("bike shed"))


def test_clients_without_the_ca_are_refused(srv: EngramProcess) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(srv.http_url + "/health/alive", timeout=5)
    with EngramClient(srv.http_url, space="alpha", timeout=5) as mem, \
            pytest.raises(EngramConnectionError, match="certificate verify failed"):
        mem.health()
    # gRPC with TLS but the system's roots (which do not hold the test CA): the handshake fails.
    with GrpcClient(srv.grpc_target, space="alpha", tls=True, timeout=5) as c, \
            pytest.raises(EngramError) as info:
        c.remember("never stored", id="untrusted")
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.message


def test_plain_text_to_the_tls_ports_fails_and_the_server_keeps_serving(srv: EngramProcess,
                                                                         pki: Pki) -> None:
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=5) as raw:
        raw.sendall(b"GET /health/alive HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := raw.recv(4096):
            answer += chunk
        assert not answer.startswith(b"HTTP/")  # no plain-text answer: the TLS layer dropped it
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.http_url.replace("https://", "http://") + "/health/alive", timeout=5)
    with GrpcClient(srv.grpc_target, space="alpha", timeout=5) as plain, \
            pytest.raises(EngramError, match="UNAVAILABLE"):
        plain.remember("never stored", id="plain")
    with EngramClient(srv.http_url, space="alpha", ca_file=pki.ca) as mem:
        assert mem.health()["status"] in ("ok", "degraded")
        with pytest.raises(MemoryNotFound):
            mem.get("plain")  # the plain-text gRPC write stored nothing
    with GrpcClient(srv.grpc_target, space="alpha", ca_file=pki.ca, timeout=10) as c:
        c.remember("still serving gRPC", id="after-plain")


def test_a_silent_connection_is_closed_within_the_head_timeout(srv: EngramProcess) -> None:
    """A client that connects and never starts its TLS handshake does not hold the socket for long."""
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=HEADER_TIMEOUT + 6) as raw:
        t0 = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert raw.recv(1) == b""
        assert time.monotonic() - t0 < HEADER_TIMEOUT + 5


def test_http_edge_limits_apply_inside_tls(srv: EngramProcess, pki: Pki) -> None:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /health/alive HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}") and (chunk := tls.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
    assert b"HEADERS_TOO_LARGE" in answer


def _invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ENGRAM_")}
    clean.update(env or {})
    result = CliRunner().invoke(cli, list(args), env=clean, catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_with_ca_file(srv: EngramProcess, pki: Pki) -> None:
    url, ca = srv.http_url, str(pki.ca)
    code, out = _invoke("memory", "remember", "the cli speaks TLS", "--id", "cli-tls", "--url", url,
                        "--space", "alpha", "--ca-file", ca, "--json")
    assert code == 0, out
    code, out = _invoke("memory", "get", "cli-tls", "--url", url, "--space", "alpha", "--json",
                        env={"ENGRAM_CA_FILE": ca})
    assert code == 0 and "the cli speaks TLS" in out, out
    # Found through the state file: the https URL, and TLS for gRPC, come from it.
    state_file = str(srv.root / "state-0.json")
    code, out = _invoke("status", "--state-file", state_file, "--space", "alpha", "--ca-file", ca, "--json")
    assert code == 0 and '"reachable": true' in out and "https://" in out, out
    code, out = _invoke("memory", "get", "cli-tls", "--state-file", state_file, "--space", "alpha",
                        "--transport", "grpc", "--json", env={"ENGRAM_CA_FILE": ca})
    assert code == 0 and "the cli speaks TLS" in out, out
    # TLS for gRPC inferred from the state file (its https URL): without the CA, the handshake fails.
    code, out = _invoke("memory", "get", "cli-tls", "--state-file", state_file, "--space", "alpha",
                        "--transport", "grpc", "--json")
    assert code == 4 and "CERTIFICATE_VERIFY_FAILED" in out, out
    # Without the CA: unreachable (exit 4), saying why.
    code, out = _invoke("status", "--url", url, "--space", "alpha", "--json")
    assert code == 4 and "certificate verify failed" in out, out


def _start(tmp: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update({"ENGRAM_" + k.upper(): v for k, v in settings.items()})
    return subprocess.run([sys.executable, "-m", "engram", "start", "--data-dir", str(tmp / "data"),
                           "--http-port", "0", "--grpc-port", "0", "--embedder", "hash"],
                          capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("case", ["cert only", "missing key", "mismatched pair", "not pem"])
def test_bad_tls_settings_stop_the_start(tmp_path: Path, pki: Pki, case: str) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    settings, expected = {
        "cert only": ({"tls_cert": str(pki.cert)}, "tls_cert is set but tls_key is not"),
        "missing key": ({"tls_cert": str(pki.cert), "tls_key": str(tmp_path / "nope.key")},
                        f"tls_key: the file {tmp_path / 'nope.key'} does not exist"),
        "mismatched pair": ({"tls_cert": str(pki.cert), "tls_key": str(pki.other_key)},
                            "does not match the certificate"),
        "not pem": ({"tls_cert": str(junk), "tls_key": str(pki.key)}, "is not a PEM certificate"),
    }[case]
    proc = _start(tmp_path, **settings)
    assert proc.returncode == 2, proc.stderr
    assert "engram: cannot start:" in proc.stderr and expected in proc.stderr, proc.stderr
    assert not (tmp_path / "data").exists()  # checked before the data dir was locked or written
