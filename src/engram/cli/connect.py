"""Which server and which space a CLI command talks to, and the options that choose them.

Server: ``--url``, then ``ENGRAM_URL``, then the state file that ``engram start``
wrote (found from ``--state-file``, ``--data-dir`` / ``ENGRAM_DATA_DIR`` or the
config file), then the host and port of the settings (``127.0.0.1:7432``).

Space: ``--space``, then ``ENGRAM_MEMORY_SPACE``, then ``default_space`` from the
config file. The CLI always names its space explicitly, so it never triggers
the server's deprecated default-space fallback.

API key (servers with auth required, SPEC §10): ``--api-key``, then
``ENGRAM_API_KEY``, then the admin key file ``engram start`` wrote on this machine
(``<data_dir>/_system/admin.key``, from the state file's data dir or the settings').

Transport (only for the commands decorated with :func:`backend_options`:
``space ...`` and ``memory remember|recall|get|list|forget``): ``--transport``,
then ``ENGRAM_TRANSPORT``, then ``rest``. With ``grpc`` the address is
``--grpc-target``, then ``ENGRAM_GRPC_TARGET``, then the state file's gRPC port,
then ``host``/``grpc_port`` of the settings (``127.0.0.1:50051``).

TLS: an ``https://`` URL is verified against ``--ca-file`` / ``ENGRAM_CA_FILE`` (a PEM
file of the CA that signed the server's certificate), else the system's trust store. gRPC
uses TLS with ``--grpc-tls``, a CA file, or an ``https://`` URL (also the one in the state file
of a server that serves TLS: its TLS covers both listeners).
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..client.http import AsyncEngramClient, EngramClient
from ..errors import EngramError
from ..settings import Settings, load_settings
from ..statefile import read_state
from ..tls import CA_FILE_ENV, client_ssl_context
from .output import fail

if TYPE_CHECKING:
    from .backend import Backend

F = TypeVar("F", bound=Callable[..., Any])
SPACE_ENV = "ENGRAM_MEMORY_SPACE"
URL_ENV = "ENGRAM_URL"
TRANSPORT_ENV = "ENGRAM_TRANSPORT"
GRPC_TARGET_ENV = "ENGRAM_GRPC_TARGET"
API_KEY_ENV = "ENGRAM_API_KEY"
TRANSPORTS = ("rest", "grpc")


@dataclass(frozen=True)
class Target:
    url: str
    url_source: str
    space: str
    space_source: str
    as_json: bool
    timeout: float
    state: dict[str, Any] | None = None
    state_file: Path | None = None
    transport: str = "rest"
    grpc_target: str | None = None
    grpc_source: str | None = None
    ca_file: str | None = None
    grpc_tls: bool = False
    api_key: str | None = field(default=None, repr=False)  # never printed

    @property
    def address(self) -> str:
        """Where requests go: the REST URL, or ``grpc://HOST:PORT``."""
        return f"grpc://{self.grpc_target}" if self.transport == "grpc" else self.url

    def client(self) -> EngramClient:
        """The REST client (status, import and export always speak REST)."""
        return EngramClient(self.url, space=self.space, timeout=self.timeout, ca_file=self.ca_file,
                            api_key=self.api_key)

    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify`` for a client built here by hand (the CA file, else the system's)."""
        return client_ssl_context(self.ca_file) if self.ca_file else True

    def backend(self) -> Backend:
        """The chosen transport's :class:`~engram.cli.backend.Backend`, bound to the active space."""
        if self.transport == "grpc" and self.grpc_target:
            from .backend import GrpcBackend

            return GrpcBackend(self.grpc_target, space=self.space, timeout=self.timeout,
                               tls=self.grpc_tls, ca_file=self.ca_file, api_key=self.api_key)
        return self.client()

    def async_client(self, max_connections: int = 100) -> AsyncEngramClient:
        return AsyncEngramClient(self.url, space=self.space, timeout=self.timeout,
                                 max_connections=max_connections, ca_file=self.ca_file,
                                 api_key=self.api_key)

    def fail(self, exc: EngramError) -> Any:
        fail(exc, as_json=self.as_json)


def _local_host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)


def _grpc_target(explicit: str | None, state: dict[str, Any] | None, path: Path,
                 settings: Settings) -> tuple[str, str]:
    if explicit:
        return explicit, "--grpc-target"
    if os.environ.get(GRPC_TARGET_ENV):
        return os.environ[GRPC_TARGET_ENV], GRPC_TARGET_ENV
    if state and state.get("grpc_port"):
        return (
            f"{_local_host(str(state.get('host', '127.0.0.1')))}:{state['grpc_port']}",
            f"state file {path}",
        )
    return f"{_local_host(settings.host)}:{settings.grpc_port}", "settings (host, grpc_port)"


def resolve_api_key(explicit: str | None, state: dict[str, Any] | None, settings: Settings) -> str | None:
    """``--api-key``, ``ENGRAM_API_KEY``, or the local admin key file (None: send no key)."""
    if explicit:
        return explicit.strip()
    if os.environ.get(API_KEY_ENV):
        return os.environ[API_KEY_ENV].strip()
    roots = [Path(str(state["data_dir"]))] if state and state.get("data_dir") else []
    roots.append(Path(settings.data_dir))
    for root in roots:
        try:
            token = (root / "_system" / "admin.key").read_text().strip()
        except OSError:
            continue
        if token:
            return token
    return None


