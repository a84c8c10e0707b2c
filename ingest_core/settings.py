"""Every default of article-ingest, in one place.

Each default is a named constant with a one-line docstring. ``Settings.from_env()`` is the only place
that reads the environment (``INGEST_<NAME>``); CLI flags override it by passing keyword arguments.
Pipeline stages never read settings: they take plain constructor arguments built from a ``Settings``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_BROKER_URL = ""
"""Celery broker URL; empty means start the embedded private Redis (``ingest run``)."""

DEFAULT_REDIS_URL = ""
"""Shared state store (seen URLs, fingerprints, counters); empty means the broker when it is Redis."""

DEFAULT_DATA_DIR = "./data"
"""Working directory for the embedded Redis and, by default, the records."""

DEFAULT_STORAGE_URL = "./data/records"
"""Where records go: a directory of JSONL files."""

DEFAULT_ALLOW_PRIVATE_NETWORKS = False
"""Allow fetches to private, loopback and link-local addresses (off: SSRF protection)."""

DEFAULT_ALLOW_NETWORKS = ""
"""Comma-separated CIDRs that may be fetched even though private (e.g. ``127.0.0.0/8`` for tests)."""

DEFAULT_USER_AGENT = "article-ingest/0.1 (+https://github.com/article-ingest/article-ingest)"
"""User-Agent sent with every fetch; include a contact URL."""

DEFAULT_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for a TCP/TLS connection."""

DEFAULT_READ_TIMEOUT = 15.0
"""Seconds to wait between two reads of the response."""

DEFAULT_FETCH_DEADLINE = 30.0
"""Seconds one fetch may take in total, redirects and body included."""

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
"""Cap on the decoded body of a page, in bytes."""

DEFAULT_MAX_REDIRECTS = 5
"""Redirects followed before a fetch fails with ``too_many_redirects``."""

DEFAULT_HOST_INTERVAL = 1.0
"""Seconds between two requests to one host, across the whole fleet (a Crawl-delay can lengthen it)."""

DEFAULT_ROBOTS_TTL = 3600.0
"""Seconds a host's robots.txt is cached in Redis (RFC 9309 asks for no more than 24 hours)."""

DEFAULT_ROBOTS_ERROR_TTL = 600.0
"""Seconds an unreachable robots.txt (5xx, timeout) keeps a host disallowed before it is tried again."""

DEFAULT_MAX_CRAWL_DELAY = 30.0
"""Cap on a robots.txt Crawl-delay, in seconds."""

DEFAULT_RESPECT_ROBOTS = True
"""Obey robots.txt; turn off only for sites you own."""

DEFAULT_FETCH_LEASE = 120.0
"""Seconds a dispatched fetch may take (queue wait, robots.txt, the fetch) before it counts as lost."""

DEFAULT_PROCESS_LEASE = 120.0
"""Seconds a fetched page's process task may wait unstarted (queue empty) before it is sent again as lost."""

DEFAULT_PAGE_TTL = 24 * 3600
"""Seconds a fetched page is kept in Redis for the process stage (its claim check)."""

DEFAULT_PROCESS_QUEUE_MAX = 256
"""Dispatch pauses while the process queue holds more pages than this (backpressure on the fetch side)."""

DEFAULT_MAX_URL_LENGTH = 2048
"""Longest URL accepted at submission."""

DEFAULT_FETCH_RETRIES = 3
"""Retries of a transient fetch fault before the URL is failed with its last reason."""

DEFAULT_RETRY_BACKOFF = 2.0
"""First retry delay in seconds; doubles at each retry, with full jitter."""

DEFAULT_RETRY_BACKOFF_MAX = 120.0
"""Longest retry delay in seconds."""

DEFAULT_EXTRACT_TIMEOUT = 30.0
"""Seconds one extraction may take before it is failed with ``extract_timeout``."""

DEFAULT_MIN_WORDS = 25
"""Pages with fewer words of main text end as ``skipped:too_short`` (no text at all: ``skipped:no_text``)."""

DEFAULT_FETCH_CONCURRENCY = 64
"""Threads of a fetch worker (I/O bound): at 250 ms a page they outpace a 2-core process worker."""

DEFAULT_PROCESS_CONCURRENCY = 0
"""Processes of a process worker (CPU bound); 0 means one per core."""

DEFAULT_RECRAWL_TTL = 0
"""Seconds after which a stored URL may be fetched again; 0 means never."""

DEFAULT_KEEP_DUPLICATES = False
"""Also write duplicate documents as records, flagged ``duplicate_of``."""

