"""The status of a node, as Worpen sees it."""

from __future__ import annotations

from enum import StrEnum


class AgentStatus(StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    CRITICAL = "CRITICAL"
    HEALING = "HEALING"
