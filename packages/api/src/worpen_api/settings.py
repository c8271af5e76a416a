"""Settings, read once from the environment (and overridden by CLI flags)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, cast

from worpen_core.automation.plan import SandboxLimits
from worpen_core.containers.service import ContainerLimits
from worpen_core.fleet.model import FleetPolicy
from worpen_core.incidents.model import IncidentPolicy
from worpen_core.logs.model import LogPolicy
from worpen_core.shared.ids import AGENT_ID_PATTERN
from worpen_core.telemetry.model import TelemetryPolicy

LogFormat = Literal["auto", "json", "console"]


class SettingsError(ValueError):
    """A setting has a value Worpen cannot use."""


DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
DOCKER_SCHEMES = ("unix://", "tcp://", "http://", "https://")


@dataclass(frozen=True)
class DatabaseSettings:
    """How Worpen talks to its database beyond the URL (PostgreSQL; SQLite ignores the pool)."""

    pool_size: int = 10
    """Connections each replica keeps open to PostgreSQL (and as many more under bursts)."""
    statement_timeout: float = 30.0
    """Seconds a statement may run before PostgreSQL cancels it (the request then answers 503)."""
    connect_timeout: float = 5.0
    """Seconds to wait for a connection to the database before answering 503."""


@dataclass(frozen=True)
class ReplicaSettings:
    """Several replicas on one PostgreSQL database: who this one is, and how long the leader's lease lasts."""

    replica_id: str = ""
    """This replica's name in leases and the agent registry; empty: host name and process id."""
    lease_seconds: float = 10.0
    """How long the leader's lease lasts without renewal: a dead leader is replaced within this time."""
    address: str = ""
    """host:port at which the other replicas reach this one's gRPC server (commands for the agents whose
    streams it holds); empty: the gRPC host and port, the host name when gRPC listens on every address."""


@dataclass(frozen=True)
class PipelineSettings:
    local_repos: tuple[str, ...] = ()
    """Directories below which `file://` repositories may be fetched (none: no local repository)."""
    node_slots: int = 2
    """Pipeline runs one node runs at once; more wait PENDING in order."""
    node_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Labels of each node, which stages' node selectors match."""
    lease_seconds: float = 60.0
    max_source_bytes: int = 256 * 1024 * 1024
    stage_timeout_seconds: int = 3600
    """A stage's timeout when its definition gives none."""
    tick_seconds: float = 1.0
    """Seconds between looks at the queue, the leases and cron schedules when nothing happens sooner."""
    secrets_key: str | None = None
    secrets_key_file: str | None = None
    """Where the secrets' key is kept; None: beside the database (see `key_file`)."""

    def key_file(self, database_url: str) -> str:
        return self.secrets_key_file or secrets_key_file_for(database_url)


def parse_node_labels(raw: str) -> dict[str, dict[str, str]]:
    """`node:key=value,key=value;node2:key=value`."""
    labels: dict[str, dict[str, str]] = {}
    for entry in filter(None, (part.strip() for part in raw.split(";"))):
        node, colon, pairs = entry.partition(":")
        if not colon or not node.strip():
            raise SettingsError(f"WORPEN_PIPELINE_NODE_LABELS: {entry!r} is not node:key=value,...")
        node_labels = labels.setdefault(node.strip(), {})
        for pair in filter(None, (item.strip() for item in pairs.split(","))):
            key, equals, value = pair.partition("=")
            if not equals or not key.strip():
                raise SettingsError(f"WORPEN_PIPELINE_NODE_LABELS: {pair!r} of {node!r} is not key=value")
            node_labels[key.strip()] = value.strip()
    return labels


def secrets_key_file_for(database_url: str) -> str:
    """The secrets' key file next to an SQLite database file, else in the working directory."""
    prefix = "sqlite+aiosqlite:///"
    if database_url.startswith(prefix) and ":memory:" not in database_url:
        path = database_url.removeprefix(prefix).split("?", 1)[0]
        return os.path.join(os.path.dirname(path), "worpen-secrets.key")
    return "worpen-secrets.key"


