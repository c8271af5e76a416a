"""Notification channel and delivery DTOs. A channel's URL is answered masked and its signing secret
never: `hasSecret` says whether it has one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import Meta

from worpen_api.http.wire import Wire
from worpen_core.automation.channels import (
    CHANNEL_NAME_PATTERN,
    SECRET_MAX_LENGTH,
    SECRET_MIN_LENGTH,
    URL_MAX_LENGTH,
    Channel,
    ChannelKind,
    ChannelPatch,
    Delivery,
    DeliveryStatus,
)

ChannelName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=100,
        pattern=CHANNEL_NAME_PATTERN,
        description="Letters, digits, '#', '.', '_' and '-'; what scripts name (`notify.slack(name, ...)`)",
        examples=["#ops-alerts"],
    ),
]
ChannelUrl = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=URL_MAX_LENGTH,
        pattern=r"^[hH][tT][tT][pP][sS]?://[^\s\x00-\x1f]+$",
        description="An http or https URL. One whose host resolves to a loopback, link-local (cloud "
        "metadata) or private address is refused unless the server allows private webhooks",
        examples=["https://hooks.slack.com/services/T000/B000/XXXXXXXX"],
    ),
]
Secret = Annotated[
    str,
    Meta(
        min_length=SECRET_MIN_LENGTH,
        max_length=SECRET_MAX_LENGTH,
        description="The HMAC-SHA256 signing key of X-Worpen-Signature; never answered",
    ),
]


class ChannelIn(Wire, forbid_unknown_fields=True):
    name: ChannelName
    kind: ChannelKind
    url: ChannelUrl
    secret: Secret | None = None


class ChannelPatchIn(Wire, forbid_unknown_fields=True):
    """What to change; a field left out (or null) is kept."""

    name: ChannelName | None = None
    kind: ChannelKind | None = None
    url: ChannelUrl | None = None
    secret: Secret | None = None
    remove_secret: bool = False

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "A partial update: fields left out or null are kept. `removeSecret: true` drops the "
        "signing secret (not together with a new `secret`).",
        "not": {
            "properties": {"removeSecret": {"const": True}, "secret": {"type": "string"}},
            "required": ["removeSecret", "secret"],
        },
    }

    def to_patch(self) -> ChannelPatch:
        return ChannelPatch(self.name, self.kind, self.url, self.secret, self.remove_secret)


class ChannelOut(Wire):
    id: str
    name: str
    kind: ChannelKind
    url: Annotated[str, Meta(description="Masked: the scheme, host, port and first path segment only")]
    has_secret: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, channel: Channel) -> ChannelOut:
        return cls(
            id=channel.id,
            name=channel.name,
            kind=channel.kind,
            url=channel.masked_url,
            has_secret=channel.has_secret,
            created_at=channel.created_at,
            updated_at=channel.updated_at,
        )


class DeliveryOut(Wire):
    id: int
    channel: str
    body: Annotated[
        dict[str, Any],
        Meta(description="What is sent: the rule that asked (or null) and the payload (Slack: its `text`)"),
    ]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    run_id: str | None
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        return msgspec.convert(delivery, cls, from_attributes=True)
