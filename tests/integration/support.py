"""Helpers of the integration tests: real `worpen` processes (serve and the key commands) on loopback,
each server on its own SQLite file, or with WORPEN_TEST_DATABASE=postgresql on its own PostgreSQL database
(tests/postgres_support.py). Nothing is faked.

Waits are bounded polls with generous deadlines: they bound a hang, they are not performance thresholds.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from tests import postgres_support
from tests.integration.docker_support import ENGINE_URL
from tests.postgres_support import create_database_sync, run_sync
from worpen_infra.sql.database import create_engine

DEADLINE_SECONDS = 120.0
"""Upper bound for a process to start, answer or stop; never reached when things work, even when several
test sessions on one 2-CPU machine launch their servers and commands at the same moment."""

SECRET = re.compile(r"wpn_[A-Za-z0-9_-]{20,}")
CREATED = re.compile(r"created key (\S+) \((\w+)\)")


def worpen_command() -> list[str]:
    """The installed `worpen` entry point of this environment (the CLI users run)."""
    script = Path(sys.executable).parent / "worpen"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from worpen_api.cli import main; main()"]


LISTEN_PORTS = range(20_000, 32_768)
"""Where the tests' servers listen: below Linux's ephemeral range (32768-60999), so that no outgoing
connection (a test's client, a webhook, an engine call) can take a port between its choice and the
server's bind, as it could with a port the kernel handed out as free."""


_HANDED_OUT: set[int] = set()
"""Ports free_port gave already: servers launched together bind theirs only once started, so a port
still free when a second one is chosen may be the first one's."""

PORT_RESERVATIONS = Path(tempfile.gettempdir()) / "worpen-test-ports.lock"
"""A file whose byte N a test session locks while port N is its own: two sessions running at once on one
machine never hand out the same port, even one that neither's server has bound yet. The kernel drops a
session's locks when it ends, however it ends."""

_reservations: list[int] = []
"""The open descriptor of PORT_RESERVATIONS, kept for the whole session: closing any descriptor of the
file would drop every lock this process holds on it."""


def _reserve(port: int) -> bool:
    """Lock byte `port` of PORT_RESERVATIONS for this session, unless another session holds it."""
    if not _reservations:
        _reservations.append(os.open(PORT_RESERVATIONS, os.O_RDWR | os.O_CREAT, 0o666))
    try:
        fcntl.lockf(_reservations[0], fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
    except OSError:
        return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on, in LISTEN_PORTS, never the same twice in one test session
    nor in two sessions running at once."""
    while True:
        port = random.choice(LISTEN_PORTS)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _reserve(port):
            continue
        _HANDED_OUT.add(port)
        return port


BYTECODE_CACHE = Path(tempfile.gettempdir()) / "worpen-integration-pycache"


def base_env() -> dict[str, str]:
    """Our environment without any WORPEN_* variable, for `worpen` processes.

    They may cache bytecode even where PYTHONDONTWRITEBYTECODE is set, in a directory of their own
    outside the repository: otherwise every process compiles its dependencies again, which is most of
    its start-up time."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("WORPEN_") and name != "PYTHONDONTWRITEBYTECODE"
    }
    env.setdefault("PYTHONPYCACHEPREFIX", str(BYTECODE_CACHE))
    return env


TEST_DATABASE_VARIABLE = "WORPEN_TEST_DATABASE"
"""`sqlite` (the default) or `postgresql`: the database of every server the tests launch."""


def on_postgresql() -> bool:
    """Whether this run puts the servers' stores on PostgreSQL (WORPEN_TEST_DATABASE=postgresql)."""
    backend = os.environ.get(TEST_DATABASE_VARIABLE, "sqlite")
    if backend not in {"sqlite", "postgresql"}:
        raise RuntimeError(f"{TEST_DATABASE_VARIABLE} must be sqlite or postgresql, got {backend!r}")
    return backend == "postgresql"


_POSTGRES_STORES: dict[Path, str] = {}
"""The PostgreSQL database made for each store path, so that a server restarted on a path finds its data."""


def database_url(database: Path) -> str:
    """The URL of the store at `database`: that SQLite file, or in PostgreSQL mode a fresh PostgreSQL
    database made for the path on first use (and the same one afterwards), already migrated as a first
    start would leave it (the server still checks it is at the newest migration; the migrations from an
    empty PostgreSQL database have tests of their own)."""
    if not on_postgresql():
        return f"sqlite+aiosqlite:///{database}"
    if database not in _POSTGRES_STORES:
        _POSTGRES_STORES[database] = create_database_sync("it", migrated=True)
    return _POSTGRES_STORES[database]


def worpen_env(database: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a `worpen` process on `database`: `base_env()`, the database (see
    `database_url`, unless `settings` name one), JSON logs and `settings`.

    On PostgreSQL the secrets' key file is named beside `database`, where SQLite keeps it, so that a
    command run from elsewhere (the CLI) finds the server's key rather than making one where it runs."""
    env = base_env()
    settings = settings or {}
    if "WORPEN_DATABASE_URL" not in settings:
        env["WORPEN_DATABASE_URL"] = database_url(database)
        if on_postgresql():
            env["WORPEN_SECRETS_KEY_FILE"] = str(database.parent / "worpen-secrets.key")
    env["WORPEN_LOG_FORMAT"] = "json"
    env.update(settings)
    return env


@contextmanager
def writes_blocked(url: str) -> Iterator[None]:
    """The database at `url` cannot be written until the block ends, whichever its backend: an exclusive
    transaction on SQLite, every table locked on PostgreSQL (writers wait for their busy or statement
    timeout, then fail)."""
    if not url.startswith("sqlite"):
        with postgres_support.writes_blocked(url):
            yield
        return
    holder = sqlite3.connect(url.split("///", 1)[1], isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def query(url: str, sql: str, **parameters: object) -> list[tuple[Any, ...]]:
    """The rows of `sql` (`:name` placeholders; committed if it writes) on the database at `url`, SQLite or
    PostgreSQL, from synchronous code, as a second client of a server's store would."""

    async def read() -> list[tuple[Any, ...]]:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                result = await connection.execute(text(sql), parameters)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    return run_sync(read)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class WorpenServer:
    """A running `worpen serve`; its output (JSON log lines and the first-start banner) goes to a file."""

    database: Path
    env: dict[str, str]
    port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        """Where its store is: an SQLite file or a PostgreSQL database (see `database_url`)."""
        return self.env["WORPEN_DATABASE_URL"]

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def initial_admin_key(self) -> str:
        """The admin key a first start on an empty database prints once."""
        found = SECRET.search(self.log())
        assert found is not None, f"no initial admin key in the log:\n{self.log()}"
        return found.group(0)

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=bearer(key) if key else {}, timeout=30.0)

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"worpen serve exited with {self.process.returncode} before answering:\n{self.log()}"
                    )
                try:
                    if client.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"worpen serve did not answer /health in {DEADLINE_SECONDS}s:\n{self.log()}")

    def wait_for_exit(self) -> int:
        try:
            return self.process.wait(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"worpen serve did not exit in {DEADLINE_SECONDS}s:\n{self.log()}") from None

    def stop_async(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send `sig` without waiting (see `wait_for_exit`)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send `sig` (SIGKILL if it does not stop in time) and return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=DEADLINE_SECONDS)
        return self.process.returncode


