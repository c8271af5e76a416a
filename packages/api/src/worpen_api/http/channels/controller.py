"""Notification channels (admins manage them; scripts name them) and the outbox of deliveries."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, PathParameter, QueryParameter

from worpen_api.http.channels.dto import ChannelIn, ChannelOut, ChannelPatchIn, DeliveryOut
from worpen_api.http.errors import documented
from worpen_api.http.security import principal_of, requires
from worpen_core.access.model import Permission
from worpen_core.automation.channels import CHANNEL_NAME_PATTERN, DeliveryQuery, DeliveryStatus
from worpen_core.automation.notifications import Notifications

ChannelId = Annotated[str, PathParameter(min_length=1, max_length=40)]
SIGNING = (
    "When the channel has a secret, each request carries `X-Worpen-Timestamp` (unix seconds) and "
    '`X-Worpen-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.'
)


class ChannelController(Controller):
    path = "/api/v1/automation/channels"
    tags = ["automation"]

    @get(
        operation_id="listChannels",
        responses=documented(503),
        opt=requires(Permission.READ),
        summary="List notification channels, by name",
        description="URLs are masked (Slack's carry their secret in the path) and secrets never shown.",
    )
    async def list_channels(self, notifications: NamedDependency[Notifications]) -> list[ChannelOut]:
        return [ChannelOut.of(channel) for channel in await notifications.list_all()]

    @post(
        operation_id="createChannel",
        responses=documented(400, 409, 422, 503),
        opt=requires(Permission.ADMIN),
        summary="Create a notification channel",
        description='Scripts send to channels by name (`notify.slack("#ops-alerts", text)`, '
        '`notify.webhook("ops-webhook", payload)`), never to a URL. Slack channels get `{"text"}`; '
        "webhook channels a JSON envelope `{version, id, channel, rule, runId, sentAt, payload}`. " + SIGNING,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        notifications: NamedDependency[Notifications],
        data: Annotated[
            ChannelIn,
            Body(
                examples=[
                    Example(
                        summary="Slack",
                        value={
                            "name": "#ops-alerts",
                            "kind": "slack",
                            "url": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
                        },
                    ),
                    Example(
                        summary="a signed webhook",
                        value={
                            "name": "ops-webhook",
                            "kind": "webhook",
                            "url": "https://ops.example.com/hooks/worpen",
                            "secret": "a-long-random-signing-secret",
                        },
                    ),
                ]
            ),
        ],
    ) -> ChannelOut:
        channel = await notifications.create(
            principal_of(request), data.name, data.kind, data.url, data.secret
        )
        return ChannelOut.of(channel)

    @get(
        "/{channel_id:str}",
        operation_id="getChannel",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="A notification channel",
    )
    async def get_channel(
        self, notifications: NamedDependency[Notifications], channel_id: ChannelId
    ) -> ChannelOut:
        return ChannelOut.of(await notifications.get(channel_id))

    @put(
        "/{channel_id:str}",
        operation_id="updateChannel",
        responses=documented(400, 404, 409, 422, 503),
        opt=requires(Permission.ADMIN),
        summary="Change a notification channel (partial)",
        description="Fields left out are kept; `removeSecret: true` drops the signing secret. A renamed "
        "channel no longer receives what was sent to its old name (rules name it).",
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        notifications: NamedDependency[Notifications],
        channel_id: ChannelId,
        data: Annotated[
            ChannelPatchIn,
            Body(examples=[Example(summary="a new URL", value={"url": "https://ops.example.com/hooks/v2"})]),
        ],
    ) -> ChannelOut:
        channel = await notifications.update(principal_of(request), channel_id, data.to_patch())
        return ChannelOut.of(channel)

    @delete(
        "/{channel_id:str}",
        operation_id="deleteChannel",
        responses=documented(404, 422, 503),
        opt=requires(Permission.ADMIN),
        status_code=200,
        summary="Delete a notification channel",
        description="Deliveries still pending for it fail (the channel is gone); rules naming it fail "
        "their runs until a channel of that name exists again.",
    )
    async def delete_channel(
        self,
        request: Request[Any, Any, Any],
        notifications: NamedDependency[Notifications],
        channel_id: ChannelId,
    ) -> ChannelOut:
        return ChannelOut.of(await notifications.delete(principal_of(request), channel_id))


class DeliveryController(Controller):
    path = "/api/v1/automation/deliveries"
    tags = ["automation"]

    @get(
        operation_id="listDeliveries",
        responses=documented(422, 503),
        opt=requires(Permission.READ),
        summary="Notifications sent, pending and failed, newest first",
        description="The outbox: each notification a rule asked for, its attempts, when it is tried "
        "again (backoff from 1 s doubling to 5 min), the last error, and whether it was DELIVERED or "
        "FAILED (given up after the last attempt, or refused for good by its receiver).",
    )
    async def list_deliveries(
        self,
        notifications: NamedDependency[Notifications],
        status: Annotated[
            DeliveryStatus | None, QueryParameter(description="Only those in this state")
        ] = None,
        channel: Annotated[
            str | None,
            QueryParameter(
                min_length=1, max_length=100, pattern=CHANNEL_NAME_PATTERN, description="Only to this channel"
            ),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[DeliveryOut]:
        query = DeliveryQuery(status=status, channel=channel, limit=limit)
        return [DeliveryOut.of(delivery) for delivery in await notifications.deliveries(query)]
