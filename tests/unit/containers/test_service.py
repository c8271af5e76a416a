"""Unit tests of the container use cases with fake engines: reference resolution across nodes, the audit
trail's promise (never says an operation did not happen when it did), and the engine watch."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.shared_limits import FakeSessionSlots
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.model import Principal, Role
from worpen_core.audit.model import AuditQuery, Outcome
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.events import (
    ContainerDied,
    ContainerHealthChanged,
    EngineAvailable,
    EngineUnavailable,
    StopRequests,
    domain_event,
)
from worpen_core.containers.model import (
    WORKLOAD_LABEL,
    Container,
    ContainerState,
    EngineEvent,
)
from worpen_core.containers.service import SLOT_RENEW_SECONDS, ContainerLimits, Containers
from worpen_core.shared.errors import (
    Ambiguous,
    Conflict,
    InvalidInput,
    NotFound,
    RateLimited,
    TimedOut,
    Unavailable,
)

OPERATOR = Principal("key-1", "ops", Role.OPERATOR)


ID = "a1b2c3d4" + "0" * 56


def container(node: str, cid: str = ID, name: str = "web") -> Container:
    return Container(cid, name, "img:1", ContainerState.RUNNING, "Up", node, datetime(2026, 1, 1, tzinfo=UTC))


def fleet(
    runtimes: Sequence[FakeRuntime], uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> Containers:
    return Containers(runtimes, AuditTrail(uow, clock, bus), clock, bus, ContainerLimits())


async def test_a_reference_is_a_full_id_a_prefix_of_four_or_more_or_a_name(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    containers = fleet([FakeRuntime("a", [container("a")])], uow, clock, bus)

    for ref in (ID, ID[:4], "web", "/web"):
        assert (await containers.inspect(ref)).container.id == ID
    with pytest.raises(InvalidInput, match="at least 4"):
        await containers.inspect(ID[:3])
    with pytest.raises(NotFound):
        await containers.inspect("nothing")
    with pytest.raises(InvalidInput):
        await containers.inspect("not a name")


async def test_a_reference_found_on_two_nodes_is_ambiguous_unless_a_node_is_given(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    containers = fleet(
        [FakeRuntime("a", [container("a")]), FakeRuntime("b", [container("b")])], uow, clock, bus
    )

    with pytest.raises(Ambiguous) as ambiguous:
        await containers.inspect("web")
    assert ambiguous.value.candidates == ("a/web (a1b2c3d40000)", "b/web (a1b2c3d40000)")
    assert (await containers.inspect("web", "b")).container.node == "b"


async def test_an_ambiguous_prefix_lists_its_candidates(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    twins = [container("a", ID, "one"), container("a", ID[:6] + "f" * 58, "two")]
    containers = fleet([FakeRuntime("a", twins)], uow, clock, bus)

    with pytest.raises(Ambiguous) as ambiguous:
        await containers.inspect(ID[:5])
    assert {candidate.split(" ")[0] for candidate in ambiguous.value.candidates} == {"a/one", "a/two"}


async def test_a_container_not_found_while_a_node_is_down_is_that_nodes_outage(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    containers = fleet([FakeRuntime("a"), FakeRuntime("b", down=True)], uow, clock, bus)

    with pytest.raises(Unavailable, match="node b"):
        await containers.inspect("web")
    listing = await containers.list_containers()
    assert listing.items == []
    assert list(listing.unavailable) == ["b"]
    with pytest.raises(Unavailable):
        await containers.list_containers(node="b")


async def test_an_operation_is_audited_before_it_runs_and_its_outcome_after(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    runtime = FakeRuntime("a", [container("a")])
    containers = fleet([runtime], uow, clock, bus)

    await containers.start(OPERATOR, "web")
    with pytest.raises(Conflict):
        await containers.stop(OPERATOR, "web")

    entries = await AuditTrail(uow, clock, bus).query(AuditQuery())
    by_action = {entry.action: entry for entry in entries}
    assert by_action["container.start"].outcome is Outcome.SUCCEEDED
    assert by_action["container.start"].actor == "ops"
    assert by_action["container.start"].target == "web (a1b2c3d40000)"
    assert by_action["container.stop"].outcome is Outcome.FAILED
    assert by_action["container.stop"].error == "the engine refuses"


async def test_no_operation_runs_when_its_audit_entry_cannot_be_written(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    runtime = FakeRuntime("a", [container("a")])
    containers = fleet([runtime], uow, clock, bus)
    uow.store.broken = True

    with pytest.raises(Unavailable, match="database"):
        await containers.start(OPERATOR, "web")
    assert runtime.started == []


async def test_an_outcome_that_cannot_be_written_at_once_is_written_later(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    audit = AuditTrail(uow, clock, bus)

    async def outage_midway() -> str:
        uow.store.broken = True
        return "done"

    assert await audit.run(OPERATOR, "container.start", "web", "a", outage_midway) == "done"
    [pending] = uow.store.audit.values()
    assert pending.outcome is Outcome.PENDING
    with pytest.raises(Unavailable):
        await audit.flush()

    uow.store.broken = False
    assert await audit.flush() == 1
    [written] = uow.store.audit.values()
    assert written.outcome is Outcome.SUCCEEDED


def raw(action: str, **attributes: str) -> EngineEvent:
    return EngineEvent(
        "container", action, ID, {"name": "web", "image": "img:1", **attributes}, 1_700_000_000 * 10**9
    )


def test_engine_events_become_domain_events() -> None:
    died = domain_event("a", raw("die", exitCode="137"))
    health = domain_event("a", raw("health_status: unhealthy"))

    assert isinstance(died, ContainerDied)
    assert (died.node, died.container_id, died.name, died.exit_code) == ("a", ID, "web", 137)
    assert died.at == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert isinstance(health, ContainerHealthChanged)
    assert health.health == "UNHEALTHY"
    assert domain_event("a", raw("exec_start: sh")) is None
    assert domain_event("a", EngineEvent("network", "connect", "n", {}, 0)) is None


def test_the_deaths_of_worpens_own_work_containers_are_no_crashes_for_self_healing() -> None:
    stage_failed = raw("die", exitCode="1", **{WORKLOAD_LABEL: "pipeline"})

    assert domain_event("a", stage_failed) is None
    assert domain_event("a", raw("oom", **{WORKLOAD_LABEL: "pipeline"})) is None


def test_a_death_after_a_stop_signal_was_requested_and_a_crash_or_a_kill_was_not() -> None:
    requests = StopRequests()
    stop = [raw("kill", signal="15"), raw("kill", signal="9"), raw("die", exitCode="137")]
    assert [requests.observe(event) for event in stop] == [False, False, True]
    crash_after_restart = [raw("start"), raw("die", exitCode="1")]
    assert [requests.observe(event) for event in crash_after_restart] == [False, False]
    docker_kill = [raw("kill", signal="9"), raw("die", exitCode="137")]
    assert [requests.observe(event) for event in docker_kill] == [False, False]
    stopped = domain_event("a", raw("die", exitCode="143"), requested=True)
    assert isinstance(stopped, ContainerDied)
    assert stopped.requested


async def test_the_watch_marks_a_lost_engine_and_resumes_after_the_last_event(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    runtime = FakeRuntime("a")
    runtime.streams = [[raw("start"), raw("die", exitCode="1")]]
    containers = fleet([runtime], uow, clock, bus)
    stopping = asyncio.Event()
    watch = asyncio.create_task(containers.watch(stopping, first_retry=0.01, max_retry=0.02))

    async def published(kind: type, count: int = 1) -> None:
        while sum(isinstance(event, kind) for event in bus.published) < count:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(published(ContainerDied), 5)
    runtime.down = True  # the stream has ended: the engine is gone
    await asyncio.wait_for(published(EngineUnavailable), 5)
    await asyncio.sleep(0.05)  # a few retries, all failing
    [status] = containers.engines()
    assert status.available is False
    listed_before = runtime.listed
    listing = await containers.list_containers()
    assert "cannot connect" in listing.unavailable["a"]
    assert runtime.listed == listed_before  # known down: not asked, no waiting on a hung engine
    runtime.down = False
    await asyncio.wait_for(published(EngineAvailable, 2), 5)
    stopping.set()
    await asyncio.wait_for(watch, 5)

    assert runtime.events_from[0] == int(clock.now().timestamp() * 1e9)
    assert runtime.events_from[1] == raw("die").time_nanos + 1
    kinds = [type(event).__name__ for event in bus.published]
    assert kinds[:3] == ["EngineAvailable", "ContainerStarted", "ContainerDied"]


async def test_terminal_sessions_are_capped_per_key_and_in_all(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    runtime = FakeRuntime("a", [container("a")])
    limits = ContainerLimits(terminals_per_key=1, terminals=2)
    containers = Containers([runtime], AuditTrail(uow, clock, bus), clock, bus, limits)
    other, third = Principal("key-2", "ci", Role.OPERATOR), Principal("key-3", "ci", Role.OPERATOR)

    opened = await asyncio.gather(
        *(containers.open_terminal(OPERATOR, "web", None, ["/bin/sh"]) for _ in range(2)),
        return_exceptions=True,
    )
    with pytest.raises(NotFound):  # a session that fails to open holds no place
        await containers.open_terminal(other, "nothing", None, ["/bin/sh"])
    second = await containers.open_terminal(other, "web", None, ["/bin/sh"])
    with pytest.raises(RateLimited, match="the most this server allows") as beyond_total:
        await containers.open_terminal(third, "web", None, ["/bin/sh"])

    [first] = [session for session in opened if not isinstance(session, BaseException)]
    [refused] = [error for error in opened if isinstance(error, BaseException)]
    assert isinstance(refused, RateLimited)
    assert refused.detail == "terminal sessions of this key: 1 open, the most it may have; close one first"
    assert beyond_total.value.retry_after is None
    assert [s.id for s in containers.terminals()] == [first.id, second.id]
    await containers.close_terminal(first)
    assert (await containers.open_terminal(third, "web", None, ["/bin/sh"])).key_id == "key-3"


async def test_a_pull_that_stops_making_progress_is_abandoned_and_audited_as_failed(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    runtime = FakeRuntime("a")
    limits = ContainerLimits(pull_stall_seconds=0.05)
    containers = Containers([runtime], AuditTrail(uow, clock, bus), clock, bus, limits)

    progress = await containers.pull(OPERATOR, "img:1", None)
    first = await anext(progress)
    with pytest.raises(TimedOut, match="the pull of 'img:1' on node a stalled"):
        await anext(progress)

    assert first.status == "Downloading"
    assert runtime.pull_closed
    [entry] = await AuditTrail(uow, clock, bus).query(AuditQuery(action="image.pull"))
    assert entry.outcome is Outcome.FAILED
    assert entry.error == "the pull of 'img:1' on node a stalled: no progress for 0.05 s"


async def test_terminal_caps_hold_across_replicas_sharing_the_session_slots(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    slots = FakeSessionSlots()
    limits = ContainerLimits(terminals_per_key=1, terminals=2)
    a, b = (
        Containers(
            [FakeRuntime("a", [container("a")])],
            AuditTrail(uow, clock, bus),
            clock,
            bus,
            limits,
            slots=slots,
            replica_id=replica,
        )
        for replica in ("a", "b")
    )
    other, third = Principal("key-2", "ci", Role.OPERATOR), Principal("key-3", "ci", Role.OPERATOR)

    first = await a.open_terminal(OPERATOR, "web", None, ["/bin/sh"])
    with pytest.raises(RateLimited) as per_key:
        await b.open_terminal(OPERATOR, "web", None, ["/bin/sh"])
    assert per_key.value.detail == (
        "terminal sessions of this key: 1 open, the most it may have; close one first"
    )
    with pytest.raises(NotFound):  # a session that fails to open holds no place
        await b.open_terminal(other, "nothing", None, ["/bin/sh"])
    second = await b.open_terminal(other, "web", None, ["/bin/sh"])
    with pytest.raises(RateLimited, match="terminal sessions: 2 open, the most this server allows"):
        await a.open_terminal(third, "web", None, ["/bin/sh"])

    await a.close_terminal(first)
    assert (await b.open_terminal(OPERATOR, "web", None, ["/bin/sh"])).key_id == "key-1"
    assert first.id not in slots.slots
    assert second.id in slots.slots


async def test_a_replica_that_stops_renewing_its_slots_holds_them_no_more(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    slots = FakeSessionSlots()
    limits = ContainerLimits(terminals_per_key=1, terminals=8)
    a, b = (
        Containers(
            [FakeRuntime("a", [container("a")])],
            AuditTrail(uow, clock, bus),
            clock,
            bus,
            limits,
            slots=slots,
            replica_id=replica,
        )
        for replica in ("a", "b")
    )
    await a.open_terminal(OPERATOR, "web", None, ["/bin/sh"])
    kept = await b.open_terminal(Principal("key-2", "ci", Role.OPERATOR), "web", None, ["/bin/sh"])

    # B renews its slots every few seconds; A died and renews nothing: past the staleness its slot is free.
    for _ in range(7):
        clock.advance(SLOT_RENEW_SECONDS)
        await b.renew_slots()
    with pytest.raises(RateLimited):
        await b.open_terminal(Principal("key-2", "ci", Role.OPERATOR), "web", None, ["/bin/sh"])
    assert (await b.open_terminal(OPERATOR, "web", None, ["/bin/sh"])).key_id == "key-1"

    # A slot the database could not take back goes at the next renewal; a clean stop drops the rest.
    slots.broken = True
    await b.close_terminal(kept)
    slots.broken = False
    assert kept.id in slots.slots
    clock.advance(SLOT_RENEW_SECONDS)
    await b.renew_slots()
    assert kept.id not in slots.slots
    await b.forget_slots()
    assert slots.slots == {}
