"""The central log on fakes: group commit of events and shipped lines, acknowledgement, outages, followers
that resume and that fall behind, retention by age and by size."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.events.journal import EventJournal
from worpen_core.fleet.events import AgentRegistered, AgentWentOffline
from worpen_core.fleet.status import AgentStatus
from worpen_core.logs.commands import MAX_LINES, ShipLogs, ShippedLine
from worpen_core.logs.model import Level, LogEntry, LogFilter, LogPolicy, LogQuery
from worpen_core.logs.service import CentralLog
from worpen_core.shared.broadcast import FellBehind
from worpen_core.shared.errors import TooLarge, Unavailable


def central_log(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, policy: LogPolicy | None = None, buffer: int = 100
) -> tuple[CentralLog, EventJournal]:
    journal = EventJournal(uow, clock, keep=timedelta(days=1), buffer=buffer, prune_batch=2)
    return CentralLog(uow, journal, clock, policy or LogPolicy(), buffer=buffer), journal


def lines(*messages: str, level: Level = Level.INFO) -> tuple[ShippedLine, ...]:
    return tuple(ShippedLine(message, level) for message in messages)


async def test_a_burst_of_events_is_written_in_a_few_transactions_each_with_its_line(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    log, journal = central_log(uow, clock)
    bus.subscribe(log.record)

    await bus.publish(AgentRegistered(f"bee-{n:05}", clock.now(), AgentStatus.ONLINE) for n in range(10_000))
    await log.flush()

    assert len(uow.store.events) == len(uow.store.logs) == journal.recorded == 10_000
    assert sum(made.committed for made in uow.made) <= 3
    first = uow.store.logs[0]
    assert (first.source, first.message, first.fields) == (
        "bee-00000",
        "bee-00000 registered (ONLINE)",
        {"event": "AgentRegistered", "eventId": uow.store.events[0].id},
    )
    assert (log.lines_ingested, log.entries_written) == (0, 10_000)


async def test_shipped_lines_are_acknowledged_once_committed_with_their_source(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    log, _ = central_log(uow, clock)

    accepted = await log.ship(ShipLogs("bee-001", lines("one", "two"), unit="web-1"))

    assert accepted == 2
    assert [(e.source, e.message, e.timestamp) for e in uow.store.logs] == [
        ("bee-001/web-1", "one", clock.now()),
        ("bee-001/web-1", "two", clock.now()),
    ]
    assert log.lines_ingested == 2


def test_a_batch_of_more_than_a_thousand_lines_is_too_large() -> None:
    with pytest.raises(TooLarge):
        ShipLogs("bee-001", lines(*["x"] * (MAX_LINES + 1)))


async def test_an_outage_refuses_shipped_lines_and_keeps_events_for_the_flush(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    log, journal = central_log(uow, clock, LogPolicy(max_pending_events=2))
    uow.store.broken = True

    with pytest.raises(Unavailable):
        await log.ship(ShipLogs("bee-001", lines("lost")))
    for n in range(3):
        await log.record(AgentRegistered(f"bee-{n}", clock.now(), AgentStatus.ONLINE))
    with pytest.raises(Unavailable):
        await log.flush()

    uow.store.broken = False
    await log.flush()
    assert [event.subject for event in uow.store.events] == ["bee-1", "bee-2"]  # the oldest went
    assert log.events_dropped == 1
    assert [entry.message for entry in uow.store.logs] == [
        "bee-1 registered (ONLINE)",
        "bee-2 registered (ONLINE)",
    ]
    assert journal.recorded == 2


async def test_a_follower_gets_what_it_missed_from_the_store_then_the_live_ones_none_twice(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    log, _ = central_log(uow, clock)
    await log.ship(ShipLogs("bee-001", lines("seen", "missed-1", "missed-2")))
    seen = uow.store.logs[0].id

    follow = await log.follow(seen, LogFilter())
    first = await anext(follow)
    await log.ship(ShipLogs("bee-001", lines("live")))
    rest = [await anext(follow) for _ in range(2)]
    await follow.aclose()

    assert [entry.message for entry in [first, *rest]] == ["missed-1", "missed-2", "live"]


async def test_followers_keep_only_their_level_and_source(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    log, _ = central_log(uow, clock)
    follow = await log.follow(None, LogFilter(Level.WARN, "bee-001"))
    pending = asyncio.ensure_future(anext(follow))
    await asyncio.sleep(0)

    await log.ship(ShipLogs("bee-002", lines("other agent", level=Level.ERROR)))
    await log.ship(ShipLogs("bee-001", lines("routine")))
    await log.ship(ShipLogs("bee-001", lines("disk full", level=Level.ERROR), unit="web-1"))

    kept: LogEntry = await pending
    await follow.aclose()
    assert (kept.source, kept.message) == ("bee-001/web-1", "disk full")


async def test_a_follower_that_falls_behind_is_cut_off_and_others_go_on(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    log, _ = central_log(uow, clock, buffer=2)
    slow = await log.follow(None, LogFilter())
    fast = await log.follow(None, LogFilter())
    slow_first = asyncio.ensure_future(anext(slow))
    fast_first = asyncio.ensure_future(anext(fast))
    await asyncio.sleep(0)

    await log.ship(ShipLogs("bee-001", lines("1")))
    assert (await fast_first).message == "1"
    assert (await slow_first).message == "1"
    await log.ship(ShipLogs("bee-001", lines("2")))
    assert (await anext(fast)).message == "2"
    await log.ship(ShipLogs("bee-001", lines("3", "4")))  # slow has not taken "2": 3 > 2 held

    with pytest.raises(FellBehind):
        await anext(slow)
    assert [(await anext(fast)).message for _ in range(2)] == ["3", "4"]
    await fast.aclose()
    assert log.followers == 0


async def test_the_journal_resumes_after_an_id_with_a_type_filter(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    log, journal = central_log(uow, clock)
    bus.subscribe(log.record)
    await bus.publish([AgentRegistered("bee-001", clock.now(), AgentStatus.ONLINE)])
    await log.flush()
    [registered] = await journal.read(None, 10)

    follow = await journal.follow(0, frozenset({"AgentWentOffline"}))
    pending = asyncio.ensure_future(anext(follow))
    await bus.publish([AgentWentOffline("bee-001", clock.now(), clock.now() - timedelta(seconds=30))])
    await log.flush()

    offline = await pending
    await follow.aclose()
    assert (offline.type, offline.id > registered.id) == ("AgentWentOffline", True)
    assert offline.payload["last_seen"] == (clock.now() - timedelta(seconds=30)).isoformat().replace(
        "+00:00", "Z"
    )


async def test_retention_deletes_by_age_then_by_size_in_bounded_batches(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    policy = LogPolicy(keep=timedelta(hours=1), prune_batch=2)
    log, _ = central_log(uow, clock, policy)
    await log.ship(ShipLogs("bee-001", lines(*(f"old {n}" for n in range(5)))))
    clock.advance(2 * 3600)
    await log.ship(ShipLogs("bee-001", lines(*(f"new {n}" for n in range(4)))))

    assert await log.prune() == 5
    assert [e.message for e in await log.query(LogQuery())] == ["new 3", "new 2", "new 1", "new 0"]

    one = uow.store.log_sizes[uow.store.logs[0].id]
    log.policy = LogPolicy(keep=timedelta(hours=1), max_bytes=2 * one, prune_batch=2)
    assert await log.prune() == 2
    assert [e.message for e in await log.query(LogQuery())] == ["new 3", "new 2"]
