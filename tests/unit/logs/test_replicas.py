"""The central log of several replicas on one (fake) database: each replica's followers get what every
replica commits, through the tail the signal wakes, in the order of the ids, each once; resuming works on
any replica; a lost signal is covered by the poll; counters and retention with several writers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import pytest

from tests.fakes.clock import FakeClock
from tests.fakes.journal_signal import FakeJournalSignal
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.events.journal import EventJournal
from worpen_core.fleet.events import AgentRegistered
from worpen_core.fleet.status import AgentStatus
from worpen_core.logs import service
from worpen_core.logs.commands import ShipLogs, ShippedLine
from worpen_core.logs.jobs import log_jobs
from worpen_core.logs.model import LogFilter, LogPolicy, LogQuery
from worpen_core.logs.service import CentralLog
from worpen_core.shared.jobs import Continuous

T = TypeVar("T")
SOON = 2.0
"""Seconds within which a follower gets what was committed (the signal wakes the tail at once)."""


@dataclass
class Replica:
    log: CentralLog
    journal: EventJournal
    signal: FakeJournalSignal

    async def register(self, *names: str) -> None:
        for name in names:
            await self.log.record(AgentRegistered(name, self.log._clock.now(), AgentStatus.ONLINE))
        await self.log.flush()

    async def ship(self, *messages: str) -> None:
        await self.log.ship(ShipLogs("bee-001", tuple(ShippedLine(m) for m in messages)))


def replica(
    uow: FakeUnitOfWorkFactory,
    clock: FakeClock,
    signal: FakeJournalSignal,
    *,
    poll: float = 60.0,
    policy: LogPolicy | None = None,
) -> Replica:
    journal = EventJournal(uow, clock, keep=timedelta(days=1), buffer=10_000, prune_batch=100)
    log = CentralLog(uow, journal, clock, policy or LogPolicy(), buffer=10_000, signal=signal, poll=poll)
    return Replica(log, journal, signal)


@asynccontextmanager
async def tailing(*replicas: Replica) -> AsyncIterator[None]:
    """The replicas' tails running, each started as the server starts it (before taking requests)."""
    stopping = asyncio.Event()
    for each in replicas:
        await each.log.start_tail()
    tasks = [asyncio.create_task(each.log.tail(stopping)) for each in replicas]
    try:
        yield
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks), SOON)


async def take(stream: AsyncIterator[T], count: int) -> list[T]:
    return [await asyncio.wait_for(anext(stream), SOON) for _ in range(count)]


async def nothing_more(stream: AsyncIterator[T]) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(stream), 0.2)


