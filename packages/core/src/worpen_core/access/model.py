"""API keys, roles and what each role may do."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from worpen_core.shared.errors import Forbidden

KEY_PREFIX = "wpn_"


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    AGENT = "agent"


class Permission(StrEnum):
    READ = "read"
    OPERATE = "operate"
    ADMIN = "admin"
    REPORT = "report"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.OPERATE}),
    Role.ADMIN: frozenset(Permission),
    Role.AGENT: frozenset({Permission.REPORT}),
}


def hash_secret(secret: str) -> str:
    """Keys carry 256 random bits, so one SHA-256 is a sound hash (no stretching needed, as for tokens)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(slots=True)
class ApiKey:
    id: str
    name: str
    role: Role
    prefix: str
    secret_hash: str
    created_at: datetime
    agent_ids: tuple[str, ...] = ()
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a request acts for."""

    key_id: str
    name: str
    role: Role
    agent_ids: frozenset[str] = frozenset()

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def may_report_for(self, agent_id: str) -> bool:
        if self.role is Role.AGENT:
            return agent_id in self.agent_ids
        return self.can(Permission.REPORT)

    def authorize_report(self, agent_id: str) -> None:
        """Raises Forbidden unless this caller may report heartbeats for `agent_id`: the one check of
        both heartbeat entrypoints (HTTP and gRPC)."""
        if not self.may_report_for(agent_id):
            raise Forbidden(f"this key may not report for agent {agent_id!r}")


ANONYMOUS_ADMIN = Principal("anonymous", "anonymous (authentication off)", Role.ADMIN)
"""Who every caller is when authentication is turned off for development."""
