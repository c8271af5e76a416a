"""Live streams (Server-Sent Events) of the journal and the log against real servers: two followers, a
reconnect with Last-Event-ID after events were published in between and after a restart (nothing missed,
nothing twice), and a follower that stops reading is cut off with a last event saying why."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.docker_support import wait_for
from tests.integration.support import Servers, WorpenServer, heartbeat, start_server

pytestmark = pytest.mark.integration

STREAM = "/api/v1/logs/stream"
EVENTS = "/api/v1/events"
SHIP = "/api/v1/internal/logs"


@pytest.fixture(scope="module")
def slow_stream_server(servers: Servers) -> WorpenServer:
    """Cuts a follower off once more than 200 entries wait for it; pings idle streams every 0.2 s."""
    return servers.ready("slow_stream_server")


@dataclass(frozen=True)
class Message:
    id: int | None
    event: str
    data: dict[str, Any]


PING = Message(None, "ping", {})
"""What `messages` yields for a comment (the server's keep-alive)."""


def messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of a Server-Sent Events response as they arrive; PING for each comment."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            yield PING
        elif not line:
            if "data" in fields:
                event_id = fields.get("id")
                yield Message(
                    int(event_id) if event_id else None,
                    fields.get("event", "message"),
                    json.loads(fields["data"]),
                )
            fields = {}
        else:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def taken(stream: Iterator[Message], count: int) -> list[Message]:
    """The next `count` messages that are not pings."""
    found: list[Message] = []
    for message in stream:
        if message is not PING:
            found.append(message)
            if len(found) == count:
                break
    return found


def ship(client: httpx.Client, source: str, *texts: str) -> None:
    response = client.post(SHIP, json={"agentId": source, "lines": [{"message": text} for text in texts]})
    assert response.status_code == 201, response.text


def newest_log_id(client: httpx.Client) -> int:
    newest = client.get("/api/v1/logs", params={"limit": 1}).json()
    return int(newest[0]["id"]) if newest else 0


def test_two_followers_get_the_same_lines_in_the_same_order(admin: httpx.Client) -> None:
    source = f"bee-{secrets.token_hex(4)}"
    start = str(newest_log_id(admin))
    params = {"source": source}
    headers = {"Last-Event-ID": start}

    with (
        admin.stream("GET", STREAM, params=params, headers=headers) as one,
        admin.stream("GET", STREAM, params=params, headers=headers) as two,
    ):
        assert one.status_code == two.status_code == 200
        assert one.headers["content-type"].startswith("text/event-stream")
        ship(admin, source, "first", "second")
        ship(admin, source, "third")
        seen = [taken(messages(response), 3) for response in (one, two)]

    assert seen[0] == seen[1]
    assert [m.data["message"] for m in seen[0]] == ["first", "second", "third"]
    assert {m.event for m in seen[0]} == {"log"}
    assert [m.id for m in seen[0]] == [m.data["id"] for m in seen[0]]
    assert (seen[0][0].id or 0) > int(start)


def test_a_reconnect_with_last_event_id_gets_what_it_missed_then_the_live_ones(admin: httpx.Client) -> None:
    agents = [f"bee-{secrets.token_hex(4)}" for _ in range(4)]
    params = {"follow": "true", "types": "AgentRegistered"}

    def registered(agent_id: str) -> dict[str, Any] | None:
        found = [
            e
            for e in admin.get(EVENTS, params={"types": "AgentRegistered"}).json()
            if e["agentId"] == agent_id
        ]
        return found[0] if found else None

    heartbeat(admin, agents[0])
    seen = wait_for(lambda: registered(agents[0]), "the first registration to be recorded")
    heartbeat(admin, agents[1])  # while nobody follows
    heartbeat(admin, agents[2])
    wait_for(lambda: registered(agents[2]), "the missed registrations to be recorded")

    with admin.stream("GET", EVENTS, params=params, headers={"Last-Event-ID": str(seen["seq"])}) as response:
        stream = (m for m in messages(response) if m is not PING and m.data["agentId"] in agents)
        missed = taken(stream, 2)
        heartbeat(admin, agents[3])
        live = taken(stream, 1)

    got = [*missed, *live]
    assert [m.data["agentId"] for m in got] == agents[1:]
    assert [m.event for m in got] == ["AgentRegistered"] * 3
    assert [m.id for m in got] == [m.data["seq"] for m in got]
    assert sorted({m.data["seq"] for m in got}) == [m.data["seq"] for m in got]  # in order, none twice


def test_followers_resume_across_a_restart_without_a_gap_or_a_duplicate(tmp_path: Path) -> None:
    database = tmp_path / "worpen.db"
    settings = {"WORPEN_DOCKER_HOSTS": "none", "WORPEN_STREAM_PING_SECONDS": "0.2"}
    first = start_server(database, settings)
    key = first.initial_admin_key()
    try:
        with first.client(key) as client:
            ship(client, "bee-restart", "line 1")
            seen_line = newest_log_id(client)
            ship(client, "bee-restart", "line 2", "line 3")  # nobody follows
            heartbeat(client, "bee-before")
            before = wait_for(
                lambda: [e for e in client.get(EVENTS).json() if e["type"] == "AgentRegistered"],
                "the registration before the restart to be recorded",
            )
            with client.stream("GET", STREAM, params={"source": "bee-restart"}) as followed:
                stream = messages(followed)
                assert next(stream) is PING
                first.stop_async()  # the server drains: the stream ends rather than hold the shutdown
                assert [m for m in stream if m is not PING] == []
            assert first.wait_for_exit() == 0
    finally:
        first.stop()
    second = start_server(database, settings)
    try:
        with second.client(key) as client:
            ship(client, "bee-restart", "line 4")
            heartbeat(client, "bee-after")
            with (
                client.stream(
                    "GET", STREAM, params={"source": "bee-restart"}, headers={"Last-Event-ID": str(seen_line)}
                ) as lines,
                client.stream(
                    "GET",
                    EVENTS,
                    params={"follow": "true", "types": "AgentRegistered"},
                    headers={"Last-Event-ID": str(before[0]["seq"])},
                ) as events,
            ):
                line_stream, event_stream = messages(lines), messages(events)
                caught_up = taken(line_stream, 3)
                registered_after = taken(event_stream, 1)
                ship(client, "bee-restart", "line 5")
                heartbeat(client, "bee-live")
                live_line = taken(line_stream, 1)
                live_event = taken(event_stream, 1)
            kept = [e["agentId"] for e in client.get(EVENTS, params={"types": "AgentRegistered"}).json()]
    finally:
        second.stop()

    assert [m.data["message"] for m in [*caught_up, *live_line]] == ["line 2", "line 3", "line 4", "line 5"]
    line_ids = [m.data["id"] for m in [*caught_up, *live_line]]
    assert line_ids == sorted(set(line_ids))
    assert [m.data["agentId"] for m in [*registered_after, *live_event]] == ["bee-after", "bee-live"]
    assert kept == ["bee-before", "bee-after", "bee-live"]  # the journal outlived the first process


def test_a_follower_that_stops_reading_is_cut_off_with_a_last_event_saying_why(
    slow_stream_server: WorpenServer,
) -> None:
    key = slow_stream_server.initial_admin_key()
    source = f"bee-{secrets.token_hex(4)}"
    with (
        slow_stream_server.client(key) as shipper,
        slow_stream_server.client(key) as follower,
        follower.stream("GET", STREAM, params={"source": source}) as response,
    ):
        stream = messages(response)
        assert next(stream) is PING  # following; now it stops reading
        line = "x" * 8000
        batches = 40
        for batch in range(batches):
            ship(shipper, source, *(f"{batch} {n} {line}" for n in range(100)))
        received = list(stream)  # reads again: what was sent before the cut-off, then the end

    logs = [m for m in received if m.event == "log"]
    assert received[-1].event == "error"
    assert "fell behind" in received[-1].data["detail"]
    assert "Last-Event-ID" in received[-1].data["detail"]
    assert 0 < len(logs) < batches * 100
    ids: list[int] = [m.data["id"] for m in logs]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing skipped before the cut-off
    with (
        slow_stream_server.client(key) as client,
        client.stream(
            "GET", STREAM, params={"source": source}, headers={"Last-Event-ID": str(ids[-1])}
        ) as resumed,
    ):
        [next_one] = taken(messages(resumed), 1)
    assert next_one.id == ids[-1] + 1
