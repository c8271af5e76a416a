"""Fixtures of the integration tests: real `worpen` processes on loopback, each server on its own SQLite
file, or its own PostgreSQL database with WORPEN_TEST_DATABASE=postgresql (see support.py).

`fleet_server` is one `worpen serve` for the whole session, shared by the modules that only need a
running Worpen; tests on it use their own agent ids so they do not depend on each other's agents.
Tests that need other settings (a short TTL, a low auth-failure limit, authentication off, crashes) get
servers of their own. Each server is up only while its tests run (see `servers`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import docker
import httpx
import pytest

from tests.integration.docker_support import SESSION, SESSION_LABEL, Containers, engine, ensure_test_image
from tests.integration.receiver import Receiver, receiving
from tests.integration.support import (
    SERVERS,
    Invocation,
    Keys,
    Servers,
    WorpenServer,
    free_port,
    issued_key,
    run_worpen,
)
from tests.postgres_support import Cluster

LOOKAHEAD = 10
"""How many tests ahead of its first one a server is launched: a start takes seconds, which the tests
before it fill."""


@dataclass(frozen=True)
class Uses:
    """Where in the session's order of tests each server of `SERVERS` is first and last used."""

    position: dict[str, int]
    """Each test's place in the order (by node id)."""
    first: dict[str, int]
    last: dict[str, int]

    @classmethod
    def of(cls, items: list[pytest.Item]) -> Uses:
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        for index, item in enumerate(items):
            for name in SERVERS.keys() & set(getattr(item, "fixturenames", ())):
                first.setdefault(name, index)
                last[name] = index
        return cls({item.nodeid: index for index, item in enumerate(items)}, first, last)

    def due(self, now: int) -> list[str]:
        """The servers to be up at test `now`: from LOOKAHEAD tests before their first to their last."""
        return [
            name
            for name in SERVERS
            if name in self.first and self.first[name] - LOOKAHEAD <= now <= self.last[name]
        ]

    def done(self, now: int) -> list[str]:
        """The servers whose last test came before test `now`."""
        return [name for name, last in self.last.items() if last < now]


@pytest.fixture(scope="session")
def uses(request: pytest.FixtureRequest) -> Uses:
    return Uses.of(request.session.items)


