"""The journal's background work: retention."""

from __future__ import annotations

from worpen_core.events.journal import EventJournal
from worpen_core.shared.jobs import Job, Periodic


def event_jobs(journal: EventJournal, *, prune_every: float) -> list[Job]:
    return [Periodic("events.prune", prune_every, journal.prune, singleton=True)]
