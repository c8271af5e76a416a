"""The messages that must survive a lost connection: heartbeats and engine events, in order, bounded.

Everything reportable goes through the outbox, connected or not, so order is kept by construction: what
was produced while disconnected is sent, after the next Welcome, before anything produced later. Each
message is numbered (AgentMessage.seq, within this run's `session`) and leaves the outbox only once the
server acknowledged it (Received): one written into a stream that then ended is sent again on the next.
When the bound is reached the oldest are dropped (the newest readings matter most) and counted."""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable

from worpen_proto.v1 import agent_pb2

log = logging.getLogger("worpen_agent.outbox")


class Outbox:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the outbox holds at least one message")
        self.capacity = capacity
        self.session = secrets.token_hex(8)
        """What the numbers count in: a new run of the agent starts again at 1 in a new session."""
        self._items: deque[agent_pb2.AgentMessage] = deque()
        """Numbered one after the other: the first is the oldest not acknowledged."""
        self._next_seq = 1
        self._written = 0
        """The highest number written to the current stream."""
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
        message.seq = self._next_seq
        self._items.append(message)
        self._next_seq += 1
        if self.on_put is not None:
            self.on_put()

    def next_unwritten(self) -> agent_pb2.AgentMessage | None:
        """The oldest message not yet written to the current stream (left in place until acknowledged)."""
        if not self._items:
            return None
        index = max(0, self._written + 1 - self._items[0].seq)
        return self._items[index] if index < len(self._items) else None

    def written(self, seq: int) -> None:
        self._written = max(self._written, seq)

    def acknowledge(self, seq: int) -> None:
        """The server took in every message up to `seq`: they go."""
        while self._items and self._items[0].seq <= seq:
            self._items.popleft()

    def rewind(self) -> None:
        """A new stream: every message still here is written again, oldest first."""
        self._written = 0

    def take_dropped(self) -> int:
        """How many messages were dropped since the last call."""
        dropped, self._dropped = self._dropped, 0
        return dropped
