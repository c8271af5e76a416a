"""Domain events as lines a person reads: level, source and message of each kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worpen_core.audit.events import OperationAudited
from worpen_core.audit.model import Outcome
from worpen_core.containers.events import (
    ContainerDied,
    ContainerHealthChanged,
    ContainerOomKilled,
    ContainerStarted,
    EngineAvailable,
    EngineUnavailable,
    ImagePulled,
)
from worpen_core.events.model import Event
from worpen_core.fleet.events import (
    AgentBecameCritical,
    AgentHealing,
    AgentMetricCleared,
    AgentMetricHigh,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    Metric,
)
from worpen_core.fleet.status import AgentStatus
from worpen_core.logs.model import Level
from worpen_core.logs.render import Rendered, render

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WEB = ("node-a", "3f2a" * 16, "web-1", "nginx:1", AT)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            AgentRegistered("bee-001", AT, AgentStatus.ONLINE),
            (Level.INFO, "bee-001", "bee-001 registered (ONLINE)"),
        ),
        (
            AgentWentOffline("bee-002", AT, AT - timedelta(seconds=42)),
            (Level.WARN, "bee-002", "bee-002 went OFFLINE (last seen 42 s ago)"),
        ),
        (
            AgentBecameCritical("bee-003", AT, "cpu above 90%", 97.5, 40.0),
            (Level.ERROR, "bee-003", "bee-003 became CRITICAL: cpu above 90% (cpu 97.5%, ram 40%)"),
        ),
        (
            AgentRecovered("bee-003", AT, AgentStatus.CRITICAL),
            (Level.SUCCESS, "bee-003", "bee-003 recovered (was CRITICAL)"),
        ),
        (
            AgentHealing("bee-004", AT, "rule oom-restart: docker.restart web-1"),
            (Level.INFO, "bee-004", "bee-004 is HEALING: rule oom-restart: docker.restart web-1"),
        ),
        (
            AgentMetricHigh("bee-005", AT, Metric.DISK, 93.5, 90.0),
            (Level.WARN, "bee-005", "bee-005 disk high: 93.5% (threshold 90%)"),
        ),
        (
            AgentMetricCleared("bee-005", AT, Metric.DISK, 70.0, 90.0),
            (Level.SUCCESS, "bee-005", "bee-005 disk back to 70% (threshold 90%)"),
        ),
        (
            ContainerDied(*WEB, 143, requested=True),
            (Level.INFO, "node-a", "container web-1 on node-a stopped on request (exit 143)"),
        ),
        (ContainerStarted(*WEB), (Level.INFO, "node-a", "container web-1 on node-a started")),
        (ContainerOomKilled(*WEB), (Level.ERROR, "node-a", "container web-1 on node-a was OOM-killed")),
        (
            ContainerDied(*WEB, 137),
            (Level.WARN, "node-a", "container web-1 on node-a died with exit code 137"),
        ),
        (ContainerDied(*WEB, 0), (Level.INFO, "node-a", "container web-1 on node-a exited with code 0")),
        (
            ContainerHealthChanged(*WEB, "UNHEALTHY"),
            (Level.ERROR, "node-a", "container web-1 on node-a is UNHEALTHY"),
        ),
        (
            ContainerHealthChanged("node-a", "3f2a" * 16, "", "nginx:1", AT, "HEALTHY"),
            (Level.SUCCESS, "node-a", "container 3f2a3f2a3f2a on node-a is HEALTHY"),
        ),
        (ImagePulled("node-a", "nginx:1", AT), (Level.INFO, "node-a", "image nginx:1 pulled on node-a")),
        (
            EngineUnavailable("node-a", "connection refused", AT),
            (Level.ERROR, "node-a", "Docker engine of node-a unavailable: connection refused"),
        ),
        (EngineAvailable("node-a", AT), (Level.SUCCESS, "node-a", "Docker engine of node-a reached")),
        (
            OperationAudited(
                "e1", "ops", "container.restart", "web-1", "node-a", Outcome.SUCCEEDED, None, AT
            ),
            (Level.SUCCESS, "worpen", "ops: container.restart web-1 on node-a succeeded"),
        ),
        (
            OperationAudited("e2", "ops", "image.pull", "nginx:9", None, Outcome.FAILED, "not found", AT),
            (Level.ERROR, "worpen", "ops: image.pull nginx:9 failed: not found"),
        ),
    ],
)
def test_each_event_reads_as_a_line(event: Event, expected: tuple[Level, str, str]) -> None:
    assert render(event) == Rendered(*expected)


def test_levels_are_ordered_info_success_warn_error() -> None:
    assert sorted(Level, key=lambda level: level.rank) == [Level.INFO, Level.SUCCESS, Level.WARN, Level.ERROR]
    assert Level.SUCCESS.and_above() == {Level.SUCCESS, Level.WARN, Level.ERROR}
    assert Level.ERROR.and_above() == {Level.ERROR}
