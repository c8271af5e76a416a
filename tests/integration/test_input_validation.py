"""Bad input to a real server: each is answered with the right 4xx and a JSON body naming the problem,
never with a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.support import accepted, heartbeat

pytestmark = pytest.mark.integration

HEARTBEAT = "/api/v1/internal/heartbeat"
VALID = {"id": "bad-input", "cpu": 10.0, "ram": 20.0}


CODES = {400: "bad_request", 404: "not_found", 413: "request_entity_too_large", 422: "invalid_input"}
"""The `code` of each status these tests meet: a 422 is `invalid_input` whether Litestar's validation or
the domain refused the value."""


def refused(response: httpx.Response, status: int) -> dict[str, object]:
    """The error body, after checking it has the one error shape and says `status` and its code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, object] = response.json()
    assert set(body) == {"status", "code", "detail", "field"}
    assert body["status"] == status
    assert body["code"] == CODES[status]
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def with_(**fields: object) -> dict[str, object]:
    return {**VALID, **fields}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(with_(cpu="high"), "cpu", id="cpu-is-a-string"),
        pytest.param(with_(cpu=True), "cpu", id="cpu-is-a-boolean"),
        pytest.param(with_(id=42), "id", id="id-is-a-number"),
        pytest.param(with_(peers="bee-002"), "peers", id="peers-is-not-a-list"),
        pytest.param(with_(uptimeSeconds=1.5), "uptimeSeconds", id="uptime-is-not-whole"),
        pytest.param(with_(cpu=250), "cpu", id="cpu-above-100"),
        pytest.param(with_(cpu=-1), "cpu", id="cpu-below-0"),
        pytest.param(with_(ram=100.5), "ram", id="ram-above-100"),
        pytest.param(with_(disk=150), "disk", id="disk-above-100"),
        pytest.param(with_(id="x" * 10_000), "id", id="id-of-10000-characters"),
        pytest.param(with_(id="x" * 129), "id", id="id-of-129-characters"),
        pytest.param(with_(id=""), "id", id="id-empty"),
        pytest.param(with_(id="bee 001"), "id", id="id-with-a-space"),
        pytest.param(with_(id="../etc/passwd"), "id", id="id-with-a-path"),
        pytest.param(with_(status="ASLEEP"), "status", id="unknown-status"),
        pytest.param(with_(status="online"), "status", id="status-in-lower-case"),
        pytest.param(with_(ip="999.1.1.1"), "ip", id="ip-out-of-range"),
        pytest.param(with_(ip="not an address"), "ip", id="ip-not-an-address"),
        pytest.param(with_(name="n" * 256), "name", id="name-too-long"),
        pytest.param(with_(uptimeSeconds=-5), "uptimeSeconds", id="negative-uptime"),
        pytest.param(with_(netRxBytes=-1), "netRxBytes", id="negative-counter"),
        pytest.param(with_(uptimeSeconds=2**63), "uptimeSeconds", id="uptime-beyond-64-bit"),
        pytest.param(with_(netTxBytes=2**64 - 1), "netTxBytes", id="counter-beyond-64-bit"),
        pytest.param(with_(peers=["bee-002", "not valid"]), "peers[1]", id="bad-peer-id"),
        pytest.param(with_(peers=[f"bee-{n}" for n in range(257)]), "peers", id="too-many-peers"),
        pytest.param({"cpu": 1, "ram": 1}, "id", id="missing-id"),
        pytest.param({"id": "bad-input", "ram": 1}, "cpu", id="missing-cpu"),
        pytest.param({"id": "bad-input", "cpu": 1}, "ram", id="missing-ram"),
    ],
)
def test_a_heartbeat_with_a_bad_field_is_a_422_naming_the_field(
    admin: httpx.Client, body: dict[str, object], field: str
) -> None:
    response = admin.post(HEARTBEAT, json=body)

    assert refused(response, 422)["field"] == field


