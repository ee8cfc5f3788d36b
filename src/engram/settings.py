"""The one immutable settings object.

Built once at start-up, in this order (later wins): defaults, a TOML file,
``ENGRAM_*`` environment variables, explicit overrides (CLI flags). Nothing in
Engram reads configuration at import time; every component receives the
``Settings`` it needs.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import InvalidInput

DURABILITY_MODES = ("fsync", "buffered")
BACKENDS = ("sqlite", "postgres")
AUTH_MODES = ("", "required", "disabled")


@dataclass(frozen=True)
class Settings:
    # -- storage --------------------------------------------------------------
    data_dir: Path = Path("./engram-data")
    durability: str = "fsync"  # "fsync": ack after fsync; "buffered": ack before
    group_commit_max_batch: int = 512
    # Databases up to this size are integrity-checked (PRAGMA quick_check) before a
    # space serves; larger ones are checked in the background so reopening stays fast.
    integrity_check_sync_max_bytes: int = 64 * 1024 * 1024
    # A space whose storage failed for a transient reason (too many open files, disk full,
    # read-only) is probed again after 0.25 s, doubling per failure up to this many seconds.
    storage_retry_max_seconds: float = 5.0
    # /health reports the disk as full (status "degraded") below this many free bytes on the
    # filesystem of data_dir.
    disk_min_free_bytes: int = 256 * 1024 * 1024
    # Where spaces live (SPEC §13): "sqlite" (one file per space under data_dir, the embedded
    # default) or "postgres" (every space in the database at postgres_dsn; any number of servers).
    backend: str = "sqlite"
    postgres_dsn: str = ""  # libpq DSN or URI of the database; needed with backend = "postgres"
    postgres_pool_size: int = 8  # connections this server holds to PostgreSQL (plus one for LISTEN)
    postgres_group_max: int = 64  # writes of one space one group commit carries at most (1: no grouping)
    # -- spaces ---------------------------------------------------------------
    default_space: str = "default"
    bootstrap_spaces: tuple[str, ...] = ()
    auto_create_spaces: bool = False
    require_explicit_space: bool = False
    max_spaces: int = 100_000
    space_idle_unload_seconds: float = 600.0
    # Spaces held open at once; 0 derives it from the open-file limit at start (RLIMIT_NOFILE).
    # Past it, least recently used idle spaces are unloaded (see spaces.budget).
    max_loaded_spaces: int = 0
    # A space's writer, acknowledgement and index threads exit after this long without work
    # and start again on demand, so an idle loaded space holds no thread.
    space_thread_idle_seconds: float = 2.0
    # -- vectors --------------------------------------------------------------
    max_embedding_dim: int = 4096
    exact_search_max: int = 20_000  # below this many vectors, search is exact
    # Spaces up to this many vectors keep their rows in float32 (2x the memory of float16; no
    # float16 -> float32 conversion in whole-set reads). 0: always float16. See index/vector.py.
    vector_float32_max: int = 20_000
    # Full blocks of 8,192 vectors are scanned first in int8 (a net of 2k rows), then that net
    # in float32: a quarter of the bytes read per exact search. See index/quant.py.
    vector_int8_pass: bool = True
    # Threads of numpy's BLAS (OpenBLAS), set once at server start: its threads fight the
    # request threads for the cores. 0 leaves the library's own default.
    blas_threads: int = 1
    # Python's youngest garbage-collection generation: collected after this many new container
    # objects (Python's default 700). Set once at server start, with the start-up's objects
    # frozen out of every later collection (gc.freeze). 0 leaves Python's defaults alone.
    gc_young_threshold: int = 50_000
    hnsw_connectivity: int = 16
    hnsw_expansion_add: int = 128
    hnsw_expansion_search: int = 128
    index_checkpoint_every: int = 50_000
    # -- memory semantics -----------------------------------------------------
    auto_link_threshold: float = 0.8
    auto_link_max: int = 5
    episodic_adjacency_seconds: float = 300.0
    consolidation_interval_seconds: float = 0.0  # 0 disables the schedule
    consolidation_similarity: float = 0.8  # cosine that clusters episodes carrying client vectors
    consolidation_text_similarity: float = 0.6  # the same, in spaces that embed their own text
    consolidation_min_cluster: int = 2
    spreading_max_hops: int = 3
    spreading_decay: float = 0.5
    spreading_threshold: float = 0.05
    spreading_time_budget_ms: float = 15.0
    # -- embeddings (SPEC §9) -------------------------------------------------
    embedder: str = "local"  # local | openai | hash | none: the default for new spaces
    embedder_model: str = ""  # "" = the provider's default model
    embedding_batch_size: int = 64  # texts per background embedding batch
    embedding_wait_seconds: float = 15.0  # longest wait of wait_for_embeddings (covers a model still loading)
    embedding_query_cache: int = 1024  # query embeddings kept (LRU, per model)
    embedder_threads: int = 1  # CPU threads of the local model (torch intra-op)
    hash_dimension: int = 384
    openai_base_url: str = "http://127.0.0.1:11434/v1"  # any OpenAI-compatible /v1/embeddings server
    openai_api_key_env: str = "OPENAI_API_KEY"  # the *name* of the variable holding the key
    openai_dimension: int = 0  # 0: learn it from the server's first answer
    openai_timeout_seconds: float = 30.0
    openai_max_retries: int = 3
    semantic_link_threshold: float = 0.55  # cosine above which a new memory links to a neighbour
    # -- limits ---------------------------------------------------------------
    max_body_bytes: int = 1_048_576
    max_restore_bytes: int = 4_294_967_296  # a restore upload (a whole space), streamed to disk
    max_batch_body_bytes: int = 67_108_864  # POST /api/v1/memories/batch (1,000 memories with vectors)
    max_content_chars: int = 65_536
    max_results_limit: int = 1_000
    max_page_size: int = 1_000
    read_concurrency: int = 1  # short reads (recall, get, list...) running at once; see service._read
    read_workers: int = 0  # recall worker processes (engram.readpool); 0: recall in the server only
    reinforce_linger_ms: float = 50.0  # recall reinforcement is written within this (core.reinforce)
    subscriber_queue_depth: int = 1_024
    # A subscriber that keeps missing events this long without catching up is dropped (SPEC §6).
    subscriber_max_lag_seconds: float = 30.0
    # Open stream subscriptions (SSE, gRPC Stream, MemoryFlow subscribe): 429 / RESOURCE_EXHAUSTED beyond.
    max_subscribers_per_space: int = 256
    max_subscribers_per_client: int = 128  # per peer IP (later: per API key)
    max_subscribers: int = 0  # the whole server; 0 = auto: RLIMIT_NOFILE / 4, at most 4096
    grpc_max_message_bytes: int = 4_194_304
    # gRPC connection limits (see api/grpc/server.py and docs/configuration.md "gRPC limits").
    grpc_max_concurrent_rpcs: int = 1_000  # whole server, streams included; then RESOURCE_EXHAUSTED; 0: none
    grpc_max_concurrent_streams: int = 100  # per HTTP/2 connection; more calls queue on the client
    grpc_keepalive_time_seconds: float = 60.0  # server pings a connection with calls after this quiet time
    grpc_keepalive_timeout_seconds: float = 20.0  # unanswered ping -> the connection is closed
    grpc_min_ping_interval_seconds: float = 10.0  # client pings closer than this are strikes
    grpc_max_ping_strikes: int = 2  # strikes before GOAWAY too_many_pings
    grpc_max_connection_idle_seconds: float = 300.0  # no call for this long -> GOAWAY; 0 = never
    grpc_max_connection_age_seconds: float = 0.0  # connection lifetime; 0 = unlimited (streams live long)
    grpc_max_connection_age_grace_seconds: float = 30.0  # calls may finish this long after the age is reached
    stream_heartbeat_seconds: float = 15.0
    # -- server ---------------------------------------------------------------
    host: str = "127.0.0.1"
    http_port: int = 7432
    grpc_port: int = 50051
    grpc_enabled: bool = True
    state_file: Path | None = None  # defaults to <data_dir>/engram.state.json
    log_level: str = "info"
    log_json: bool = True
    metrics_space_label_cap: int = 100
    shutdown_grace_seconds: float = 10.0
    # -- HTTP edge (docs/security.md, "Network exposure and limits") ---------
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides loopback and `host`; "*": any
    http_max_connections: int = 0  # 0: RLIMIT_NOFILE / 4 (16..4096)
    http_max_header_bytes: int = 65_536  # request line + headers
    http_max_headers: int = 100
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 60.0
    http_keepalive_timeout_seconds: float = 30.0
    # -- authentication and limits (SPEC §10, docs/security.md "Keys") -------
    auth: str = ""  # "" = auto (disabled when every listener is loopback, else required); required; disabled
    allow_insecure: bool = False  # let a non-loopback listener start with auth = "disabled"
    rate_limit_per_second: float = 0.0  # requests per second per API key (token bucket); 0 = off
    rate_limit_burst: int = 0  # bucket size; 0 = max(1, 2 x rate_limit_per_second)
    max_memories: int = 0  # memories per space; a write past it is refused (QUOTA_EXCEEDED); 0 = off
    max_space_bytes: int = 0  # bytes on disk per space; a write past it is refused; 0 = off
    audit_log_max_bytes: int = 10 * 1024 * 1024  # audit.log is rotated past this size
    audit_log_backups: int = 3  # rotated audit logs kept (audit.log.1 .. .N)
    # -- TLS (docs/security.md, "TLS") ----------------------------------------
    tls_cert: str = ""  # PEM certificate (chain) served by REST and gRPC; "" (and tls_key "") = plain
    tls_key: str = ""  # PEM private key of tls_cert; both or neither (checked at start)
    # -- tracing --------------------------------------------------------------
    trace_file: str = ""  # JSON lines of finished OpenTelemetry spans; empty disables tracing
    trace_sample_ratio: float = 1.0  # fraction of traces recorded (a caller's traceparent decides first)
    # -- event log and expiry (SPEC §11: resumable feeds, expiry) -------------
    event_log_max_events: int = 100_000  # logged events kept per space for replay; older ones are trimmed
    expiry_sweep_interval_seconds: float = 30.0  # how often loaded spaces are swept of expired memories
    expiry_sweep_batch: int = 500  # expired memories deleted per group commit by the sweep

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY_MODES:
            raise InvalidInput(
                f"durability must be one of {DURABILITY_MODES}, got {self.durability!r}",
                example='durability = "fsync"',
            )
        if self.backend not in BACKENDS:
            raise InvalidInput(f"backend must be one of {BACKENDS}, got {self.backend!r}",
                               example='backend = "postgres"')
        positive = ("max_spaces", "postgres_pool_size", "postgres_group_max",
                    "max_body_bytes", "max_restore_bytes", "max_batch_body_bytes",
                    "read_concurrency",
                    "max_embedding_dim",
                    "subscriber_queue_depth", "embedding_batch_size", "hash_dimension", "embedder_threads",
                    "subscriber_max_lag_seconds", "max_subscribers_per_space", "max_subscribers_per_client")
        for name in positive:
            if getattr(self, name) <= 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)!r}")
        non_negative = ("grpc_max_concurrent_rpcs", "grpc_max_ping_strikes",
                        "grpc_max_connection_idle_seconds", "grpc_max_connection_age_seconds",
                        "grpc_max_connection_age_grace_seconds", "reinforce_linger_ms")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be 0 (off) or positive, got {getattr(self, name)!r}")
        for name in ("grpc_max_concurrent_streams", "grpc_keepalive_time_seconds",
                     "grpc_keepalive_timeout_seconds", "grpc_min_ping_interval_seconds"):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)!r}")
        http_positive = ("http_max_header_bytes", "http_max_headers", "http_header_timeout_seconds",
                         "http_body_timeout_seconds", "http_keepalive_timeout_seconds")
        for name in http_positive:
            if getattr(self, name) <= 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)!r}",
                                   example=f"{name} = {_DEFAULT_OF[name]}")
        if self.http_max_connections < 0:
            raise InvalidInput(
                f"http_max_connections must be 0 (derive it from ulimit -n) or positive, "
                f"got {self.http_max_connections!r}",
                example="http_max_connections = 0",
            )
        for name in ("space_thread_idle_seconds", "storage_retry_max_seconds"):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.read_workers <= 64:
            raise InvalidInput(f"read_workers must be 0 (off) to 64, got {self.read_workers!r}",
                               example="read_workers = 1")
        for name in ("max_loaded_spaces", "disk_min_free_bytes", "vector_float32_max", "blas_threads",
                     "gc_young_threshold"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        if self.max_subscribers < 0:
            raise InvalidInput(f"max_subscribers must be 0 (auto) or positive, got {self.max_subscribers!r}")
        if self.auth not in AUTH_MODES:
            raise InvalidInput(f"auth must be one of {AUTH_MODES} (\"\" = auto), got {self.auth!r}",
                               example='auth = "required"')
        for name in ("rate_limit_per_second", "rate_limit_burst", "max_memories", "max_space_bytes"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be 0 (off) or positive, got {getattr(self, name)!r}",
                                   example=f"{name} = 0")
        if self.audit_log_max_bytes <= 0 or self.audit_log_backups < 0:
            raise InvalidInput("audit_log_max_bytes must be positive and audit_log_backups 0 or more",
                               example="audit_log_max_bytes = 10485760")
        for name in ("event_log_max_events", "expiry_sweep_interval_seconds", "expiry_sweep_batch"):
            if not getattr(self, name) > 0:
                raise InvalidInput(f"{name} must be positive, got {getattr(self, name)!r}",
                                   example=f"{name} = {_DEFAULT_OF[name]}")
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            raise InvalidInput(f"trace_sample_ratio must be within [0, 1], got {self.trace_sample_ratio!r}",
                               example="trace_sample_ratio = 0.1")

    @property
    def auth_required(self) -> bool:
        """Whether requests need an API key: ``auth``, else auto (required unless every host is loopback)."""
        if self.auth:
            return self.auth == "required"
        return not is_loopback(self.host)

    @property
    def resolved_state_file(self) -> Path:
        return self.state_file or (self.data_dir / "engram.state.json")

    def replace(self, **changes: Any) -> Settings:
        return load_settings(overrides=changes, base=self, use_env=False)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; false for wildcards (0.0.0.0, ::) and anything else."""
    import ipaddress

    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _coerce(name: str, value: Any, target: Any) -> Any:
    """Convert a raw (string or TOML) value to the type of the default."""
    default = target
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise InvalidInput(f"setting {name} expects true/false, got {value!r}")
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"setting {name} expects an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"setting {name} expects a number, got {value!r}") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return tuple(str(v) for v in value)
    if isinstance(default, Path) or name in ("data_dir", "state_file"):
        return None if value in (None, "") else Path(str(value))
    return str(value)


