"""Commands of the access feature, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from worpen_core.access.model import Role
from worpen_core.shared.errors import InvalidInput
from worpen_core.shared.ids import check_agent_id


@dataclass(frozen=True, slots=True)
class CreateApiKey:
    name: str
    role: Role
    agent_ids: tuple[str, ...] = ()
    expires_in: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.name.strip() or len(self.name) > 64:
            raise InvalidInput("must be 1 to 64 characters long, not all whitespace", "name")
        if self.role is Role.AGENT and not self.agent_ids:
            raise InvalidInput("an agent key must be bound to at least one agent id", "agents")
        if self.role is not Role.AGENT and self.agent_ids:
            raise InvalidInput("only keys with the agent role are bound to agent ids", "agents")
        for agent_id in self.agent_ids:
            check_agent_id(agent_id, "agents")
        if self.expires_in is not None and self.expires_in <= timedelta(0):
            raise InvalidInput("must be a positive duration", "expiresIn")
