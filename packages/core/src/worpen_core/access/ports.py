"""What access needs from storage."""

from __future__ import annotations

from collections.abc import Callable
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


class AccessUnitOfWork(UnitOfWork, Protocol):
    """A transaction over API keys."""

    api_keys: ApiKeyRepository


AccessUnitOfWorkFactory = Callable[[], AccessUnitOfWork]