def launch_server(
    database: Path,
    settings: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    ports: tuple[int, int] | None = None,
) -> WorpenServer:
    """Start `worpen serve` on free loopback ports (or on `ports`, HTTP and gRPC: a restart where clients
    expect it) without waiting for it (see `wait_until_healthy`)."""
    database.parent.mkdir(parents=True, exist_ok=True)
    port, grpc_port = ports or (free_port(), free_port())
    log_path = database.parent / f"serve-{port}.log"
    env = worpen_env(database, settings)
    command = [
        *worpen_command(),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        *args,
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=database.parent,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return WorpenServer(database, env, port, grpc_port, process, log_path)


def start_server(
    database: Path,
    settings: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    ports: tuple[int, int] | None = None,
) -> WorpenServer:
    server = launch_server(database, settings, args, ports)
    try:
        server.wait_until_healthy()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


@dataclass(frozen=True)
class ServerSpec:
    settings: Mapping[str, str]
    args: Sequence[str] = ()
    serves: bool = True
    """False for a server that is expected to refuse to start."""


CRITICAL_HEARTBEATS = 3
"""Heartbeats in a row that make an agent CRITICAL on `fleet_server`, or bring it back."""

COCKPIT = "http://cockpit.example"
"""The origin `fleet_server` lets browsers call it from (WORPEN_CORS_ORIGINS)."""

FLEET_SETTINGS = {
    # Behaviour the tests rely on, stated rather than left to defaults.
    "WORPEN_CRITICAL_HEARTBEATS": str(CRITICAL_HEARTBEATS),
    # No agent goes OFFLINE behind a test's back, however long the session takes.
    "WORPEN_AGENT_TTL": "3600",
    "WORPEN_CORS_ORIGINS": COCKPIT,
    # Keys stay cached for an hour, so a key refused right after revocation proves the revocation,
    # not a cache expiry.
    "WORPEN_KEY_CACHE_SECONDS": "3600",
    # Tests on this server send bad credentials on purpose; the throttle has its own server.
    "WORPEN_AUTH_FAILURES_PER_MINUTE": "100000",
    "WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}",
}
FLAKY_SOCKET = Path(tempfile.gettempdir()) / f"worpen-flaky-engine-{os.getpid()}.sock"
"""Where `flaky_server` finds its engine: a proxy the tests stop and start (docker_support.EngineProxy)."""
GUARDED_SOCKET = Path(tempfile.gettempdir()) / f"worpen-guarded-engine-{os.getpid()}.sock"
"""Where `fuzz_server` finds its engine: a proxy that never forwards a prune (docker_support.EngineProxy)."""
NO_ENGINE = {"WORPEN_DOCKER_HOSTS": "none"}
"""For a server whose tests use no Docker engine: one with a node follows the engine's events, and every
container the other tests make would cost it a write to its journal and its log."""
BUFFERING = {"WORPEN_FLUSH_INTERVAL": "60"}
"""Telemetry stays buffered for a minute: what reaches the database before then got there another way."""

SERVERS: dict[str, ServerSpec] = {
    "fleet_server": ServerSpec(FLEET_SETTINGS),
    "telemetry_server": ServerSpec(
        # Samples written and rolled up within half a second; nobody OFFLINE behind a test's back.
        {
            "WORPEN_FLUSH_INTERVAL": "0.2",
            "WORPEN_TELEMETRY_ROLLUP_INTERVAL": "0.2",
            "WORPEN_AGENT_TTL": "3600",
            **NO_ENGINE,
        }
    ),
    "dashboard_server": ServerSpec(
        {
            "WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}",
            "WORPEN_SERVICE_SAMPLE_INTERVAL": "0.5",
            "WORPEN_AGENT_TTL": "3",
            "WORPEN_SWEEP_INTERVAL": "0.2",
        }
    ),
    "short_ttl_server": ServerSpec({"WORPEN_AGENT_TTL": "1", "WORPEN_SWEEP_INTERVAL": "0.1", **NO_ENGINE}),
    "throttled_server": ServerSpec({"WORPEN_AUTH_FAILURES_PER_MINUTE": "5", **NO_ENGINE}),
    "proxied_server": ServerSpec(
        {"WORPEN_AUTH_FAILURES_PER_MINUTE": "5", "WORPEN_TRUSTED_PROXIES": "127.0.0.1,::1", **NO_ENGINE}
    ),
    "no_auth_server": ServerSpec({"WORPEN_AUTH": "off", **NO_ENGINE}),
    "debug_server": ServerSpec({"WORPEN_LOG_LEVEL": "debug", **NO_ENGINE}),
    "no_auth_public_server": ServerSpec({"WORPEN_AUTH": "off"}, ["--host", "0.0.0.0"], serves=False),
    "crash_server": ServerSpec({**BUFFERING, "WORPEN_AGENT_TTL": "3600", **NO_ENGINE}),
    "buffering_server": ServerSpec({**BUFFERING, **NO_ENGINE}),
    "twin_server": ServerSpec(
        {"WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL},twin={ENGINE_URL},ghost=unix:///nonexistent/ghost.sock"}
    ),
    "flaky_server": ServerSpec(
        {"WORPEN_DOCKER_HOSTS": f"flaky=unix://{FLAKY_SOCKET}", "WORPEN_DOCKER_RETRY_MAX": "0.5"}
    ),
    "fuzz_server": ServerSpec(
        {
            "WORPEN_DOCKER_HOSTS": f"local=unix://{GUARDED_SOCKET}",
            "WORPEN_DOCKER_RETRY_MAX": "0.5",
            # The fuzzer probes every operation with bad credentials on purpose and expects 401 for each
            # (schemathesis' ignored_auth accepts 401 or 403 only); past 20 a minute the throttle rightly
            # answers 429. Valid keys pass it either way; the throttle has its own server.
            "WORPEN_AUTH_FAILURES_PER_MINUTE": "100000",
        }
    ),
    "retention_server": ServerSpec(
        # The log keeps 8 KiB (the default 30 days too), checked every 0.1 s.
        {"WORPEN_LOG_MAX_BYTES": "8192", "WORPEN_LOG_PRUNE_INTERVAL": "0.1", **NO_ENGINE}
    ),
    "slow_stream_server": ServerSpec(
        # A follower is cut off once more than 200 entries wait for it; idle streams get a ping every 0.2 s.
        {"WORPEN_STREAM_BUFFER": "200", "WORPEN_STREAM_PING_SECONDS": "0.2", **NO_ENGINE}
    ),
}
"""The servers of the integration tests, by the name of the fixture that provides each."""


class Servers:
    """Launches the servers of `SERVERS`, each in its own directory, at most once per session.

    A start takes seconds (imports, mostly), so servers are launched ahead of the tests that use them,
    their start-ups overlapping with other tests; a fixture then waits for its server to answer."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._launched: dict[str, WorpenServer] = {}

    def launch(self, name: str) -> WorpenServer:
        if name not in self._launched:
            spec = SERVERS[name]
            self._launched[name] = launch_server(self._root / name / "worpen.db", spec.settings, spec.args)
        return self._launched[name]

    def ready(self, name: str) -> WorpenServer:
        server = self.launch(name)
        server.wait_until_healthy()
        return server

    def retire(self, name: str) -> None:
        """Ask `name` to stop (SIGTERM) without waiting: its tests are over. `stop_all` waits for it."""
        if name in self._launched:
            self._launched[name].stop_async()

    def stop_all(self) -> None:
        for server in self._launched.values():
            server.stop()


@dataclass(frozen=True)
class Invocation:
    """One `worpen` command line, in `env`, from `cwd`."""

    args: Sequence[str]
    env: Mapping[str, str]
    cwd: Path | None = None


def run_worpen(*invocations: Invocation) -> list[subprocess.CompletedProcess[str]]:
    """Run `worpen` commands side by side (each takes seconds, mostly imports) and wait for them all."""
    processes = [
        subprocess.Popen(
            [*worpen_command(), *invocation.args],
            env=dict(invocation.env),
            cwd=invocation.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for invocation in invocations
    ]
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


@dataclass(frozen=True)
class IssuedKey:
    id: str
    name: str
    role: str
    secret: str


def issued_key(name: str, result: subprocess.CompletedProcess[str]) -> IssuedKey:
    """The key `worpen apikey create` printed: its id on the first line, the secret on the last."""
    assert result.returncode == 0, (
        f"worpen apikey create failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    lines = result.stdout.strip().splitlines()
    created = CREATED.search(lines[0])
    assert created is not None, result.stdout
    assert SECRET.fullmatch(lines[-1].strip()), result.stdout
    return IssuedKey(created.group(1), name, created.group(2), lines[-1].strip())


@dataclass(frozen=True)
class Keys:
    """Keys on `fleet_server`: the initial admin key, and keys made with `worpen apikey create`."""

    admin: str
    viewer: IssuedKey
    operator: IssuedKey
    agent: IssuedKey
    """An agent key bound to bee-001 only."""
    to_revoke_over_api: IssuedKey
    to_revoke_with_cli: IssuedKey
    """Never presented to the server, so the server has nothing cached for it when the CLI revokes it."""
    expiring: IssuedKey
    """A viewer key created with `--expires 1s`."""
    expiring_created: float
    """time.monotonic() when the command that created `expiring` had finished."""


def heartbeat(
    client: httpx.Client, agent_id: str, cpu: float = 10.0, ram: float = 20.0, **fields: object
) -> httpx.Response:
    return client.post("/api/v1/internal/heartbeat", json={"id": agent_id, "cpu": cpu, "ram": ram, **fields})


def request_lines(server: WorpenServer) -> list[dict[str, object]]:
    """The request log lines the server has written so far."""
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


def logged(server: WorpenServer, request_id: str) -> dict[str, object]:
    """The request log line of the request with this X-Request-ID, once the server has written it (it
    logs a request after answering it, so a client may read the answer first)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        found = [line for line in request_lines(server) if line["request_id"] == request_id]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no such request line in:\n{server.log()[-3000:]}"
        time.sleep(0.05)


def preflight(server: WorpenServer, path: str, **headers: str) -> httpx.Response:
    """The CORS preflight a browser on COCKPIT sends, with no key, before a GET with a key."""
    with server.client() as browser:
        return browser.options(
            path,
            headers={
                "Origin": COCKPIT,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
                **headers,
            },
        )


def accepted(response: httpx.Response) -> dict[str, object]:
    """The body of a heartbeat's 202, or a failure that shows what came back instead."""
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body
