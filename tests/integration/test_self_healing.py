"""Self-healing end to end: a real `worpen serve`, the real Docker engine, a real webhook receiver. A rule
heals a killed container and its incident closes itself; a container that keeps dying is retried with
growing waits and then given up on, loudly; a backtest replays what the live rule did; rules, runs,
backoff state and open incidents survive a restart, and a remediation cut short by a crash is recorded
as interrupted."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.integration.docker_support import ENGINE_URL, Containers, wait_for
from tests.integration.receiver import Receiver
from tests.integration.support import WorpenServer, heartbeat, start_server

pytestmark = pytest.mark.integration

RULES = "/api/v1/automation/rules"
RUNS = "/api/v1/automation/runs"
INCIDENTS = "/api/v1/incidents"
SECRET = "self-healing-signing-secret-0123456789"
HEALING = {
    "WORPEN_DOCKER_HOSTS": f"local={ENGINE_URL}",
    "WORPEN_ALLOW_PRIVATE_WEBHOOKS": "true",
    "WORPEN_AUTOMATION_TICK_SECONDS": "0.2",
    "WORPEN_INCIDENT_GRACE_SECONDS": "2",
    "WORPEN_AGENT_TTL": "3600",
    "WORPEN_FLUSH_INTERVAL": "0.2",
}
OOM_SCRIPT = """
if (event.exit_code === 137) {
  log.warn("OOM Detected on " + service);
  await docker.restart(container_id);
  notify.webhook("ops-webhook", {service: service, exitCode: event.exit_code});
}
"""


def served(database: Path, **settings: str) -> WorpenServer:
    return start_server(database, {**HEALING, **settings})


@pytest.fixture
def healing(tmp_path: Path) -> Iterator[tuple[WorpenServer, httpx.Client]]:
    server = served(tmp_path / "worpen.db")
    try:
        with server.client(server.initial_admin_key()) as client:
            yield server, client
    finally:
        server.stop()


def create_rule(client: httpx.Client, name: str, target: str, script: str, **fields: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "triggerEvent": "CONTAINER_DIED",
        "targetService": target,
        "script": script,
        **fields,
    }
    answer = client.post(RULES, json=body)
    assert answer.status_code == 201, answer.text
    rule: dict[str, Any] = answer.json()
    return rule


def runs_of(client: httpx.Client, rule: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.get(RUNS, params={"rule": rule["id"], "limit": 1000})
    assert answer.status_code == 200, answer.text
    runs: list[dict[str, Any]] = answer.json()
    return list(reversed(runs))


def runs_with(client: httpx.Client, rule: dict[str, Any], status: str) -> list[dict[str, Any]]:
    return [run for run in runs_of(client, rule) if run["status"] == status]


def incidents_of(client: httpx.Client, service: str) -> list[dict[str, Any]]:
    answer = client.get(INCIDENTS, params={"service": service})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


def agent_status(client: httpx.Client) -> str:
    status: str = client.get("/api/v1/agents/local").json()["status"]
    return status


def state_of(client: docker.DockerClient, name: str) -> dict[str, Any]:
    container = client.containers.get(name)
    state: dict[str, Any] = container.attrs["State"]
    return state


def test_a_killed_container_is_restarted_its_incident_resolves_itself_and_the_team_is_told(
    healing: tuple[WorpenServer, httpx.Client], containers: Containers, receiver: Receiver
) -> None:
    _, client = healing
    channel = {"name": "ops-webhook", "kind": "webhook", "url": receiver.url, "secret": SECRET}
    assert client.post("/api/v1/automation/channels", json=channel).status_code == 201
    victim = containers.run("sleep 3600")
    name = victim.name
    assert name is not None
    rule = create_rule(client, "oom-restart", name, OOM_SCRIPT)

    victim.kill()  # SIGKILL: exit code 137, as the OOM killer leaves it

    [run] = wait_for(lambda: runs_with(client, rule, "SUCCEEDED"), "the run")
    assert [(a["type"], a["ok"]) for a in run["applied"]] == [
        ("docker.restart", True),
        ("notify.webhook", True),
    ]
    assert run["logs"] == [{"level": "warn", "message": f"OOM Detected on {name}"}]
    assert state_of(containers.client, name)["Running"]
    [incident] = incidents_of(client, name)
    assert incident["id"] == run["incidentId"]
    assert incident["node"] == "local"

    resolved = wait_for(
        lambda: [i for i in incidents_of(client, name) if i["status"] == "RESOLVED"],
        "the incident to resolve",
    )
    assert resolved[0]["method"] == "AUTO"
    detail = client.get(f"{INCIDENTS}/{incident['id']}").json()
    assert [entry["kind"] for entry in detail["timeline"]][:2] == ["opened", "remediation"]
    assert detail["timeline"][-1]["kind"] == "resolved"

    [request] = wait_for(lambda: receiver.received, "the webhook")
    timestamp = request.headers["X-Worpen-Timestamp"]
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert hmac.compare_digest(request.headers["X-Worpen-Signature"], f"sha256={digest.hexdigest()}")
    assert json.loads(request.body)["payload"]["data"] == {"service": name, "exitCode": 137}

    audit = client.get("/api/v1/audit", params={"actor": "automation:oom-restart"}).json()
    assert [(entry["action"], entry["outcome"]) for entry in audit] == [("container.restart", "SUCCEEDED")]
    wanted = {"RuleRan", "IncidentOpened", "IncidentResolved"}

    def journaled() -> bool:
        events = client.get("/api/v1/events", params={"types": ",".join(sorted(wanted))}).json()
        return {event["type"] for event in events} >= wanted

    wait_for(journaled, "the run and the incident in the journal")


def test_a_container_that_keeps_dying_is_retried_with_growing_waits_then_given_up_loudly(
    healing: tuple[WorpenServer, httpx.Client], containers: Containers
) -> None:
    _, client = healing
    since = datetime.now(UTC) - timedelta(seconds=1)
    crashing = containers.run("sleep 1; exit 3")
    name = crashing.name
    assert name is not None
    storm = {"cooldownSeconds": 0, "maxAttempts": 3, "backoffSeconds": 3, "maxBackoffSeconds": 60}
    rule = create_rule(client, "crash-restart", name, "docker.restart(container_id)", **storm)

    def gave_up() -> list[dict[str, Any]]:
        return [run for run in runs_of(client, rule) if run["status"] == "GAVE_UP"]

    wait_for(gave_up, "the rule to give up", seconds=60)
    runs = runs_of(client, rule)
    restarts = [run for run in runs if run["status"] == "SUCCEEDED"]
    assert len(restarts) == 3
    starts = [datetime.fromisoformat(run["startedAt"]) for run in restarts]
    first_wait, second_wait = ((b - a).total_seconds() for a, b in itertools.pairwise(starts))
    assert first_wait >= 3
    assert second_wait >= 6
    assert second_wait > first_wait
    assert any(run["status"] == "DEFERRED" for run in runs)
    [incident] = wait_for(
        lambda: [found for found in incidents_of(client, name) if found["status"] == "FAILED"],
        "the escalation",
    )
    assert incident["occurrences"] >= 4

    time.sleep(3)  # it stays dead: the rule no longer touches it
    assert not state_of(containers.client, name)["Running"]
    assert len([run for run in runs_of(client, rule) if run["status"] == "SUCCEEDED"]) == 3

    def escalated() -> bool:
        log = client.get("/api/v1/logs", params={"level": "ERROR", "q": "gave up"}).json()
        return any("crash-restart gave up" in line["message"] for line in log)

    wait_for(escalated, "the ERROR line saying the rule gave up")

    until = datetime.now(UTC)
    answer = client.post(
        f"{RULES}/{rule['id']}/backtest", json={"since": since.isoformat(), "until": until.isoformat()}
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    replayed = {
        item["eventId"]: [(a["type"], a["target"]) for a in item["actions"]]
        for item in report["items"]
        if item["verdict"] == "RUN"
    }
    live = {
        run["eventId"]: [(a["type"], a["target"]) for a in run["plan"]]
        for run in runs_of(client, rule)
        if run["status"] == "SUCCEEDED"
    }
    assert replayed == live
    totals = report["totals"]
    assert totals["runs"] == 3
    assert totals["actions"] == {"docker.restart": 3}
    assert totals["gaveUp"] == 1
    assert totals["suppressed"] >= 1


def test_rules_runs_backoff_and_incidents_survive_a_restart_and_a_crash_mid_remediation_is_recorded(
    tmp_path: Path, containers: Containers
) -> None:
    database = tmp_path / "worpen.db"
    server = served(database)
    key = server.initial_admin_key()
    trigger = containers.run("sleep 3600")
    # A container that ignores SIGTERM: restarting it takes the engine's 10 s grace, time to crash Worpen.
    stubborn = containers.run("sleep 3600", stop_signal="SIGTERM")
    try:
        with server.client(key) as client:
            assert heartbeat(client, "local").status_code == 202
            script = f'docker.restart("{stubborn.name}")'
            rule = create_rule(client, "slow-heal", str(trigger.name), script, backoffSeconds=300)
            trigger.kill()
            wait_for(lambda: runs_with(client, rule, "RUNNING"), "the run to start")
            # The run is written RUNNING before its plan is applied, and the node turns HEALING as it is.
            wait_for(lambda: agent_status(client) == "HEALING", "the node to be HEALING")
    finally:
        server.stop(signal.SIGKILL)

    server = served(database)
    try:
        with server.client(key) as client:
            [run] = wait_for(
                lambda: runs_with(client, rule, "INTERRUPTED"),
                "the interrupted run",
            )
            assert "stopped while the plan was applied" in run["reason"]
            assert client.get(f"{RULES}/{rule['id']}").json()["script"] == script
            [incident] = incidents_of(client, str(trigger.name))
            assert incident["status"] == "PENDING"
            wait_for(
                lambda: client.get("/api/v1/agents/local").json()["status"] != "HEALING", "healing to end"
            )

            trigger.start()
            trigger.kill()
            deferred = wait_for(lambda: runs_with(client, rule, "DEFERRED"), "the next death")
            assert "waits until" in deferred[0]["reason"]  # the backoff from before the restart holds
            [incident] = incidents_of(client, str(trigger.name))
            assert incident["occurrences"] == 2
    finally:
        server.stop()


def test_heartbeats_over_a_threshold_fire_a_rule_and_its_incident_resolves_when_they_cool_down(
    healing: tuple[WorpenServer, httpx.Client],
) -> None:
    _, client = healing
    script = """
      log.warn("cpu " + metrics.cpu + " on " + node);
      incident.open("cpu saturated", {severity: "critical"});
    """
    body = {"name": "hot-cpu", "trigger": "CPU_HIGH", "targetService": "hot-*", "script": script}
    created = client.post(RULES, json=body)
    assert created.status_code == 201, created.text
    rule = created.json()
    for _ in range(3):  # WORPEN_CRITICAL_HEARTBEATS in a row at or above the threshold
        assert heartbeat(client, "hot-1", cpu=97.5).status_code == 202

    [run] = wait_for(lambda: runs_with(client, rule, "SUCCEEDED"), "the rule to run")
    assert run["trigger"] == "CPU_HIGH"
    assert run["logs"] == [{"level": "warn", "message": "cpu 97.5 on hot-1"}]
    by_issue = {incident["issue"]: incident for incident in incidents_of(client, "hot-1")}
    assert by_issue["cpu saturated"]["severity"] == "critical"
    assert by_issue["cpu at or above 90%"]["status"] == "PENDING"
    detail = client.get("/api/v1/dashboard/stats").json()["detail"]
    assert detail["openCriticalIncidents"]["count"] >= 1

    for _ in range(3):
        assert heartbeat(client, "hot-1", cpu=10).status_code == 202

    def cooled() -> bool:
        found = {incident["issue"]: incident for incident in incidents_of(client, "hot-1")}
        status: str = found["cpu at or above 90%"]["status"]
        return status == "RESOLVED"

    wait_for(cooled, "the CPU_HIGH incident to resolve itself")
    after = {incident["issue"]: incident for incident in incidents_of(client, "hot-1")}
    assert after["cpu at or above 90%"]["method"] == "AUTO"
    assert after["cpu saturated"]["status"] == "PENDING"  # a script's incident waits for a person