@dataclass(frozen=True)
class AgentSettings:
    """The agents' command channel."""

    command_timeout: float = 30.0
    """Seconds a command to an agent may take before it is abandoned (504) and cancelled on the agent."""
    sync_timeout: float = 5.0
    """Seconds `POST /api/v1/agents/sync` waits for the agents' acknowledgements."""


@dataclass(frozen=True)
class DockerHost:
    """A node's Docker engine: the node's name (its agent id, when it also heartbeats) and URL.
    TCP engines use TLS when `tls_dir` holds ca.pem, cert.pem and key.pem."""

    node: str
    url: str
    tls_dir: str | None = None


def parse_docker_hosts(raw: str, tls_dir: str | None) -> tuple[DockerHost, ...]:
    """`name=url` pairs separated by commas; `none` for no engine at all."""
    if raw.strip().lower() == "none":
        return ()
    hosts: list[DockerHost] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        node, sep, url = (text.strip() for text in item.partition("="))
        if not sep or not re.fullmatch(AGENT_ID_PATTERN, node) or len(node) > 128:
            raise SettingsError(
                f"WORPEN_DOCKER_HOSTS: {item!r} is not name=url with a name of letters, digits, '.', '_', "
                "':' and '-'"
            )
        if not url.startswith(DOCKER_SCHEMES):
            raise SettingsError(
                f"WORPEN_DOCKER_HOSTS: the URL of {node!r} must start with one of {', '.join(DOCKER_SCHEMES)}"
            )
        if any(host.node == node for host in hosts):
            raise SettingsError(f"WORPEN_DOCKER_HOSTS: node {node!r} is named twice")
        node_tls = None
        if tls_dir is not None and not url.startswith("unix://"):
            own = os.path.join(tls_dir, node)
            node_tls = own if os.path.isdir(own) else tls_dir
        hosts.append(DockerHost(node, url, node_tls))
    return tuple(hosts)


