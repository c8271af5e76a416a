"""The dashboard against a real server fed by real heartbeats over HTTP and a real Docker engine running
services with a Compose label and a health check."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.integration.docker_support import SESSION, Containers, wait_for
from tests.integration.support import WorpenServer, heartbeat

HEALTH_CHECK = {"test": ["CMD", "sh", "-c", "sleep 0.05"], "interval": 300_000_000, "retries": 3}
"""A check every 0.3 s that takes at least 50 ms."""


def _stats(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/api/v1/dashboard/stats")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_stats_are_strings_computed_from_the_fleet(dashboard_server: WorpenServer) -> None:
    with dashboard_server.client(dashboard_server.initial_admin_key()) as client:
        for agent_id, cpu, version in [
            ("dash-a", 20.0, "2.1.0"),
            ("dash-b", 40.0, "2.0.3"),
            ("dash-c", 90.0, "1.9"),
        ]:
            assert heartbeat(client, agent_id, cpu, version=version).status_code == 202

        def c_offline() -> bool:
            heartbeat(client, "dash-a", 20.0)
            heartbeat(client, "dash-b", 40.0)
            time.sleep(0.2)
            return bool(client.get("/api/v1/agents/dash-c").json()["status"] == "OFFLINE")

        wait_for(c_offline, "dash-c to go OFFLINE while the others keep beating")
        stats = _stats(client)

    assert set(stats) == {"active_nodes", "throughput", "avg_load", "security_score", "detail"}
    assert all(isinstance(stats[key], str) and stats[key] for key in set(stats) - {"detail"})
    assert stats["active_nodes"] == "2"
    assert stats["avg_load"] == "30%"
    assert stats["throughput"].endswith("/s")
    assert stats["throughput"] != "0/s"
    detail = stats["detail"]
    assert detail["messagesPerSecond"] > 0
    assert detail["offlineAgents"] == {"count": 1, "penalty": 5, "maxPenalty": 25}
    assert detail["outdatedAgents"]["count"] == 2  # 2.0.3 and 1.9 are behind 2.1.0
    assert detail["adminKeysWithoutExpiry"]["count"] == 1  # the initial admin key
    assert detail["authDisabled"]["penalty"] == 0
    penalties = sum(item["penalty"] for item in detail.values() if isinstance(item, dict))
    assert stats["security_score"] == f"{100 - penalties}%"


def test_the_dashboard_needs_a_key(dashboard_server: WorpenServer) -> None:
    with dashboard_server.client() as client:
        for path in ("/api/v1/dashboard/stats", "/api/v1/dashboard/services"):
            assert client.get(path).status_code == 401


def test_services_group_containers_by_their_compose_service(
    dashboard_server: WorpenServer, containers: Containers
) -> None:
    service = f"gateway-{SESSION}"
    label = {"com.docker.compose.service": service, "com.docker.compose.project": "shop"}
    replicas = [
        containers.run(
            "while :; do :; done", name=f"shop-{service}-{n}", labels=label, healthcheck=HEALTH_CHECK
        )
        for n in (1, 2)
    ]
    with dashboard_server.client(dashboard_server.initial_admin_key()) as client:

        def ours() -> dict[str, Any] | None:
            response = client.get("/api/v1/dashboard/services")
            assert response.status_code == 200, response.text
            return next((s for s in response.json() if s["name"] == service), None)

        def sampled_healthy() -> dict[str, Any] | None:
            found = ours()
            ready = found and found["status"] == "HEALTHY" and found["load"] is not None and found["latency"]
            return found if ready else None

        found = wait_for(sampled_healthy, "both replicas healthy with a load and a latency")
        assert found["instances"] == 2
        assert found["nodes"] == ["local"]
        assert found["latency"] >= 50
        assert found["load"] > 0  # each replica spins: about one core each

        replicas[0].stop(timeout=0)
        warned = wait_for(
            lambda: (s := ours()) and s["status"] == "WARNING" and s, "one replica down: WARNING"
        )
        assert (warned["instances"], warned["containers"]) == (1, 2)

        replicas[1].stop(timeout=0)
        down = wait_for(lambda: (s := ours()) and s["status"] == "CRITICAL" and s, "both down: CRITICAL")
        assert (down["instances"], down["load"], down["latency"]) == (0, None, None)
