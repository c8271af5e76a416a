"""The journal and the log across replicas: two `worpen serve` replicas on one PostgreSQL database. A
follower on replica B gets, in order and each once, the events and log lines committed on replica A (and
on B); a follower that reconnects to the other replica with Last-Event-ID resumes with no gap and no
duplicate. The signal between replicas (LISTEN/NOTIFY) survives its connection being cut."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.docker_support import wait_for
from tests.integration.replica_support import admin_clients, replicas
from tests.integration.support import WorpenServer, heartbeat
from tests.integration.test_event_stream import PING, Message, messages, ship, taken
from tests.postgres_support import admin_url, create_database
from worpen_infra.bus.postgres_signal import PostgresJournalSignal

pytestmark = pytest.mark.integration

EVENTS = "/api/v1/events"
STREAM = "/api/v1/logs/stream"
SETTINGS = {"WORPEN_STREAM_PING_SECONDS": "0.2"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorpenServer]]:
    with replicas(tmp_path_factory.mktemp("replicas-journal"), 2, SETTINGS) as servers:
        yield servers


@pytest.fixture(scope="module")
def clients(pair: list[WorpenServer]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with admin_clients(pair) as (a, b):
        yield a, b


def newest_seq(client: httpx.Client) -> int:
    newest = client.get(EVENTS, params={"limit": 1}).json()
    return int(newest[-1]["seq"]) if newest else 0


def newest_log_id(client: httpx.Client) -> int:
    newest = client.get("/api/v1/logs", params={"limit": 1}).json()
    return int(newest[0]["id"]) if newest else 0


def stored(client: httpx.Client, after: int, agents: set[str]) -> list[dict[str, Any]]:
    """The registrations of `agents` the store holds above `after`, in order."""
    events = client.get(EVENTS, params={"after": after, "limit": 1000, "types": "AgentRegistered"}).json()
    return [event for event in events if event["agentId"] in agents]


def within(stream: Iterator[Message], count: int, seconds: float) -> list[Message]:
    """The next `count` messages that are not pings, or those that came within `seconds` (the stream
    pings when idle, so a missing one ends the wait rather than hang)."""
    deadline = time.monotonic() + seconds
    found: list[Message] = []
    for message in stream:
        if message is not PING:
            found.append(message)
        if len(found) == count or time.monotonic() > deadline:
            break
    return found


def followed(response: httpx.Response, agents: set[str]) -> Iterator[Message]:
    """The stream's events about `agents`."""
    return (m for m in messages(response) if m is not PING and m.data.get("agentId") in agents)


