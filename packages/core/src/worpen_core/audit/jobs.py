"""The audit trail's background work: writing outcomes that could not be written when they happened."""

from __future__ import annotations

from worpen_core.audit.service import AuditTrail
from worpen_core.shared.jobs import Job, Periodic


def audit_jobs(audit: AuditTrail, *, flush_every: float) -> list[Job]:
    return [Periodic("audit.flush", flush_every, audit.flush)]
