"""Who may do what, on a real server: keys and roles, revocation and expiry, the failed-auth throttle,
and authentication turned off."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.integration.support import SECRET, Keys, WorpenServer, accepted, bearer, heartbeat

pytestmark = pytest.mark.integration

PROTECTED = [
    ("GET", "/api/v1/agents"),
    ("GET", "/api/v1/agents/bee-001"),
    ("POST", "/api/v1/agents/sync"),
    ("POST", "/api/v1/internal/heartbeat"),
    ("GET", "/api/v1/apikeys"),
    ("POST", "/api/v1/apikeys"),
    ("DELETE", "/api/v1/apikeys/0123456789ab"),
    ("GET", "/metrics"),
    ("GET", "/metrics/fleet"),
    ("GET", "/schema/openapi.json"),
]
BODIES: dict[str, object] = {
    "/api/v1/agents/sync": {"target": "all"},
    "/api/v1/internal/heartbeat": {"id": "bee-001", "cpu": 1, "ram": 1},
    "/api/v1/apikeys": {"name": "x", "role": "viewer"},
}


def call(client: httpx.Client, method: str, path: str) -> httpx.Response:
    body = BODIES.get(path) if method == "POST" else None
    return client.request(method, path, json=body)


def unauthenticated(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["status"] == 401
    detail: str = body["detail"]
    return detail


def forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["status"] == 403


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_but_health_needs_a_key(fleet_server: WorpenServer, method: str, path: str) -> None:
    with fleet_server.client() as anonymous:
        detail = unauthenticated(call(anonymous, method, path))

    assert "Authorization" in detail


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer wpn_thisKeyWasNeverIssuedByAnyWorpenServer000", id="unknown-key"),
        pytest.param("Bearer garbage", id="garbage"),
        pytest.param("Bearer", id="bearer-without-a-key"),
        pytest.param("Basic d2hvOmFtaQ==", id="basic-auth"),
        pytest.param("wpn_thisKeyWasNeverIssuedByAnyWorpenServer000", id="no-scheme"),
    ],
)
def test_a_key_that_is_not_a_valid_bearer_key_is_a_401(
    fleet_server: WorpenServer, authorization: str
) -> None:
    with fleet_server.client() as client:
        response = client.get("/api/v1/agents", headers={"Authorization": authorization})

    unauthenticated(response)


def test_a_viewer_can_read_but_not_operate_report_or_manage_keys(
    fleet_server: WorpenServer, keys: Keys
) -> None:
    with fleet_server.client(keys.viewer.secret) as viewer:
        assert viewer.get("/api/v1/agents").status_code == 200
        forbidden(viewer.post("/api/v1/agents/sync", json={"target": "all"}))
        forbidden(heartbeat(viewer, "role-viewer"))
        forbidden(viewer.get("/api/v1/apikeys"))
        forbidden(viewer.post("/api/v1/apikeys", json={"name": "mine", "role": "admin"}))
        forbidden(viewer.delete(f"/api/v1/apikeys/{keys.viewer.id}"))


def test_an_operator_can_sync_but_not_manage_keys(fleet_server: WorpenServer, keys: Keys) -> None:
    with fleet_server.client(keys.operator.secret) as operator:
        assert operator.get("/api/v1/agents").status_code == 200
        synced = operator.post("/api/v1/agents/sync", json={"target": "all"})
        assert synced.status_code == 200, synced.text
        assert synced.json()["status"] == "SYNCED"
        forbidden(operator.get("/api/v1/apikeys"))
        forbidden(operator.post("/api/v1/apikeys", json={"name": "mine", "role": "admin"}))
        forbidden(operator.delete(f"/api/v1/apikeys/{keys.viewer.id}"))


def test_an_agent_key_reports_only_for_its_own_agents_and_reads_nothing(
    fleet_server: WorpenServer, keys: Keys
) -> None:
    with fleet_server.client(keys.agent.secret) as agent:
        assert accepted(heartbeat(agent, "bee-001"))["status"] == "ONLINE"
        forbidden(heartbeat(agent, "bee-002"))
        forbidden(agent.get("/api/v1/agents"))
        forbidden(agent.get("/api/v1/agents/bee-001"))
        forbidden(agent.get("/metrics"))
        forbidden(agent.post("/api/v1/agents/sync", json={"target": "all"}))
        forbidden(agent.get("/api/v1/apikeys"))

    with fleet_server.client(keys.admin) as admin:
        assert admin.get("/api/v1/agents/bee-002").status_code == 404  # the refused report left no trace


def test_an_admin_creates_lists_and_revokes_keys_over_the_api(admin: httpx.Client) -> None:
    created = admin.post("/api/v1/apikeys", json={"name": "ci", "role": "operator", "expiresIn": "30d"})
    assert created.status_code == 201, created.text
    key = created.json()
    secret = key["key"]
    assert SECRET.fullmatch(secret)
    assert (key["name"], key["role"], key["agents"], key["revokedAt"]) == ("ci", "operator", [], None)
    assert key["expiresAt"] is not None
    assert secret.startswith(key["prefix"])

    listing = admin.get("/api/v1/apikeys")
    assert listing.status_code == 200
    [listed] = [item for item in listing.json() if item["id"] == key["id"]]
    assert listed == {name: value for name, value in key.items() if name != "key"}
    assert secret not in listing.text
    assert all("key" not in item and "secretHash" not in item for item in listing.json())

    with httpx.Client(base_url=str(admin.base_url), headers=bearer(secret)) as ci:
        assert ci.post("/api/v1/agents/sync", json={"target": "all"}).status_code == 200

        revoked = admin.delete(f"/api/v1/apikeys/{key['id']}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revokedAt"] is not None
        assert "revoked" in unauthenticated(ci.post("/api/v1/agents/sync", json={"target": "all"}))


def test_an_agent_key_created_over_the_api_is_bound_to_its_agents(admin: httpx.Client) -> None:
    created = admin.post("/api/v1/apikeys", json={"name": "bee-100", "role": "agent", "agents": ["bee-100"]})
    assert created.status_code == 201, created.text

    with httpx.Client(base_url=str(admin.base_url), headers=bearer(created.json()["key"])) as agent:
        accepted(heartbeat(agent, "bee-100"))
        forbidden(heartbeat(agent, "bee-101"))


def test_a_key_revoked_over_the_api_is_refused_at_once(fleet_server: WorpenServer, keys: Keys) -> None:
    with fleet_server.client(keys.to_revoke_over_api.secret) as doomed:
        assert doomed.get("/api/v1/agents").status_code == 200  # known, and cached by the server

        with fleet_server.client(keys.admin) as admin:
            revoked = admin.delete(f"/api/v1/apikeys/{keys.to_revoke_over_api.id}")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["revokedAt"] is not None

        assert "revoked" in unauthenticated(doomed.get("/api/v1/agents"))


def test_a_key_created_with_the_cli_works_on_the_running_server(
    fleet_server: WorpenServer, keys: Keys
) -> None:
    # `keys` ran `worpen apikey create` while the server was up; the server never saw those keys before.
    with fleet_server.client(keys.operator.secret) as operator:
        response = operator.post("/api/v1/agents/sync", json={"target": "all"})

    assert response.status_code == 200, response.text


def test_an_expired_key_is_refused(fleet_server: WorpenServer, keys: Keys) -> None:
    # Created with `--expires 1s`; wait until at least 1.5 s have passed since its creation finished.
    time.sleep(max(0.0, keys.expiring_created + 1.5 - time.monotonic()))

    with fleet_server.client(keys.expiring.secret) as expired:
        assert "expired" in unauthenticated(expired.get("/api/v1/agents"))


def test_repeated_failed_authentication_from_one_client_is_throttled(throttled_server: WorpenServer) -> None:
    with throttled_server.client("wpn_notAKeyThisServerKnowsAbout0000000000000") as intruder:
        refusals = [intruder.get("/api/v1/agents").status_code for _ in range(5)]
        throttled = intruder.get("/api/v1/agents")

    assert refusals == [401] * 5
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["Retry-After"]) >= 1
    assert throttled.json()["status"] == 429
    with throttled_server.client() as anyone:
        assert anyone.get("/health").status_code == 200  # liveness is never throttled
        # Guessing is slowed down, callers are not: a valid key from the same address still passes,
        # and a request with no credential at all is told so (401), not throttled.
        admin = bearer(throttled_server.initial_admin_key())
        assert anyone.get("/api/v1/agents", headers=admin).status_code == 200
        missing = anyone.get("/api/v1/agents")
        assert missing.status_code == 401, missing.text
        assert "missing credential" in missing.json()["detail"]
        # No trusted proxy is configured, so X-Forwarded-For does not make a new client of a guesser.
        for forwarded in ("203.0.113.1", "203.0.113.2"):
            disguised = anyone.get(
                "/api/v1/agents",
                headers={
                    **bearer("wpn_notAKeyThisServerKnowsAbout0000000000000"),
                    "X-Forwarded-For": forwarded,
                },
            )
            assert disguised.status_code == 429, disguised.text
        assert anyone.get("/api/v1/agents", headers=admin).status_code == 200


def test_behind_a_trusted_proxy_failures_count_per_forwarded_client(proxied_server: WorpenServer) -> None:
    bad = bearer("wpn_notAKeyThisServerKnowsAbout0000000000000")
    with proxied_server.client() as proxy:
        first = [
            proxy.get("/api/v1/agents", headers={**bad, "X-Forwarded-For": "203.0.113.1"}).status_code
            for _ in range(6)
        ]
        other = proxy.get("/api/v1/agents", headers={**bad, "X-Forwarded-For": "203.0.113.2"})

    assert first == [401] * 5 + [429]
    assert other.status_code == 401, other.text


def test_authentication_cannot_be_turned_off_on_a_public_address(no_auth_public_server: WorpenServer) -> None:
    status = no_auth_public_server.wait_for_exit()

    assert status != 0
    assert "loopback" in no_auth_public_server.log()


def test_authentication_turned_off_on_loopback_serves_everyone_and_warns(
    no_auth_server: WorpenServer,
) -> None:
    with no_auth_server.client() as anonymous:
        assert accepted(heartbeat(anonymous, "open-001"))["status"] == "ONLINE"
        assert [agent["id"] for agent in anonymous.get("/api/v1/agents").json()] == ["open-001"]

    log = [json.loads(line) for line in no_auth_server.log().splitlines() if line.startswith("{")]
    assert any(entry.get("event") == "auth.disabled" and entry.get("level") == "warning" for entry in log)
    assert SECRET.search(no_auth_server.log()) is None  # no admin key is issued when nobody needs one
