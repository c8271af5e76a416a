"""The central log against real servers: agents ship lines (bound to their ids, within limits), operators
filter, search and page through them; domain events show up as readable lines; retention keeps the log
within its budget."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.integration.docker_support import Containers, wait_for
from tests.integration.support import Keys, Servers, WorpenServer, heartbeat

pytestmark = pytest.mark.integration

SHIP = "/api/v1/internal/logs"
LOGS = "/api/v1/logs"


@pytest.fixture(scope="module")
def retention_server(servers: Servers) -> WorpenServer:
    """Keeps 8 KiB of log (and 30 days), checked every 0.1 s."""
    return servers.ready("retention_server")


@pytest.fixture(scope="module")
def agent(fleet_server: WorpenServer, keys: Keys) -> Any:
    """A client with the agent key bound to bee-001."""
    with fleet_server.client(keys.agent.secret) as client:
        yield client


def marker() -> str:
    """A word no other test's lines contain, to find this test's lines."""
    return f"zq{secrets.token_hex(5)}"


def ship(
    client: httpx.Client, agent_id: str, *lines: dict[str, Any], unit: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"agentId": agent_id, "lines": list(lines)}
    if unit is not None:
        body["unit"] = unit
    return client.post(SHIP, json=body)


def messages(client: httpx.Client, **params: Any) -> list[str]:
    response = client.get(LOGS, params=params)
    assert response.status_code == 200, response.text
    return [entry["message"] for entry in response.json()]


def test_shipped_lines_are_filtered_by_level_and_above_source_and_time(
    agent: httpx.Client, admin: httpx.Client
) -> None:
    word = marker()
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    shipped = ship(
        agent,
        "bee-001",
        {"message": f"{word} routine", "timestamp": an_hour_ago},
        {"message": f"{word} recovered", "level": "SUCCESS", "fields": {"attempt": 2, "ok": True}},
        {"message": f"{word} slow upstream", "level": "WARN"},
        {"message": f"{word} disk full", "level": "ERROR"},
        unit="web-1",
    )

    assert shipped.status_code == 201, shipped.text
    assert shipped.json() == {"accepted": 4}
    [newest, *_] = admin.get(LOGS, params={"q": word}).json()
    assert newest["source"] == "bee-001/web-1"
    assert newest["level"] == "ERROR"
    assert set(newest) == {"id", "timestamp", "level", "source", "message", "fields"}
    assert messages(admin, q=word) == [
        f"{word} disk full",
        f"{word} slow upstream",
        f"{word} recovered",
        f"{word} routine",
    ]
    assert messages(admin, q=word, level="SUCCESS") == [
        f"{word} disk full",
        f"{word} slow upstream",
        f"{word} recovered",
    ]
    assert messages(admin, q=word, level="WARN") == [f"{word} disk full", f"{word} slow upstream"]
    assert messages(admin, q=word, source="bee-001") == messages(admin, q=word, source="bee-001/web-1")
    assert messages(admin, q=word, source="bee-002") == []
    half_an_hour_ago = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    assert messages(admin, q=word, until=half_an_hour_ago) == [f"{word} routine"]
    assert len(messages(admin, q=word, since=half_an_hour_ago)) == 3
    recovered = admin.get(LOGS, params={"q": f"{word} recovered"}).json()
    assert [entry["fields"] for entry in recovered] == [{"attempt": 2, "ok": True}]


def test_full_text_queries_and_one_the_server_cannot_read(admin: httpx.Client) -> None:
    word = marker()
    assert (
        ship(
            admin, "bee-fts", {"message": f"{word} connection refused by upstream /var/run/app.sock"}
        ).status_code
        == 201
    )
    assert ship(admin, "bee-fts", {"message": f"{word} connection reset"}).status_code == 201

    assert messages(admin, q=f'{word} "refused by"') == [
        f"{word} connection refused by upstream /var/run/app.sock"
    ]
    assert len(messages(admin, q=f"{word} conn*")) == 2
    assert len(messages(admin, q=f"{word} AND (reset OR refused)")) == 2
    assert len(messages(admin, q=f"{word} NOT reset")) == 1
    assert len(messages(admin, q=f"{word} /var/run/app.sock")) == 1  # punctuation is no syntax error
    for unreadable in ['"unterminated', f"{word} AND", "(open", "*"]:
        refused = admin.get(LOGS, params={"q": unreadable})
        assert refused.status_code == 422, (unreadable, refused.text)
        assert (refused.json()["code"], refused.json()["field"]) == ("invalid_input", "q")


def test_pages_newest_first_are_stable_while_lines_keep_arriving(admin: httpx.Client) -> None:
    word = marker()
    shipped = [f"{word} line {n:02}" for n in range(30)]
    for chunk in range(0, 30, 10):
        assert (
            ship(admin, "bee-pages", *({"message": m} for m in shipped[chunk : chunk + 10])).status_code
            == 201
        )
    stop = threading.Event()

    def keep_shipping() -> None:
        n = 0
        while not stop.is_set():
            ship(admin, "bee-pages", {"message": f"{word} later {n}"})
            n += 1

    writer = threading.Thread(target=keep_shipping)
    first = admin.get(LOGS, params={"q": f"{word} line", "limit": 7})
    writer.start()
    try:
        pages = [first]
        while NEXT in pages[-1].headers:
            pages.append(
                admin.get(LOGS, params={"q": f"{word} line", "limit": 7, "cursor": pages[-1].headers[NEXT]})
            )
    finally:
        stop.set()
        writer.join()

    seen = [entry["message"] for page in pages for entry in page.json()]
    ids = [entry["id"] for page in pages for entry in page.json()]
    assert seen == shipped[::-1]  # all of them, once each, newest first
    assert ids == sorted(ids, reverse=True)
    assert [len(page.json()) for page in pages] == [7, 7, 7, 7, 2]
    assert len(messages(admin, q=f"{word} later", limit=1000)) >= 1


NEXT = "X-Next-Cursor"


def test_an_agent_key_ships_only_for_its_own_agents(agent: httpx.Client, admin: httpx.Client) -> None:
    word = marker()

    refused = ship(agent, "bee-002", {"message": f"{word} not mine"})

    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert "bee-002" in refused.json()["detail"]
    assert messages(admin, q=word) == []


def test_viewers_read_the_log_but_cannot_ship(fleet_server: WorpenServer, keys: Keys) -> None:
    with fleet_server.client(keys.viewer.secret) as viewer:
        assert viewer.get(LOGS).status_code == 200
        assert ship(viewer, "bee-001", {"message": "nope"}).status_code == 403
    with fleet_server.client() as anonymous:
        assert anonymous.get(LOGS).status_code == 401


def test_batches_beyond_the_limits_are_refused_with_an_error_body(agent: httpx.Client) -> None:
    too_many = ship(agent, "bee-001", *({"message": "x"} for _ in range(1001)))
    too_big = ship(agent, "bee-001", *({"message": "x" * 8000} for _ in range(140)))
    bad_level = ship(agent, "bee-001", {"message": "x", "level": "FATAL"})
    too_long = ship(agent, "bee-001", {"message": "x" * 8193})
    naive = ship(agent, "bee-001", {"message": "x", "timestamp": "2026-01-01T00:00:00"})
    before_year_one = ship(agent, "bee-001", {"message": "x", "timestamp": "0001-01-01T00:00:00+01:00"})

    assert (too_many.status_code, too_many.json()["code"]) == (413, "request_entity_too_large")
    assert "1000 lines" in too_many.json()["detail"]
    assert (too_big.status_code, too_big.json()["code"]) == (413, "request_entity_too_large")
    assert bad_level.status_code == 422
    assert bad_level.json()["field"] == "lines[0].level"
    assert too_long.status_code == 422
    assert naive.status_code == 422
    assert (before_year_one.status_code, before_year_one.json()["field"]) == (422, "lines[0].timestamp")


def test_times_out_of_range_are_refused_naming_them(admin: httpx.Client) -> None:
    for name in ("since", "until"):
        refused = admin.get(LOGS, params={name: "0001-01-01T00:00:00+01:00"})
        assert (refused.status_code, refused.json()["field"]) == (422, name)


def test_domain_events_read_as_lines_from_their_agent(agent: httpx.Client, admin: httpx.Client) -> None:
    agent_id = f"bee-{marker()}"
    assert heartbeat(admin, agent_id).status_code == 202

    line = wait_for(
        lambda: admin.get(LOGS, params={"source": agent_id}).json(), "the registration's line to be written"
    )

    assert [(e["level"], e["message"]) for e in line] == [("INFO", f"{agent_id} registered (ONLINE)")]
    assert line[0]["fields"]["event"] == "AgentRegistered"
    [event] = [
        e
        for e in admin.get("/api/v1/events", params={"types": "AgentRegistered"}).json()
        if e["agentId"] == agent_id
    ]
    assert line[0]["fields"]["eventId"] == event["seq"]


def test_an_audited_operation_is_an_event_and_a_line(admin: httpx.Client, containers: Containers) -> None:
    container = containers.run("sleep 600")
    short_id = str(container.id)[:12]

    assert admin.post(f"/api/v1/containers/{container.id}/stop", json={"timeout": 0}).status_code == 200

    def audited() -> list[dict[str, Any]]:
        events = admin.get("/api/v1/events", params={"types": "OperationAudited"}).json()
        return [e for e in events if e["action"] == "container.stop" and container.name in e["target"]]

    [event] = wait_for(audited, "the stop's outcome to be recorded")
    assert (event["outcome"], event["node"], event["error"]) == ("SUCCEEDED", "local", None)
    [line] = admin.get(LOGS, params={"source": "worpen", "q": container.name}).json()
    assert line["level"] == "SUCCESS"
    assert line["message"].endswith(f"container.stop {container.name} ({short_id}) on local succeeded")
    assert line["fields"] == {"event": "OperationAudited", "eventId": event["seq"]}
    stopped = wait_for(
        lambda: admin.get(LOGS, params={"source": "local", "q": f"{container.name} stopped"}).json(),
        "the engine's stop event to be written as a line",
    )
    assert [entry["message"] for entry in stopped] == [f"container {container.name} on local stopped"]


def test_retention_deletes_lines_past_their_age_and_the_oldest_beyond_the_size_budget(
    retention_server: WorpenServer,
) -> None:
    word = marker()
    long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    with retention_server.client(retention_server.initial_admin_key()) as client:
        assert (
            ship(client, "bee-old", {"message": f"{word} ancient", "timestamp": long_ago}).status_code == 201
        )
        assert ship(client, "bee-old", {"message": f"{word} recent"}).status_code == 201
        wait_for(lambda: messages(client, q=word) == [f"{word} recent"], "the 40-day-old line to be deleted")

        padding = "x" * 1000
        for n in range(20):  # about 1.2 KiB each in the 8 KiB budget
            assert ship(client, "bee-big", {"message": f"{word} big {n:02} {padding}"}).status_code == 201
        kept = wait_for(
            lambda: (found := messages(client, q=f"{word} big", limit=100)) and len(found) <= 7 and found,
            "the oldest lines beyond 8 KiB to be deleted",
        )

    assert kept[0].startswith(f"{word} big 19")
    assert [message.split()[2] for message in kept] == [f"{n:02}" for n in range(19, 19 - len(kept), -1)]


def test_a_line_may_carry_its_time_as_a_unix_time(agent: httpx.Client, admin: httpx.Client) -> None:
    word = marker()
    shipped = ship(agent, "bee-001", {"message": f"{word} from a syslog", "timestamp": 1_700_000_000.25})

    assert shipped.status_code == 201, shipped.text
    [entry] = admin.get(LOGS, params={"q": word}).json()
    assert datetime.fromisoformat(entry["timestamp"]) == datetime.fromtimestamp(1_700_000_000.25, UTC)
    assert ship(agent, "bee-001", {"message": "x", "timestamp": 1e12}).status_code == 422
