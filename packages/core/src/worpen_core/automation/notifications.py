"""Notification channels (admins manage them) and the outbox: notifications are written first, then sent
and retried with backoff by a job, so one acknowledged survives a restart (see channels.py for what a
receiver gets and how it is signed)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta

from worpen_core.access.model import Permission, Principal
from worpen_core.audit.service import AuditTrail
from worpen_core.automation.channels import (
    Channel,
    ChannelKind,
    ChannelPatch,
    Delivery,
    DeliveryPolicy,
    DeliveryQuery,
    DeliveryStatus,
    check_channel_name,
    check_secret,
    check_url,
    encode,
    headers,
    message_body,
)
from worpen_core.automation.notification_events import NotificationDelivered, NotificationFailed
from worpen_core.automation.notify_ports import NotificationsUnitOfWorkFactory, WebhookSender
from worpen_core.events.model import Event, JsonValue
from worpen_core.events.ports import EventBus
from worpen_core.shared.errors import (
    Conflict,
    EngineFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    TimedOut,
    WorpenError,
    failure_reason,
)
from worpen_core.shared.ports import Clock

ERROR_MAX_LENGTH = 1000
PERMANENT = (InvalidInput, EngineFailed)
"""Failures a retry cannot change: a refused address, a receiver that refused the request for good."""


def _admin(principal: Principal) -> None:
    if not principal.can(Permission.ADMIN):
        raise Forbidden(f"role {principal.role.value!r} may not manage notification channels")


class Notifications:
    def __init__(
        self,
        uow: NotificationsUnitOfWorkFactory,
        sender: WebhookSender,
        audit: AuditTrail,
        bus: EventBus,
        clock: Clock,
        policy: DeliveryPolicy,
    ) -> None:
        self._uow = uow
        self._sender = sender
        self._audit = audit
        self._bus = bus
        self._clock = clock
        self.policy = policy
        self._sending = asyncio.Lock()
        """One pass at a time: two would send the same due deliveries twice."""
        self._woken = True
        """Something may be due that `_next_due` does not know of (a new delivery, a start)."""
        self._next_due: datetime | None = None

    async def create(
        self, principal: Principal, name: str, kind: ChannelKind, url: str, secret: str | None = None
    ) -> Channel:
        _admin(principal)
        check_channel_name(name)
        check_url(url)
        if secret is not None:
            check_secret(secret)
        await self._sender.check(url)
        channel = Channel.new(name, kind, url, secret, self._clock.now())

        async def save() -> Channel:
            async with self._uow() as tx:
                if await tx.channels.by_name(name) is not None:
                    raise Conflict(f"a channel named {name!r} exists already")
                await tx.channels.add(channel)
                await tx.commit()
            return channel

        return await self._audit.run(principal, "channel.create", name, None, save)

    async def update(self, principal: Principal, channel_id: str, patch: ChannelPatch) -> Channel:
        _admin(principal)
        current = await self.get(channel_id)
        if patch.url is not None:
            await self._sender.check(patch.url)
        secret = None if patch.remove_secret else (patch.secret or current.signing_secret)
        changed = dataclasses.replace(
            current,
            name=patch.name or current.name,
            kind=patch.kind or current.kind,
            url=patch.url or current.url,
            signing_secret=secret,
            updated_at=self._clock.now(),
        )

        async def save() -> Channel:
            async with self._uow() as tx:
                if await tx.channels.get(channel_id) is None:
                    raise NotFound("channel", channel_id)
                other = await tx.channels.by_name(changed.name)
                if other is not None and other.id != channel_id:
                    raise Conflict(f"a channel named {changed.name!r} exists already")
                await tx.channels.update(changed)
                await tx.commit()
            return changed

        return await self._audit.run(principal, "channel.update", current.name, None, save)

    async def delete(self, principal: Principal, channel_id: str) -> Channel:
        """Deliveries still pending for it fail when their turn comes (the channel is gone)."""
        _admin(principal)
        current = await self.get(channel_id)

        async def remove() -> Channel:
            async with self._uow() as tx:
                if await tx.channels.get(channel_id) is None:
                    raise NotFound("channel", channel_id)
                await tx.channels.remove(channel_id)
                await tx.commit()
            return current

        return await self._audit.run(principal, "channel.delete", current.name, None, remove)

    async def get(self, channel_id: str) -> Channel:
        async with self._uow() as tx:
            channel = await tx.channels.get(channel_id)
        if channel is None:
            raise NotFound("channel", channel_id)
        return channel

    async def list_all(self) -> list[Channel]:
        """By name."""
        async with self._uow() as tx:
            return await tx.channels.list_all()

    async def missing(self, names: Iterable[str]) -> list[str]:
        """Those of `names` (in order, once each) that name no channel: a plan naming one must fail
        before anything of it is applied."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return []
        async with self._uow() as tx:
            found = await tx.channels.named(wanted)
        return [name for name in wanted if name not in found]

    async def deliveries(self, query: DeliveryQuery) -> list[Delivery]:
        async with self._uow() as tx:
            return await tx.deliveries.query(query)

    async def enqueue(
        self, channel: str, body: dict[str, JsonValue], run_id: str | None, rule: str | None = None
    ) -> int:
        """Write a notification to the outbox (its own transaction: once this returns, it survives a
        restart) and have the sender take it at its next pass; its id. `body` is the payload: a Slack
        channel sends its `text`, a webhook channel the whole payload in its envelope."""
        check_channel_name(channel, "channel")
        stored: dict[str, JsonValue] = {"rule": rule, "payload": body}
        encode(stored)
        async with self._uow() as tx:
            delivery = await tx.deliveries.add(channel, stored, run_id, self._clock.now())
            await tx.commit()
        self._woken = True
        return delivery.id

    async def deliver_pending(self) -> int:
        """The sender's pass: `deliver_due` when a delivery was enqueued since the last pass or one is due
        (cheap otherwise: nothing is read)."""
        if not self._woken and (self._next_due is None or self._next_due > self._clock.now()):
            return 0
        return await self.deliver_due()

    async def deliver_due(self) -> int:
        """Send the due PENDING deliveries (a bounded batch, concurrently) and record each outcome: sent,
        to be retried after a backoff, or FAILED (with a NotificationFailed event) after the last attempt
        or a failure no retry can change. How many were attempted."""
        async with self._sending:
            self._woken = False
            try:
                due = await self._claim_due()
                async with self._uow() as tx:
                    channels = {name: await tx.channels.by_name(name) for name in {d.channel for d in due}}
                outcomes = await asyncio.gather(
                    *(self._attempt(d, channels[d.channel]) for d in due), return_exceptions=True
                )
                await self._bus.publish([event for event in outcomes if isinstance(event, Event)])
                failed = next((exc for exc in outcomes if isinstance(exc, BaseException)), None)
                if failed is not None:
                    raise failed
                async with self._uow() as tx:
                    self._next_due = await tx.deliveries.next_due()
            except BaseException:
                self._woken = True
                raise
            if len(due) == self.policy.batch:
                self._woken = True
            return len(due)

    async def _claim_due(self) -> list[Delivery]:
        """The due deliveries this pass takes: each is claimed in the store before it is sent, so a
        replica that still sends as another starts leading (a handover) never sends one at the same
        time. A batch is read and claimed as a whole; what another sender took is left to it."""
        now = self._clock.now()
        async with self._uow() as tx:
            due = await tx.deliveries.due(now, self.policy.batch)
        if not due:
            return []
        hold = timedelta(seconds=self.policy.timeout_seconds + self.policy.claim_seconds)
        async with self._uow() as tx:
            taken = await tx.deliveries.claim([delivery.id for delivery in due], now, now + hold)
            await tx.commit()
        return [delivery for delivery in due if delivery.id in taken]

    async def _attempt(self, delivery: Delivery, channel: Channel | None) -> Event | None:
        now = self._clock.now()
        error: WorpenError | None = None
        if channel is None:
            error = NotFound("channel", delivery.channel)
        else:
            body = message_body(channel, delivery, now)
            try:
                async with asyncio.timeout(self.policy.timeout_seconds):
                    await self._sender.send(channel.url, body, headers(channel, delivery, body, now))
            except TimeoutError:
                error = TimedOut(f"no answer within {self.policy.timeout_seconds:g} s")
            except WorpenError as exc:
                error = exc
        done = self._clock.now()
        attempts = delivery.attempts + 1
        event: Event | None = None
        if error is None:
            outcome = dataclasses.replace(
                delivery, status=DeliveryStatus.DELIVERED, attempts=attempts, delivered_at=done
            )
            event = NotificationDelivered(delivery.id, delivery.channel, attempts, delivery.run_id, done)
        else:
            reason = failure_reason(error)[:ERROR_MAX_LENGTH]
            final = attempts >= self.policy.max_attempts or isinstance(error, (*PERMANENT, NotFound))
            outcome = dataclasses.replace(
                delivery,
                status=DeliveryStatus.FAILED if final else DeliveryStatus.PENDING,
                attempts=attempts,
                last_error=reason,
                next_attempt_at=delivery.next_attempt_at
                if final
                else done + self.policy.retry_after(attempts),
            )
            if final:
                event = NotificationFailed(
                    delivery.id, delivery.channel, attempts, reason, delivery.run_id, done
                )
        async with self._uow() as tx:
            await tx.deliveries.update(outcome)
            await tx.commit()
        return event