@pytest.fixture(scope="session", autouse=True)
def servers(uses: Uses, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The session's servers, each up only while its tests run: launched LOOKAHEAD tests ahead of its
    first one and stopped once its last one is over (`servers_on_time`), since a server spends a share of
    a CPU on its timers while up. Of those due at the first test, one is waited for before the others
    start, so that they find the bytecode it cached (see base_env)."""
    pool = Servers(tmp_path_factory.mktemp("servers"))
    try:
        due = uses.due(0)
        first = next((name for name in due if SERVERS[name].serves), None)
        if first is not None:
            pool.ready(first)
        for name in due:
            pool.launch(name)
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(autouse=True)
def servers_on_time(request: pytest.FixtureRequest, uses: Uses, servers: Servers) -> None:
    """Before each test: stops the servers whose tests are over (the fixtures of their modules are torn
    down by then) and launches those whose first test is near."""
    now = uses.position.get(request.node.nodeid)
    if now is None:
        return
    for name in uses.done(now):
        servers.retire(name)
    for name in uses.due(now):
        servers.launch(name)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of the test's own, which it may stop and start (the shared one must stay up)."""
    own = Cluster(free_port())
    own.start()
    try:
        yield own
    finally:
        own.close()


@pytest.fixture(scope="session")
def fleet_server(servers: Servers) -> WorpenServer:
    """Default behaviour, with the settings of support.FLEET_SETTINGS stated."""
    return servers.ready("fleet_server")


@pytest.fixture(scope="session")
def dashboard_server(servers: Servers) -> WorpenServer:
    """A fleet of its own (the dashboard counts every agent), services sampled every half second, agents
    OFFLINE 3 s after their last heartbeat."""
    return servers.ready("dashboard_server")


@pytest.fixture(scope="session")
def short_ttl_server(servers: Servers) -> WorpenServer:
    """Calls an agent OFFLINE one second after its last heartbeat, checking every 0.1 s."""
    return servers.ready("short_ttl_server")


@pytest.fixture(scope="session")
def throttled_server(servers: Servers) -> WorpenServer:
    """Answers 429 after 5 failed authentications from one client within a minute."""
    return servers.ready("throttled_server")


@pytest.fixture(scope="session")
def debug_server(servers: Servers) -> WorpenServer:
    """WORPEN_LOG_LEVEL=debug: logs every request, routine heartbeats included."""
    return servers.ready("debug_server")


@pytest.fixture(scope="session")
def proxied_server(servers: Servers) -> WorpenServer:
    """Behind a proxy on loopback (WORPEN_TRUSTED_PROXIES): counts failures by X-Forwarded-For, 5 a minute."""
    return servers.ready("proxied_server")


@pytest.fixture(scope="session")
def no_auth_server(servers: Servers) -> WorpenServer:
    """WORPEN_AUTH=off, on loopback."""
    return servers.ready("no_auth_server")


@pytest.fixture(scope="session")
def no_auth_public_server(servers: Servers) -> WorpenServer:
    """WORPEN_AUTH=off with --host 0.0.0.0: a process that is expected to refuse to start."""
    return servers.launch("no_auth_public_server")


@pytest.fixture(scope="session")
def crash_server(servers: Servers) -> WorpenServer:
    """Telemetry buffered for a minute, agents never OFFLINE however slow its restart; to be killed."""
    return servers.ready("crash_server")


@pytest.fixture(scope="session")
def buffering_server(servers: Servers) -> WorpenServer:
    """Telemetry buffered for a minute; to be stopped with SIGTERM."""
    return servers.ready("buffering_server")


@pytest.fixture(scope="session")
def keys(fleet_server: WorpenServer) -> Keys:
    """Keys made with `worpen apikey create` against the running server's database, as an operator
    would while it serves."""
    wanted = {
        "viewer": ["--role", "viewer"],
        "operator": ["--role", "operator"],
        "agent": ["--role", "agent", "--agent", "bee-001"],
        "to-revoke-over-api": ["--role", "viewer"],
        "to-revoke-with-cli": ["--role", "operator"],
        "expiring": ["--role", "viewer", "--expires", "1s"],
    }
    results = run_worpen(
        *(
            Invocation(["apikey", "create", "--name", name, *args], fleet_server.env)
            for name, args in wanted.items()
        )
    )
    finished = time.monotonic()
    made = {name: issued_key(name, result) for name, result in zip(wanted, results, strict=True)}
    return Keys(
        admin=fleet_server.initial_admin_key(),
        viewer=made["viewer"],
        operator=made["operator"],
        agent=made["agent"],
        to_revoke_over_api=made["to-revoke-over-api"],
        to_revoke_with_cli=made["to-revoke-with-cli"],
        expiring=made["expiring"],
        expiring_created=finished,
    )


@pytest.fixture(scope="module")
def admin(fleet_server: WorpenServer, keys: Keys) -> Iterator[httpx.Client]:
    """An HTTP client on `fleet_server` with the initial admin key."""
    with fleet_server.client(keys.admin) as client:
        yield client


@pytest.fixture(scope="session")
def twin_server(servers: Servers) -> WorpenServer:
    """Three nodes: `local` and `twin` on the same local engine, and `ghost`, whose socket does not exist."""
    return servers.ready("twin_server")


@pytest.fixture(scope="session")
def flaky_server(servers: Servers) -> WorpenServer:
    """One node, `flaky`, reached through support.FLAKY_SOCKET (a proxy the tests start and stop),
    retried every half second at most."""
    return servers.ready("flaky_server")


@pytest.fixture(scope="session")
def fuzz_server(servers: Servers) -> WorpenServer:
    """One node, `local`, reached through support.GUARDED_SOCKET (a proxy the test starts, which never
    forwards a prune), retried every half second at most; no throttle on failed authentications."""
    return servers.ready("fuzz_server")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = engine()
    ensure_test_image(client)
    yield client
    client.close()


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[Containers]:
    """Makes this session's labelled containers; removes them after the test, whatever its outcome."""
    made = Containers(docker_client)
    try:
        yield made
    finally:
        made.remove_all()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback recording the webhooks posted to it."""
    with receiving() as state:
        yield state


@pytest.fixture
def labelled(docker_client: docker.DockerClient) -> Iterator[None]:
    """Removes this session's containers, then its volumes, after the test whatever its outcome."""
    try:
        yield
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{SESSION_LABEL}={SESSION}"}
        ):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)
        for volume in docker_client.volumes.list(filters={"label": f"{SESSION_LABEL}={SESSION}"}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                volume.remove(force=True)
