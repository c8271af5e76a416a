"""Where scripts may send notifications: channels an admin configured, and the outbox of deliveries.

A script names a channel, never a URL, so a rule author cannot make Worpen call an arbitrary address.
A channel's URL may carry a secret (Slack's incoming webhooks hold theirs in the path): it is shown only
masked, and a signing secret is never shown at all.

What a receiver gets (a POST with `Content-Type: application/json`):

- a Slack channel: `{"text": "..."}`, Slack's incoming-webhook format;
- a webhook channel: an envelope, `{"version": 1, "id": <delivery id>, "channel": "<name>", "rule":
  "<rule name>" | null, "runId": "<run id>" | null, "sentAt": "<RFC 3339>", "payload": {...}}`.

Both carry `X-Worpen-Delivery: <delivery id>` (the same on every attempt: delivery is at least once,
so a receiver deduplicates by it). When the channel has a signing secret, they also carry
`X-Worpen-Timestamp: <unix seconds>` and `X-Worpen-Signature: sha256=<hex>`, the HMAC-SHA256 under the
secret of the timestamp, a ".", and the raw body, as Stripe and Slack sign theirs: a receiver recomputes
it over the bytes it received and refuses a timestamp more than a few minutes old, so a captured request
cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

from worpen_core.events.model import JsonValue, plain
from worpen_core.shared.errors import InvalidInput

CHANNEL_NAME_MAX_LENGTH = 100
CHANNEL_NAME_PATTERN = r"^[A-Za-z0-9#._-]{1,100}$"
"""`#ops-alerts`, `ops-webhook`: letters, digits, '#', '.', '_' and '-'."""
URL_MAX_LENGTH = 2048
SECRET_MIN_LENGTH = 16
SECRET_MAX_LENGTH = 256
ENVELOPE_VERSION = 1
MASK = "…"

SIGNATURE_HEADER = "X-Worpen-Signature"
TIMESTAMP_HEADER = "X-Worpen-Timestamp"
DELIVERY_HEADER = "X-Worpen-Delivery"

_name = re.compile(CHANNEL_NAME_PATTERN)


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"


def check_channel_name(name: str, field: str = "name") -> None:
    if not _name.match(name):
        raise InvalidInput(
            f"must be 1 to {CHANNEL_NAME_MAX_LENGTH} letters, digits, '#', '.', '_' or '-'", field
        )


def check_url(url: str, field: str = "url") -> None:
    """An http or https URL with a host; whether its host may be called is the sender's check."""
    if not url or len(url) > URL_MAX_LENGTH:
        raise InvalidInput(f"must be 1 to {URL_MAX_LENGTH} characters long", field)
    if any(char.isspace() or ord(char) < 0x20 for char in url):
        raise InvalidInput("may not contain whitespace or control characters", field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"is not a valid URL: {exc}", field) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("must be an http:// or https:// URL", field)
    if not parts.hostname:
        raise InvalidInput("must name a host", field)
    if port == 0:
        raise InvalidInput("must not name port 0", field)


def check_secret(secret: str, field: str = "secret") -> None:
    if not SECRET_MIN_LENGTH <= len(secret) <= SECRET_MAX_LENGTH:
        raise InvalidInput(f"must be {SECRET_MIN_LENGTH} to {SECRET_MAX_LENGTH} characters long", field)


