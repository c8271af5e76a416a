"""The signal between replicas of one fake database."""

from __future__ import annotations

import asyncio
import contextlib


class FakeJournalSignal:
    """One replica's signal: an announcement wakes every signal of its group (`replica()` adds one),
    unless `lost` is set (it went nowhere, as a notification sent while the listening connection was
    down: waiters wake at their timeout)."""

    def __init__(self, group: list[FakeJournalSignal] | None = None) -> None:
        self._group = [] if group is None else group
        self._group.append(self)
        self._heard = asyncio.Event()
        self.lost = False
        self.announced = 0

    def replica(self) -> FakeJournalSignal:
        """The signal of another replica on the same database."""
        return FakeJournalSignal(self._group)

    def announce(self) -> None:
        self.announced += 1
        if not self.lost:
            for signal in self._group:
                signal._heard.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._heard.wait(), seconds)
        self._heard.clear()
