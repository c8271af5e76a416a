"""The main flows through a real `worpen serve`: heartbeats, the agent views, statuses, sync, and the
HTTP surface around them (health, CORS, request ids, metrics, the OpenAPI schema)."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.docker_support import wait_for
from tests.integration.support import (
    COCKPIT,
    CRITICAL_HEARTBEATS,
    DEADLINE_SECONDS,
    Keys,
    WorpenServer,
    accepted,
    heartbeat,
    preflight,
)

pytestmark = pytest.mark.integration


def agent(client: httpx.Client, agent_id: str) -> dict[str, object]:
    response = client.get(f"/api/v1/agents/{agent_id}")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def listed_ids(client: httpx.Client, **params: str | int) -> list[str]:
    response = client.get("/api/v1/agents", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


def test_health_answers_plain_text_ok_without_a_key(fleet_server: WorpenServer) -> None:
    with fleet_server.client() as anonymous:
        response = anonymous.get("/health")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "OK"


def test_a_heartbeat_is_accepted_with_the_agents_status_and_when_to_report_next(admin: httpx.Client) -> None:
    body = accepted(heartbeat(admin, "flow-first", cpu=12.5, ram=40.0))

    assert body == {"nextHeartbeatSeconds": body["nextHeartbeatSeconds"], "status": "ONLINE"}
    assert isinstance(body["nextHeartbeatSeconds"], int)
    assert body["nextHeartbeatSeconds"] >= 1


def test_a_reported_agent_is_listed_and_described_with_its_telemetry(admin: httpx.Client) -> None:
    accepted(
        heartbeat(
            admin,
            "flow-listed",
            cpu=12.5,
            ram=40.25,
            name="edge one",
            ip="10.0.0.7",
            os="linux",
            version="1.2.3",
            uptimeSeconds=3600,
            disk=55.5,
            netRxBytes=1000,
            netTxBytes=2000,
            peers=["flow-first"],
        )
    )

    listing = admin.get("/api/v1/agents", params={"limit": 1000})
    assert listing.status_code == 200
    assert isinstance(listing.json(), list)  # a bare array, not an envelope
    [listed] = [item for item in listing.json() if item["id"] == "flow-listed"]
    assert listed["status"] == "ONLINE"
    assert listed["reportedStatus"] == "ONLINE"
    assert (listed["cpuLoad"], listed["memoryLoad"]) == (12.5, 40.25)
    assert (listed["name"], listed["ip"], listed["os"], listed["version"]) == (
        "edge one",
        "10.0.0.7",
        "linux",
        "1.2.3",
    )
    # The cockpit renders "{peers} peers" and shows uptime as text: a count and a short string, with the
    # ids and the number beside them.
    assert (listed["uptime"], listed["uptimeSeconds"]) == ("1h", 3600)
    assert (listed["peers"], listed["peerIds"]) == (1, ["flow-first"])
    assert isinstance(listed["lastSeen"], str)
    assert "telemetry" not in listed

    detail = agent(admin, "flow-listed")
    assert {key: value for key, value in detail.items() if key != "telemetry"} == listed
    assert detail["telemetry"] == {
        "at": listed["lastSeen"],
        "cpu": 12.5,
        "ram": 40.25,
        "disk": 55.5,
        "netRxBytes": 1000,
        "netTxBytes": 2000,
        "uptimeSeconds": 3600,
    }


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (45, "45s"), (720, "12m"), (3700, "1h 1m"), (273_659, "3d 4h"), (1_728_000, "2w 6d")],
)
def test_uptime_is_shown_in_its_two_largest_units(admin: httpx.Client, seconds: int, shown: str) -> None:
    accepted(heartbeat(admin, f"uptime-{seconds}", uptimeSeconds=seconds))

    described = agent(admin, f"uptime-{seconds}")

    assert (described["uptime"], described["uptimeSeconds"]) == (shown, seconds)
    assert (described["peers"], described["peerIds"]) == (0, [])


def test_the_status_filter_lists_only_agents_in_that_status(admin: httpx.Client) -> None:
    accepted(heartbeat(admin, "filter-calm"))
    assert accepted(heartbeat(admin, "filter-hot", status="CRITICAL"))["status"] == "CRITICAL"

    critical = admin.get("/api/v1/agents", params={"status": "CRITICAL", "limit": 1000}).json()
    online = admin.get("/api/v1/agents", params={"status": "ONLINE", "limit": 1000}).json()

    assert "filter-hot" in [item["id"] for item in critical]
    assert "filter-calm" not in [item["id"] for item in critical]
    assert {item["status"] for item in critical} == {"CRITICAL"}
    assert "filter-calm" in [item["id"] for item in online]
    assert "filter-hot" not in [item["id"] for item in online]
    assert {item["status"] for item in online} == {"ONLINE"}


def test_pages_walked_with_the_next_cursor_header_hold_every_agent_once_in_id_order(
    admin: httpx.Client,
) -> None:
    ours = [f"page-{number}" for number in range(5)]
    for agent_id in reversed(ours):
        accepted(heartbeat(admin, agent_id))

    walked: list[str] = []
    page_sizes: list[int] = []
    params: dict[str, str | int] = {"limit": 2}
    for _ in range(10_000):  # bounded: the fleet is far smaller
        response = admin.get("/api/v1/agents", params=params)
        assert response.status_code == 200, response.text
        walked += [item["id"] for item in response.json()]
        page_sizes.append(len(response.json()))
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            break
        params = {"limit": 2, "cursor": cursor}

    everyone = listed_ids(admin)
    assert walked == everyone
    assert walked == sorted(set(walked))
    assert set(ours) <= set(walked)
    assert all(size == 2 for size in page_sizes[:-1])
    assert 1 <= page_sizes[-1] <= 2


def test_an_unknown_agent_is_a_404_with_a_json_body(admin: httpx.Client) -> None:
    response = admin.get("/api/v1/agents/nobody-here")

    assert response.status_code == 404
    assert response.json() == {
        "status": 404,
        "code": "not_found",
        "detail": "agent 'nobody-here' not found",
        "field": None,
    }


def test_sync_of_all_agents_asks_those_connected_over_the_command_channel(admin: httpx.Client) -> None:
    accepted(heartbeat(admin, "sync-one"))

    response = admin.post("/api/v1/agents/sync", json={"target": "all"})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "SYNCED",
        "agents": 0,  # heartbeats over REST open no command channel
        "acknowledged": 0,
        "missing": [],
        "wentOffline": [],
    }


def test_sync_needs_no_body_since_it_is_harmless(admin: httpx.Client) -> None:
    response = admin.post("/api/v1/agents/sync")  # what the cockpit sends

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "SYNCED"


def test_sync_of_one_agent_reports_one(admin: httpx.Client) -> None:
    accepted(heartbeat(admin, "sync-single"))

    response = admin.post("/api/v1/agents/sync", json={"target": "sync-single"})

    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "SYNCED",
        "agents": 1,
        "acknowledged": 0,
        "missing": ["sync-single"],
        "wentOffline": [],
    }


def test_sustained_pressure_makes_an_agent_critical_and_as_many_calm_heartbeats_bring_it_back(
    admin: httpx.Client,
) -> None:
    def statuses(cpu: float) -> list[object]:
        beats = [heartbeat(admin, "flow-pressure", cpu=cpu) for _ in range(CRITICAL_HEARTBEATS)]
        return [accepted(beat)["status"] for beat in beats]

    hot = statuses(95.0)
    assert hot == ["ONLINE"] * (CRITICAL_HEARTBEATS - 1) + ["CRITICAL"]
    assert agent(admin, "flow-pressure")["status"] == "CRITICAL"

    calm = statuses(20.0)
    assert calm == ["CRITICAL"] * (CRITICAL_HEARTBEATS - 1) + ["ONLINE"]
    assert agent(admin, "flow-pressure")["status"] == "ONLINE"


def test_high_memory_alone_is_pressure_too(admin: httpx.Client) -> None:
    statuses = [
        accepted(heartbeat(admin, "flow-memory", cpu=5.0, ram=90.0))["status"]
        for _ in range(CRITICAL_HEARTBEATS)
    ]

    assert statuses[-1] == "CRITICAL"


def test_an_agent_reporting_itself_critical_is_critical_at_once(admin: httpx.Client) -> None:
    accepted(heartbeat(admin, "flow-self-critical"))

    assert accepted(heartbeat(admin, "flow-self-critical", status="CRITICAL"))["status"] == "CRITICAL"
    shown = agent(admin, "flow-self-critical")
    assert (shown["status"], shown["reportedStatus"]) == ("CRITICAL", "CRITICAL")


def test_an_agent_that_stops_reporting_goes_offline_after_the_ttl_without_anyone_asking(
    short_ttl_server: WorpenServer,
) -> None:
    with short_ttl_server.client(short_ttl_server.initial_admin_key()) as client:
        first = accepted(heartbeat(client, "flow-silent"))
        assert first["status"] == "ONLINE"
        assert first["nextHeartbeatSeconds"] == 1  # never beyond half the TTL, and at least a second

        deadline = time.monotonic() + DEADLINE_SECONDS
        status = agent(client, "flow-silent")["status"]
        while status != "OFFLINE" and time.monotonic() < deadline:
            time.sleep(0.1)
            status = agent(client, "flow-silent")["status"]

        assert status == "OFFLINE"
        offline = client.get("/api/v1/agents", params={"status": "OFFLINE"}).json()
        assert [item["id"] for item in offline] == ["flow-silent"]
        # A heartbeat brings it back.
        assert accepted(heartbeat(client, "flow-silent"))["status"] == "ONLINE"


def test_a_cors_preflight_is_answered_without_a_key(fleet_server: WorpenServer) -> None:
    response = preflight(fleet_server, "/api/v1/agents")

    assert response.status_code in {200, 204}, response.text
    assert response.headers["access-control-allow-origin"] == COCKPIT
    assert "GET" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()


def test_a_page_read_from_an_allowed_origin_exposes_the_next_cursor(admin: httpx.Client) -> None:
    accepted(heartbeat(admin, "cors-a"))
    accepted(heartbeat(admin, "cors-b"))

    response = admin.get("/api/v1/agents", params={"limit": 1}, headers={"Origin": COCKPIT})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == COCKPIT
    assert "x-next-cursor" in response.headers["access-control-expose-headers"].lower()
    assert "X-Next-Cursor" in response.headers


def test_an_origin_that_is_not_configured_is_not_allowed(fleet_server: WorpenServer) -> None:
    with fleet_server.client() as anonymous:
        response = anonymous.options(
            "/api/v1/agents",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
        )

    assert response.headers.get("access-control-allow-origin") not in {"http://evil.example", "*"}


def test_the_request_id_sent_is_echoed_and_one_is_made_when_none_is_sent(admin: httpx.Client) -> None:
    echoed = admin.get("/api/v1/agents", params={"limit": 1}, headers={"X-Request-ID": "trace-4711"})
    made_first = admin.get("/api/v1/agents", params={"limit": 1})
    made_second = admin.get("/api/v1/agents", params={"limit": 1})

    assert echoed.headers["X-Request-ID"] == "trace-4711"
    assert made_first.headers["X-Request-ID"]
    assert made_first.headers["X-Request-ID"] != made_second.headers["X-Request-ID"]


def test_the_request_id_is_echoed_on_errors_too(fleet_server: WorpenServer) -> None:
    with fleet_server.client() as anonymous:
        response = anonymous.get("/api/v1/agents", headers={"X-Request-ID": "trace-401"})

    assert response.status_code == 401
    assert response.headers["X-Request-ID"] == "trace-401"


def test_metrics_are_prometheus_text_for_a_viewer(
    fleet_server: WorpenServer, keys: Keys, admin: httpx.Client
) -> None:
    accepted(heartbeat(admin, "metrics-one"))

    with fleet_server.client(keys.viewer.secret) as viewer:
        response = viewer.get("/metrics")

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    [ingested] = families["worpen_heartbeats_ingested"].samples
    assert ingested.value >= 1
    by_status = {sample.labels["status"]: sample.value for sample in families["worpen_agents"].samples}
    assert set(by_status) == {"ONLINE", "OFFLINE", "CRITICAL", "HEALING"}
    assert sum(by_status.values()) == len(admin.get("/api/v1/agents", params={"limit": 1000}).json())
    requests = {
        (sample.labels["method"], sample.labels["route"], sample.labels["status"]): sample.value
        for sample in families["worpen_http_requests"].samples
        if sample.name == "worpen_http_requests_total"
    }
    assert requests[("POST", "/api/v1/internal/heartbeat", "202")] >= 1
    [depth] = families["worpen_event_bus_queue_depth"].samples
    assert depth.value >= 0
    followers = {sample.labels["stream"] for sample in families["worpen_stream_followers"].samples}
    assert followers == {"events", "logs"}
    assert {"worpen_log_lines_ingested", "worpen_events_dropped"} <= set(families)
    assert {
        "worpen_automation_events",
        "worpen_automation_runs",
        "worpen_automation_queued",
        "worpen_automation_claims_refused",
    } <= set(families)
    pipelines = {"worpen_pipeline_runs_driven", "worpen_pipeline_failures", "worpen_pipeline_log_followers"}
    assert pipelines <= set(families)

    def journaled() -> float:
        metrics = viewer_metrics(fleet_server, keys)
        [recorded] = metrics["worpen_events_recorded"].samples
        return recorded.value

    assert wait_for(journaled, "metrics-one's registration in the journal") >= 1


def viewer_metrics(server: WorpenServer, keys: Keys) -> dict[str, Metric]:
    with server.client(keys.viewer.secret) as viewer:
        response = viewer.get("/metrics")
    assert response.status_code == 200, response.text
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def test_metrics_need_a_key(fleet_server: WorpenServer) -> None:
    with fleet_server.client() as anonymous:
        response = anonymous.get("/metrics")

    assert response.status_code == 401
    assert response.json()["status"] == 401


def test_the_openapi_schema_lists_every_route(fleet_server: WorpenServer, keys: Keys) -> None:
    with fleet_server.client(keys.viewer.secret) as viewer:
        response = viewer.get("/schema/openapi.json")

    assert response.status_code == 200, response.text
    routes = {path: set(operations) for path, operations in response.json()["paths"].items()}
    assert routes == {
        "/health": {"get"},
        "/ready": {"get"},
        "/metrics": {"get"},
        "/metrics/fleet": {"get"},
        "/api/v1/dashboard/stats": {"get"},
        "/api/v1/dashboard/services": {"get"},
        "/api/v1/dashboard/network": {"get"},
        "/api/v1/dashboard/load": {"get"},
        "/api/v1/agents": {"get"},
        "/api/v1/agents/{agent_id}": {"get"},
        "/api/v1/agents/{agent_id}/telemetry": {"get"},
        "/api/v1/agents/sync": {"post"},
        "/api/v1/internal/heartbeat": {"post"},
        "/api/v1/apikeys": {"get", "post"},
        "/api/v1/apikeys/{key_id}": {"delete"},
        "/api/v1/containers": {"get"},
        "/api/v1/containers/{container_id}": {"get", "delete"},
        "/api/v1/containers/{container_id}/logs": {"get"},
        "/api/v1/containers/{container_id}/start": {"post"},
        "/api/v1/containers/{container_id}/stop": {"post"},
        "/api/v1/containers/{container_id}/restart": {"post"},
        "/api/v1/images": {"get"},
        "/api/v1/images/pull": {"post"},
        "/api/v1/docker/prune": {"post"},
        "/api/v1/docker/engines": {"get"},
        "/api/v1/terminal/sessions": {"get"},
        "/api/v1/audit": {"get"},
        "/api/v1/events": {"get"},
        "/api/v1/logs": {"get"},
        "/api/v1/logs/stream": {"get"},
        "/api/v1/internal/logs": {"post"},
        "/api/v1/incidents": {"get"},
        "/api/v1/incidents/{incident_id}": {"get"},
        "/api/v1/incidents/{incident_id}/resolve": {"post"},
        "/api/v1/automation/channels": {"get", "post"},
        "/api/v1/automation/channels/{channel_id}": {"get", "put", "delete"},
        "/api/v1/automation/deliveries": {"get"},
        "/api/v1/automation/rules": {"get", "post"},
        "/api/v1/automation/rules/{rule_id}": {"get", "put", "delete"},
        "/api/v1/automation/rules/{rule_id}/run": {"post"},
        "/api/v1/automation/rules/{rule_id}/backtest": {"post"},
        "/api/v1/automation/backtest": {"post"},
        "/api/v1/automation/dry-run": {"post"},
        "/api/v1/automation/runs": {"get"},
        "/api/v1/automation/runs/{run_id}": {"get"},
        "/api/v1/pipelines": {"get"},
        "/api/v1/pipelines/definitions": {"get", "post"},
        "/api/v1/pipelines/definitions/{pipeline_id}": {"get", "put", "delete"},
        "/api/v1/pipelines/trigger": {"post"},
        "/api/v1/pipelines/runs": {"get"},
        "/api/v1/pipelines/runs/{run_id}": {"get"},
        "/api/v1/pipelines/runs/{run_id}/cancel": {"post"},
        "/api/v1/pipelines/runs/{run_id}/rerun": {"post"},
        "/api/v1/pipelines/runs/{run_id}/stages/{stage}/approve": {"post"},
        "/api/v1/pipelines/runs/{run_id}/stages/{stage}/decline": {"post"},
        "/api/v1/pipelines/runs/{run_id}/stages/{stage}/logs": {"get"},
        "/api/v1/pipelines/runs/{run_id}/stages/{stage}/logs/stream": {"get"},
        "/api/v1/pipelines/secrets": {"get", "post"},
        "/api/v1/pipelines/secrets/{name}": {"delete"},
        "/api/v1/pipelines/webhook": {"post"},
    }


def test_an_agents_telemetry_history_is_newest_first_whether_written_or_still_buffered(
    admin: httpx.Client,
) -> None:
    for cpu in (10.0, 20.0, 30.0):
        accepted(heartbeat(admin, "flow-history", cpu=cpu, ram=50.0, disk=12.5))

    first = admin.get("/api/v1/agents/flow-history/telemetry", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [sample["cpu"] for sample in first.json()] == [30.0, 20.0]
    assert set(first.json()[0]) == {"at", "cpu", "ram", "disk", "netRxBytes", "netTxBytes", "uptimeSeconds"}

    time.sleep(1.5)  # past the one-second flush: the same answer now comes from SQLite
    written = admin.get("/api/v1/agents/flow-history/telemetry")
    assert [sample["cpu"] for sample in written.json()] == [30.0, 20.0, 10.0]
    assert admin.get("/api/v1/agents/flow-nobody/telemetry").status_code == 404
    assert admin.get("/api/v1/agents/flow-history/telemetry", params={"limit": 0}).status_code == 422