def masked_url(url: str) -> str:
    """`scheme://host[:port]` and the first path segment; the rest of the path, the query and the
    fragment are replaced by "…" (`/…` after the segment when the path goes on), and user info is never
    shown (Slack's URLs carry their secret in the
    path: `https://hooks.slack.com/services/…`)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    origin = f"{parts.scheme.lower()}://{host}" + ("" if port is None else f":{port}")
    segments = parts.path.split("/")
    first = segments[1] if len(segments) > 1 else ""
    shown = f"{origin}/{first}" if parts.path else origin
    if len(segments) > 2:
        return f"{shown}/{MASK}"
    return shown + (MASK if parts.query or parts.fragment else "")


@dataclass(slots=True)
class Channel:
    id: str
    name: str
    kind: ChannelKind
    url: str
    signing_secret: str | None
    created_at: datetime
    updated_at: datetime

    def __repr__(self) -> str:
        """Never the URL nor the secret: a channel may end up in a log line or a traceback."""
        return f"Channel(id={self.id!r}, name={self.name!r}, kind={self.kind.value!r})"

    @property
    def masked_url(self) -> str:
        return masked_url(self.url)

    @property
    def has_secret(self) -> bool:
        return self.signing_secret is not None

    @staticmethod
    def new(name: str, kind: ChannelKind, url: str, secret: str | None, at: datetime) -> Channel:
        return Channel(secrets.token_hex(8), name, kind, url, secret, at, at)


@dataclass(frozen=True, slots=True)
class ChannelPatch:
    """A partial update: None leaves a field as it is; `remove_secret` drops the signing secret."""

    name: str | None = None
    kind: ChannelKind | None = None
    url: str | None = None
    secret: str | None = None
    remove_secret: bool = False

    def __post_init__(self) -> None:
        if self.name is not None:
            check_channel_name(self.name)
        if self.url is not None:
            check_url(self.url)
        if self.secret is not None:
            check_secret(self.secret)
            if self.remove_secret:
                raise InvalidInput("give a new secret or remove it, not both", "removeSecret")


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"
    """Not sent yet, or to be tried again at `next_attempt_at`."""
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    """Given up: every attempt failed, or the receiver refused it in a way a retry cannot change."""


@dataclass(slots=True)
class Delivery:
    """One notification in the outbox. `body` is what to send, as stored: `{"rule": <name> | null,
    "payload": {...}}` (a Slack channel sends the payload's `text`)."""

    id: int
    channel: str
    body: dict[str, JsonValue]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    run_id: str | None
    created_at: datetime
    delivered_at: datetime | None = None

    @property
    def rule(self) -> str | None:
        rule = self.body.get("rule")
        return rule if isinstance(rule, str) else None

    @property
    def payload(self) -> dict[str, JsonValue]:
        payload = self.body.get("payload")
        return payload if isinstance(payload, dict) else {}


@dataclass(frozen=True, slots=True)
class DeliveryQuery:
    status: DeliveryStatus | None = None
    channel: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How deliveries are sent and retried, as Alertmanager's receivers: each attempt times out, retries
    back off exponentially, and after `max_attempts` the delivery fails loudly."""

    max_attempts: int = 10
    first_retry: timedelta = timedelta(seconds=1)
    max_retry: timedelta = timedelta(minutes=5)
    timeout_seconds: float = 5.0
    batch: int = 20
    """Deliveries sent at once by one pass (concurrently)."""
    claim_seconds: float = 30.0
    """How long an attempt holds its delivery beyond its timeout: no other sender takes it meanwhile,
    and if the replica sending it dies, another sends it again after that (at least once)."""

    def retry_after(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: first_retry, doubling, capped at max_retry."""
        if attempts >= 32:
            return self.max_retry
        return min(self.first_retry * (1 << (attempts - 1)), self.max_retry)


def encode(value: JsonValue) -> bytes:
    """Compact UTF-8 JSON; NaN and infinities are refused (InvalidInput), as JSON has none."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"is not JSON: {exc}", "body") from None


def message_body(channel: Channel, delivery: Delivery, sent_at: datetime) -> bytes:
    """What the receiver of `channel` gets for `delivery` (see the module's docstring)."""
    payload = delivery.payload
    if channel.kind is ChannelKind.SLACK:
        text = payload.get("text")
        return encode({"text": text if isinstance(text, str) else encode(payload).decode()})
    return encode(
        {
            "version": ENVELOPE_VERSION,
            "id": delivery.id,
            "channel": channel.name,
            "rule": delivery.rule,
            "runId": delivery.run_id,
            "sentAt": plain(sent_at),
            "payload": payload,
        }
    )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def headers(channel: Channel, delivery: Delivery, body: bytes, sent_at: datetime) -> dict[str, str]:
    sent = {"Content-Type": "application/json", DELIVERY_HEADER: str(delivery.id)}
    if channel.signing_secret is not None:
        timestamp = int(sent_at.timestamp())
        sent[TIMESTAMP_HEADER] = str(timestamp)
        sent[SIGNATURE_HEADER] = signature(channel.signing_secret, timestamp, body)
    return sent
