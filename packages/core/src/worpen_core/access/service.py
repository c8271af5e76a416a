"""Access use cases: issuing and revoking keys, authenticating callers, throttling failed attempts."""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from worpen_core.access.commands import CreateApiKey
from worpen_core.access.model import ApiKey, Principal, Role, hash_secret, new_secret
from worpen_core.access.ports import AccessUnitOfWorkFactory, FailedAuthLog
from worpen_core.shared.errors import NotFound, RateLimited, Unauthenticated
from worpen_core.shared.ports import Clock


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str


class ApiKeys:
    def __init__(self, uow: AccessUnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def issue(self, cmd: CreateApiKey) -> IssuedKey:
        now = self._clock.now()
        secret = new_secret()
        key = ApiKey(
            id=secrets.token_hex(6),
            name=cmd.name,
            role=cmd.role,
            prefix=secret[:12],
            secret_hash=hash_secret(secret),
            created_at=now,
            agent_ids=cmd.agent_ids,
            expires_at=None if cmd.expires_in is None else now + cmd.expires_in,
        )
        async with self._uow() as uow:
            await uow.api_keys.add(key)
            await uow.commit()
        return IssuedKey(key, secret)

    async def issue_first_admin(self) -> IssuedKey | None:
        """On a database with no key at all, issue an admin key; otherwise do nothing."""
        async with self._uow() as uow:
            if await uow.api_keys.count():
                return None
        return await self.issue(CreateApiKey(name="initial-admin", role=Role.ADMIN))

    async def list_all(self) -> list[ApiKey]:
        async with self._uow() as uow:
            return await uow.api_keys.list_all()

    async def revoke(self, key_id: str) -> ApiKey:
        async with self._uow() as uow:
            key = await uow.api_keys.get(key_id)
            if key is None:
                raise NotFound("api key", key_id)
            if key.revoked_at is None:
                key = replace(key, revoked_at=self._clock.now())
                await uow.api_keys.update(key)
                await uow.commit()
        return key


HOUR = timedelta(hours=1)
MISSING_CREDENTIAL = "missing credential: send 'Authorization: Bearer <key>'"


class Authenticator:
    """Turns a presented secret into a Principal. Known keys are cached for `cache_for`, so a key
    revoked by another process (the CLI) stops working within that time; revocations made through
    `forget` take effect at once."""

    def __init__(
        self, uow: AccessUnitOfWorkFactory, clock: Clock, cache_for: timedelta, throttle: FailedAuthThrottle
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._cache_for = cache_for
        self._cache: dict[str, tuple[ApiKey, Principal, datetime]] = {}
        """By secret hash: the key, its principal (built once), and when they were read."""
        self._throttle = throttle

    async def admit(self, authorization: str | None, client: str) -> Principal:
        """Authenticate an `Authorization: Bearer <key>` value (HTTP header or gRPC metadata) from
        `client`. The throttle slows down guessing, not callers: a valid key is always admitted, a request
        with no credential at all is a plain 401, and only a bad credential counts as a failure; once
        `client` has failed too often, its further failed attempts are refused with 429."""
        scheme, _, secret = (authorization or "").strip().partition(" ")
        secret = secret.strip()
        if not scheme or (scheme.lower() == "bearer" and not secret):
            raise Unauthenticated(MISSING_CREDENTIAL)
        try:
            if scheme.lower() != "bearer":
                raise Unauthenticated(f"unsupported scheme {scheme[:16]!r}: {MISSING_CREDENTIAL}")
            return await self.authenticate(secret)
        except Unauthenticated:
            await self._throttle.failed(client)
            raise

    async def authenticate(self, secret: str) -> Principal:
        now = self._clock.now()
        digest = hash_secret(secret)
        cached = self._cache.get(digest)
        if cached is not None and now - cached[2] < self._cache_for:
            key, principal = cached[0], cached[1]
        else:
            async with self._uow() as uow:
                found = await uow.api_keys.by_hash(digest)
            if found is None:
                self._cache.pop(digest, None)
                raise Unauthenticated("unknown API key")
            key = found
            principal = Principal(key.id, key.name, key.role, frozenset(key.agent_ids))
            self._cache[digest] = (key, principal, now)
        if key.revoked_at is not None:
            raise Unauthenticated("API key revoked")
        if not key.is_active(now):
            raise Unauthenticated("API key expired")
        return principal

    def forget(self, key: ApiKey) -> None:
        self._cache.pop(key.secret_hash, None)


class FailedAuthThrottle:
    """At most `limit` failed authentications per client within `window`; past that, 429. It also
    counts every client's failures per minute over the last hour, for the dashboard's security score.

    With a shared `log` (several replicas on one database), a failure is recorded there and answers how
    many the client made on every replica; the client is then refused here until enough of them leave the
    window. Only a failure touches the database, never a success; the replicas learn of a client's block
    from its next failure each, so it gets at most `limit` + (replicas - 1) attempts a window. The log
    keeps an hour of failures, so that the dashboard counts those of every replica, whichever answers."""

    def __init__(self, clock: Clock, limit: int, window: timedelta, log: FailedAuthLog | None = None) -> None:
        self._clock = clock
        self._limit = limit
        self._window = window
        self._log = log
        self._failures: dict[str, deque[datetime]] = {}
        self._blocked: dict[str, datetime] = {}
        """With a shared log: until when each client is refused, as its last failure here learnt."""
        self._per_minute: deque[tuple[datetime, int]] = deque(maxlen=60)
        """(minute, failures in it), oldest first."""

    async def failed(self, client: str) -> None:
        """A failed attempt of `client`: RateLimited if it spent its attempts, else counted."""
        self.check(client)
        self.record_failure(client)
        if self._log is None:
            return
        now = self._clock.now()
        recent = await self._log.record(
            client, now, now - self._window, self._limit, keep_since=now - max(self._window, HOUR)
        )
        if len(recent) >= self._limit:
            self._blocked[client] = recent[self._limit - 1] + self._window

    def check(self, client: str) -> None:
        now = self._clock.now()
        if self._log is not None:
            until = self._blocked.get(client)
            if until is None:
                return
            if now >= until:
                del self._blocked[client]
                return
            raise RateLimited("too many failed authentications from this client", _seconds(until - now))
        failures = self._failures.get(client)
        if not failures:
            return
        while failures and now - failures[0] >= self._window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        elif len(failures) >= self._limit:
            raise RateLimited(
                "too many failed authentications from this client", _seconds(failures[0] + self._window - now)
            )

    def record_failure(self, client: str) -> None:
        now = self._clock.now()
        if self._log is not None:
            return  # counted in the shared log by `failed`
        self._failures.setdefault(client, deque(maxlen=self._limit)).append(now)
        minute = now.replace(second=0, microsecond=0)
        if self._per_minute and self._per_minute[-1][0] == minute:
            self._per_minute[-1] = (minute, self._per_minute[-1][1] + 1)
        else:
            self._per_minute.append((minute, 1))

    async def failures_in_last_hour(self) -> int:
        """Failed authentications of every client in the last hour: on every replica with a shared log,
        else those this server saw (counted by the minute)."""
        if self._log is not None:
            return await self._log.count_since(self._clock.now() - HOUR)
        since = self._clock.now().replace(second=0, microsecond=0) - HOUR
        return sum(count for minute, count in self._per_minute if minute > since)


def _seconds(left: timedelta) -> int:
    """Retry-After for a wait of `left`: whole seconds, never short of it."""
    return max(1, int(left.total_seconds()) + 1)
