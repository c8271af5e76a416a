"""The messages that must survive a lost connection: heartbeats and engine events, in order, bounded.

Everything reportable goes through the outbox, connected or not, so order is kept by construction: what
was produced while disconnected is sent, after the next Welcome, before anything produced later. A
message leaves the outbox only once it was written to a stream. When the bound is reached the oldest
are dropped (the newest readings matter most) and counted."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from worpen_proto.v1 import agent_pb2

log = logging.getLogger("worpen_agent.outbox")


class Outbox:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the outbox holds at least one message")
        self.capacity = capacity
        self._items: deque[tuple[int, agent_pb2.AgentMessage]] = deque()
        self._next_seq = 0
        self._dropped = 0
        self.on_put: Callable[[], None] | None = None
        """Called after each put: the connected stream's writer wakes up."""

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: agent_pb2.AgentMessage) -> None:
        if len(self._items) >= self.capacity:
            self._items.popleft()
            if self._dropped == 0:
                log.warning("buffer full (%d messages): dropping the oldest", self.capacity)
            self._dropped += 1
        self._items.append((self._next_seq, message))
        self._next_seq += 1
        if self.on_put is not None:
            self.on_put()

    def head(self) -> tuple[int, agent_pb2.AgentMessage] | None:
        """The oldest message and its sequence number, left in place until `remove`d."""
        return self._items[0] if self._items else None

    def remove(self, seq: int) -> None:
        """Take out a message that was written; a no-op if it was dropped in the meantime."""
        if self._items and self._items[0][0] == seq:
            self._items.popleft()

    def take_dropped(self) -> int:
        """How many messages were dropped since the last call."""
        dropped, self._dropped = self._dropped, 0
        return dropped
