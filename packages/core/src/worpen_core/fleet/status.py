"""An agent's status."""

from __future__ import annotations

from enum import StrEnum


class AgentStatus(StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    CRITICAL = "CRITICAL"
    HEALING = "HEALING"
