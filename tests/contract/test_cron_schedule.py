"""The cron schedule port on cronsim: the slots a rule's schedule fires at, in UTC, and why an expression
is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from worpen_core.shared.errors import InvalidInput
from worpen_core.shared.ports import CronSchedule
from worpen_infra.schedule import CronSimCronSchedule

AFTER = datetime(2026, 3, 14, 15, 9, 26, 535_897, tzinfo=UTC)  # a Saturday


@pytest.fixture
def cron() -> CronSchedule:
    return CronSimCronSchedule()


def slots(cron: CronSchedule, expression: str, after: datetime, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        after = cron.next_after(expression, after)
        found.append(after)
    return found


def at(day: int, hour: int, minute: int, month: int = 3, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("*/5 * * * *", [at(14, 15, 10), at(14, 15, 15), at(14, 15, 20)]),
        ("0 3 * * *", [at(15, 3, 0), at(16, 3, 0), at(17, 3, 0)]),
        ("30 9 * * MON-FRI", [at(16, 9, 30), at(17, 9, 30), at(18, 9, 30)]),
        ("0 0 1 */3 *", [at(1, 0, 0, month=4), at(1, 0, 0, month=7), at(1, 0, 0, month=10)]),
        ("0 12 29 2 *", [at(29, 12, 0, month=2, year=2028), at(29, 12, 0, month=2, year=2032)]),
        ("@hourly", [at(14, 16, 0), at(14, 17, 0)]),
        ("@weekly", [at(15, 0, 0), at(22, 0, 0)]),
        ("  15 10 14 3 *  ", [at(14, 10, 15, year=2027)]),
    ],
)
def test_next_slots_of_an_expression(cron: CronSchedule, expression: str, expected: list[datetime]) -> None:
    assert cron.check(expression) is None
    found = slots(cron, expression, AFTER, len(expected))
    assert found == expected
    assert all(slot.utcoffset() == timedelta(0) for slot in found)


def test_a_slot_is_strictly_after_the_given_time(cron: CronSchedule) -> None:
    on_the_slot = at(14, 15, 10)

    assert cron.next_after("*/5 * * * *", on_the_slot) == at(14, 15, 15)
    assert cron.next_after("*/5 * * * *", on_the_slot - timedelta(microseconds=1)) == on_the_slot


def test_the_expression_is_read_in_utc_whatever_the_zone_of_the_time_given(cron: CronSchedule) -> None:
    paris_evening = datetime(2026, 3, 14, 23, 30, tzinfo=timezone(timedelta(hours=1)))  # 22:30 UTC

    slot = cron.next_after("0 23 * * *", paris_evening)

    assert slot == at(14, 23, 0)
    assert slot.tzinfo is UTC


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "'61 * * * *': bad minute field"),
        ("0 24 * * *", "'0 24 * * *': bad hour field"),
        ("0 0 32 * *", "'0 0 32 * *': bad day-of-month field"),
        ("0 0 1 13 *", "'0 0 1 13 *': bad month field"),
        ("0 0 * * FUNDAY", "'0 0 * * FUNDAY': bad day-of-week field"),
        ("0 0 30 2 *", "'0 0 30 2 *': bad day-of-month field"),
        ("* * */20 * 1L", "'* * */20 * 1L' never matches"),
        ("* * * *", "'* * * *' has 4 fields, expected 5 (minute hour day-of-month month day-of-week)"),
        (
            "0 * * * * *",
            "'0 * * * * *' has 6 fields, expected 5 (minute hour day-of-month month day-of-week)",
        ),
        ("", "'' has 0 fields, expected 5 (minute hour day-of-month month day-of-week)"),
        (
            "@reboot",
            "'@reboot' is not one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
        ),
    ],
)
def test_an_invalid_expression_is_refused_with_a_reason(
    cron: CronSchedule, expression: str, reason: str
) -> None:
    assert cron.check(expression) == reason
    with pytest.raises(InvalidInput) as refused:
        cron.next_after(expression, AFTER)
    assert (refused.value.detail, refused.value.field) == (reason, "schedule")


def test_a_naive_time_is_a_programming_error(cron: CronSchedule) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_after("* * * * *", datetime(2026, 1, 1))