DEFAULT_NEAR_DUP_THRESHOLD = 0.8
"""Estimated Jaccard on word 5-grams at or above which a page is a near-duplicate; 0: exact copies only."""

DEFAULT_PROCESS_MAX_TASKS_PER_CHILD = 1000
"""Tasks a process-pool child runs before it is replaced (frees trafilatura/htmldate caches); 0: never."""

DEFAULT_PROCESS_MAX_MEMORY_MB = 1024
"""Resident MiB past which a process-pool child is replaced after its current task; 0: no bound."""

DEFAULT_VISIBILITY_TIMEOUT = 3600
"""Seconds before the Redis broker re-delivers an unacked task (a killed worker's); longer than any task."""


DEFAULT_KEY_PREFIX = "ingest"
"""Prefix of every Redis key we own, so several deployments can share one Redis."""

DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024
"""A JSONL part file is closed and published once it is this large."""

DEFAULT_ROTATE_SECONDS = 300.0
"""A JSONL part file is closed and published once it is this old."""

DEFAULT_BATCH_TTL = 7 * 24 * 3600
"""Seconds a submission batch's counters are kept in Redis."""

DEFAULT_FAILURES_MAX = 100_000
"""Entries kept in the failures log, and failed URLs kept as dead letters (oldest dropped first)."""

DEFAULT_STORAGE_COMPRESS = False
"""Gzip JSONL part files and S3 objects (one gzip member per record, so a crash loses no whole record)."""

DEFAULT_STORAGE_FSYNC = "record"
"""When a JSONL/S3-spool record counts stored: ``record`` (fdatasync before the write returns) or ``off``."""

DEFAULT_STORAGE_RETRY_MAX = 300.0
"""Seconds a record write is retried (backoff with jitter) while storage is unavailable, before ``failed``."""

DEFAULT_STORAGE_TABLE = "records"
"""PostgreSQL table of records (created and migrated on start)."""

DEFAULT_STORAGE_POOL_SIZE = 4
"""Most PostgreSQL connections one worker process holds."""

DEFAULT_METRICS_ADDRESS = "127.0.0.1"
"""Address ``ingest metrics`` listens on."""

DEFAULT_METRICS_PORT = 9808
"""Port of the Prometheus exporter (``ingest metrics``)."""

DEFAULT_METRICS_BASIC_AUTH = ""
"""``user:password`` required by the exporter; empty means no auth."""

DEFAULT_FLOWER_ADDRESS = "127.0.0.1"
"""Address ``ingest flower`` listens on; anything but loopback requires basic auth."""

DEFAULT_FLOWER_PORT = 5555
"""Port of Flower (``ingest flower``)."""

DEFAULT_FLOWER_BASIC_AUTH = ""
"""``user:password[,user2:password2]`` for Flower, its API and its /metrics; empty means no auth."""

DEFAULT_FLOWER_DB = ""
"""File where Flower keeps its state across restarts; empty means in memory only."""

DEFAULT_API_TOKEN = ""
"""Bearer token ``ingest serve`` requires; empty means none, refused when bound to a non-loopback address."""

DEFAULT_API_ADDRESS = "127.0.0.1"
"""Address ``ingest serve`` (the HTTP submission API) listens on."""

DEFAULT_API_PORT = 8808
"""Port of ``ingest serve``."""

DEFAULT_TRACKING_PARAMS = ""
"""Comma-separated query parameters to strip at submission, on top of the built-in tracking list."""

DEFAULT_SITEMAP_DEPTH = 3
"""Levels of nested sitemap indexes followed below a submitted sitemap."""


def setting_name(name: str) -> str:
    """``INGEST_HOST_INTERVAL``, ``host-interval`` or ``host_interval`` -> ``host_interval``; ValueError
    when no such setting exists."""
    bare = name.strip().removeprefix("INGEST_").removeprefix("ingest_").replace("-", "_").lower()
    if bare not in _FIELDS:
        raise ValueError(f"unknown setting {name!r} (see ingest_core/settings.py for the names)")
    return bare


