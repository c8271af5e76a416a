"""The API key repository, in memory."""

from __future__ import annotations

from tests.fakes.store import Store
from worpen_core.access.model import ApiKey
from worpen_core.shared.errors import Conflict


class FakeApiKeyRepository:
    def __init__(self, store: Store, staged: dict[str, ApiKey]) -> None:
        self._store = store
        self._staged = staged

    def _all(self) -> dict[str, ApiKey]:
        return {**self._store.api_keys, **self._staged}

    async def add(self, key: ApiKey) -> None:
        if (
            any(existing.secret_hash == key.secret_hash for existing in self._all().values())
            or key.id in self._all()
        ):
            raise Conflict("duplicate api key")
        self._staged[key.id] = key

    async def get(self, key_id: str) -> ApiKey | None:
        return self._all().get(key_id)

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        return next((key for key in self._all().values() if key.secret_hash == secret_hash), None)

    async def list_all(self) -> list[ApiKey]:
        return sorted(self._all().values(), key=lambda key: (key.created_at, key.id))

    async def update(self, key: ApiKey) -> None:
        self._staged[key.id] = key

    async def count(self) -> int:
        return len(self._all())
