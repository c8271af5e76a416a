"""CronSchedule on cronsim (the parser Healthchecks.io runs): five-field cron expressions as Debian's cron
reads them, evaluated in UTC.

cronsim also reads a sixth (seconds) field; Worpen's schedules are standard five-field expressions, so
that form is refused here. The usual nicknames (`@hourly`, `@daily`...) are read as their five fields."""

from __future__ import annotations

from datetime import UTC, datetime

from cronsim import CronSim, CronSimError

from worpen_core.shared.errors import InvalidInput

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)
"""Where `check` looks for a first slot: an expression valid field by field can still never match
(`0 0 31 2 *`), which cronsim says by finding none within 50 years."""


class CronSimCronSchedule:
    def check(self, expression: str) -> str | None:
        try:
            self.next_after(expression, _PROBE)
        except InvalidInput as exc:
            return exc.detail
        return None

    def next_after(self, expression: str, after: datetime) -> datetime:
        """The first slot strictly after `after`, in UTC. Raises InvalidInput (field `schedule`) for an
        expression that is not valid or never matches, ValueError for a naive `after`."""
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        fields = _fields(expression)
        try:
            slots = CronSim(fields, after.astimezone(UTC))
            return next(slots)
        except CronSimError as exc:
            raise InvalidInput(f"{expression!r}: {str(exc).lower()} field", "schedule") from exc
        except StopIteration:
            raise InvalidInput(f"{expression!r} never matches", "schedule") from None


def _fields(expression: str) -> str:
    text = expression.strip()
    if text.startswith("@"):
        fields = NICKNAMES.get(text.lower())
        if fields is None:
            raise InvalidInput(f"{text!r} is not one of {', '.join(NICKNAMES)}", "schedule")
        return fields
    count = len(text.split())
    if count != len(FIELDS):
        raise InvalidInput(
            f"{expression!r} has {count} fields, expected {len(FIELDS)} ({' '.join(FIELDS)})", "schedule"
        )
    return text
