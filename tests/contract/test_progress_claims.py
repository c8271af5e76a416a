"""Claiming a named position (a cron slot) on the fake, SQLite and PostgreSQL: a claim succeeds only from
the position the claimer read, so of replicas that saw the same slot due exactly one fires it."""

from __future__ import annotations

import asyncio

from worpen_api.bootstrap import StorageFactory


async def advance(uow: StorageFactory, name: str, expected: int | None, position: int) -> bool:
    async with uow() as tx:
        moved = await tx.progress.advance(name, expected, position)
        await tx.commit()
    return moved


async def position(uow: StorageFactory, name: str) -> int | None:
    async with uow() as tx:
        return await tx.progress.get(name)


async def test_a_claim_moves_the_position_only_from_the_one_read(uow: StorageFactory) -> None:
    assert await advance(uow, "schedule:r1", None, 100)
    assert not await advance(uow, "schedule:r1", None, 160)  # another claimed the first slot already
    assert await advance(uow, "schedule:r1", 100, 160)
    assert not await advance(uow, "schedule:r1", 100, 220)  # read 100, but 160 was claimed since

    assert await position(uow, "schedule:r1") == 160


async def test_a_claim_not_committed_moves_nothing(uow: StorageFactory) -> None:
    async with uow() as tx:
        assert await tx.progress.advance("schedule:r1", None, 100)

    assert await position(uow, "schedule:r1") is None


async def test_of_replicas_claiming_one_slot_at_once_exactly_one_wins(uow: StorageFactory) -> None:
    await advance(uow, "schedule:r1", None, 100)

    claims = await asyncio.gather(*(advance(uow, "schedule:r1", 100, 160 + i) for i in range(8)))
    first = await asyncio.gather(*(advance(uow, f"schedule:new-{i % 2}", None, i) for i in range(8)))

    assert sum(claims) == 1
    assert sum(first) == 2
