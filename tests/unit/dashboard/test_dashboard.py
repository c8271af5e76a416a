"""Unit tests of the dashboard's figures with fake engines and a fake clock: throughput over the last
minute, the security score's itemised penalties, and services grouped, judged and sampled."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.commands import CreateApiKey
from worpen_core.access.model import Role
from worpen_core.access.service import ApiKeys, FailedAuthThrottle
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.model import (
    Container,
    ContainerState,
    ContainerUsage,
    Health,
    HealthCheckResult,
)
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.dashboard.security import version_key
from worpen_core.dashboard.service import Dashboard
from worpen_core.dashboard.services import ServiceBoard, ServiceStatus, service_name
from worpen_core.dashboard.throughput import Throughput, human_rate
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.model import IncidentPolicy, IncidentReport, Severity
from worpen_core.incidents.service import Incidents

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_throughput_is_the_rate_over_the_last_minute() -> None:
    clock = FakeClock()
    total = [0]
    meter = Throughput(clock, [lambda: total[0], lambda: 2 * total[0]])
    assert meter.per_second() == 0
    for _ in range(120):  # 10 messages a second (counted twice over: 30 a second) for two minutes
        meter.tick()
        clock.advance(1)
        total[0] += 10
    assert meter.per_second() == pytest.approx(30)
    for _ in range(30):  # then nothing for half a minute: half the window's rate
        meter.tick()
        clock.advance(1)
    meter.tick()
    assert meter.per_second() == pytest.approx(15, rel=0.05)


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        (0, "0/s"),
        (0.04, "0/s"),
        (0.44, "0.4/s"),
        (12.4, "12/s"),
        (999, "999/s"),
        (1234, "1.2k/s"),
        (34_567, "35k/s"),
        (5_600_000, "5.6M/s"),
        (2e9, "2G/s"),
    ],
)
def test_rates_read_as_the_cockpit_shows_them(rate: float, shown: str) -> None:
    assert human_rate(rate) == shown


def test_versions_compare_by_their_numeric_release() -> None:
    assert version_key("v1.10.2-rc1") == (1, 10, 2)
    assert version_key("1.9") == (1, 9)
    assert (1, 9) < (1, 10)  # so 1.9 is behind 1.10, unlike the strings
    assert version_key("nightly") is None
    assert version_key(None) is None


async def test_stats_count_active_agents_their_load_and_each_security_finding(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    fleet = Fleet(uow, bus, clock, FleetPolicy())
    for agent_id, cpu, version in [("a", 20.0, "1.2.0"), ("b", 40.0, "1.1.9"), ("c", 60.0, "1.1.0")]:
        await fleet.record_heartbeat(RecordHeartbeat(agent_id, Readings(cpu, 10.0), version=version))
    clock.advance(10)
    await fleet.record_heartbeat(RecordHeartbeat("a", Readings(30.0, 10.0)))
    await fleet.record_heartbeat(RecordHeartbeat("b", Readings(50.0, 10.0)))
    clock.advance(25)  # c's last heartbeat is 35 s old: past the 30 s TTL
    await fleet.sweep()
    keys = ApiKeys(uow, clock)
    await keys.issue(CreateApiKey("root", Role.ADMIN))
    await keys.issue(CreateApiKey("temp", Role.ADMIN, expires_in=timedelta(days=1)))
    await keys.issue(CreateApiKey("ops", Role.OPERATOR))
    throttle = FailedAuthThrottle(clock, 1000, timedelta(minutes=1))
    for _ in range(21):
        throttle.record_failure("10.0.0.9")
    containers = Containers([], AuditTrail(uow, clock, bus), clock, bus, ContainerLimits())
    incidents = Incidents(uow, clock, bus, fleet, containers, AuditTrail(uow, clock, bus), IncidentPolicy())
    for issue, severity in [("disk full", Severity.CRITICAL), ("slow", Severity.LOW)]:
        await incidents.report(IncidentReport("db", "a", issue, severity))
    given_up = await incidents.report(IncidentReport("web", "b", "keeps dying", Severity.HIGH))
    await incidents.fail(given_up.id, "3 attempts did not help")
    dashboard = Dashboard(fleet, keys, throttle, Throughput(clock, []), incidents, clock, auth_enabled=True)

    stats = await dashboard.stats()

    assert stats.active_nodes == 2
    assert stats.avg_load == pytest.approx(40)
    found = {name: (f.count, f.penalty) for name, f in stats.security.findings.items()}
    assert found == {
        "offlineAgents": (1, 5),
        "outdatedAgents": (2, 4),  # 1.1.9 and 1.1.0 are behind 1.2.0
        "failedAuthentications": (21, 3),  # 1 per started ten
        "adminKeysWithoutExpiry": (1, 5),
        "authDisabled": (0, 0),
        "openCriticalIncidents": (2, 20),  # the critical one and the one remediation gave up on
    }
    assert stats.security.score == 100 - 37
    await fleet.record_heartbeat(RecordHeartbeat("c", Readings(60.0, 10.0)))
    assert await dashboard.stats() == stats  # computed at most once a second
    clock.advance(1)
    assert (await dashboard.stats()).active_nodes == 3
    clock.advance(3600)
    assert (await dashboard.stats()).security.findings["failedAuthentications"].count == 0


async def sampled(board: ServiceBoard, after: datetime | None = None) -> None:
    """Let the sample a read started run (one taken later than `after`)."""
    for _ in range(100):
        if board.sampled_at is not None and (after is None or board.sampled_at > after):
            return
        await asyncio.sleep(0)
    raise AssertionError("the read started no sample")


def container(
    node: str,
    cid: str,
    name: str,
    state: ContainerState = ContainerState.RUNNING,
    health: Health = Health.NONE,
    labels: dict[str, str] | None = None,
) -> Container:
    return Container(cid, name, "img:1", state, "", node, START, labels=labels or {}, health=health)


@pytest.mark.parametrize(
    ("name", "labels", "service"),
    [
        ("shop-web-2", {"com.docker.compose.service": "api-gateway"}, "api-gateway"),
        ("web.3.k1x9a", {"com.docker.swarm.service.name": "web"}, "web"),
        ("web-2", {}, "web"),
        ("web_12", {}, "web"),
        ("web.2.k1x9a", {}, "web"),
        ("redis", {}, "redis"),
    ],
)
def test_a_container_belongs_to_its_labelled_service_or_its_name_less_the_replica(
    name: str, labels: dict[str, str], service: str
) -> None:
    assert service_name(container("n", "id", name, labels=labels)) == service


async def test_services_are_judged_by_their_containers_and_sampled_for_load_and_latency(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    gateway = {"com.docker.compose.service": "api-gateway"}
    a = FakeRuntime(
        "node-a",
        [
            container("node-a", "g1", "shop-gw-1", health=Health.HEALTHY, labels=gateway),
            container("node-a", "w1", "web-1"),
            container("node-a", "d1", "db-1", ContainerState.EXITED),
        ],
    )
    b = FakeRuntime(
        "node-b",
        [
            container("node-b", "g2", "shop-gw-2", health=Health.HEALTHY, labels=gateway),
            container("node-b", "w2", "web-2", health=Health.UNHEALTHY),
        ],
    )
    check = HealthCheckResult(START, START + timedelta(milliseconds=40), 0, "")
    slow = HealthCheckResult(START - timedelta(seconds=10), START - timedelta(seconds=7), 0, "")
    a.health_logs["g1"] = (slow, check)  # the latest check counts
    b.health_logs["g2"] = (HealthCheckResult(START, START + timedelta(milliseconds=60), 0, ""),)
    board = ServiceBoard(
        Containers([a, b], AuditTrail(uow, clock, bus), clock, bus, ContainerLimits()), clock
    )
    for runtime in (a, b):
        for c in runtime.held:
            runtime.usages[c.id] = ContainerUsage(cpu_nanos=0, system_nanos=0, online_cpus=2)

    assert board.read() == []  # the first look starts a sample in the background
    await sampled(board)
    assert [s.load for s in board.read()] == [None, None, None]  # one reading is no rate yet
    a.usages["g1"] = ContainerUsage(cpu_nanos=300, system_nanos=1000, online_cpus=2)  # 60 % of one core
    b.usages["g2"] = ContainerUsage(cpu_nanos=100, system_nanos=1000, online_cpus=2)  # 20 %
    clock.advance(10)
    await board.sample()

    by_name = {s.name: s for s in board.read()}
    assert sorted(by_name) == ["api-gateway", "db", "web"]
    gw, web, db = by_name["api-gateway"], by_name["web"], by_name["db"]
    assert (gw.status, gw.instances, gw.nodes, gw.load, gw.latency_ms) == (
        ServiceStatus.HEALTHY,
        2,
        ("node-a", "node-b"),
        40,
        50,
    )
    assert (web.status, web.instances, web.latency_ms) == (ServiceStatus.WARNING, 2, None)
    assert (db.status, db.instances, db.containers, db.load) == (ServiceStatus.CRITICAL, 0, 1, None)
    assert board.sampled_at == clock.now()

    b.down = True
    await board.sample()
    assert sorted(s.name for s in board.read()) == ["api-gateway", "db", "web"]
    assert list(board.unavailable) == ["node-b"]


async def test_the_engines_are_sampled_only_while_someone_looks(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    engine = FakeRuntime("node-a", [container("node-a", "w1", "web-1")])
    board = ServiceBoard(
        Containers([engine], AuditTrail(uow, clock, bus), clock, bus, ContainerLimits()), clock
    )

    await board.sample()
    assert (engine.listed, engine.usage_calls) == (0, 0)  # nobody looked yet
    board.read()
    await sampled(board)
    clock.advance(60)
    await board.sample()
    assert (engine.listed, engine.usage_calls) == (2, 2)
    clock.advance(300)  # five minutes since the last look
    await board.sample()
    assert engine.listed == 2
    sampled_before = board.sampled_at
    assert [s.name for s in board.read()] == ["web"]  # what it had, while a new sample starts
    clock.advance(1)
    await sampled(board, after=sampled_before)
    assert engine.listed == 3