def read_config(path: str) -> dict[str, Any]:
    """A TOML settings file: ``NAME = value`` pairs with the environment variables' names (``INGEST_``
    optional, any case), at the top level or under an ``[ingest]`` table."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ValueError(f"settings file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"settings file {path}: {exc}") from None
    if isinstance(data.get("ingest"), dict):
        data = {**{k: v for k, v in data.items() if k != "ingest"}, **data["ingest"]}
    return {setting_name(k): v for k, v in data.items()}


def _convert(name: str, raw: Any, where: str) -> Any:
    kind = type(_FIELDS[name].default)
    try:
        if kind is bool:
            return raw if isinstance(raw, bool) else _parse_bool(str(raw))
        if kind in (int, float) and isinstance(raw, bool):
            raise ValueError("not a number")
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{where}={raw!r}: {exc}") from None


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Settings:
    """All settings; build with ``Settings.from_env(**overrides)``."""

    broker_url: str = DEFAULT_BROKER_URL
    redis_url: str = DEFAULT_REDIS_URL
    data_dir: str = DEFAULT_DATA_DIR
    storage_url: str = DEFAULT_STORAGE_URL
    allow_private_networks: bool = DEFAULT_ALLOW_PRIVATE_NETWORKS
    allow_networks: str = DEFAULT_ALLOW_NETWORKS
    user_agent: str = DEFAULT_USER_AGENT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    fetch_deadline: float = DEFAULT_FETCH_DEADLINE
    max_bytes: int = DEFAULT_MAX_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_url_length: int = DEFAULT_MAX_URL_LENGTH
    fetch_retries: int = DEFAULT_FETCH_RETRIES
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    retry_backoff_max: float = DEFAULT_RETRY_BACKOFF_MAX
    host_interval: float = DEFAULT_HOST_INTERVAL
    robots_ttl: float = DEFAULT_ROBOTS_TTL
    robots_error_ttl: float = DEFAULT_ROBOTS_ERROR_TTL
    max_crawl_delay: float = DEFAULT_MAX_CRAWL_DELAY
    respect_robots: bool = DEFAULT_RESPECT_ROBOTS
    fetch_lease: float = DEFAULT_FETCH_LEASE
    process_lease: float = DEFAULT_PROCESS_LEASE
    page_ttl: int = DEFAULT_PAGE_TTL
    process_queue_max: int = DEFAULT_PROCESS_QUEUE_MAX
    extract_timeout: float = DEFAULT_EXTRACT_TIMEOUT
    min_words: int = DEFAULT_MIN_WORDS
    fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY
    process_concurrency: int = DEFAULT_PROCESS_CONCURRENCY
    recrawl_ttl: int = DEFAULT_RECRAWL_TTL
    keep_duplicates: bool = DEFAULT_KEEP_DUPLICATES
    near_dup_threshold: float = DEFAULT_NEAR_DUP_THRESHOLD
    process_max_tasks_per_child: int = DEFAULT_PROCESS_MAX_TASKS_PER_CHILD
    process_max_memory_mb: int = DEFAULT_PROCESS_MAX_MEMORY_MB
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    key_prefix: str = DEFAULT_KEY_PREFIX
    rotate_bytes: int = DEFAULT_ROTATE_BYTES
    rotate_seconds: float = DEFAULT_ROTATE_SECONDS
    batch_ttl: int = DEFAULT_BATCH_TTL
    failures_max: int = DEFAULT_FAILURES_MAX
    storage_compress: bool = DEFAULT_STORAGE_COMPRESS
    storage_fsync: str = DEFAULT_STORAGE_FSYNC
    storage_retry_max: float = DEFAULT_STORAGE_RETRY_MAX
    storage_table: str = DEFAULT_STORAGE_TABLE
    storage_pool_size: int = DEFAULT_STORAGE_POOL_SIZE
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_basic_auth: str = DEFAULT_METRICS_BASIC_AUTH
    flower_address: str = DEFAULT_FLOWER_ADDRESS
    flower_port: int = DEFAULT_FLOWER_PORT
    flower_basic_auth: str = DEFAULT_FLOWER_BASIC_AUTH
    flower_db: str = DEFAULT_FLOWER_DB
    api_token: str = DEFAULT_API_TOKEN
    api_address: str = DEFAULT_API_ADDRESS
    api_port: int = DEFAULT_API_PORT
    tracking_params: str = DEFAULT_TRACKING_PARAMS
    sitemap_depth: int = DEFAULT_SITEMAP_DEPTH
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the settings file (``INGEST_CONFIG``), then ``INGEST_*`` variables, then
        non-None ``overrides`` (CLI flags): flag > environment > file > default."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        config = env.get("INGEST_CONFIG")
        if config:
            for name, raw in read_config(config).items():
                values[name] = _convert(name, raw, f"{config}: {name}")
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(f"INGEST_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _convert(f.name, raw, f"INGEST_{f.name.upper()}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def state_url(self) -> str:
        """The Redis that holds shared state: INGEST_REDIS_URL, else the broker when it is Redis."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return self.broker_url
        return ""

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "extra"}