async def test_a_follower_on_one_replica_gets_what_the_other_commits_in_order(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a = replica(uow, clock, FakeJournalSignal())
    b = replica(uow, clock, a.signal.replica())
    async with tailing(a, b):
        events = await b.journal.follow(None)
        entries = await b.log.follow(None, LogFilter())

        await a.register("bee-1", "bee-2")
        await a.ship("shipped on a")

        got = await take(events, 2)
        lines = await take(entries, 3)
        await nothing_more(events)
        await nothing_more(entries)
        await events.aclose()
        await entries.aclose()

    assert [(e.id, e.subject) for e in got] == [(e.id, e.subject) for e in uow.store.events]
    assert [e.message for e in lines] == [
        "bee-1 registered (ONLINE)",
        "bee-2 registered (ONLINE)",
        "shipped on a",
    ]
    assert [e.id for e in lines] == sorted(e.id for e in lines)


async def test_both_replicas_followers_see_every_commit_of_both_once_in_id_order(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a = replica(uow, clock, FakeJournalSignal())
    b = replica(uow, clock, a.signal.replica())
    async with tailing(a, b):
        on_a = await a.journal.follow(None)
        on_b = await b.journal.follow(None)

        for n in range(10):
            await (a if n % 2 else b).register(f"bee-{n}")

        seen_a = await take(on_a, 10)
        seen_b = await take(on_b, 10)
        await nothing_more(on_a)
        await nothing_more(on_b)
        await on_a.aclose()
        await on_b.aclose()

    stored = [(event.id, event.subject) for event in uow.store.events]
    assert [(e.id, e.subject) for e in seen_a] == stored
    assert [(e.id, e.subject) for e in seen_b] == stored
    assert [subject for _, subject in stored] == [f"bee-{n}" for n in range(10)]


async def test_a_follower_resumes_on_the_other_replica_with_no_gap_and_no_duplicate(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a = replica(uow, clock, FakeJournalSignal())
    b = replica(uow, clock, a.signal.replica())
    async with tailing(a, b):
        on_b = await b.journal.follow(None)
        await a.register("bee-1", "bee-2")
        first = await take(on_b, 2)
        await on_b.aclose()  # the client disconnects after bee-2...

        await b.register("bee-3")  # ... meanwhile bee-3 and bee-4 are committed
        await a.register("bee-4")
        on_a = await a.journal.follow(first[-1].id)  # and it reconnects to the other replica
        missed = await take(on_a, 2)
        await b.register("bee-5")
        live = await take(on_a, 1)
        await nothing_more(on_a)
        await on_a.aclose()

    assert [e.subject for e in [*first, *missed, *live]] == [f"bee-{n}" for n in range(1, 6)]


async def test_a_lost_signal_is_covered_by_the_poll(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
    a = replica(uow, clock, FakeJournalSignal(), poll=0.05)
    b = replica(uow, clock, a.signal.replica(), poll=0.05)
    a.signal.lost = True
    async with tailing(a, b):
        entries = await b.log.follow(None, LogFilter())
        await a.ship("one", "two")
        lines = await take(entries, 2)
        await entries.aclose()

    assert [e.message for e in lines] == ["one", "two"]
    assert a.signal.announced == 1


async def test_what_a_replica_commits_reaches_its_own_followers_through_the_tail_only(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a = replica(uow, clock, FakeJournalSignal())  # polls every minute
    a.signal.lost = True
    async with tailing(a):
        entries = await a.log.follow(None, LogFilter())
        pending = asyncio.ensure_future(anext(entries))
        await asyncio.sleep(0.05)  # the follower waits for live entries
        await a.ship("committed, not announced")
        await asyncio.sleep(0.2)
        assert not pending.done()  # the writer did not hand it over itself: it would pass the others

        a.signal.lost = False
        a.signal.announce()
        line = await asyncio.wait_for(pending, SOON)
        await entries.aclose()

    assert line.message == "committed, not announced"


async def test_the_tail_starts_at_the_newest_and_pages_through_a_backlog_in_order(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "TAIL_PAGE", 3)
    a = replica(uow, clock, FakeJournalSignal())
    b = replica(uow, clock, a.signal.replica())
    await a.ship("before the start")
    async with tailing(b):
        on_b = await b.log.follow(0, LogFilter())
        before = await take(on_b, 1)  # from the store
        b.signal.lost = a.signal.lost = True
        await a.ship(*(f"line {n}" for n in range(10)))  # a backlog of several pages
        b.signal.lost = False
        b.signal.announce()
        backlog = await take(on_b, 10)
        await nothing_more(on_b)
        await on_b.aclose()

    assert [e.message for e in [*before, *backlog]] == ["before the start", *(f"line {n}" for n in range(10))]


async def test_the_tail_retries_when_the_database_fails(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
    a = replica(uow, clock, FakeJournalSignal(), poll=0.05)
    b = replica(uow, clock, a.signal.replica(), poll=0.05)
    async with tailing(a, b):
        on_b = await b.log.follow(None, LogFilter())
        uow.store.broken = True
        b.signal.announce()
        await asyncio.sleep(0.1)  # the tail fails to read, more than once
        uow.store.broken = False
        await a.ship("after the outage")
        lines = await take(on_b, 1)
        await on_b.aclose()

    assert [e.message for e in lines] == ["after the outage"]


async def test_counters_count_what_each_replica_wrote(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
    a = replica(uow, clock, FakeJournalSignal())
    b = replica(uow, clock, a.signal.replica())
    async with tailing(a, b):
        on_b = await b.journal.follow(None)
        await a.register("bee-1", "bee-2")
        await a.ship("one")
        await take(on_b, 2)
        await on_b.aclose()

    assert (a.journal.recorded, a.log.entries_written, a.log.lines_ingested) == (2, 3, 1)
    assert (b.journal.recorded, b.log.entries_written, b.log.lines_ingested) == (0, 0, 0)


async def test_retention_by_size_counts_what_the_other_replicas_wrote(
    uow: FakeUnitOfWorkFactory, clock: FakeClock
) -> None:
    a = replica(uow, clock, FakeJournalSignal())
    b = replica(uow, clock, a.signal.replica())
    await a.ship("a's line")
    assert await a.log.prune() == 0  # a has read the log's size: one line
    await b.ship("b's 1", "b's 2", "b's 3")
    one = uow.store.log_sizes[uow.store.logs[0].id]
    a.log.policy = LogPolicy(max_bytes=2 * one, prune_batch=10)

    assert await a.log.prune() == 2
    assert [e.message for e in await a.log.query(LogQuery())] == ["b's 3", "b's 2"]


def test_only_a_log_with_a_signal_runs_a_tail(uow: FakeUnitOfWorkFactory, clock: FakeClock) -> None:
    journal = EventJournal(uow, clock, keep=timedelta(days=1), buffer=10, prune_batch=10)
    alone = CentralLog(uow, journal, clock, LogPolicy(), buffer=10)
    tailed = replica(uow, clock, FakeJournalSignal())

    assert not [job for job in log_jobs(alone, flush_every=1) if isinstance(job, Continuous)]
    tails = [job for job in log_jobs(tailed.log, flush_every=1) if isinstance(job, Continuous)]
    assert [(job.name, job.singleton) for job in tails] == [("logs.tail", False)]
