"""A connected agent as the domain drives it: commands with deadlines, some streaming."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from worpen_core.agents.model import AgentHello, StreamHolder

LogChunks = list[tuple[int, bytes]]
"""Lines of a log command: (1 stdout | 2 stderr, the line as the engine wrote it with its timestamp)."""


class CommandStream(Protocol):
    """A streaming command (a log follow, a pull, an exec or shell) that has started on the agent."""

    async def next(self) -> bytes | LogChunks | None:
        """The next output (CommandOutput bytes or LogBatch lines), None once the command ended; raises
        what the command ended with (CommandRefused, Unavailable when the agent went away)."""
        ...

    async def write(self, data: bytes) -> None:
        """Input for the command (an exec's or shell's stdin)."""
        ...

    def result(self) -> Any:
        """The decoded result_json, once `next` returned None."""
        ...

    async def close(self) -> None:
        """Cancel the command on the agent unless it ended; idempotent."""
        ...


class AgentLink(Protocol):
    """One agent's live stream. Calls raise Unavailable (naming the node) when the stream is gone or
    goes away before the answer, TimedOut when `timeout` passes first, and CommandRefused when the agent
    answers with an error."""

    hello: AgentHello

    @property
    def open(self) -> bool: ...

    async def call(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        data: bytes = b"",
        timeout: float | None,  # noqa: ASYNC109 (it travels with the command: the agent's deadline too)
    ) -> Any:
        """Send the command and wait for its result (the decoded result_json); `timeout` None waits as
        long as the command takes."""
        ...

    async def stream(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 (it travels with the command: the agent's deadline too)
    ) -> CommandStream:
        """Start a streaming command; `timeout` bounds only the wait for its first message (or its end),
        which tells whether the agent accepted it."""
        ...

    async def close(self, reason: str) -> None:
        """End the stream, telling the agent why."""
        ...


class AgentRegistry(Protocol):
    """Which replica holds each connected agent's stream, shared by the replicas of one database: a
    command for an agent whose stream another replica holds is relayed to that replica."""

    async def record(self, holder: StreamHolder) -> None:
        """This replica now holds the agent's stream (in place of whichever held it before)."""
        ...

    async def forget(self, holder: StreamHolder) -> None:
        """The stream `holder` names ended: its row goes, unless a newer connection replaced it."""
        ...

    async def forget_replica(self, replica_id: str) -> None:
        """Every row of a replica (one that stops cleanly, or starts again under the same id)."""
        ...

    async def holder(self, agent_id: str) -> StreamHolder | None: ...

    async def holders(self) -> list[StreamHolder]: ...
