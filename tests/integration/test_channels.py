"""Notification channels and webhook delivery, for real: channels managed over HTTP on a real `worpen serve`
(addresses inside the network refused while WORPEN_ALLOW_PRIVATE_WEBHOOKS is unset, secrets never
answered, admins only), and deliveries posted by the real sender to a real HTTP server on loopback
(signed, retried with backoff when it answers 500, given up loudly), from a Worpen started in process
with private webhooks allowed (nothing enqueues over HTTP: rules do)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from tests.integration.receiver import Receiver
from tests.integration.support import Keys, WorpenServer, bearer
from worpen_api.app import create_app
from worpen_api.bootstrap import bootstrap
from worpen_api.runtime import Worpen
from worpen_api.settings import Settings
from worpen_core.access.commands import CreateApiKey
from worpen_core.access.model import Role
from worpen_core.events.model import JsonValue
from worpen_core.shared.errors import EngineFailed, InvalidInput, Unavailable
from worpen_infra.notify.webhook import HttpWebhookSender, refusal

pytestmark = pytest.mark.integration

CHANNELS = "/api/v1/automation/channels"
DELIVERIES = "/api/v1/automation/deliveries"
SECRET = "integration-signing-secret-0123456789"
PATH_SECRET = "B0000/XyZsEcReTtOkEn"
PUBLIC_URL = f"https://93.184.215.14/services/T0000/{PATH_SECRET}"
"""A public address written as such (nothing to resolve); never called by these tests."""


# -- On a real `worpen serve`, private webhooks not allowed ---------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://0.0.0.0/hook",
    ],
)
def test_a_channel_pointing_inside_the_network_is_refused(admin: httpx.Client, url: str) -> None:
    name = "inside-" + hashlib.sha256(url.encode()).hexdigest()[:8]
    refused = admin.post(CHANNELS, json={"name": name, "kind": "webhook", "url": url})

    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "url"
    assert "WORPEN_ALLOW_PRIVATE_WEBHOOKS" in refused.json()["detail"]
    assert name not in [channel["name"] for channel in admin.get(CHANNELS).json()]


def test_a_url_that_is_not_http_is_refused(admin: httpx.Client) -> None:
    refused = admin.post(CHANNELS, json={"name": "ftp", "kind": "webhook", "url": "ftp://93.184.215.14/x"})
    assert refused.status_code == 422


def test_the_secrets_of_a_channel_are_never_answered(admin: httpx.Client) -> None:
    created = admin.post(
        CHANNELS, json={"name": "#secret-alerts", "kind": "slack", "url": PUBLIC_URL, "secret": SECRET}
    )
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["url"] == "https://93.184.215.14/services/…"
    assert channel["hasSecret"] is True
    assert set(channel) == {"id", "name", "kind", "url", "hasSecret", "createdAt", "updatedAt"}

    answers = [
        created,
        admin.get(CHANNELS),
        admin.get(f"{CHANNELS}/{channel['id']}"),
        admin.put(f"{CHANNELS}/{channel['id']}", json={"kind": "webhook"}),
        admin.put(f"{CHANNELS}/{channel['id']}", json={"secret": SECRET + "-2"}),
        admin.get("/api/v1/audit", params={"action": "channel.update"}),
        admin.get("/api/v1/logs", params={"q": "channel"}),
        admin.delete(f"{CHANNELS}/{channel['id']}"),
    ]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert SECRET not in answer.text
        assert PATH_SECRET not in answer.text
    assert answers[4].json()["hasSecret"] is True
    assert admin.get(f"{CHANNELS}/{channel['id']}").status_code == 404


def test_a_partial_update_and_a_duplicate_name(admin: httpx.Client) -> None:
    first = admin.post(CHANNELS, json={"name": "dup-a", "kind": "webhook", "url": PUBLIC_URL}).json()
    admin.post(CHANNELS, json={"name": "dup-b", "kind": "webhook", "url": PUBLIC_URL})

    assert admin.post(CHANNELS, json={"name": "dup-a", "kind": "slack", "url": PUBLIC_URL}).status_code == 409
    renamed = admin.put(f"{CHANNELS}/{first['id']}", json={"name": "dup-b"})
    assert renamed.status_code == 409
    changed = admin.put(f"{CHANNELS}/{first['id']}", json={"url": "https://93.184.215.14/other"})
    assert changed.status_code == 200
    assert (changed.json()["name"], changed.json()["url"]) == ("dup-a", "https://93.184.215.14/other")
    assert admin.put(f"{CHANNELS}/nope", json={"name": "x"}).status_code == 404
    both = admin.put(f"{CHANNELS}/{first['id']}", json={"secret": SECRET, "removeSecret": True})
    assert both.status_code == 422


def test_viewers_and_operators_read_channels_but_cannot_change_them(
    fleet_server: WorpenServer, admin: httpx.Client, keys: Keys
) -> None:
    channel = admin.post(CHANNELS, json={"name": "roles", "kind": "webhook", "url": PUBLIC_URL}).json()
    body = {"name": "by-someone", "kind": "webhook", "url": PUBLIC_URL}
    for key in (keys.viewer, keys.operator):
        with fleet_server.client(key.secret) as client:
            assert client.post(CHANNELS, json=body).status_code == 403
            assert client.put(f"{CHANNELS}/{channel['id']}", json={"name": "x"}).status_code == 403
            assert client.delete(f"{CHANNELS}/{channel['id']}").status_code == 403
            assert client.get(f"{CHANNELS}/{channel['id']}").json() == channel
            assert client.get(DELIVERIES).status_code == 200
    with fleet_server.client(keys.agent.secret) as agent:
        assert agent.get(CHANNELS).status_code == 403


def test_the_webhook_settings_are_read_from_the_environment() -> None:
    default = Settings.from_env({})
    assert (default.allow_private_webhooks, default.webhook_timeout, default.webhook_max_attempts) == (
        False,
        5.0,
        10,
    )
    chosen = Settings.from_env(
        {
            "WORPEN_ALLOW_PRIVATE_WEBHOOKS": "true",
            "WORPEN_WEBHOOK_TIMEOUT_SECONDS": "2.5",
            "WORPEN_WEBHOOK_MAX_ATTEMPTS": "3",
        }
    )
    assert (chosen.allow_private_webhooks, chosen.webhook_timeout, chosen.webhook_max_attempts) == (
        True,
        2.5,
        3,
    )


# -- The real sender ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public address"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
    ],
)
def test_addresses_inside_the_network_are_refused(address: str, reason: str) -> None:
    found = refusal(ipaddress.ip_address(address))
    assert found is not None
    assert reason in found


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


async def test_the_sender_refuses_a_private_address_when_it_connects_too(receiver: Receiver) -> None:
    sender = HttpWebhookSender(allow_private=False, timeout=5)
    try:
        with pytest.raises(InvalidInput):
            await sender.check(receiver.url)
        with pytest.raises(InvalidInput):
            await sender.send(receiver.url, b"{}", {"Content-Type": "application/json"})
    finally:
        await sender.close()
    assert receiver.received == []


async def test_the_sender_posts_follows_no_redirect_and_tells_retryable_failures_apart(
    receiver: Receiver,
) -> None:
    sender = HttpWebhookSender(allow_private=True, timeout=5)
    receiver.answers = [204, 302, 404, 500, 429]
    try:
        await sender.send(receiver.url, b'{"a":1}', {"Content-Type": "application/json"})
        with pytest.raises(EngineFailed, match=r"302.*redirects are not followed"):
            await sender.send(receiver.url, b"{}", {})
        with pytest.raises(EngineFailed, match="404"):
            await sender.send(receiver.url, b"{}", {})
        with pytest.raises(Unavailable, match="500"):
            await sender.send(receiver.url, b"{}", {})
        with pytest.raises(Unavailable, match="429"):
            await sender.send(receiver.url, b"{}", {})
    finally:
        await sender.close()
    assert [r.path for r in receiver.received] == ["/hooks/worpen?token=abc"] * 5
    assert receiver.received[0].body == b'{"a":1}'


# -- Deliveries, end to end in a Worpen started in process ----------------------------------------------


@dataclass
class Running:
    worpen: Worpen
    client: AsyncTestClient[Any]


@asynccontextmanager
async def started(database: Path, **settings: Any) -> AsyncIterator[Running]:
    """Worpen started in process on `database`, private webhooks allowed, with `settings`, and an HTTP
    client with an admin key."""
    worpen = bootstrap(
        Settings(
            grpc_port=0,
            # SQLite on either run: the test's loop and the client's share the engine, and asyncpg's
            # connections belong to the loop that opened them; delivery is the subject here, not storage.
            database_url=f"sqlite+aiosqlite:///{database}",
            allow_private_webhooks=True,
            docker_hosts=(),
            **settings,
        )
    )
    async with AsyncTestClient(create_app(worpen)) as client:
        issued = await worpen.api_keys.issue(CreateApiKey("test-admin", Role.ADMIN))
        client.headers.update(bearer(issued.secret))
        yield Running(worpen, client)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def _deliveries(client: AsyncTestClient[Any], **params: str) -> list[dict[str, Any]]:
    answer = await client.get(DELIVERIES, params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def test_a_notification_reaches_a_real_receiver_signed(tmp_path: Path, receiver: Receiver) -> None:
    async with started(tmp_path / "worpen.db") as running:
        client = running.client
        created = await client.post(
            CHANNELS, json={"name": "ops-webhook", "kind": "webhook", "url": receiver.url, "secret": SECRET}
        )
        assert created.status_code == 201, created.text
        payload: dict[str, JsonValue] = {"service": "web", "exitCode": 137}
        delivery_id = await running.worpen.notifications.enqueue(
            "ops-webhook", payload, "run-1", "oom-restart"
        )

        async def delivered() -> bool:
            return [d["status"] for d in await _deliveries(client)] == ["DELIVERED"]

        await eventually(delivered)
        [request] = receiver.received
        timestamp = request.headers["X-Worpen-Timestamp"]
        assert abs(int(timestamp) - time.time()) < 60
        digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
        assert hmac.compare_digest(request.headers["X-Worpen-Signature"], f"sha256={digest.hexdigest()}")
        envelope = json.loads(request.body)
        assert envelope["payload"] == payload
        assert (envelope["version"], envelope["id"], envelope["channel"]) == (1, delivery_id, "ops-webhook")
        assert (envelope["rule"], envelope["runId"]) == ("oom-restart", "run-1")
        assert request.headers["X-Worpen-Delivery"] == str(delivery_id)
        [delivery] = await _deliveries(client, status="DELIVERED", channel="ops-webhook")
        assert (delivery["attempts"], delivery["runId"]) == (1, "run-1")
        assert delivery["body"] == {"rule": "oom-restart", "payload": payload}
        assert delivery["deliveredAt"] is not None


async def test_a_slack_channel_gets_slack_s_format(tmp_path: Path, receiver: Receiver) -> None:
    async with started(tmp_path / "worpen.db") as running:
        await running.client.post(
            CHANNELS, json={"name": "#ops-alerts", "kind": "slack", "url": receiver.url}
        )
        await running.worpen.notifications.enqueue("#ops-alerts", {"text": "Restarted web"}, None)

        async def received() -> bool:
            return len(receiver.received) == 1

        await eventually(received)
        assert json.loads(receiver.received[0].body) == {"text": "Restarted web"}
        assert "X-Worpen-Signature" not in receiver.received[0].headers


async def test_a_receiver_answering_500_is_retried_with_backoff_until_it_takes_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.answers = [500, 500]
    async with started(tmp_path / "worpen.db") as running:
        await running.client.post(CHANNELS, json={"name": "flaky", "kind": "webhook", "url": receiver.url})
        delivery_id = await running.worpen.notifications.enqueue("flaky", {"n": 1}, None)

        async def delivered() -> bool:
            return [d["status"] for d in await _deliveries(running.client)] == ["DELIVERED"]

        await eventually(delivered)
        [delivery] = await _deliveries(running.client)
        assert delivery["attempts"] == 3
        assert "500" in delivery["lastError"]
    assert [r.headers["X-Worpen-Delivery"] for r in receiver.received] == [str(delivery_id)] * 3
    first, second, third = (r.at for r in receiver.received)
    assert second - first >= 0.9
    assert third - second >= 1.9


async def test_a_receiver_that_never_answers_in_time_fails_the_delivery_loudly(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.delay = 2.0
    async with started(tmp_path / "worpen.db", webhook_timeout=0.3, webhook_max_attempts=2) as running:
        await running.client.post(CHANNELS, json={"name": "slow", "kind": "webhook", "url": receiver.url})
        delivery_id = await running.worpen.notifications.enqueue("slow", {"n": 1}, "run-7")

        async def failed() -> bool:
            return [d["status"] for d in await _deliveries(running.client)] == ["FAILED"]

        await eventually(failed)
        [delivery] = await _deliveries(running.client, status="FAILED")
        assert delivery["attempts"] == 2
        assert "no answer within 0.3 s" in delivery["lastError"]

        async def announced() -> list[dict[str, Any]]:
            answer = await running.client.get("/api/v1/events", params={"types": "NotificationFailed"})
            found: list[dict[str, Any]] = answer.json()
            return found

        async def journaled() -> bool:
            return len(await announced()) == 1

        await eventually(journaled)
        [event] = await announced()
        assert (event["deliveryId"], event["channel"], event["attempts"]) == (delivery_id, "slow", 2)
