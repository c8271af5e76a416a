"""Replicas on one PostgreSQL database elect one leader, which alone runs the singleton jobs (the offline
sweep, the rule engine...): killed, it is replaced within one lease; stopped, at once; and an agent that
stops goes OFFLINE once, firing a rule once, while two replicas run."""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.integration.replica_support import launch_replica, replicas
from tests.integration.support import WorpenServer, heartbeat

pytestmark = pytest.mark.integration

T = TypeVar("T")
LEASE = 3.0
TTL = 2.0
SETTINGS = {
    "WORPEN_LEASE_SECONDS": str(LEASE),
    "WORPEN_AGENT_TTL": str(int(TTL)),
    "WORPEN_SWEEP_INTERVAL": "0.2",
    "WORPEN_AUTOMATION_TICK_SECONDS": "0.2",
}
SLACK = 1.5
"""Seconds on top of what the design promises, for a busy machine."""
LEADER = re.compile(r"^worpen_leader (\S+)$", re.MULTILINE)


def leading(server: WorpenServer, key: str) -> bool | None:
    """Whether `server` says it leads (None: it does not answer)."""
    try:
        with server.client(key) as client:
            found = LEADER.search(client.get("/metrics", timeout=2.0).text)
    except httpx.TransportError:
        return None
    assert found is not None, "no worpen_leader in /metrics"
    return float(found.group(1)) == 1.0


def within(seconds: float, probe: Callable[[], T | None], what: str) -> tuple[T, float]:
    """The first truthy `probe()` within `seconds`, and how long it took."""
    start = time.monotonic()
    while True:
        found = probe()
        elapsed = time.monotonic() - start
        if found:
            return found, elapsed
        if elapsed > seconds:
            raise AssertionError(f"{what}: not within {seconds} s")
        time.sleep(0.05)


def offline_events(server: WorpenServer, key: str, agent: str) -> list[dict[str, object]]:
    with server.client(key) as client:
        events = client.get("/api/v1/events", params={"types": "AgentWentOffline", "limit": 1000}).json()
    return [event for event in events if event.get("agentId") == agent]


def runs(server: WorpenServer, key: str, rule: str) -> list[dict[str, object]]:
    with server.client(key) as client:
        return list(client.get("/api/v1/automation/runs", params={"rule": rule}).json())


def create_rule(server: WorpenServer, key: str, name: str, agent: str) -> str:
    """A rule that logs when `agent` goes OFFLINE, created through `server`; its id."""
    with server.client(key) as client:
        created = client.post(
            "/api/v1/automation/rules",
            json={
                "name": name,
                "trigger": "AGENT_OFFLINE",
                "targetService": agent,
                "script": 'log.info("offline: " + service)',
            },
        )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_one_leader_fails_over_within_a_lease_and_jobs_run_once(tmp_path: Path) -> None:
    with replicas(tmp_path, 2, SETTINGS) as (a, b):
        key = a.initial_admin_key()
        within(LEASE, lambda: leading(a, key) and leading(b, key) is False, "a leads, b does not")
        agent = f"bee-{uuid.uuid4().hex[:8]}"
        rule = create_rule(a, key, "created on the first leader", agent)

        a.stop(signal.SIGKILL)
        _, took = within(LEASE + LEASE / 3 + SLACK, lambda: leading(b, key), "b leads after a was killed")
        assert took <= LEASE + LEASE / 3 + SLACK

        c = launch_replica(tmp_path, a.env["WORPEN_DATABASE_URL"], "c", SETTINGS)
        try:
            c.wait_until_healthy()
            assert leading(c, key) is False
            other = create_rule(c, key, "created on a replica that does not lead", agent)

            with b.client(key) as client:  # an agent heartbeats to the surviving replica, then stops
                for _ in range(3):
                    assert heartbeat(client, agent).status_code == 202
                    time.sleep(0.3)
            stopped = time.monotonic()
            _, took = within(TTL + 2 * SLACK, lambda: offline_events(c, key, agent), f"{agent} OFFLINE")
            assert time.monotonic() - stopped >= TTL - 0.5  # not before its TTL
            within(2 * SLACK, lambda: runs(c, key, rule) and runs(c, key, other), "the rules' runs")
            time.sleep(2 * LEASE)  # long enough for a second sweep or a second firing to show
            [offline] = offline_events(b, key, agent)
            for each in (rule, other):
                assert [(run["status"], run["eventId"]) for run in runs(b, key, each)] == [
                    ("NO_ACTION", offline["seq"])
                ]

            # A clean stop releases the lease: the other replica takes over at its next bid. (On a busy
            # machine a renewal may have come too late meanwhile, and the lease changed hands already.)
            leader, follower = (b, c) if leading(b, key) else (c, b)
            leader.stop(signal.SIGTERM)
            _, took = within(LEASE, lambda: leading(follower, key), "the other leads after a clean stop")
            assert took < LEASE / 3 + SLACK
            assert "leader.resigned" in leader.log()
        finally:
            c.stop()
