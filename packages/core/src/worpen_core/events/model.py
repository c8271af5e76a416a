"""The base of every domain event."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every domain event; `subject` says what it is about, for logs and feeds."""

    @property
    def subject(self) -> str:
        raise NotImplementedError
