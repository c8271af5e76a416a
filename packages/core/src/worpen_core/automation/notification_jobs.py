"""The notification outbox's background work: sending what is due, soon after it is enqueued."""

from __future__ import annotations

from worpen_core.automation.notifications import Notifications
from worpen_core.shared.jobs import Job, Periodic

SEND_EVERY = 0.25
"""Seconds between the sender's passes; a pass with nothing enqueued and nothing due reads nothing."""


def notification_jobs(notifications: Notifications, *, every: float = SEND_EVERY) -> list[Job]:
    return [Periodic("notifications.deliver", every, notifications.deliver_pending, singleton=True)]
