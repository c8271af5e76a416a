"""Every request a real server gets is counted and logged, routed or not: unknown paths (under one route
label, however many a scanner tries), CORS preflights, and WebSockets refused before their handshake."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.integration.support import Keys, WorpenServer, logged, preflight

pytestmark = pytest.mark.integration

"""The origin fleet_server allows (support.FLEET_SETTINGS)."""
TERMINAL = "/api/v1/terminal/container/observed-nobody"

Series = tuple[str, str, str]
"""(method, route, status) of worpen_http_requests_total."""


def counted(admin: httpx.Client) -> dict[Series, float]:
    response = admin.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.labels["method"], sample.labels["route"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "worpen_http_requests"
        for sample in family.samples
        if sample.name == "worpen_http_requests_total"
    }


def added(before: dict[Series, float], after: dict[Series, float]) -> dict[Series, float]:
    """The series that grew, by how much (leaving out the /metrics reads themselves)."""
    return {
        series: value - before.get(series, 0)
        for series, value in after.items()
        if value > before.get(series, 0) and series[1] != "/metrics"
    }


def test_requests_to_unknown_paths_are_counted_under_one_route_label_and_logged(
    fleet_server: WorpenServer, admin: httpx.Client
) -> None:
    paths = [f"/wp-admin/scan-{n}.php" for n in range(5)] + ["/api/v1/nothing-here", "/api/v2/agents"]
    before = counted(admin)

    for n, path in enumerate(paths):
        response = admin.get(path, headers={"X-Request-ID": f"unknown-{n}"})
        assert response.status_code == 404, response.text
        assert response.json()["status"] == 404

    after = counted(admin)
    assert added(before, after) == {("GET", "unmatched", "404"): len(paths)}
    assert not any(path in route for path in paths for _, route, _ in after)
    for n, path in enumerate(paths):
        line = logged(fleet_server, f"unknown-{n}")
        assert (line["method"], line["path"], line["status"]) == ("GET", path, 404)


def test_a_cors_preflight_is_counted_and_logged(fleet_server: WorpenServer, admin: httpx.Client) -> None:
    before = counted(admin)

    response = preflight(fleet_server, "/api/v1/agents", **{"X-Request-ID": "preflight-1"})

    assert response.status_code in {200, 204}, response.text
    grew = added(before, counted(admin))
    assert [method for method, _, _ in grew] == ["OPTIONS"], grew
    assert sum(grew.values()) == 1
    line = logged(fleet_server, "preflight-1")
    assert (line["method"], line["path"], line["status"]) == (
        "OPTIONS",
        "/api/v1/agents",
        response.status_code,
    )


@pytest.mark.parametrize(
    ("case", "key", "origin", "code"),
    [
        pytest.param("foreign-origin", "operator", "http://evil.example", 4403, id="origin-refused"),
        pytest.param("no-key", None, None, 4401, id="no-key"),
        pytest.param("viewer-key", "viewer", None, 4401, id="role-refused"),
    ],
)
def test_a_refused_websocket_is_counted_and_logged_with_its_close_code(
    fleet_server: WorpenServer,
    keys: Keys,
    admin: httpx.Client,
    case: str,
    key: str | None,
    origin: str | None,
    code: int,
) -> None:
    secret = {"operator": keys.operator.secret, "viewer": keys.viewer.secret}.get(key or "")
    query = f"?access_token={secret}" if secret else ""
    before = counted(admin)

    with pytest.raises(InvalidStatus):
        connect(
            f"ws://127.0.0.1:{fleet_server.port}{TERMINAL}{query}",
            origin=None if origin is None else Origin(origin),
            additional_headers={"X-Request-ID": f"ws-{case}"},
            open_timeout=30,
        )

    grew = added(before, counted(admin))
    assert list(grew.values()) == [1], grew
    [(method, route, status)] = grew
    assert (method, status) == ("WEBSOCKET", str(code))
    assert route.startswith("/api/v1/terminal/container/")
    line = logged(fleet_server, f"ws-{case}")
    assert (line["method"], line["path"], line["status"]) == ("WEBSOCKET", TERMINAL, code)
