"""The leader loop: of replicas sharing one store of leases exactly one runs the singleton jobs; it hands
them over when it stops, and gives them up by itself when it cannot renew its lease in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes.leases import FakeLeases
from worpen_api.lifecycle import LEADER, Leadership
from worpen_core.shared.errors import Unavailable
from worpen_core.shared.jobs import Periodic

LEASE = 0.6
"""Seconds: short, so that expiry and takeover happen within the test."""


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class Replica:
    """One replica's leadership, with a singleton job that records when it runs."""

    def __init__(self, name: str, leases: FakeLeases, journal: list[tuple[float, str]]) -> None:
        self.name = name
        self.steps = 0
        self.elected = 0
        self.deposed = 0
        self.stepped: list[tuple[float, int]] = []
        """When each step ran, and in which term (how many times this replica had been elected)."""
        self.cut_off = False
        """Set to make this replica's calls fail as a database out of its reach would."""
        self._journal = journal

        async def step() -> None:
            self.steps += 1
            journal.append((time.monotonic(), name))
            self.stepped.append((time.monotonic(), self.elected))

        async def elected() -> None:
            self.elected += 1

        async def deposed() -> None:
            self.deposed += 1

        self.leadership = Leadership(
            _Reach(leases, self),
            name,
            LEASE,
            [Periodic("sweep", 0.02, step, singleton=True)],
            on_elected=[elected],
            on_deposed=[deposed],
        )
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.leadership.run(self.stopping))

    async def stop(self) -> None:
        self.stopping.set()
        assert self.task is not None
        await self.task


class _Reach:
    """The shared leases as one replica reaches them."""

    def __init__(self, leases: FakeLeases, replica: Replica) -> None:
        self._leases = leases
        self._replica = replica

    async def hold(self, name: str, holder: str, ttl: timedelta) -> int | None:
        if self._replica.cut_off:
            raise Unavailable("database", "connection refused")
        return await self._leases.hold(name, holder, ttl)

    async def release(self, name: str, holder: str) -> None:
        if self._replica.cut_off:
            raise Unavailable("database", "connection refused")
        await self._leases.release(name, holder)


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases(WallClock())


@pytest.fixture
async def pair(leases: FakeLeases) -> AsyncIterator[tuple[Replica, Replica, list[tuple[float, str]]]]:
    journal: list[tuple[float, str]] = []
    a, b = Replica("a", leases, journal), Replica("b", leases, journal)
    a.start()
    await asyncio.sleep(0.05)
    b.start()
    yield a, b, journal
    for replica in (a, b):
        if not replica.stopping.is_set():
            await replica.stop()


async def until(condition: object, seconds: float) -> float:
    """Wait until `condition()` holds; how long it took."""
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def runners(journal: list[tuple[float, str]], since: float) -> set[str]:
    return {name for at, name in journal if at >= since}


async def test_one_replica_leads_and_only_it_runs_the_singleton_jobs(
    pair: tuple[Replica, Replica, list[tuple[float, str]]],
) -> None:
    a, b, _ = pair

    await asyncio.sleep(3 * LEASE)

    assert (a.leadership.leading, b.leadership.leading) == (True, False)
    assert a.leadership.token == 1
    assert (a.elected, b.elected) == (1, 0)
    assert a.steps > 10
    assert b.steps == 0


async def test_a_leader_that_stops_hands_over_at_once(
    pair: tuple[Replica, Replica, list[tuple[float, str]]], leases: FakeLeases
) -> None:
    a, b, journal = pair
    await until(lambda: a.leadership.leading, 1)

    await a.stop()
    stopped = time.monotonic()
    took = await until(lambda: b.leadership.leading, 2 * LEASE)

    await until(lambda: b.steps > 0, 1)

    assert took <= LEASE / 3 + 0.2  # b's next bid, not the lease's expiry
    assert a.deposed == 1
    assert runners(journal, stopped) == {"b"}
    assert b.leadership.token == 2
    assert leases.holder(LEADER) == "b"


async def test_a_leader_cut_off_from_the_database_stops_before_another_takes_over(
    pair: tuple[Replica, Replica, list[tuple[float, str]]],
) -> None:
    a, b, journal = pair
    await until(lambda: a.leadership.leading, 1)

    a.cut_off = True
    cut = time.monotonic()
    await until(lambda: not a.leadership.leading, LEASE + 0.2)
    a_stopped = max(at for at, name in journal if name == "a")
    await until(lambda: b.leadership.leading, LEASE + 0.5)
    await until(lambda: b.steps > 0, 1)
    b_started = min(at for at, name in journal if name == "b")

    assert a.deposed == 1
    assert a_stopped < b_started  # never both at once
    assert b_started - cut <= LEASE + LEASE / 3 + 0.3  # within one lease (and one bid) of the cut

    a.cut_off = False
    await asyncio.sleep(LEASE)
    assert (a.leadership.leading, b.leadership.leading) == (False, True)


async def test_a_replica_that_cannot_adopt_its_work_does_not_lead(leases: FakeLeases) -> None:
    async def broken() -> None:
        raise Unavailable("database", "connection refused")

    leadership = Leadership(leases, "a", LEASE, [], on_elected=[broken])

    await leadership.bid()

    assert not leadership.leading
    assert leases.holder(LEADER) is None
    assert await leases.hold(LEADER, "b", timedelta(seconds=LEASE)) is not None


async def test_a_leader_that_renews_too_late_starts_a_new_term(leases: FakeLeases) -> None:
    terms: list[int] = []

    async def elected() -> None:
        terms.append(1)

    leadership = Leadership(leases, "a", LEASE, [], on_elected=[elected])
    await leadership.bid()
    await asyncio.sleep(LEASE + 0.05)
    assert await leases.hold(LEADER, "b", timedelta(seconds=0.05)) == 2
    await asyncio.sleep(0.1)

    await leadership.bid()

    assert leadership.token == 3
    assert terms == [1, 1]


async def test_a_leader_paused_past_its_lease_runs_no_step_before_it_notices(
    pair: tuple[Replica, Replica, list[tuple[float, str]]],
) -> None:
    a, _, _ = pair
    await until(lambda: a.steps > 0, 1)

    time.sleep(LEASE + 0.1)  # the whole process stops: timers of the job and of the loop all expire
    woke = time.monotonic()
    await until(lambda: a.deposed == 1, 1)
    await asyncio.sleep(LEASE)

    assert [term for at, term in a.stepped if at >= woke and term == 1] == []
