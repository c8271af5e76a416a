"""A rule fires once per event across leader handovers, held by the database: two replicas on PostgreSQL.
First the leader's rule engine is caught with its runs' inserts waiting on a lock (a slow database), frozen
(SIGSTOP) there until the other replica leads and its engine takes the same events, and thawed as the lock
goes: the old leader's steps in flight commit beside the new leader's. Then the leader is killed (kill -9)
in the middle of the next burst. Every (rule, event) has exactly one run, and every run's webhook
reaches the receiver under one delivery id (sent at least once, never for two runs)."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.integration.receiver import Receiver, receiving
from tests.integration.replica_support import replicas
from tests.integration.support import WorpenServer, heartbeat
from tests.integration.test_replicas_leader import leading
from tests.postgres_support import writes_blocked

pytestmark = pytest.mark.integration

T = TypeVar("T")
LEASE = 3.0
SETTINGS = {
    "WORPEN_LEASE_SECONDS": str(LEASE),
    "WORPEN_AGENT_TTL": "2",
    "WORPEN_SWEEP_INTERVAL": "0.2",
    "WORPEN_AUTOMATION_TICK_SECONDS": "0.2",
    "WORPEN_ALLOW_PRIVATE_WEBHOOKS": "true",
    "WORPEN_SCRIPT_TIMEOUT_MS": "10000",
}
Getter = Callable[[str, dict[str, str | int]], list[Any]]
DEADLINE = 120.0
"""For what a loaded 2-CPU machine may take: a handover, a burst of rule runs, their deliveries."""
BURST = 20
"""Agents going OFFLINE at once: one event each, handled by every rule."""
RULES = 4
"""Each rule has a worker of its own: as many steps in flight at once when the leader is frozen."""
SCRIPT = 'notify.webhook("hook", {agent: service});'


def eventually(probe: Callable[[], T | None], what: str, seconds: float = DEADLINE) -> T:
    deadline = time.monotonic() + seconds
    while True:
        found = probe()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def sole_leader(servers: list[WorpenServer], key: str) -> WorpenServer | None:
    """The one replica that says it leads (None while none or both do: a thawed one may not know yet)."""
    found = [server for server in servers if leading(server, key)]
    return found[0] if len(found) == 1 else None


def awhile(seconds: float, probe: Callable[[], bool | None]) -> bool:
    """Whether `probe()` comes true within `seconds` (it need not)."""
    deadline = time.monotonic() + seconds
    while not probe():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def answering(servers: list[WorpenServer], key: str) -> Getter:
    """GET from the first replica that answers (the others may be frozen or dead)."""

    def get(path: str, params: dict[str, str | int]) -> list[Any]:
        for server in servers:
            try:
                with server.client(key) as client:
                    answer = client.get(path, params=params, timeout=3.0)
            except httpx.TransportError:
                continue
            assert answer.status_code == 200, answer.text
            return list(answer.json())
        raise AssertionError("no replica answers")

    return get


def burst(server: WorpenServer, key: str, name: str) -> set[str]:
    """`BURST` agents heartbeat once through `server`, then fall silent: they go OFFLINE together."""
    agents = {f"bee-{name}-{uuid.uuid4().hex[:6]}-{n}" for n in range(BURST)}
    with server.client(key) as client:
        for agent in agents:
            assert heartbeat(client, agent).status_code == 202
    return agents


def test_every_rule_runs_once_per_event_through_a_frozen_leader_and_a_killed_one(tmp_path: Path) -> None:
    with receiving() as receiver, replicas(tmp_path, 2, SETTINGS) as (a, b):
        key = a.initial_admin_key()
        get = answering([a, b], key)
        eventually(lambda: leading(a, key) and leading(b, key) is False, "a leads")
        with b.client(key) as client:
            hook = {"name": "hook", "kind": "webhook", "url": receiver.url}
            assert client.post("/api/v1/automation/channels", json=hook).status_code == 201
            rules = [
                client.post(
                    "/api/v1/automation/rules",
                    json={
                        "name": f"hook offline {n}",
                        "trigger": "AGENT_OFFLINE",
                        "targetService": "bee-*",
                        "script": SCRIPT,
                    },
                ).json()["id"]
                for n in range(RULES)
            ]

        def offline(agents: set[str]) -> list[int] | None:
            """The ids of the agents' AgentWentOffline events, once there is one for each."""
            events = get("/api/v1/events", {"types": "AgentWentOffline", "limit": 1000})
            found = [int(e["seq"]) for e in events if e.get("agentId") in agents]
            return found if len(found) == len(agents) else None

        def runs() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for rule in rules:
                found += [run for run in get("/api/v1/automation/runs", {"rule": rule, "limit": 1000})]
            return found

        # 1. The leader frozen with its run inserts waiting on the database, thawed once b leads and
        # takes the same events: the inserts of both go on at once. (Frozen in the middle of renewing its
        # lease, a keeps the lease's row locked, and b cannot lead until a thaws: then a leads on.)
        first = burst(b, key, "frozen")
        with writes_blocked(a.env["WORPEN_DATABASE_URL"], ["automation_runs"]):
            events = eventually(lambda: offline(first), "the first burst")
            time.sleep(1.0)  # a's rule workers reach their inserts, which wait
            a.process.send_signal(signal.SIGSTOP)
            try:
                if awhile(3 * LEASE, lambda: leading(b, key)):
                    time.sleep(1.0)  # b's engine starts on the same events, and waits too
            except BaseException:
                a.process.send_signal(signal.SIGCONT)
                raise
        a.process.send_signal(signal.SIGCONT)
        leader = eventually(lambda: sole_leader([a, b], key), "one leader")
        follower = b if leader is a else a

        # 2. The leader killed in the middle of the next burst: the other takes over.
        second = burst(follower, key, "killed")
        more = eventually(lambda: offline(second), "the second burst")
        eventually(
            lambda: any(run["eventId"] in more for run in runs()), "the leader's first run of the burst"
        )
        leader.stop(signal.SIGKILL)
        eventually(lambda: leading(follower, key), "the other leads after the leader was killed")

        every = {(rule, event) for rule in rules for event in events + more}
        eventually(
            lambda: (
                {(run["ruleId"], run["eventId"]) for run in runs() if run["status"] != "RUNNING"} >= every
            ),
            "every rule's run of every event",
        )
        time.sleep(2 * LEASE)  # long enough for a second run of an event to show
        recorded = runs()
        assert Counter((run["ruleId"], run["eventId"]) for run in recorded) == Counter(every)
        # INTERRUPTED: b was killed while it applied the plan, which a new leader does not apply again.
        assert {run["status"] for run in recorded} <= {"SUCCEEDED", "INTERRUPTED"}
        queued = {str(run["id"]) for run in recorded if any(done["ok"] for done in run["applied"])}
        delivered(receiver, get, queued)


def delivered(receiver: Receiver, get: Getter, ran: set[str]) -> None:
    """Each run that queued its webhook queued one delivery, and the receiver got it (at least once,
    always under its one delivery id, which the envelope carries too)."""

    def deliveries() -> list[dict[str, Any]]:
        found = get("/api/v1/automation/deliveries", {"channel": "hook", "limit": 1000})
        return [d for d in found if isinstance(d, dict) and d["runId"] in ran]

    eventually(
        lambda: {d["runId"] for d in deliveries() if d["status"] == "DELIVERED"} == ran, "every delivery"
    )
    ids = {str(d["id"]): d["runId"] for d in deliveries()}
    assert len(ids) == len(ran)
    received = [(r.headers["X-Worpen-Delivery"], json.loads(r.body)) for r in receiver.received]
    assert {header for header, _ in received} >= set(ids)
    for header, envelope in received:
        assert str(envelope["id"]) == header
        if header in ids:
            assert envelope["runId"] == ids[header]