def test_an_existing_agent_reporting_a_counter_beyond_64_bits_is_refused_too(admin: httpx.Client) -> None:
    accepted(heartbeat(admin, "bad-input-counter"))

    response = heartbeat(admin, "bad-input-counter", uptimeSeconds=2**63)

    assert refused(response, 422)["field"] == "uptimeSeconds"


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b'{"id": "bad-input", "cpu": 1,', id="truncated"),
        pytest.param(b"{id: bad-input}", id="not-json"),
        pytest.param(b'{"id": "bad-input", "cpu": NaN, "ram": 1}', id="nan"),
        pytest.param(b"\xff\xfe garbage", id="not-utf-8"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(admin: httpx.Client, content: bytes) -> None:
    response = admin.post(HEARTBEAT, content=content, headers={"Content-Type": "application/json"})

    assert refused(response, 400)["field"] is None


@pytest.mark.parametrize("path", [HEARTBEAT, "/api/v1/automation/dry-run", "/api/v1/automation/channels"])
def test_a_body_nested_deeper_than_json_decoding_goes_is_a_400(admin: httpx.Client, path: str) -> None:
    deep = b'{"script": "1", "mockContext": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = admin.post(path, content=deep, headers={"Content-Type": "application/json"})

    assert "nested too deeply" in str(refused(response, 400)["detail"])


@pytest.mark.parametrize("body", [[], None, 1, "bee-001", [VALID]])
def test_json_that_is_not_an_object_is_a_422(admin: httpx.Client, body: object) -> None:
    response = admin.post(HEARTBEAT, json=body)

    refused(response, 422)


def test_an_empty_body_is_refused_with_a_detail_about_the_body(admin: httpx.Client) -> None:
    response = admin.post(HEARTBEAT, content=b"", headers={"Content-Type": "application/json"})

    assert response.status_code in {400, 422}, response.text
    detail = str(refused(response, response.status_code)["detail"]).lower()
    assert any(word in detail for word in ("body", "empty", "json")), detail


def test_a_body_over_the_size_limit_is_a_413(admin: httpx.Client) -> None:
    fifty_megabytes = b'{"id": "bad-input", "cpu": 1, "ram": 1, "name": "' + b"x" * (50 * 1024 * 1024) + b'"}'

    response = admin.post(
        HEARTBEAT,
        content=fifty_megabytes,
        headers={"Content-Type": "application/json", "Content-Length": str(len(fifty_megabytes))},
    )

    refused(response, 413)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"limit": "0"}, "limit", id="limit-0"),
        pytest.param({"limit": "1001"}, "limit", id="limit-above-1000"),
        pytest.param({"limit": "-3"}, "limit", id="limit-negative"),
        pytest.param({"limit": "ten"}, "limit", id="limit-not-a-number"),
        pytest.param({"status": "bad"}, "status", id="status-unknown"),
        pytest.param({"status": "online"}, "status", id="status-lower-case"),
        pytest.param({"cursor": "!!!"}, "cursor", id="cursor-garbage"),
        pytest.param({"cursor": "c" * 300}, "cursor", id="cursor-too-long"),
    ],
)
def test_a_bad_query_parameter_is_a_422_naming_it(
    admin: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = admin.get("/api/v1/agents", params=params)

    assert refused(response, 422)["field"] == field


def test_an_over_long_agent_id_in_the_path_is_a_422(admin: httpx.Client) -> None:
    response = admin.get("/api/v1/agents/" + "a" * 300)

    refused(response, 422)


def test_an_over_long_key_id_in_the_path_is_a_422(admin: httpx.Client) -> None:
    response = admin.delete("/api/v1/apikeys/" + "k" * 300)

    refused(response, 422)


def test_revoking_an_unknown_key_is_a_404(admin: httpx.Client) -> None:
    response = admin.delete("/api/v1/apikeys/0123456789ab")

    refused(response, 404)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"target": ""}, 422, id="empty-target"),
        pytest.param({"target": "all", "force": True}, 422, id="unknown-field"),
        pytest.param({"target": 7}, 422, id="target-not-a-string"),
        pytest.param({"target": "nobody-here"}, 404, id="unknown-agent"),
    ],
)
def test_a_bad_sync_request_is_refused(admin: httpx.Client, body: dict[str, object], status: int) -> None:
    response = admin.post("/api/v1/agents/sync", json=body)

    refused(response, status)


def test_a_key_with_an_unknown_role_is_a_422_naming_the_role(admin: httpx.Client) -> None:
    response = admin.post("/api/v1/apikeys", json={"name": "root", "role": "root"})

    assert refused(response, 422)["field"] == "role"


# Heartbeats with well-typed fields over wide ranges (so they reach the domain and the database), the
# same with one field holding arbitrary JSON, and arbitrary JSON: the server must answer each with 202
# or a 4xx error body, never with a 5xx.
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_agent_id = st.from_regex(r"prop-[A-Za-z0-9._:-]{1,20}", fullmatch=True)
_percent = st.floats(min_value=0, max_value=100) | st.floats(allow_nan=False, allow_infinity=False)
_counter = st.integers(min_value=-10, max_value=10**6) | st.integers(min_value=2**62, max_value=2**65)
_required = {"id": _agent_id, "cpu": _percent, "ram": _percent}
_optional = {
    "status": st.sampled_from(["ONLINE", "OFFLINE", "CRITICAL", "HEALING", "online", ""]),
    "name": st.text(max_size=300),
    "ip": st.ip_addresses().map(str) | st.text(max_size=70),
    "os": st.text(max_size=300),
    "version": st.text(max_size=300),
    "uptimeSeconds": _counter,
    "disk": _percent,
    "netRxBytes": _counter,
    "netTxBytes": _counter,
    "peers": st.lists(_agent_id, max_size=5),
    "futureField": _json,
}
_heartbeats = st.fixed_dictionaries(_required, optional=_optional)
_heartbeats_with_junk = st.builds(
    lambda body, field, junk: {**body, field: junk},
    _heartbeats,
    st.sampled_from([*_required, *_optional]),
    _json,
)


@settings(max_examples=200, deadline=None)
@given(body=_heartbeats | _heartbeats_with_junk | _json)
def test_no_body_posted_as_a_heartbeat_gets_a_5xx(admin: httpx.Client, body: object) -> None:
    # `admin` is module-scoped: one client for every example, so no function-scoped fixture is reused
    # across examples (and Hypothesis' health check for that has nothing to warn about).
    response = admin.post(
        HEARTBEAT, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code < 500, f"{response.status_code} {response.text} for {body!r}"
    if response.status_code != 202:
        refused(response, response.status_code)


def test_a_key_expiring_beyond_the_calendar_is_refused_and_the_farthest_allowed_is_issued(
    admin: httpx.Client,
) -> None:
    too_far = admin.post("/api/v1/apikeys", json={"name": "far", "role": "viewer", "expiresIn": "426540w"})
    farthest = admin.post("/api/v1/apikeys", json={"name": "far", "role": "viewer", "expiresIn": "99999w"})

    assert refused(too_far, 422)["field"] == "expiresIn"
    assert farthest.status_code == 201, farthest.text
    admin.delete(f"/api/v1/apikeys/{farthest.json()['id']}")