def local_node_name() -> str:
    """This host's name as a node name (an agent id)."""
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())[:128].strip("-.")
    return name or "local"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 3000
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 3001
    database_url: str = "sqlite+aiosqlite:///worpen.db"
    auth: bool = True
    cors_origins: tuple[str, ...] = ("*",)
    policy: FleetPolicy = field(default_factory=FleetPolicy)
    flush_interval: float = 1.0
    sweep_interval: float = 1.0
    auth_failures_per_minute: int = 20
    trusted_proxies: tuple[str, ...] = ()
    key_cache_seconds: float = 5.0
    max_body_bytes: int = 1024 * 1024
    log_level: str = "info"
    log_format: LogFormat = "auto"
    docker_hosts: tuple[DockerHost, ...] = ()
    docker_timeout: float = 10.0
    docker_retry_max: float = 30.0
    docker_tls_verify: bool = True
    container_limits: ContainerLimits = field(default_factory=ContainerLimits)
    service_sample_interval: float = 10.0
    log_policy: LogPolicy = field(default_factory=LogPolicy)
    stream_buffer: int = 10_000
    """Items a live stream (logs, events) holds for a client that reads slower than they come; beyond, the
    client is sent why and disconnected. Above the central log's batch (logs.service.BATCH_LINES), so that
    a burst does not cut off a client that keeps up."""
    stream_ping_seconds: float = 15.0
    rollup_interval: float = 10.0
    """Seconds between two runs of the telemetry rollup."""
    retention_interval: float = 60.0
    """Seconds between two runs of the telemetry retention."""
    telemetry: TelemetryPolicy = field(default_factory=TelemetryPolicy)
    allow_private_webhooks: bool = False
    """Notification channels may point at loopback, link-local and private addresses (a receiver on your
    own network, the tests' own server); off, such a channel is refused (server-side request forgery)."""
    webhook_timeout: float = 5.0
    """Seconds one attempt to deliver a notification may take."""
    webhook_max_attempts: int = 10
    """Attempts to deliver a notification before it is given up (FAILED, NotificationFailed)."""
    incidents: IncidentPolicy = field(default_factory=IncidentPolicy)
    script_limits: SandboxLimits = field(default_factory=SandboxLimits)
    """What one run of an automation script may use: time (ms) and V8 heap (bytes)."""
    automation_tick: float = 1.0
    """Seconds between the rule engine's looks at deferred plans and cron schedules (their precision)."""
    pipelines: PipelineSettings = field(default_factory=PipelineSettings)
    grpc_tls_cert: str | None = None
    """The gRPC server's certificate chain (PEM); with `grpc_tls_key`, gRPC is served over TLS only."""
    grpc_tls_key: str | None = None
    agents: AgentSettings = field(default_factory=AgentSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    replicas: ReplicaSettings = field(default_factory=ReplicaSettings)

    def __post_init__(self) -> None:
        if (self.grpc_tls_cert is None) != (self.grpc_tls_key is None):
            raise SettingsError(
                "WORPEN_GRPC_TLS_CERT and WORPEN_GRPC_TLS_KEY go together: set both to serve gRPC over TLS, "
                "or neither"
            )
        if not self.auth and not (_is_loopback(self.host) and _is_loopback(self.grpc_host)):
            raise SettingsError(
                "authentication can only be turned off when Worpen listens on loopback "
                f"(host {self.host!r}, gRPC host {self.grpc_host!r})"
            )
        lowest = min(self.policy.cpu_high, self.policy.memory_high, self.policy.disk_high)
        if self.policy.clear_margin >= lowest:
            raise SettingsError(
                f"WORPEN_ALERT_CLEAR_MARGIN ({self.policy.clear_margin:g}) must be below every alert "
                f"threshold (the lowest is {lowest:g}): an alert would never clear"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(env)
        host = read.text("WORPEN_HOST", cls.host)
        return cls(
            host=host,
            port=read.integer("WORPEN_PORT", cls.port, 0, 65535),
            grpc_host=read.text("WORPEN_GRPC_HOST", host),
            grpc_port=read.integer("WORPEN_GRPC_PORT", cls.grpc_port, 0, 65535),
            database_url=read.text("WORPEN_DATABASE_URL", cls.database_url),
            auth=read.switch("WORPEN_AUTH", default=True),
            cors_origins=read.items("WORPEN_CORS_ORIGINS", ("*",)),
            policy=FleetPolicy(
                offline_after=timedelta(seconds=read.number("WORPEN_AGENT_TTL", 30, 1)),
                critical_threshold=read.number("WORPEN_CRITICAL_THRESHOLD", 90, 1, 100),
                hysteresis=read.integer("WORPEN_CRITICAL_HEARTBEATS", 3, 1, 1000),
                heartbeat_interval=read.integer("WORPEN_HEARTBEAT_INTERVAL", 10, 1, 3600),
                max_heartbeats_per_second=read.number("WORPEN_MAX_HEARTBEATS_PER_SECOND", 50, 0.1),
                max_buffered_samples=read.integer("WORPEN_TELEMETRY_BUFFER", 100_000, 1, 100_000_000),
                cpu_high=read.number("WORPEN_ALERT_CPU_PERCENT", 90, 1, 100),
                memory_high=read.number("WORPEN_ALERT_MEMORY_PERCENT", 90, 1, 100),
                disk_high=read.number("WORPEN_ALERT_DISK_PERCENT", 90, 1, 100),
                clear_margin=read.number("WORPEN_ALERT_CLEAR_MARGIN", 5, 0, 99),
            ),
            flush_interval=read.number("WORPEN_FLUSH_INTERVAL", cls.flush_interval, 0.05, 60),
            sweep_interval=read.number("WORPEN_SWEEP_INTERVAL", cls.sweep_interval, 0.05, 60),
            auth_failures_per_minute=read.integer(
                "WORPEN_AUTH_FAILURES_PER_MINUTE", cls.auth_failures_per_minute, 1, 100_000
            ),
            trusted_proxies=read.networks("WORPEN_TRUSTED_PROXIES"),
            key_cache_seconds=read.number("WORPEN_KEY_CACHE_SECONDS", cls.key_cache_seconds, 0, 3600),
            max_body_bytes=read.integer("WORPEN_MAX_BODY_BYTES", cls.max_body_bytes, 1024, 1 << 30),
            log_level=read.choice("WORPEN_LOG_LEVEL", cls.log_level, ("debug", "info", "warning", "error")),
            log_format=cast(
                LogFormat, read.choice("WORPEN_LOG_FORMAT", cls.log_format, ("auto", "json", "console"))
            ),
            docker_hosts=parse_docker_hosts(
                read.text(
                    "WORPEN_DOCKER_HOSTS",
                    f"{local_node_name()}={read.text('DOCKER_HOST', DEFAULT_DOCKER_URL)}",
                ),
                read.text("WORPEN_DOCKER_TLS_DIR", "") or None,
            ),
            docker_timeout=read.number("WORPEN_DOCKER_TIMEOUT", cls.docker_timeout, 0.1, 600),
            docker_retry_max=read.number("WORPEN_DOCKER_RETRY_MAX", cls.docker_retry_max, 0.1, 3600),
            docker_tls_verify=read.switch("WORPEN_DOCKER_TLS_VERIFY", default=True),
            container_limits=ContainerLimits(
                terminals_per_key=read.integer("WORPEN_TERMINAL_SESSIONS_PER_KEY", 8, 1, 10_000),
                terminals=read.integer("WORPEN_TERMINAL_SESSIONS_MAX", 32, 1, 10_000),
                pull_stall_seconds=read.number("WORPEN_PULL_STALL_TIMEOUT", 60, 0.1, 86_400),
            ),
            log_policy=LogPolicy(
                keep=timedelta(days=read.number("WORPEN_LOG_RETENTION_DAYS", 30, 0.0001, 36_500)),
                max_bytes=read.integer("WORPEN_LOG_MAX_BYTES", 1 << 30, 4096, 1 << 50),
                events_keep=timedelta(days=read.number("WORPEN_EVENT_RETENTION_DAYS", 30, 0.0001, 36_500)),
                prune_every=read.number("WORPEN_LOG_PRUNE_INTERVAL", 60, 0.05, 86_400),
            ),
            stream_buffer=read.integer("WORPEN_STREAM_BUFFER", cls.stream_buffer, 1, 1_000_000),
            rollup_interval=read.number("WORPEN_TELEMETRY_ROLLUP_INTERVAL", cls.rollup_interval, 0.05, 3600),
            retention_interval=read.number(
                "WORPEN_TELEMETRY_RETENTION_INTERVAL", cls.retention_interval, 0.05, 86_400
            ),
            telemetry=TelemetryPolicy(
                raw_retention=timedelta(hours=read.number("WORPEN_TELEMETRY_RAW_HOURS", 24, 0.1, 8760)),
                minute_retention=timedelta(days=read.number("WORPEN_TELEMETRY_MINUTE_DAYS", 30, 0.1, 3650)),
                hour_retention=timedelta(days=read.number("WORPEN_TELEMETRY_HOUR_DAYS", 365, 0.1, 36_500)),
            ),
            stream_ping_seconds=read.number(
                "WORPEN_STREAM_PING_SECONDS", cls.stream_ping_seconds, 0.05, 3600
            ),
            service_sample_interval=read.number(
                "WORPEN_SERVICE_SAMPLE_INTERVAL", cls.service_sample_interval, 0.1, 3600
            ),
            allow_private_webhooks=read.switch("WORPEN_ALLOW_PRIVATE_WEBHOOKS", default=False),
            webhook_timeout=read.number("WORPEN_WEBHOOK_TIMEOUT_SECONDS", cls.webhook_timeout, 0.1, 300),
            webhook_max_attempts=read.integer(
                "WORPEN_WEBHOOK_MAX_ATTEMPTS", cls.webhook_max_attempts, 1, 100
            ),
            script_limits=SandboxLimits(
                time_ms=read.integer("WORPEN_SCRIPT_TIMEOUT_MS", 100, 1, 60_000),
                memory_bytes=read.integer("WORPEN_SCRIPT_MEMORY_MB", 32, 8, 4096) * 1024 * 1024,
            ),
            automation_tick=read.number("WORPEN_AUTOMATION_TICK_SECONDS", cls.automation_tick, 0.05, 60),
            incidents=IncidentPolicy(
                reopen_window=timedelta(
                    seconds=read.number("WORPEN_INCIDENT_REOPEN_SECONDS", 600, 0, 2_592_000)
                ),
                grace=timedelta(seconds=read.number("WORPEN_INCIDENT_GRACE_SECONDS", 30, 0, 86_400)),
            ),
            pipelines=PipelineSettings(
                local_repos=tuple(
                    os.path.realpath(path)
                    for path in read.text("WORPEN_PIPELINE_LOCAL_REPOS", "").split(os.pathsep)
                    if path.strip()
                ),
                node_slots=read.integer("WORPEN_PIPELINE_NODE_SLOTS", 2, 1, 1000),
                node_labels=parse_node_labels(read.text("WORPEN_PIPELINE_NODE_LABELS", "")),
                lease_seconds=read.number("WORPEN_PIPELINE_LEASE_SECONDS", 60, 1, 3600),
                max_source_bytes=read.integer("WORPEN_PIPELINE_MAX_SOURCE_MB", 256, 1, 65_536) * 1024 * 1024,
                stage_timeout_seconds=read.integer("WORPEN_PIPELINE_STAGE_TIMEOUT_SECONDS", 3600, 1, 86_400),
                tick_seconds=read.number("WORPEN_PIPELINE_TICK_SECONDS", 1.0, 0.05, 60),
                secrets_key=read.text("WORPEN_SECRETS_KEY", "") or None,
                secrets_key_file=read.text("WORPEN_SECRETS_KEY_FILE", "") or None,
            ),
            grpc_tls_cert=read.file("WORPEN_GRPC_TLS_CERT"),
            grpc_tls_key=read.file("WORPEN_GRPC_TLS_KEY"),
            agents=AgentSettings(
                command_timeout=read.number("WORPEN_AGENT_COMMAND_TIMEOUT", 30, 0.1, 86_400),
                sync_timeout=read.number("WORPEN_AGENT_SYNC_TIMEOUT", 5, 0.1, 600),
            ),
            database=DatabaseSettings(
                pool_size=read.integer("WORPEN_DATABASE_POOL_SIZE", 10, 1, 1000),
                statement_timeout=read.number("WORPEN_DATABASE_STATEMENT_TIMEOUT", 30, 0.1, 86_400),
                connect_timeout=read.number("WORPEN_DATABASE_CONNECT_TIMEOUT", 5, 0.1, 600),
            ),
            replicas=ReplicaSettings(
                replica_id=read.text("WORPEN_REPLICA_ID", "") or f"{local_node_name()}-{os.getpid()}",
                lease_seconds=read.number("WORPEN_LEASE_SECONDS", 10, 0.5, 3600),
                address=read.text("WORPEN_REPLICA_ADDRESS", ""),
            ),
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        return None if value is None or not value.strip() else value.strip()

    def text(self, name: str, default: str) -> str:
        return self._raw(name) or default

    def number(self, name: str, default: float, low: float, high: float = float("inf")) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name} must be between {low:g} and {high:g}, got {raw}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise SettingsError(f"{name} must be a whole number from {low} to {high}, got {raw!r}")
        return int(raw)

    def switch(self, name: str, *, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() in {"on", "true", "1", "yes"}:
            return True
        if raw.lower() in {"off", "false", "0", "no"}:
            return False
        raise SettingsError(f"{name} must be 'on' or 'off', got {raw!r}")

    def file(self, name: str) -> str | None:
        """The path of a file that must exist, or None when the variable is not set."""
        raw = self._raw(name)
        if raw is not None and not os.path.isfile(raw):
            raise SettingsError(f"{name}: {raw!r} is not a file")
        return raw

    def items(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        raw = self._raw(name)
        return default if raw is None else tuple(item.strip() for item in raw.split(",") if item.strip())

    def networks(self, name: str) -> tuple[str, ...]:
        """Comma-separated addresses or networks (CIDR), or `*` for any."""
        items = self.items(name, ())
        for item in items:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise SettingsError(
                    f"{name}: {item!r} is not an IP address, a network (CIDR) or '*'"
                ) from None
        return items

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        raw = (self._raw(name) or default).lower()
        if raw not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return raw
