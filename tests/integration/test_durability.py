"""What survives: an acknowledged registration or status change survives kill -9; SIGTERM writes the
telemetry still buffered. Both servers buffer telemetry for a minute (support.BUFFERING), so nothing
reaches the database through the periodic flush while these tests run. While the database cannot be
written (on either backend), telemetry is held up to its bound and the oldest samples are dropped beyond
it, said in the metrics and the log."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.docker_support import wait_for
from tests.integration.support import (
    SERVERS,
    WorpenServer,
    accepted,
    heartbeat,
    query,
    start_server,
    writes_blocked,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class AfterCrash:
    restarted: WorpenServer
    admin_key: str


@pytest.fixture(scope="module")
def after_crash(crash_server: WorpenServer) -> Iterator[AfterCrash]:
    """A server that acknowledged a registration and a status change, then was killed with SIGKILL the
    moment the last acknowledgement arrived, and was started again on the same database."""
    admin_key = crash_server.initial_admin_key()
    with crash_server.client(admin_key) as client:
        accepted(heartbeat(client, "crash-turns-critical", cpu=10.0))
        assert accepted(heartbeat(client, "crash-turns-critical", status="CRITICAL"))["status"] == "CRITICAL"
        assert (
            accepted(heartbeat(client, "crash-new", cpu=12.5, ram=40.0, name="fresh"))["status"] == "ONLINE"
        )
        crash_server.stop(signal.SIGKILL)

    restarted = start_server(crash_server.database, SERVERS["crash_server"].settings)
    try:
        yield AfterCrash(restarted, admin_key)
    finally:
        restarted.stop()


def agent_after_restart(after_crash: AfterCrash, agent_id: str) -> dict[str, object]:
    with after_crash.restarted.client(after_crash.admin_key) as client:
        response = client.get(f"/api/v1/agents/{agent_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_an_agent_registered_just_before_a_kill_is_there_after_a_restart(after_crash: AfterCrash) -> None:
    agent = agent_after_restart(after_crash, "crash-new")

    assert (agent["name"], agent["status"], agent["cpuLoad"], agent["memoryLoad"]) == (
        "fresh",
        "ONLINE",
        12.5,
        40.0,
    )


def test_a_status_change_acknowledged_just_before_a_kill_survives_a_restart(after_crash: AfterCrash) -> None:
    agent = agent_after_restart(after_crash, "crash-turns-critical")

    assert (agent["status"], agent["reportedStatus"]) == ("CRITICAL", "CRITICAL")


def test_sigterm_writes_the_buffered_telemetry_and_exits_cleanly(buffering_server: WorpenServer) -> None:
    readings = {"buffer-a": [11.0, 12.0, 13.0], "buffer-b": [21.0, 22.0]}
    admin_key = buffering_server.initial_admin_key()
    with buffering_server.client(admin_key) as client:
        for agent_id, cpus in readings.items():
            for cpu in cpus:
                accepted(heartbeat(client, agent_id, cpu=cpu, ram=50.0))
        metrics = client.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    buffered = {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(metrics.text)
        if family.samples  # a labelled counter nothing has counted yet has none
    }["worpen_telemetry_buffered_samples"]
    assert buffered == 5
    assert samples(buffering_server) == {}  # still only in memory

    status = buffering_server.stop(signal.SIGTERM)

    assert samples(buffering_server) == readings
    assert status == 0, f"worpen serve exited with {status} after SIGTERM:\n{buffering_server.log()[-3000:]}"
    restarted = start_server(buffering_server.database, SERVERS["buffering_server"].settings)
    try:
        with restarted.client(admin_key) as client:
            latest = {agent["id"]: agent["cpuLoad"] for agent in client.get("/api/v1/agents").json()}
    finally:
        restarted.stop()
    assert latest == {"buffer-a": 13.0, "buffer-b": 22.0}


def samples(server: WorpenServer) -> dict[str, list[float]]:
    """Telemetry rows in the server's database, cpu by agent in time order."""
    rows = query(server.database_url, "SELECT agent_id, cpu FROM agent_samples ORDER BY agent_id, at, id")
    found: dict[str, list[float]] = {}
    for agent_id, cpu in rows:
        found.setdefault(agent_id, []).append(cpu)
    return found


def test_telemetry_that_cannot_be_written_is_bounded_the_oldest_dropped_and_said_once(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "worpen.db",
        # On PostgreSQL a write waits for a lock as long as SQLite's busy timeout lets it (5 s).
        {
            "WORPEN_TELEMETRY_BUFFER": "5",
            "WORPEN_FLUSH_INTERVAL": "0.1",
            "WORPEN_DATABASE_STATEMENT_TIMEOUT": "5",
        },
    )
    try:
        with server.client(server.initial_admin_key()) as client:

            def metric(name: str) -> float:
                families = text_string_to_metric_families(client.get("/metrics").text)
                return next(family.samples[0].value for family in families if family.name == name)

            accepted(heartbeat(client, "bounded", cpu=0.5))
            wait_for(lambda: samples(server) == {"bounded": [0.5]}, "the first sample to be written")
            with writes_blocked(server.database_url):
                for cpu in range(1, 21):
                    accepted(heartbeat(client, "bounded", cpu=cpu))
                wait_for(lambda: metric("worpen_telemetry_dropped_samples") == 15, "15 samples dropped")
                refused = heartbeat(client, "bounded-newcomer")  # a registration is refused, never dropped

            assert refused.status_code == 503, refused.text
            wait_for(lambda: "telemetry.recovered" in server.log(), "the recovery to be logged")
            history = client.get("/api/v1/agents/bounded/telemetry").json()
            assert [sample["cpu"] for sample in history] == [20, 19, 18, 17, 16, 0.5]
            assert metric("worpen_telemetry_dropped_samples") == 15
            assert client.get("/api/v1/agents/bounded-newcomer").status_code == 404
    finally:
        server.stop()
    records = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert len([r for r in records if r["event"] == "telemetry.dropping"]) == 1
    assert [r["dropped"] for r in records if r["event"] == "telemetry.recovered"] == [15]
