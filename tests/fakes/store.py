"""What the fake database holds."""

from __future__ import annotations

from worpen_core.access.model import ApiKey
from worpen_core.audit.model import AuditEntry
from worpen_core.fleet.model import Agent, TelemetrySample


class Store:
    """What the fake database holds; shared by every unit of work made from one factory."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.samples: list[TelemetrySample] = []
        self.api_keys: dict[str, ApiKey] = {}
        self.audit: dict[str, AuditEntry] = {}
        self.broken = False