_FIELDS = {f.name: f for f in fields(Settings)}
_DEFAULT_OF = {f.name: f.default for f in fields(Settings)}


def _defaults() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(Settings):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:  # pragma: no cover
            out[f.name] = f.default_factory()
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    use_env: bool = True,
    base: Settings | None = None,
) -> Settings:
    """defaults < TOML file < ENGRAM_* environment < overrides (flags)."""
    values = dataclasses.asdict(base) if base is not None else _defaults()
    defaults = _defaults()
    environ = os.environ if env is None else env
    if config_file is None and use_env and environ.get("ENGRAM_CONFIG"):
        config_file = environ["ENGRAM_CONFIG"]
    if config_file is not None:
        path = Path(config_file)
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InvalidInput(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"config file {path} is not valid TOML: {exc}") from None
        flat: dict[str, Any] = {}
        for key, val in raw.items():
            if isinstance(val, dict):  # allow [server], [storage] ... tables
                flat.update(val)
            else:
                flat[key] = val
        for key, val in flat.items():
            if key not in _FIELDS:
                raise InvalidInput(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(key, val, defaults[key])
    if use_env:
        for name in _FIELDS:
            env_key = "ENGRAM_" + name.upper()
            if env_key in environ:
                values[name] = _coerce(name, environ[env_key], defaults[name])
    for key, val in (overrides or {}).items():
        if val is None:
            continue
        if key not in _FIELDS:
            raise InvalidInput(f"unknown setting {key!r}")
        values[key] = _coerce(key, val, defaults[key])
    return Settings(**values)
