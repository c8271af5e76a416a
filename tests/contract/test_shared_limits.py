"""The limits several replicas share, on the fake, on a SQLite file and on a fresh PostgreSQL database:
failed authentications counted per client across replicas, and terminal session slots capped per key and
in all, with a dead replica's slots counting no more once stale."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from tests.contract.migrated import MigratedUrl
from tests.fakes.shared_limits import FakeFailedAuthLog, FakeSessionSlots
from worpen_core.access.ports import FailedAuthLog
from worpen_core.containers.ports import SessionSlot, SessionSlots, SlotsInUse
from worpen_infra.sql.auth_failure_repository import SqlAlchemyFailedAuthLog
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.session_slot_repository import SqlAlchemySessionSlots

T0 = datetime(2026, 12, 1, 8, 0, 0, 123456, tzinfo=UTC)
WINDOW = timedelta(minutes=1)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Limits:
    failures: FailedAuthLog
    slots: SessionSlots


@pytest.fixture(params=["fake", "sqlite", "postgresql"])
async def limits(request: pytest.FixtureRequest, migrated_url: MigratedUrl) -> AsyncIterator[Limits]:
    if request.param == "fake":
        yield Limits(FakeFailedAuthLog(), FakeSessionSlots())
        return
    engine = create_engine(await migrated_url(request.param, "limits"))
    yield Limits(SqlAlchemyFailedAuthLog(engine), SqlAlchemySessionSlots(engine))
    await engine.dispose()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def fail(limits: Limits, client: str, seconds: float, most: int = 3) -> list[datetime]:
    now = at(seconds)
    return await limits.failures.record(client, now, now - WINDOW, most, keep_since=now - HOUR)


async def test_failures_come_back_per_client_newest_first_within_the_window(limits: Limits) -> None:
    assert await fail(limits, "10.0.0.1", 0) == [at(0)]
    assert await fail(limits, "10.0.0.2", 1) == [at(1)]
    assert await fail(limits, "10.0.0.1", 2) == [at(2), at(0)]
    assert await fail(limits, "10.0.0.1", 3) == [at(3), at(2), at(0)]
    assert await fail(limits, "10.0.0.1", 4) == [at(4), at(3), at(2)]  # at most `most`
    assert await fail(limits, "10.0.0.1", 61, most=10) == [at(61), at(4), at(3), at(2)]


async def test_failures_past_what_is_kept_are_forgotten_by_any_clients_failure(limits: Limits) -> None:
    await fail(limits, "10.0.0.1", 0)
    await fail(limits, "10.0.0.1", 120)
    await fail(limits, "10.0.0.2", 3700)  # keeps the last hour: the failure at 0 goes, the one at 120 stays
    wide = await limits.failures.record("10.0.0.1", at(3701), at(-3600), 10, keep_since=at(-3600))
    assert wide == [at(3701), at(120)]


async def test_the_failures_of_every_client_are_counted_since_a_time(limits: Limits) -> None:
    for seconds, client in [(0, "10.0.0.1"), (10, "10.0.0.2"), (20, "10.0.0.1"), (30, "10.0.0.3")]:
        await fail(limits, client, seconds)
    assert await limits.failures.count_since(at(5)) == 3
    assert await limits.failures.count_since(at(-1)) == 4
    assert await limits.failures.count_since(at(30)) == 0


def slot(id_: str, key: str = "key-1", replica: str = "a", seconds: float = 0) -> SessionSlot:
    return SessionSlot(id_, key, replica, at(seconds))


async def take(limits: Limits, taken: SessionSlot, seconds: float = 0) -> SlotsInUse | None:
    return await limits.slots.take(taken, per_key=2, total=3, fresh_since=at(seconds) - timedelta(seconds=30))


async def test_slots_are_capped_per_key_and_in_all_and_come_back_when_given(limits: Limits) -> None:
    assert await take(limits, slot("s1")) is None
    assert await take(limits, slot("s2", replica="b")) is None
    assert await take(limits, slot("s3")) == SlotsInUse(key=2, total=2)
    assert await take(limits, slot("s4", key="key-2")) is None
    assert await take(limits, slot("s5", key="key-3")) == SlotsInUse(key=0, total=3)

    await limits.slots.give_back("s2")
    assert await take(limits, slot("s6", key="key-3")) is None
    assert await take(limits, slot("s7", key="key-3")) == SlotsInUse(key=1, total=3)


async def test_stale_slots_count_no_more_and_renewed_ones_do(limits: Limits) -> None:
    assert await take(limits, slot("dead", replica="a")) is None
    assert await take(limits, slot("alive", replica="b")) is None
    await limits.slots.renew("b", {"alive"}, at(25))

    # At 40 s, A's slot (from 0 s) is stale and B's (renewed at 25 s) is not.
    assert await take(limits, slot("new", key="key-1", replica="b", seconds=40), seconds=40) is None
    assert await take(limits, slot("over", replica="b", seconds=40), seconds=40) == SlotsInUse(key=2, total=2)


async def test_a_renewal_drops_the_replicas_slots_it_no_longer_holds_and_a_stop_drops_all(
    limits: Limits,
) -> None:
    for taken in (slot("a1"), slot("a2", key="key-2"), slot("b1", key="key-3", replica="b")):
        assert await take(limits, taken) is None
    await limits.slots.renew("a", {"a1"}, at(1))
    assert await take(limits, slot("a3", key="key-4")) is None  # a2 went: 3 open, not 4
    assert await take(limits, slot("a4", key="key-4")) == SlotsInUse(key=1, total=3)

    await limits.slots.forget_replica("a")
    assert await take(limits, slot("b2", key="key-3", replica="b")) is None
    assert await take(limits, slot("b3", key="key-3", replica="b")) == SlotsInUse(key=2, total=2)
    await limits.slots.renew("b", set(), at(2))
    assert await take(limits, slot("b4", key="key-3", replica="b")) is None


async def test_concurrent_takes_never_exceed_the_caps(limits: Limits) -> None:
    results = await asyncio.gather(
        *(take(limits, slot(f"s{n}", key=f"key-{n % 2}", replica=f"r{n % 3}")) for n in range(12))
    )
    assert sum(result is None for result in results) == 3


async def test_a_renewal_keeps_a_slot_taken_since_it_read_what_its_replica_holds(limits: Limits) -> None:
    assert await take(limits, slot("old")) is None
    assert await take(limits, slot("new", key="key-2", seconds=5), seconds=5) is None
    await limits.slots.renew("a", set(), at(4))  # read before "new" was taken at 5 s
    assert await take(limits, slot("more", key="key-2", seconds=6), seconds=6) is None
    assert await take(limits, slot("over", key="key-2", seconds=6), seconds=6) == SlotsInUse(key=2, total=2)
