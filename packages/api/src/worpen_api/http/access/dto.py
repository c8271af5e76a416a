"""API key DTOs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from worpen_api.http.wire import (
    AgentId,
    Duration,
    Wire,
    parse_duration,
)
from worpen_core.access.commands import CreateApiKey
from worpen_core.access.model import ApiKey, Role
from worpen_core.access.service import IssuedKey


class ApiKeyIn(Wire, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"\S", examples=["ci"])]
    """Up to 64 characters, not all whitespace."""
    role: Role
    agents: Annotated[list[AgentId], Meta(max_length=1000)] = msgspec.field(default_factory=list)
    expires_in: Duration | None = None

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "An agent key is bound to one agent id or more; a key of another role to none.",
        "if": {"properties": {"role": {"const": Role.AGENT.value}}},
        "then": {"properties": {"agents": {"minItems": 1}}, "required": ["agents"]},
        "else": {"properties": {"agents": {"maxItems": 0}}},
    }

    def to_command(self) -> CreateApiKey:
        expires_in = None if self.expires_in is None else parse_duration(self.expires_in)
        return CreateApiKey(self.name, self.role, tuple(self.agents), expires_in)


class ApiKeyOut(Wire):
    id: str
    name: str
    role: Role
    prefix: str
    agents: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            role=key.role,
            prefix=key.prefix,
            agents=list(key.agent_ids),
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str
    """The secret. Shown once: only its hash is stored."""

    @classmethod
    def issued(cls, issued: IssuedKey) -> ApiKeyCreated:
        return cls(**msgspec.structs.asdict(ApiKeyOut.of(issued.key)), key=issued.secret)
