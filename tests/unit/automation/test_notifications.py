"""Notification channels and the outbox on fakes: who may manage channels, what is masked, which names are
missing, and how deliveries are sent, retried with backoff and given up loudly."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.model import Principal, Role
from worpen_core.audit.model import AuditQuery, Outcome
from worpen_core.audit.service import AuditTrail
from worpen_core.automation.channels import (
    ChannelKind,
    ChannelPatch,
    DeliveryPolicy,
    DeliveryQuery,
    DeliveryStatus,
    masked_url,
)
from worpen_core.automation.notification_events import NotificationDelivered, NotificationFailed
from worpen_core.automation.notifications import Notifications
from worpen_core.events.model import JsonValue
from worpen_core.shared.errors import (
    Conflict,
    EngineFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
    WorpenError,
)

ADMIN = Principal("k1", "root", Role.ADMIN)
OPERATOR = Principal("k2", "ci", Role.OPERATOR)
VIEWER = Principal("k3", "eyes", Role.VIEWER)
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX"
HOOK = "https://example.com/hooks/worpen?token=abc"
SECRET = "0123456789abcdef-secret"


@dataclass
class Sent:
    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeSender:
    """Records what it is asked to send; fails with the errors queued in `failures`, in order."""

    refused: set[str] = field(default_factory=set)
    failures: list[WorpenError] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    hang: bool = False

    async def check(self, url: str) -> None:
        if any(host in url for host in self.refused):
            raise InvalidInput("resolves to a private address: refused", "url")

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        await self.check(url)
        self.sent.append(Sent(url, body, dict(headers)))
        if self.hang:
            await asyncio.sleep(3600)
        if self.failures:
            raise self.failures.pop(0)


@dataclass
class World:
    notifications: Notifications
    sender: FakeSender
    clock: FakeClock
    bus: FakeEventBus
    audit: AuditTrail


@pytest.fixture
def world(uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus) -> World:
    sender = FakeSender()
    audit = AuditTrail(uow, clock, bus)
    policy = DeliveryPolicy(max_attempts=4, timeout_seconds=0.2)
    return World(Notifications(uow, sender, audit, bus, clock, policy), sender, clock, bus, audit)


def test_masked_urls_show_the_host_and_the_first_path_segment_only() -> None:
    assert masked_url(SLACK) == "https://hooks.slack.com/services/…"
    assert masked_url(HOOK) == "https://example.com/hooks/…"
    assert masked_url("https://example.com/hook") == "https://example.com/hook"
    assert masked_url("https://example.com/hook?key=1") == "https://example.com/hook…"
    assert masked_url("https://example.com") == "https://example.com"
    assert masked_url("http://user:pass@Example.com:8080/a/b#x") == "http://example.com:8080/a/…"
    assert masked_url("http://[2001:db8::1]:8443/x/y") == "http://[2001:db8::1]:8443/x/…"


async def test_an_admin_creates_a_channel_audited_and_its_secrets_stay_out_of_sight(world: World) -> None:
    channel = await world.notifications.create(ADMIN, "#ops-alerts", ChannelKind.SLACK, SLACK, SECRET)

    assert channel.masked_url == "https://hooks.slack.com/services/…"
    assert channel.has_secret
    assert SECRET not in repr(channel)
    assert "XXXX" not in repr(channel)
    assert await world.notifications.get(channel.id) == channel
    assert [c.name for c in await world.notifications.list_all()] == ["#ops-alerts"]
    [entry] = await world.audit.query(AuditQuery())
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        "root",
        "channel.create",
        "#ops-alerts",
        Outcome.SUCCEEDED,
    )


@pytest.mark.parametrize("who", [OPERATOR, VIEWER])
async def test_only_admins_manage_channels(world: World, who: Principal) -> None:
    channel = await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)

    with pytest.raises(Forbidden):
        await world.notifications.create(who, "other", ChannelKind.WEBHOOK, HOOK)
    with pytest.raises(Forbidden):
        await world.notifications.update(who, channel.id, ChannelPatch(url="https://example.org/x"))
    with pytest.raises(Forbidden):
        await world.notifications.delete(who, channel.id)
    assert await world.notifications.list_all() == [channel]


@pytest.mark.parametrize(
    ("name", "url", "secret", "field"),
    [
        ("ops alerts", HOOK, None, "name"),
        ("x" * 101, HOOK, None, "name"),
        ("", HOOK, None, "name"),
        ("ops", "ftp://example.com/x", None, "url"),
        ("ops", "https:///no-host", None, "url"),
        ("ops", "https://exa mple.com/", None, "url"),
        ("ops", "https://" + "a" * 2048 + ".com/", None, "url"),
        ("ops", HOOK, "short", "secret"),
    ],
)
async def test_invalid_channels_are_refused_naming_the_field(
    world: World, name: str, url: str, secret: str | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        await world.notifications.create(ADMIN, name, ChannelKind.WEBHOOK, url, secret)
    assert refused.value.field == field
    assert await world.notifications.list_all() == []


async def test_an_address_the_sender_refuses_is_refused_at_save_time(world: World) -> None:
    world.sender.refused.add("169.254.169.254")
    with pytest.raises(InvalidInput) as refused:
        await world.notifications.create(ADMIN, "meta", ChannelKind.WEBHOOK, "http://169.254.169.254/latest")
    assert refused.value.field == "url"

    channel = await world.notifications.create(ADMIN, "ok", ChannelKind.WEBHOOK, HOOK)
    with pytest.raises(InvalidInput):
        await world.notifications.update(ADMIN, channel.id, ChannelPatch(url="http://169.254.169.254/x"))
    assert (await world.notifications.get(channel.id)).url == HOOK


async def test_names_are_unique(world: World) -> None:
    await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    other = await world.notifications.create(ADMIN, "dev", ChannelKind.WEBHOOK, HOOK)

    with pytest.raises(Conflict):
        await world.notifications.create(ADMIN, "ops", ChannelKind.SLACK, SLACK)
    with pytest.raises(Conflict):
        await world.notifications.update(ADMIN, other.id, ChannelPatch(name="ops"))
    failed = [e for e in await world.audit.query(AuditQuery()) if e.outcome is Outcome.FAILED]
    assert len(failed) == 2


async def test_a_partial_update_changes_only_what_it_names(world: World) -> None:
    channel = await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK, SECRET)
    world.clock.advance(60)

    renamed = await world.notifications.update(ADMIN, channel.id, ChannelPatch(name="ops-2"))
    assert (renamed.name, renamed.url, renamed.signing_secret) == ("ops-2", HOOK, SECRET)
    assert renamed.updated_at == channel.created_at + timedelta(seconds=60)

    cleared = await world.notifications.update(ADMIN, channel.id, ChannelPatch(remove_secret=True))
    assert not cleared.has_secret
    assert await world.notifications.get(channel.id) == cleared
    with pytest.raises(InvalidInput):
        ChannelPatch(secret=SECRET, remove_secret=True)


async def test_delete_and_unknown_ids(world: World) -> None:
    channel = await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    assert await world.notifications.delete(ADMIN, channel.id) == channel
    assert await world.notifications.list_all() == []
    with pytest.raises(NotFound):
        await world.notifications.get(channel.id)
    with pytest.raises(NotFound):
        await world.notifications.delete(ADMIN, channel.id)
    with pytest.raises(NotFound):
        await world.notifications.update(ADMIN, "nope", ChannelPatch(name="x"))


async def test_missing_names_the_channels_that_do_not_exist_in_order_once(world: World) -> None:
    await world.notifications.create(ADMIN, "#ops-alerts", ChannelKind.SLACK, SLACK)
    await world.notifications.create(ADMIN, "ops-webhook", ChannelKind.WEBHOOK, HOOK)

    assert await world.notifications.missing(["#ops-alerts", "ops-webhook"]) == []
    assert await world.notifications.missing(["#nope", "#ops-alerts", "b", "#nope"]) == ["#nope", "b"]
    assert await world.notifications.missing([]) == []


async def test_a_slack_channel_gets_its_text_and_a_signed_request(world: World) -> None:
    await world.notifications.create(ADMIN, "#ops-alerts", ChannelKind.SLACK, SLACK, SECRET)
    delivery_id = await world.notifications.enqueue("#ops-alerts", {"text": "Restarted web"}, "run-1", "oom")

    assert await world.notifications.deliver_pending() == 1

    [sent] = world.sender.sent
    assert sent.url == SLACK
    assert json.loads(sent.body) == {"text": "Restarted web"}
    timestamp = sent.headers["X-Worpen-Timestamp"]
    assert int(timestamp) == int(world.clock.now().timestamp())
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + sent.body, hashlib.sha256).hexdigest()
    assert sent.headers["X-Worpen-Signature"] == f"sha256={expected}"
    assert sent.headers["X-Worpen-Delivery"] == str(delivery_id)
    [delivered] = await world.notifications.deliveries(DeliveryQuery())
    assert (delivered.status, delivered.attempts, delivered.delivered_at) == (
        DeliveryStatus.DELIVERED,
        1,
        world.clock.now(),
    )
    assert world.bus.published[-1] == NotificationDelivered(
        delivery_id, "#ops-alerts", 1, "run-1", world.clock.now()
    )


async def test_a_webhook_channel_gets_the_envelope_unsigned_without_a_secret(world: World) -> None:
    await world.notifications.create(ADMIN, "ops-webhook", ChannelKind.WEBHOOK, HOOK)
    payload: dict[str, JsonValue] = {"service": "web", "exitCode": 137, "tags": ["a", "b"]}
    delivery_id = await world.notifications.enqueue("ops-webhook", dict(payload), "run-9", "oom-restart")

    await world.notifications.deliver_due()

    [sent] = world.sender.sent
    assert json.loads(sent.body) == {
        "version": 1,
        "id": delivery_id,
        "channel": "ops-webhook",
        "rule": "oom-restart",
        "runId": "run-9",
        "sentAt": "2026-01-01T00:00:00Z",
        "payload": payload,
    }
    assert "X-Worpen-Signature" not in sent.headers
    assert sent.headers["Content-Type"] == "application/json"


async def test_a_body_that_is_not_json_is_refused_at_enqueue(world: World) -> None:
    with pytest.raises(InvalidInput):
        await world.notifications.enqueue("ops", {"x": float("nan")}, None)
    with pytest.raises(InvalidInput):
        await world.notifications.enqueue("not a name", {}, None)
    assert await world.notifications.deliveries(DeliveryQuery()) == []


async def test_failures_are_retried_with_exponential_backoff_then_delivered(world: World) -> None:
    await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    world.sender.failures = [Unavailable("webhook example.com", "answered 500")] * 3
    await world.notifications.enqueue("ops", {"n": 1}, None)
    start = world.clock.now()

    waits = []
    for _ in range(3):
        assert await world.notifications.deliver_pending() == 1
        [pending] = await world.notifications.deliveries(DeliveryQuery())
        assert pending.status is DeliveryStatus.PENDING
        assert pending.last_error == "webhook example.com unavailable: answered 500"
        waits.append(pending.next_attempt_at - world.clock.now())
        # Not due yet: a pass sends nothing.
        world.clock.advance(waits[-1].total_seconds() - 0.01)
        assert await world.notifications.deliver_pending() == 0
        world.clock.advance(0.01)

    assert waits == [timedelta(seconds=1), timedelta(seconds=2), timedelta(seconds=4)]
    assert await world.notifications.deliver_pending() == 1
    [delivered] = await world.notifications.deliveries(DeliveryQuery())
    assert (delivered.status, delivered.attempts) == (DeliveryStatus.DELIVERED, 4)
    assert delivered.delivered_at == start + timedelta(seconds=7)
    assert len(world.sender.sent) == 4


def test_the_backoff_doubles_from_a_second_up_to_five_minutes() -> None:
    policy = DeliveryPolicy()
    waits = [policy.retry_after(n).total_seconds() for n in range(1, 12)]
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert policy.retry_after(1000) == timedelta(minutes=5)


async def test_after_the_last_attempt_the_delivery_fails_loudly(world: World) -> None:
    await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    world.sender.hang = True
    delivery_id = await world.notifications.enqueue("ops", {"n": 1}, "run-3")

    for _ in range(4):
        world.clock.advance(3600)
        assert await world.notifications.deliver_due() == 1

    [failed] = await world.notifications.deliveries(DeliveryQuery(status=DeliveryStatus.FAILED))
    assert failed.attempts == 4
    assert failed.last_error == "no answer within 0.2 s"
    world.clock.advance(3600)
    assert await world.notifications.deliver_due() == 0
    event = world.bus.published[-1]
    assert isinstance(event, NotificationFailed)
    assert (event.delivery_id, event.channel, event.attempts, event.run_id) == (
        delivery_id,
        "ops",
        4,
        "run-3",
    )


@pytest.mark.parametrize(
    "error",
    [EngineFailed("webhook example.com", "answered 404 Not Found"), InvalidInput("refused", "url")],
)
async def test_a_failure_no_retry_can_change_fails_at_once(world: World, error: WorpenError) -> None:
    await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    world.sender.failures = [error]
    await world.notifications.enqueue("ops", {}, None)

    await world.notifications.deliver_due()

    [failed] = await world.notifications.deliveries(DeliveryQuery())
    assert (failed.status, failed.attempts, failed.last_error) == (DeliveryStatus.FAILED, 1, error.detail)
    assert isinstance(world.bus.published[-1], NotificationFailed)


async def test_a_delivery_to_a_channel_deleted_since_fails(world: World) -> None:
    channel = await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    await world.notifications.enqueue("ops", {}, None)
    await world.notifications.delete(ADMIN, channel.id)

    await world.notifications.deliver_due()

    [failed] = await world.notifications.deliveries(DeliveryQuery(channel="ops"))
    assert failed.status is DeliveryStatus.FAILED
    assert failed.last_error == "channel 'ops' not found"
    assert world.sender.sent == []


async def test_a_pass_sends_a_bounded_batch_and_the_next_pass_the_rest(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    sender = FakeSender()
    policy = DeliveryPolicy(batch=3)
    notifications = Notifications(uow, sender, AuditTrail(uow, clock, bus), bus, clock, policy)
    await notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    for n in range(5):
        await notifications.enqueue("ops", {"n": n}, None)

    assert await notifications.deliver_pending() == 3
    assert await notifications.deliver_pending() == 2
    assert await notifications.deliver_pending() == 0
    assert [json.loads(s.body)["payload"]["n"] for s in sender.sent] == [0, 1, 2, 3, 4]


async def test_concurrent_passes_never_send_a_delivery_twice(world: World) -> None:
    await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    await world.notifications.enqueue("ops", {}, None)

    await asyncio.gather(*(world.notifications.deliver_due() for _ in range(5)))

    assert len(world.sender.sent) == 1


async def test_a_pass_that_cannot_read_the_outbox_raises_and_the_next_one_retries(
    uow: FakeUnitOfWorkFactory, world: World
) -> None:
    await world.notifications.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    await world.notifications.enqueue("ops", {}, None)
    uow.store.broken = True
    with pytest.raises(Unavailable):
        await world.notifications.deliver_pending()
    uow.store.broken = False

    assert await world.notifications.deliver_pending() == 1


@dataclass
class SlowSender(FakeSender):
    """Takes a while to send: a second pass starts while the first still sends."""

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        await super().send(url, body, headers)
        await asyncio.sleep(0.05)


async def test_two_senders_at_once_send_each_delivery_once(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    """The old leader still in a pass as the new one starts its own: a delivery is claimed before it is
    sent, so neither sends what the other took."""
    sender = SlowSender()
    audit = AuditTrail(uow, clock, bus)
    old, new = (Notifications(uow, sender, audit, bus, clock, DeliveryPolicy()) for _ in range(2))
    await old.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    ids = [await old.enqueue("ops", {"n": n}, None) for n in range(5)]

    attempted = await asyncio.gather(old.deliver_due(), new.deliver_due())

    assert sum(attempted) == 5
    assert sorted(int(sent.headers["X-Worpen-Delivery"]) for sent in sender.sent) == ids
    delivered = await old.deliveries(DeliveryQuery(status=DeliveryStatus.DELIVERED))
    assert sorted(d.id for d in delivered) == ids


async def test_a_delivery_whose_sender_died_mid_attempt_is_sent_again_once_its_claim_ends(
    uow: FakeUnitOfWorkFactory, clock: FakeClock, bus: FakeEventBus
) -> None:
    """At least once: the attempt of a replica killed while sending is made again by another, with the
    same delivery id for the receiver to deduplicate by."""
    hanging, sender = FakeSender(hang=True), FakeSender()
    audit = AuditTrail(uow, clock, bus)
    policy = DeliveryPolicy(timeout_seconds=5, claim_seconds=60)
    dead = Notifications(uow, hanging, audit, bus, clock, policy)
    await dead.create(ADMIN, "ops", ChannelKind.WEBHOOK, HOOK)
    delivery = await dead.enqueue("ops", {"n": 1}, None)
    killed = asyncio.create_task(dead.deliver_due())
    while not hanging.sent:
        await asyncio.sleep(0.01)
    killed.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await killed
    next_leader = Notifications(uow, sender, audit, bus, clock, policy)

    assert await next_leader.deliver_due() == 0
    clock.advance(64)
    assert await next_leader.deliver_due() == 0
    clock.advance(1)
    assert await next_leader.deliver_due() == 1

    assert [sent.headers["X-Worpen-Delivery"] for sent in hanging.sent + sender.sent] == [str(delivery)] * 2
