"""What access needs from storage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from worpen_core.access.model import ApiKey
from worpen_core.shared.ports import UnitOfWork


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> None: ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def by_hash(self, secret_hash: str) -> ApiKey | None: ...

    async def list_all(self) -> list[ApiKey]: ...

    async def update(self, key: ApiKey) -> None: ...

    async def count(self) -> int: ...


class FailedAuthLog(Protocol):
    """Failed authentications as every replica of one database sees them, so that a client spread over
    the replicas by a load balancer gets the throttle's limit in all, not per replica."""

    async def record(
        self, client: str, at: datetime, since: datetime, most: int, *, keep_since: datetime
    ) -> list[datetime]:
        """Record a failure of `client` at `at` (and forget every client's failures before `keep_since`);
        the client's failures since `since`, this one included, newest first, at most `most`."""
        ...

    async def count_since(self, since: datetime) -> int:
        """Every client's failures since `since`, on every replica (the dashboard's count)."""
        ...


class AccessUnitOfWork(UnitOfWork, Protocol):
    """A transaction over API keys."""

    api_keys: ApiKeyRepository


AccessUnitOfWorkFactory = Callable[[], AccessUnitOfWork]
