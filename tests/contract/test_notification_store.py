"""The channel and delivery repositories: the fakes and the SQL adapter behave the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from worpen_api.bootstrap import StorageFactory
from worpen_core.automation.channels import Channel, ChannelKind, DeliveryQuery, DeliveryStatus
from worpen_core.shared.errors import Conflict

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"


def _channel(name: str, *, secret: str | None = None) -> Channel:
    return Channel.new(name, ChannelKind.SLACK, SLACK_URL, secret, NOW)


async def test_a_channel_is_stored_as_given_and_found_by_id_and_by_name(uow: StorageFactory) -> None:
    channel = _channel("#ops-alerts", secret="s" * 32)
    async with uow() as tx:
        await tx.channels.add(channel)
        await tx.commit()

    async with uow() as tx:
        assert await tx.channels.get(channel.id) == channel
        assert await tx.channels.by_name("#ops-alerts") == channel
        assert await tx.channels.get("nope") is None
        assert await tx.channels.by_name("#nope") is None


async def test_names_are_unique(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.channels.add(_channel("ops"))
        await tx.commit()

    async with uow() as tx:
        with pytest.raises(Conflict):
            await tx.channels.add(_channel("ops"))

    other = _channel("other")
    async with uow() as tx:
        await tx.channels.add(other)
        await tx.commit()
    other.name = "ops"
    async with uow() as tx:
        with pytest.raises(Conflict):
            await tx.channels.update(other)
    async with uow() as tx:
        assert [c.name for c in await tx.channels.list_all()] == ["ops", "other"]


async def test_update_remove_list_and_named(uow: StorageFactory) -> None:
    first, second = _channel("b-hook"), _channel("a-hook", secret="x" * 16)
    async with uow() as tx:
        await tx.channels.add(first)
        await tx.channels.add(second)
        await tx.commit()

    first.url = "https://example.com/new"
    first.signing_secret = "y" * 20
    first.updated_at = NOW + timedelta(minutes=1)
    async with uow() as tx:
        await tx.channels.update(first)
        await tx.commit()

    async with uow() as tx:
        assert [c.name for c in await tx.channels.list_all()] == ["a-hook", "b-hook"]
        assert await tx.channels.get(first.id) == first
        assert await tx.channels.named(["a-hook", "zzz", "b-hook"]) == {"a-hook", "b-hook"}
        assert await tx.channels.named([]) == set()

    async with uow() as tx:
        await tx.channels.remove(second.id)
        await tx.commit()
    async with uow() as tx:
        assert await tx.channels.get(second.id) is None
        assert [c.name for c in await tx.channels.list_all()] == ["b-hook"]


async def test_a_rolled_back_transaction_leaves_nothing(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.channels.add(_channel("gone"))
        await tx.deliveries.add("gone", {"payload": {}}, None, NOW)

    async with uow() as tx:
        assert await tx.channels.list_all() == []
        assert await tx.deliveries.query(DeliveryQuery()) == []


async def test_deliveries_are_numbered_pending_and_due_in_order(uow: StorageFactory) -> None:
    async with uow() as tx:
        later = await tx.deliveries.add("ops", {"rule": "r", "payload": {"n": 1}}, "run-1", NOW)
        earlier = await tx.deliveries.add("ops", {"rule": None, "payload": {"n": 2}}, None, NOW)
        await tx.commit()
    assert later.id < earlier.id
    assert later.status is DeliveryStatus.PENDING
    assert later.attempts == 0
    assert later.next_attempt_at == NOW

    later.next_attempt_at = NOW + timedelta(seconds=5)
    later.attempts = 1
    later.last_error = "webhook example.com unavailable: answered 500"
    async with uow() as tx:
        await tx.deliveries.update(later)
        await tx.commit()

    async with uow() as tx:
        assert [d.id for d in await tx.deliveries.due(NOW, 10)] == [earlier.id]
        assert [d.id for d in await tx.deliveries.due(NOW + timedelta(seconds=5), 10)] == [
            earlier.id,
            later.id,
        ]
        assert [d.id for d in await tx.deliveries.due(NOW + timedelta(seconds=5), 1)] == [earlier.id]
        assert await tx.deliveries.next_due() == NOW
        stored = await tx.deliveries.query(DeliveryQuery())
    assert [d.id for d in stored] == [earlier.id, later.id]
    assert stored[1] == later
    assert stored[1].body == {"rule": "r", "payload": {"n": 1}}


async def test_delivered_and_failed_deliveries_are_no_longer_due(uow: StorageFactory) -> None:
    async with uow() as tx:
        sent = await tx.deliveries.add("a", {"payload": {}}, None, NOW)
        failed = await tx.deliveries.add("b", {"payload": {}}, None, NOW)
        pending = await tx.deliveries.add("b", {"payload": {}}, None, NOW + timedelta(minutes=1))
        await tx.commit()
    sent.status, sent.attempts, sent.delivered_at = DeliveryStatus.DELIVERED, 1, NOW
    failed.status, failed.attempts, failed.last_error = DeliveryStatus.FAILED, 10, "gave up"
    async with uow() as tx:
        await tx.deliveries.update(sent)
        await tx.deliveries.update(failed)
        await tx.commit()

    async with uow() as tx:
        assert await tx.deliveries.due(NOW + timedelta(hours=1), 10) == [pending]
        assert await tx.deliveries.next_due() == pending.next_attempt_at
        by_status = await tx.deliveries.query(DeliveryQuery(status=DeliveryStatus.FAILED))
        by_channel = await tx.deliveries.query(DeliveryQuery(channel="b"))
        limited = await tx.deliveries.query(DeliveryQuery(limit=1))
    assert by_status == [failed]
    assert [d.id for d in by_channel] == [pending.id, failed.id]
    assert limited == [pending]


async def test_no_pending_delivery_means_nothing_due(uow: StorageFactory) -> None:
    async with uow() as tx:
        assert await tx.deliveries.next_due() is None
        assert await tx.deliveries.due(NOW, 10) == []


async def test_a_due_delivery_is_claimed_by_one_sender_until_its_attempt_may_be_over(
    uow: StorageFactory,
) -> None:
    """Two senders (a leader still sending as the next one starts) claim before they send: one takes a
    delivery; it is due again at the claim's end, in case its sender died."""
    until = NOW + timedelta(seconds=65)
    async with uow() as tx:
        due = await tx.deliveries.add("ops", {"payload": {}}, None, NOW)
        later = await tx.deliveries.add("ops", {"payload": {}}, None, NOW + timedelta(minutes=1))
        sent = await tx.deliveries.add("ops", {"payload": {}}, None, NOW)
        await tx.commit()
    sent.status, sent.attempts, sent.delivered_at = DeliveryStatus.DELIVERED, 1, NOW
    async with uow() as tx:
        await tx.deliveries.update(sent)
        await tx.commit()

    async def claim() -> set[int]:
        async with uow() as tx:
            taken = await tx.deliveries.claim([due.id, later.id, sent.id], NOW, until)
            await tx.commit()
        return taken

    claims = await asyncio.gather(*(claim() for _ in range(6)))
    assert sorted(claims, key=len) == [set()] * 5 + [{due.id}]
    async with uow() as tx:
        assert [d.id for d in await tx.deliveries.due(NOW + timedelta(seconds=64), 10)] == [later.id]
        assert [d.id for d in await tx.deliveries.due(until, 10)] == [later.id, due.id]
        assert await tx.deliveries.claim([due.id], until, until + timedelta(seconds=65)) == {due.id}
