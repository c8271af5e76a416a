"""The heartbeat route on a real server: a heartbeat that changes nothing is logged at debug level only,
and the lean path that takes most heartbeats (worpen_api.http.fleet.intake) answers exactly as the
Litestar route behind it, which still serves requests from browsers (those with an Origin header)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.support import (
    COCKPIT,
    Keys,
    WorpenServer,
    accepted,
    bearer,
    logged,
    request_lines,
)

pytestmark = pytest.mark.integration

HEARTBEAT = "/api/v1/internal/heartbeat"


def beat(
    client: httpx.Client, agent_id: str, request_id: str, origin: str | None = None, **fields: object
) -> httpx.Response:
    """A heartbeat sent with this X-Request-ID (and Origin), so that its log line can be found."""
    headers = {"X-Request-ID": request_id, **({"Origin": origin} if origin else {})}
    return client.post(HEARTBEAT, json={"id": agent_id, "cpu": 10.0, "ram": 20.0, **fields}, headers=headers)


def test_a_heartbeat_that_changes_nothing_is_not_logged_at_info_level(
    fleet_server: WorpenServer, admin: httpx.Client
) -> None:
    registered = beat(admin, "quiet-001", "quiet-registered")
    routine = beat(admin, "quiet-001", "quiet-routine")
    routine_from_browser = beat(admin, "quiet-001", "quiet-cors", COCKPIT)
    transition = beat(admin, "quiet-001", "quiet-transition", status="CRITICAL")
    refused = beat(admin, "quiet-001", "quiet-refused", cpu=250.0)
    last = beat(admin, "quiet-002", "quiet-last")

    assert accepted(registered)["status"] == "ONLINE"
    accepted(routine)
    accepted(routine_from_browser)
    assert accepted(transition)["status"] == "CRITICAL"
    assert refused.status_code == 422
    accepted(last)
    for request_id in ("quiet-registered", "quiet-transition", "quiet-refused", "quiet-last"):
        assert logged(fleet_server, request_id)["level"] == "info"
    # Requests on one connection are logged in order: the last one is written, so the others would be.
    quiet = {"quiet-routine", "quiet-cors"}
    assert not [line for line in request_lines(fleet_server) if line["request_id"] in quiet]


def test_at_debug_level_every_heartbeat_is_logged(debug_server: WorpenServer) -> None:
    with debug_server.client(debug_server.initial_admin_key()) as admin:
        accepted(beat(admin, "debug-001", "debug-registered"))
        accepted(beat(admin, "debug-001", "debug-routine"))

    assert logged(debug_server, "debug-registered")["level"] == "info"
    routine = logged(debug_server, "debug-routine")
    assert routine["level"] == "debug"
    assert (routine["method"], routine["path"], routine["status"]) == ("POST", HEARTBEAT, 202)


FIFTY_MEGABYTES = b'{"id": "same-big", "cpu": 1, "ram": 1, "name": "' + b"x" * (50 * 1024 * 1024) + b'"}'


@pytest.mark.parametrize(
    ("body", "key", "status"),
    [
        pytest.param(b'{"id": "same-ok", "cpu": 1, "ram": 2}', "admin", 202, id="accepted"),
        pytest.param(b'{"id": "same-lax", "cpu": "1.5", "ram": 2}', "admin", 202, id="number-in-a-string"),
        pytest.param(b'{"id": "same-x", "cpu": 1, "ram": 2, "extra": 1}', "admin", None, id="unknown-field"),
        pytest.param(b'{"id": "same-bad", "cpu": 1,', "admin", 400, id="malformed-json"),
        pytest.param(b'{"id": "same-bad", "cpu": 250, "ram": 1}', "admin", 422, id="cpu-above-100"),
        pytest.param(b'{"cpu": 1, "ram": 1}', "admin", 422, id="missing-id"),
        pytest.param(b"", "admin", 422, id="empty-body"),
        pytest.param(b"null", "admin", 422, id="null"),
        pytest.param(b'{"id": "bee-002", "cpu": 1, "ram": 2}', "agent", 403, id="another-agents-id"),
        pytest.param(b'{"id": "same-anon", "cpu": 1, "ram": 2}', None, 401, id="no-key"),
        pytest.param(
            b'{"id": "same-anon", "cpu": 1, "ram": 2}', "wpn_not-a-key-at-all", 401, id="unknown-key"
        ),
        pytest.param(b'{"id": "same-viewer", "cpu": 1, "ram": 2}', "viewer", 403, id="viewer-key"),
        pytest.param(FIFTY_MEGABYTES, "admin", 413, id="body-too-large"),
    ],
)
def test_the_lean_path_answers_as_the_litestar_route_does(
    fleet_server: WorpenServer, keys: Keys, body: bytes, key: str | None, status: int | None
) -> None:
    secret = {"admin": keys.admin, "agent": keys.agent.secret, "viewer": keys.viewer.secret}.get(
        key or "", key
    )
    headers = {"Content-Type": "application/json", **(bearer(secret) if secret else {})}

    with httpx.Client(base_url=fleet_server.url, timeout=60) as client:
        lean = client.post(HEARTBEAT, content=body, headers=headers)
        through_litestar = client.post(HEARTBEAT, content=body, headers={**headers, "Origin": COCKPIT})

    assert through_litestar.headers["access-control-allow-origin"] == COCKPIT  # it did go through CORS
    if status is not None:
        assert lean.status_code == status, lean.text
    assert lean.status_code == through_litestar.status_code, (lean.text, through_litestar.text)
    assert lean.json() == through_litestar.json()
    assert set(lean.json()) == (
        {"status", "code", "detail", "field"}
        if lean.status_code >= 400
        else {"nextHeartbeatSeconds", "status"}
    )
    for header in ("content-type", "www-authenticate", "retry-after"):
        assert lean.headers.get(header) == through_litestar.headers.get(header), header
