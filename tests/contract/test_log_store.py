"""The central log's port (LogRepository), against the fake and SQLite (a real file): filters, pages,
full-text queries and their errors, size and pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worpen_api.bootstrap import StorageFactory
from worpen_core.logs.model import Level, LogFilter, LogLine, LogQuery
from worpen_core.shared.errors import InvalidInput

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def line(message: str, level: Level = Level.INFO, source: str = "bee-001", minutes: int = 0) -> LogLine:
    return LogLine(T0 + timedelta(minutes=minutes), level, source, message, {"n": minutes, "ok": True})


async def append(uow: StorageFactory, *lines: LogLine) -> list[int]:
    async with uow() as tx:
        ids = await tx.logs.append(lines)
        await tx.commit()
    return ids


async def query(uow: StorageFactory, **fields: object) -> list[str]:
    async with uow() as tx:
        return [entry.message for entry in await tx.logs.query(LogQuery(**fields))]  # type: ignore[arg-type]


async def test_entries_come_back_whole_newest_first(uow: StorageFactory) -> None:
    ids = await append(uow, line("first"), line("second", Level.ERROR, "bee-001/web-1", 1))

    async with uow() as tx:
        newest, oldest = await tx.logs.query(LogQuery())
    assert ids[0] < ids[1]
    assert (newest.id, newest.level, newest.source, newest.message) == (
        ids[1],
        Level.ERROR,
        "bee-001/web-1",
        "second",
    )
    assert (newest.timestamp, newest.fields) == (T0 + timedelta(minutes=1), {"n": 1, "ok": True})
    assert oldest.id == ids[0]


async def test_filters_by_level_and_above_source_with_its_units_and_time(uow: StorageFactory) -> None:
    await append(
        uow,
        line("info", Level.INFO, "bee-001", 0),
        line("success", Level.SUCCESS, "bee-001/web-1", 1),
        line("warn", Level.WARN, "bee-0012", 2),
        line("error", Level.ERROR, "node_a", 3),
        line("like", Level.ERROR, "nodeXa", 4),
    )

    assert await query(uow, filter=LogFilter(level=Level.SUCCESS)) == ["like", "error", "warn", "success"]
    assert await query(uow, filter=LogFilter(level=Level.ERROR)) == ["like", "error"]
    assert await query(uow, filter=LogFilter(source="bee-001")) == ["success", "info"]
    assert await query(uow, filter=LogFilter(source="node_a")) == ["error"]  # `_` is no wildcard
    assert await query(uow, since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == [
        "warn",
        "success",
    ]


async def test_pages_by_id_stay_stable_while_entries_are_added(uow: StorageFactory) -> None:
    ids = await append(uow, *(line(f"m{n}") for n in range(5)))

    first = await query(uow, limit=2)
    await append(uow, line("newer"))
    second = await query(uow, limit=2, before=ids[3])

    assert first == ["m4", "m3"]
    assert second == ["m2", "m1"]


async def test_full_text_queries_words_phrases_prefixes_and_punctuated_words(uow: StorageFactory) -> None:
    await append(
        uow,
        line("disk full on /var/log"),
        line("connection refused by upstream"),
        line("bee-001 lost its disk"),
    )

    assert await query(uow, text="disk") == ["bee-001 lost its disk", "disk full on /var/log"]
    assert await query(uow, text="disk full") == ["disk full on /var/log"]
    assert await query(uow, text='"refused by"') == ["connection refused by upstream"]
    assert await query(uow, text="conn*") == ["connection refused by upstream"]
    assert await query(uow, text="bee-001") == ["bee-001 lost its disk"]
    assert await query(uow, text="nothing") == []


async def test_a_full_text_query_the_store_cannot_read_is_invalid_input_naming_q(uow: StorageFactory) -> None:
    await append(uow, line("disk full"))

    with pytest.raises(InvalidInput) as raised:
        await query(uow, text='"disk')
    assert raised.value.field == "q"


async def test_streams_read_after_an_id_with_a_filter_oldest_first(uow: StorageFactory) -> None:
    ids = await append(uow, line("a", Level.ERROR), line("b"), line("c", Level.WARN), line("d", Level.ERROR))

    async with uow() as tx:
        found = await tx.logs.after(ids[0], 10, LogFilter(level=Level.WARN))
    assert [entry.message for entry in found] == ["c", "d"]


async def test_pruning_deletes_old_entries_then_the_oldest_beyond_the_size_budget(
    uow: StorageFactory,
) -> None:
    lines = [line(f"message {n}", minutes=n) for n in range(6)]
    await append(uow, *lines)

    async with uow() as tx:
        assert await tx.logs.size() == sum(entry.size for entry in lines)
        old = await tx.logs.prune(T0 + timedelta(minutes=2), excess=0, limit=100)
        await tx.commit()
    assert (old.entries, old.bytes) == (2, lines[0].size + lines[1].size)

    async with uow() as tx:
        over = await tx.logs.prune(T0, excess=lines[2].size + 1, limit=100)  # one byte more than an entry
        await tx.commit()
    assert over.entries == 2

    async with uow() as tx:
        bounded = await tx.logs.prune(T0 + timedelta(days=1), excess=0, limit=1)
        await tx.commit()
        assert bounded.entries == 1
        assert await tx.logs.size() == lines[5].size
    assert await query(uow) == ["message 5"]
    assert await query(uow, text="message") == ["message 5"]  # the full-text index followed


async def test_a_line_holding_nul_characters_is_stored_and_found(
    uow: StorageFactory, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL cannot store U+0000 (text or JSONB): it keeps U+FFFD in its place rather than refusing
    the line; the other backends keep it as written."""
    kept = "\ufffd" if request.node.callspec.params["uow"] == "postgresql" else "\x00"
    await append(uow, LogLine(T0, Level.INFO, "bee-001", "binary\x00output", {"raw": "a\x00b"}))

    async with uow() as tx:
        [entry] = await tx.logs.query(LogQuery(text="binary"))
    assert (entry.message, entry.fields) == (f"binary{kept}output", {"raw": f"a{kept}b"})
