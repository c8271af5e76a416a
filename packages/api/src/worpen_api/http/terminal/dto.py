"""Terminal session DTOs."""

from __future__ import annotations

from datetime import datetime

from worpen_api.http.wire import Wire
from worpen_core.containers.service import TerminalSession


class TerminalSessionOut(Wire):
    session_id: str
    node: str
    container_id: str
    container_name: str
    actor: str
    command: list[str]
    opened_at: datetime

    @classmethod
    def of(cls, s: TerminalSession) -> TerminalSessionOut:
        return cls(s.id, s.node, s.container_id, s.container_name, s.actor, list(s.command), s.opened_at)
