"""Telemetry history on a real server, from real heartbeats over HTTP: a node's and the fleet's network
series across a counter reset, the fleet's load and its forecast, and /metrics/fleet for Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.support import (
    DEADLINE_SECONDS,
    Invocation,
    Servers,
    WorpenServer,
    accepted,
    heartbeat,
    issued_key,
    run_worpen,
)

pytestmark = pytest.mark.integration

STEP = {"tele-001": 1000, "tele-002": 3000}
"""Bytes each agent's receive counter grows by between two of its heartbeats."""
CPU = {"tele-001": 30.0, "tele-002": 50.0}
BUCKET_SECONDS = 60


@pytest.fixture(scope="module")
def telemetry_server(servers: Servers) -> WorpenServer:
    """Samples flushed and rolled up every 0.2 s; a fleet of its own (the fleet's series sum every agent)."""
    return servers.ready("telemetry_server")


@pytest.fixture(scope="module")
def admin(telemetry_server: WorpenServer) -> Iterator[httpx.Client]:
    with telemetry_server.client(telemetry_server.initial_admin_key()) as client:
        yield client


@pytest.fixture(scope="module")
def viewer(telemetry_server: WorpenServer) -> Iterator[httpx.Client]:
    (created,) = run_worpen(
        Invocation(["apikey", "create", "--name", "grafana", "--role", "viewer"], telemetry_server.env)
    )
    with telemetry_server.client(issued_key("grafana", created).secret) as client:
        yield client


def network(client: httpx.Client, node: str | None = None) -> dict[str, Any]:
    params = {"range": "1h"} | ({"node": node} if node else {})
    response = client.get("/api/v1/dashboard/network", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module")
def reported(admin: httpx.Client) -> dict[str, int]:
    """Heartbeats every 0.2 s from two agents, tele-001 restarting (its counters back to zero) after 20,
    until a minute that holds traffic is complete (and shown); returns the heartbeats each sent."""
    counters = dict.fromkeys(STEP, 10**9)
    sent = dict.fromkeys(STEP, 0)
    deadline = time.monotonic() + BUCKET_SECONDS + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        for agent, step in STEP.items():
            counters[agent] += step
            accepted(heartbeat(admin, agent, cpu=CPU[agent], netRxBytes=counters[agent], netTxBytes=0))
            sent[agent] += 1
        if sent["tele-001"] == 20:
            counters["tele-001"] = 0  # the agent restarted
        if any(value is not None for value in network(admin)["inbound"]):
            return sent
        time.sleep(0.2)
    raise AssertionError("no complete minute of traffic appeared")


def test_a_nodes_rate_comes_from_its_counters_and_the_fleets_sums_every_node(
    admin: httpx.Client, reported: dict[str, int]
) -> None:
    fleet = network(admin)
    nodes = {agent: network(admin, agent) for agent in STEP}

    assert len(fleet["timestamps"]) == len(fleet["inbound"]) == len(fleet["outbound"]) == 60
    for agent, series in nodes.items():
        assert series["timestamps"] == fleet["timestamps"]
        for rate in series["inbound"]:
            # whole increases over a minute: a reset counts the new value, never a negative one
            steps = None if rate is None else rate * BUCKET_SECONDS / STEP[agent]
            assert steps is None or (steps >= 0 and abs(steps - round(steps)) < 0.01)
    for index, total in enumerate(fleet["inbound"]):
        parts = [rate for series in nodes.values() if (rate := series["inbound"][index]) is not None]
        assert total == (pytest.approx(sum(parts), abs=0.02) if parts else None)
    assert any(rate for rate in fleet["inbound"])
    assert set(fleet["outbound"]) <= {None, 0}


def test_an_unknown_node_is_not_found_and_a_bad_range_is_refused(admin: httpx.Client) -> None:
    assert admin.get("/api/v1/dashboard/network", params={"node": "ghost"}).status_code == 404
    assert admin.get("/api/v1/dashboard/network", params={"range": "2h"}).status_code in {400, 422}
    assert admin.get("/api/v1/dashboard/network", params={"points": 501}).status_code in {400, 422}


def test_fewer_points_are_given_when_asked(admin: httpx.Client, reported: dict[str, int]) -> None:
    response = admin.get("/api/v1/dashboard/network", params={"range": "24h", "points": 50})

    assert response.status_code == 200, response.text
    assert 0 < len(response.json()["timestamps"]) <= 50


def test_the_load_is_the_fleets_mean_cpu_with_a_forecast_past_now(
    admin: httpx.Client, reported: dict[str, int]
) -> None:
    response = admin.get("/api/v1/dashboard/load", params={"range": "1h"})

    assert response.status_code == 200, response.text
    load = response.json()
    assert len(load["timestamps"]) == len(load["actual"]) == len(load["predicted"]) == 75
    # Each minute's value is the mean cpu of every sample in it: about the two agents' mean, but a minute's
    # boundary may fall between the two heartbeats of one round, so it is computed from the stored samples.
    samples = [
        (datetime.fromisoformat(sample["at"]), sample["cpu"])
        for agent in CPU
        for sample in admin.get(f"/api/v1/agents/{agent}/telemetry", params={"limit": 1000}).json()
    ]
    measured = 0
    for at, value in zip(load["timestamps"], load["actual"], strict=True):
        start = datetime.fromisoformat(at)
        within = [cpu for when, cpu in samples if start <= when < start + timedelta(seconds=BUCKET_SECONDS)]
        if value is None:
            continue
        measured += 1
        assert value == pytest.approx(sum(within) / len(within), abs=0.01)
        assert min(CPU.values()) < value < max(CPU.values()) or len(within) == 1  # both agents' readings
    assert measured
    assert load["actual"][-15:] == [None] * 15
    assert all(value is not None for value in load["predicted"][-15:])


def test_metrics_fleet_gives_prometheus_every_agents_gauges(
    viewer: httpx.Client, reported: dict[str, int]
) -> None:
    response = viewer.get("/metrics/fleet")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == viewer.get("/metrics").headers["content-type"]
    samples = {
        (sample.name, sample.labels.get("agent"), sample.labels.get("status")): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    for agent in STEP:
        assert samples[("worpen_agent_cpu_percent", agent, None)] == CPU[agent]
        assert samples[("worpen_agent_ram_percent", agent, None)] == 20.0
        assert samples[("worpen_agent_network_receive_bytes_per_second", agent, None)] > 0
        assert samples[("worpen_agent_network_transmit_bytes_per_second", agent, None)] == 0
        assert samples[("worpen_agent_status", agent, "ONLINE")] == 1
        assert samples[("worpen_agent_status", agent, "OFFLINE")] == 0
        assert samples[("worpen_agent_last_seen_timestamp_seconds", agent, None)] <= time.time()


def test_metrics_fleet_needs_a_key(telemetry_server: WorpenServer) -> None:
    with telemetry_server.client() as anonymous:
        response = anonymous.get("/metrics/fleet")

    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_metrics_fleet_is_in_the_schema_as_prometheus_text(viewer: httpx.Client) -> None:
    schema = viewer.get("/schema/openapi.json").json()

    operation = schema["paths"]["/metrics/fleet"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/plain"]
    assert {"401", "403", "429"} <= set(operation["responses"])