def test_a_follower_on_b_gets_what_is_recorded_on_a_in_order(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = clients
    agents = [f"bee-{secrets.token_hex(4)}" for _ in range(3)]
    start = newest_seq(b)
    params = {"follow": "true", "types": "AgentRegistered"}

    with b.stream("GET", EVENTS, params=params, headers={"Last-Event-ID": str(start)}) as live:
        assert live.status_code == 200
        stream = followed(live, set(agents))
        for agent in agents:
            heartbeat(a, agent)  # registered on A
        seen = taken(stream, 3)

    truth = stored(a, start, set(agents))
    assert [(m.id, m.event) for m in seen] == [(event["seq"], event["type"]) for event in truth]
    assert [m.data["agentId"] for m in seen] == agents
    assert [m.id for m in seen] == sorted({m.data["seq"] for m in seen})  # in order, none twice


def test_a_follower_resumes_on_the_other_replica_with_no_gap_and_no_duplicate(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = clients
    agents = [f"bee-{secrets.token_hex(4)}" for _ in range(8)]
    wanted = set(agents)
    start = newest_seq(b)
    params = {"follow": "true", "types": "AgentRegistered"}

    with b.stream("GET", EVENTS, params=params, headers={"Last-Event-ID": str(start)}) as first:
        stream = followed(first, wanted)
        for index, agent in enumerate(agents[:4]):
            heartbeat(a if index % 2 else b, agent)  # both replicas record
        before = taken(stream, 4)
    for index, agent in enumerate(agents[4:6]):  # while the client is away
        heartbeat(b if index % 2 else a, agent)
    wait_for(lambda: len(stored(a, start, wanted)) == 6, "the registrations made meanwhile to be stored")

    last = before[-1].id
    with a.stream("GET", EVENTS, params=params, headers={"Last-Event-ID": str(last)}) as second:
        stream = followed(second, wanted)
        missed = taken(stream, 2)
        heartbeat(b, agents[6])  # live, from the other replica
        heartbeat(a, agents[7])
        live = taken(stream, 2)

    got = [*before, *missed, *live]
    truth = stored(b, start, wanted)
    assert [m.id for m in got] == [event["seq"] for event in truth]
    assert sorted(m.data["agentId"] for m in got) == sorted(agents)
    assert len({m.id for m in got}) == len(agents)


def test_a_log_follower_on_b_sees_lines_shipped_on_both_replicas_in_order(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = clients
    source = f"bee-{secrets.token_hex(4)}"
    start = newest_log_id(b)

    with b.stream("GET", STREAM, params={"source": source}, headers={"Last-Event-ID": str(start)}) as live:
        assert live.status_code == 200
        stream = messages(live)
        ship(a, source, "one on a", "two on a")
        ship(b, source, "three on b")
        ship(a, source, "four on a")
        seen = taken(stream, 4)

    assert [m.data["message"] for m in seen] == ["one on a", "two on a", "three on b", "four on a"]
    assert [m.id for m in seen] == sorted({m.data["id"] for m in seen})  # in order, none twice


def test_lines_shipped_at_once_on_both_replicas_reach_every_follower_in_the_stored_order(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = clients
    source = f"bee-{secrets.token_hex(4)}"
    start = newest_log_id(b)
    batches = 20
    headers = {"Last-Event-ID": str(start)}

    def ship_from(client: httpx.Client, name: str) -> None:
        for batch in range(batches):
            ship(client, source, *(f"{name} {batch}.{n}" for n in range(5)))

    with (
        a.stream("GET", STREAM, params={"source": source}, headers=headers) as on_a,
        b.stream("GET", STREAM, params={"source": source}, headers=headers) as on_b,
    ):
        shippers = [threading.Thread(target=ship_from, args=pair) for pair in ((a, "a"), (b, "b"))]
        for shipper in shippers:
            shipper.start()
        for shipper in shippers:
            shipper.join()
        seen = [within(messages(response), 2 * batches * 5, 60) for response in (on_a, on_b)]

    stored_ids = [
        entry["id"]
        for entry in reversed(a.get("/api/v1/logs", params={"source": source, "limit": 1000}).json())
    ]
    assert len(stored_ids) == 2 * batches * 5
    assert [m.data["id"] for m in seen[0]] == stored_ids
    assert [m.data["id"] for m in seen[1]] == stored_ids


async def test_the_signal_wakes_the_other_replicas_and_outlives_its_connection_being_cut() -> None:
    url = await create_database("signal")
    one, two = PostgresJournalSignal(url), PostgresJournalSignal(url)
    await one.start()
    await two.start()
    try:
        await asyncio.wait_for(asyncio.gather(one.listening.wait(), two.listening.wait()), 10)
        await two.wait(0)  # what it heard on connecting
        one.announce()
        await asyncio.wait_for(two.wait(30), 5)  # well before the poll: woken by the notification

        await _cut_listeners(url)  # as a restart of PostgreSQL would
        await asyncio.wait_for(_reconnected(two), 10)
        await asyncio.wait_for(one.listening.wait(), 10)
        await two.wait(0)
        one.announce()
        await asyncio.wait_for(two.wait(30), 5)
    finally:
        await one.close()
        await two.close()


async def _cut_listeners(url: str) -> None:
    database = url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(admin_url().replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
    finally:
        await connection.close()


async def _reconnected(signal: PostgresJournalSignal) -> None:
    while signal.listening.is_set():
        await asyncio.sleep(0.01)
    await signal.listening.wait()
