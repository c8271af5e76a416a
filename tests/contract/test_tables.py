"""Column types: what they write is what SQLAlchemy's own types would write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import create_async_engine

from worpen_infra.sql.tables import UtcDateTime

SQLITE = sqlite.dialect()
POSTGRESQL = create_async_engine("postgresql+asyncpg://worpen@localhost/worpen").dialect
"""The dialect the adapter runs on PostgreSQL (no connection is made)."""


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones() | st.just(UTC)
    )
)
def test_utc_datetimes_are_stored_on_sqlite_as_sqlalchemy_stores_the_utc_time(value: datetime) -> None:
    ours = UtcDateTime().bind_processor(SQLITE)
    sqlalchemys = DateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert ours is not None
    assert sqlalchemys is not None

    assert ours(value) == sqlalchemys(value.astimezone(UTC).replace(tzinfo=None))


def test_naive_datetimes_and_none_on_sqlite() -> None:
    process = UtcDateTime().bind_processor(SQLITE)
    assert process is not None

    assert process(None) is None
    assert (
        process(datetime(2026, 12, 1, 8, tzinfo=timezone(timedelta(hours=-5))))
        == "2026-12-01 13:00:00.000000"
    )
    with pytest.raises(ValueError, match="naive"):
        process(datetime(2026, 12, 1))


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.timezones() | st.just(UTC)
    )
)
def test_utc_datetimes_are_handed_to_asyncpg_as_the_naive_utc_time(value: datetime) -> None:
    """TIMESTAMP WITHOUT TIME ZONE on PostgreSQL: asyncpg takes naive datetimes, read as they are."""
    column = UtcDateTime()
    process = column.bind_processor(POSTGRESQL)
    assert process is not None

    stored = process(value)
    assert stored == value.astimezone(UTC).replace(tzinfo=None)
    assert isinstance(stored, datetime)
    assert column.process_result_value(stored, POSTGRESQL) == value.astimezone(UTC)


def test_naive_datetimes_are_refused_on_postgresql() -> None:
    with pytest.raises(ValueError, match="naive"):
        UtcDateTime().process_bind_param(datetime(2026, 12, 1), POSTGRESQL)
