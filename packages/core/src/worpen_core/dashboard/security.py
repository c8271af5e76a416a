"""The security score: 100 less a penalty for each finding, each capped, every one itemised.

| finding                   | penalty                      | cap |
|---------------------------|------------------------------|-----|
| offlineAgents             | 5 per agent OFFLINE          | 25  |
| outdatedAgents            | 2 per agent reporting a lower version than the newest in the fleet | 20 |
| failedAuthentications     | 1 per 10 failed authentications in the last hour (started tens) | 15 |
| adminKeysWithoutExpiry    | 5 per active admin key that never expires | 15 |
| authDisabled              | 50 when authentication is switched off | 50 |
| openCriticalIncidents     | 10 per open incident critical or given up on (FAILED) | 30 |"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from worpen_core.access.model import ApiKey, Role
from worpen_core.fleet.model import Agent
from worpen_core.fleet.status import AgentStatus


@dataclass(frozen=True, slots=True)
class Finding:
    count: int
    penalty: int
    max_penalty: int


@dataclass(frozen=True, slots=True)
class SecurityScore:
    findings: dict[str, Finding]
    """By the camelCase name the dashboard's `detail` shows."""

    @property
    def score(self) -> int:
        return max(0, 100 - sum(finding.penalty for finding in self.findings.values()))


def _finding(count: int, points: int, cap: int, per: int = 1) -> Finding:
    return Finding(count, min(cap, math.ceil(count / per) * points), cap)


_VERSION = re.compile(r"^v?(\d+(?:\.\d+)*)")


def version_key(version: str | None) -> tuple[int, ...] | None:
    """'1.4.2', 'v1.4', '1.4.2-rc1' as comparable numbers (the numeric release only); None for anything
    else, which is then neither newest nor outdated."""
    match = _VERSION.match(version or "")
    return None if match is None else tuple(int(part) for part in match[1].split("."))


def outdated(agents: Iterable[Agent]) -> int:
    """How many agents report a lower version than the newest any agent reports. Each version is read
    once, however many agents run it: a fleet runs a handful."""
    counts = Counter(agent.version for agent in agents)
    keys = {version: key for version in counts if (key := version_key(version)) is not None}
    if not keys:
        return 0
    newest = max(keys.values())
    return sum(counts[version] for version, key in keys.items() if key < newest)


def security_score(
    agents: Iterable[Agent],
    keys: Iterable[ApiKey],
    failed_authentications: int,
    auth_enabled: bool,
    now: datetime,
    critical_incidents: int = 0,
) -> SecurityScore:
    agents = list(agents)
    offline = sum(1 for agent in agents if agent.status is AgentStatus.OFFLINE)
    open_admin = sum(
        1 for key in keys if key.role is Role.ADMIN and key.is_active(now) and key.expires_at is None
    )
    return SecurityScore(
        {
            "offlineAgents": _finding(offline, 5, 25),
            "outdatedAgents": _finding(outdated(agents), 2, 20),
            "failedAuthentications": _finding(failed_authentications, 1, 15, per=10),
            "adminKeysWithoutExpiry": _finding(open_admin, 5, 15),
            "authDisabled": _finding(0 if auth_enabled else 1, 50, 50),
            "openCriticalIncidents": _finding(critical_incidents, 10, 30),
        }
    )
