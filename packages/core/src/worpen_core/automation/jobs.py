"""The rule engine's background work: following the journal, running deferred plans whose wait is over,
firing cron schedules, and storing how far it got; with several replicas, taking in the rules changed
through the others."""

from __future__ import annotations

from worpen_core.automation.engine import RuleEngine
from worpen_core.automation.service import Automation
from worpen_core.shared.jobs import Continuous, Job, Periodic


def automation_jobs(engine: RuleEngine, *, tick: float = 1.0) -> list[Job]:
    """`tick`: seconds between looks at deferred plans and schedules (their precision)."""
    return [
        Continuous("automation.engine", engine.run, singleton=True),
        Periodic("automation.deferred", tick, engine.fire_due, singleton=True),
        Periodic("automation.schedules", tick, engine.fire_schedules, singleton=True),
        Periodic("automation.cursor", tick, engine.save_cursor, singleton=True),
    ]


def rule_refresh_jobs(automation: Automation, *, every: float) -> list[Job]:
    """With several replicas on one database, each one takes in the rules changed through the others
    every `every` seconds (every replica: each lists them, and whichever leads fires them)."""
    return [Periodic("automation.rules", every, automation.refresh)]
