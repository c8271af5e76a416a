"""The live tail of stages' logs: what the executor stores it also hands to the followers in memory.
With several replicas (a signal), a stage runs on one of them while followers may be on any: the writer
also announces on the signal, and the followers elsewhere, woken, read the store again."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from worpen_core.events.ports import JournalSignal
from worpen_core.pipelines.model import StageLogLine, StageStatus
from worpen_core.shared.streams import wait_or_stop

FEED_POLL = 2.0
"""Seconds the followers of stages run elsewhere wait for a signal before they read the store anyway (a
signal lost on the way)."""


@dataclass(frozen=True, slots=True)
class StageEnded:
    status: StageStatus


Item = StageLogLine | StageEnded


class _Wake:
    """Queued for a follower that should read the store again."""


_WAKE = _Wake()


class Follower:
    """One follower's bounded buffer. Overflowing it does not lose anything: the follower is told it
    lagged and reads what it missed from the store."""

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[Item | _Wake] = asyncio.Queue(capacity)
        self.lagged = False
        self._woken = False
        self.local = False
        """Whether this process handed the follower lines of its stage since the last wake."""

    def put(self, item: Item) -> None:
        self._put(item)

    def wake(self) -> None:
        """Some replica stored lines or ended a stage: the follower reads the store again, unless this
        process itself handed it its stage's lines since the last wake (it runs the stage)."""
        if self.local:
            self.local = False
        elif not self._woken:
            self._woken = True
            self._put(_WAKE)

    def _put(self, item: Item | _Wake) -> None:
        if self.lagged:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged = True

    async def get(self) -> Item | None:
        """The next item; None once the follower lagged or was woken (it must re-read the store, then
        `resume`). A full buffer has no one waiting on it, so lagging never strands a waiting follower."""
        if self.lagged:
            return None
        item = await self._queue.get()
        if isinstance(item, _Wake):
            self._woken = False
            return None
        return item

    def resume(self, capacity: int) -> None:
        self._queue = asyncio.Queue(capacity)
        self.lagged = False
        self._woken = False


class StageFeed:
    """`signal`: set when several replicas share the database; without it, nothing but this process's
    writer reaches the followers, as the stages run here."""

    def __init__(
        self, capacity: int = 1000, signal: JournalSignal | None = None, poll: float = FEED_POLL
    ) -> None:
        self.capacity = capacity
        self._signal = signal
        self._poll = poll
        self._followers: defaultdict[tuple[str, str], set[Follower]] = defaultdict(set)

    @property
    def tailing(self) -> bool:
        """Whether followers are woken by other replicas' writers (the `tail` job runs)."""
        return self._signal is not None

    def follow(self, run_id: str, stage: str) -> Follower:
        follower = Follower(self.capacity)
        self._followers[run_id, stage].add(follower)
        return follower

    def leave(self, run_id: str, stage: str, follower: Follower) -> None:
        followers = self._followers.get((run_id, stage))
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self._followers[run_id, stage]

    def publish(self, run_id: str, stage: str, lines: Sequence[StageLogLine]) -> None:
        """Lines this process stored (committed)."""
        for follower in self._followers.get((run_id, stage), ()):
            follower.local = True
            for line in lines:
                follower.put(line)
        if self._signal is not None:
            self._signal.announce()

    def end(self, run_id: str, stage: str, status: StageStatus) -> None:
        """A stage this process ran ended (its status committed)."""
        for follower in self._followers.get((run_id, stage), ()):
            follower.local = True
            follower.put(StageEnded(status))
        if self._signal is not None:
            self._signal.announce()

    async def tail(self, stopping: asyncio.Event) -> None:
        """Until `stopping` is set: whenever the signal says some replica stored stage lines or ended a
        stage (or every `poll` seconds), wake the followers of stages this process does not run."""
        signal = self._signal
        if signal is None:
            return
        while not stopping.is_set():
            await wait_or_stop(signal.wait(self._poll), stopping)
            for followers in list(self._followers.values()):
                for follower in followers:
                    follower.wake()

    @property
    def followers(self) -> int:
        return sum(len(followers) for followers in self._followers.values())
