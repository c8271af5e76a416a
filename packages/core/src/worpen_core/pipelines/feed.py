"""The live tail of stages' logs: what the executor stores it also hands to the followers in memory."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from worpen_core.pipelines.model import StageLogLine, StageStatus


@dataclass(frozen=True, slots=True)
class StageEnded:
    status: StageStatus


Item = StageLogLine | StageEnded


class Follower:
    """One follower's bounded buffer. Overflowing it does not lose anything: the follower is told it
    lagged and reads what it missed from the store."""

    def __init__(self, capacity: int) -> None:
        self._queue: asyncio.Queue[Item] = asyncio.Queue(capacity)
        self.lagged = False

    def put(self, item: Item) -> None:
        if self.lagged:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged = True

    async def get(self) -> Item | None:
        """The next item; None once the follower lagged (it must re-read the store, then `resume`). A full
        buffer has no one waiting on it, so lagging never strands a waiting follower."""
        if self.lagged:
            return None
        return await self._queue.get()

    def resume(self, capacity: int) -> None:
        self._queue = asyncio.Queue(capacity)
        self.lagged = False


class StageFeed:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._followers: defaultdict[tuple[str, str], set[Follower]] = defaultdict(set)

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
        for follower in self._followers.get((run_id, stage), ()):
            for line in lines:
                follower.put(line)

    def end(self, run_id: str, stage: str, status: StageStatus) -> None:
        for follower in self._followers.get((run_id, stage), ()):
            follower.put(StageEnded(status))

    @property
    def followers(self) -> int:
        return sum(len(followers) for followers in self._followers.values())