def resolve_target(*, url: str | None, space: str | None, data_dir: str | None,
                   state_file: str | None, config_file: str | None, as_json: bool,
                   timeout: float, transport: str | None = None, grpc_target: str | None = None,
                   transport_choice: bool = False, ca_file: str | None = None,
                   grpc_tls: bool = False, api_key: str | None = None) -> Target:
    try:
        settings: Settings = load_settings(config_file, {"data_dir": data_dir, "state_file": state_file})
    except EngramError as exc:
        raise click.UsageError(exc.message) from None

    if space:
        space_source = "--space"
    elif os.environ.get(SPACE_ENV):
        space, space_source = os.environ[SPACE_ENV], SPACE_ENV
    else:
        space, space_source = settings.default_space, "config default_space"

    path = Path(settings.resolved_state_file)
    state = read_state(path)
    if url:
        url_source = "--url"
    elif os.environ.get(URL_ENV):
        url, url_source = os.environ[URL_ENV], URL_ENV
    elif state and state.get("http_url"):
        url, url_source = str(state["http_url"]), f"state file {path}"
    elif state and state.get("http_port"):
        url = f"http://{_local_host(str(state.get('host', '127.0.0.1')))}:{state['http_port']}"
        url_source = f"state file {path}"
    else:
        url = f"http://{_local_host(settings.host)}:{settings.http_port}"
        url_source = "settings (host, http_port)"
    if "://" not in url:
        url = "http://" + url
    grpc: dict[str, Any] = {}
    if transport_choice:
        transport = (transport or os.environ.get(TRANSPORT_ENV) or "rest").lower()
        if transport not in TRANSPORTS:
            raise click.UsageError(f"{TRANSPORT_ENV}={transport!r}: expected one of {', '.join(TRANSPORTS)}")
        grpc["transport"] = transport
        if transport == "grpc":
            grpc["grpc_target"], grpc["grpc_source"] = _grpc_target(grpc_target, state, path, settings)
    ca_file = ca_file or os.environ.get(CA_FILE_ENV) or None
    # The server's TLS covers both listeners: an https URL (also the one a state file gives) means
    # gRPC speaks TLS too.
    grpc["grpc_tls"] = bool(grpc_tls or ca_file or url.startswith("https://"))
    return Target(url=url.rstrip("/"), url_source=url_source, space=space, space_source=space_source,
                  as_json=as_json, timeout=timeout, state=state, state_file=path, ca_file=ca_file,
                  api_key=resolve_api_key(api_key, state, settings), **grpc)


def target_options(f: F) -> F:
    """Add the connection, space and output options; pass the resolved ``target`` to the command."""
    return _with_target(f, transport_choice=False)


def backend_options(f: F) -> F:
    """:func:`target_options` plus ``--transport`` and ``--grpc-target``; use ``target.backend()``."""
    f = click.option(
        "--grpc-target",
        default=None,
        metavar="HOST:PORT",
        help="gRPC address with --transport grpc (env ENGRAM_GRPC_TARGET, else the state file).",
    )(f)
    f = click.option("--grpc-tls", is_flag=True, default=False,
                     help="gRPC over TLS (implied by --ca-file, an https URL or the state file).")(f)
    f = click.option("--transport", type=click.Choice(TRANSPORTS, case_sensitive=False), default=None,
                     help="rest or grpc (env ENGRAM_TRANSPORT; default rest).")(f)
    return _with_target(f, transport_choice=True)


def _with_target(f: F, *, transport_choice: bool) -> F:
    @click.option("--space", "-s", default=None, metavar="ID",
                  help="Memory space (env ENGRAM_MEMORY_SPACE, else the config's default_space).")
    @click.option("--url", default=None, metavar="URL", help="Server URL (env ENGRAM_URL).")
    @click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                  help="Data root of a local server, to find its state file (env ENGRAM_DATA_DIR).")
    @click.option("--state-file", type=click.Path(dir_okay=False), default=None,
                  help="State file of the server (default <data-dir>/engram.state.json).")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                  help="TOML settings file (env ENGRAM_CONFIG): default_space, data_dir, host, http_port.")
    @click.option("--json", "as_json", is_flag=True, default=False,
                  help="Print machine-readable JSON on stdout (nothing else).")
    @click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per request.")
    @click.option("--ca-file", type=click.Path(dir_okay=False), default=None, metavar="PEM",
                  help="CA certificate(s) that signed the server's TLS certificate (env ENGRAM_CA_FILE).")
    @click.option("--api-key", default=None, metavar="KEY",
                  help="API key (env ENGRAM_API_KEY, else <data-dir>/_system/admin.key on this machine).")
    @functools.wraps(f)
    def wrapper(*args: Any, url: str | None, space: str | None, data_dir: str | None,
                state_file: str | None, config_file: str | None, as_json: bool, timeout: float,
                ca_file: str | None, api_key: str | None, **kwargs: Any) -> Any:
        choice = ({k: kwargs.pop(k) for k in ("transport", "grpc_target", "grpc_tls")}
                  if transport_choice else {})
        target = resolve_target(url=url, space=space, data_dir=data_dir, state_file=state_file,
                                config_file=config_file, as_json=as_json, timeout=timeout, ca_file=ca_file,
                                transport_choice=transport_choice, api_key=api_key, **choice)
        try:
            return f(*args, target=target, **kwargs)
        except EngramError as exc:
            target.fail(exc)

    return wrapper  # type: ignore[return-value]
