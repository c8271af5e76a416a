"""What the notification outbox tells the rest of Worpen: a notification reached its channel, or Worpen
gave up on it (loud on purpose: an alert nobody received is worse than none)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.events.model import Event
from worpen_core.logs.model import Level
from worpen_core.logs.render import Narrated, Rendered


@dataclass(frozen=True, slots=True)
class NotificationDelivered(Event):
    delivery_id: int
    channel: str
    attempts: int
    run_id: str | None
    at: datetime

    @property
    def subject(self) -> str:
        return self.channel


@dataclass(frozen=True, slots=True)
class NotificationFailed(Narrated):
    """Every attempt failed (or the receiver refused it for good); `error` is the last one's reason."""

    delivery_id: int
    channel: str
    attempts: int
    error: str
    run_id: str | None
    at: datetime

    @property
    def subject(self) -> str:
        return self.channel

    def line(self) -> Rendered:
        return Rendered(
            Level.ERROR,
            f"channel:{self.channel}",
            f"notification {self.delivery_id} to {self.channel} failed after {self.attempts} attempt(s): "
            f"{self.error}",
        )
