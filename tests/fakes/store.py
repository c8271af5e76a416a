"""What the fake database holds."""

from __future__ import annotations

from datetime import datetime

from worpen_core.access.model import ApiKey
from worpen_core.audit.model import AuditEntry
from worpen_core.events.model import RecordedEvent
from worpen_core.fleet.model import Agent, TelemetrySample
from worpen_core.logs.model import LogEntry
from worpen_core.telemetry.model import Counters, Rollup, Tier


class Store:
    """What the fake database holds; shared by every unit of work made from one factory."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.samples: list[TelemetrySample] = []
        self.sample_ids: list[int] = []
        """The id of each of `samples`, as the database numbers them: in the order they were added."""
        self.rollups: dict[tuple[Tier, str, datetime], Rollup] = {}
        self.watermark = 0
        self.counters: dict[str, Counters] = {}
        self.api_keys: dict[str, ApiKey] = {}
        self.audit: dict[str, AuditEntry] = {}
        self.events: list[RecordedEvent] = []
        self.last_event_id = 0
        """The last id handed out, kept when retention deletes the events: ids are never reused."""
        self.logs: list[LogEntry] = []
        self.log_sizes: dict[int, int] = {}
        self.last_log_id = 0
        self.broken = False

    def add_samples(self, samples: list[TelemetrySample]) -> None:
        first = self.sample_ids[-1] + 1 if self.sample_ids else 1  # as SQLite numbers rows
        self.sample_ids.extend(range(first, first + len(samples)))
        self.samples.extend(samples)
