"""The registry of agents' streams in memory: one shared instance stands for the database of several
replicas."""

from __future__ import annotations

from worpen_core.agents.model import StreamHolder
from worpen_core.shared.errors import Unavailable


class FakeAgentRegistry:
    def __init__(self) -> None:
        self.rows: dict[str, StreamHolder] = {}
        self.broken = False
        """Set to make every call fail as a lost database does."""

    async def record(self, holder: StreamHolder) -> None:
        self._check()
        self.rows[holder.agent_id] = holder

    async def forget(self, holder: StreamHolder) -> None:
        self._check()
        if self.rows.get(holder.agent_id) == holder:
            del self.rows[holder.agent_id]

    async def forget_replica(self, replica_id: str) -> None:
        self._check()
        self.rows = {key: row for key, row in self.rows.items() if row.replica_id != replica_id}

    async def holder(self, agent_id: str) -> StreamHolder | None:
        self._check()
        return self.rows.get(agent_id)

    async def holders(self) -> list[StreamHolder]:
        self._check()
        return list(self.rows.values())

    def _check(self) -> None:
        if self.broken:
            raise Unavailable("database", "the fake database is down")
