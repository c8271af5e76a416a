"""ApiKeyRepository on SQLAlchemy Core. Only hashes of secrets are stored."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.access.model import ApiKey, Role
from worpen_infra.sql.tables import api_keys


def _to_row(key: ApiKey) -> dict[str, Any]:
    """The table's columns are the key's fields."""
    return {**dataclasses.asdict(key), "role": key.role.value, "agent_ids": list(key.agent_ids)}


def _from_row(row: Row[Any]) -> ApiKey:
    return ApiKey(**{**row._mapping, "role": Role(row.role), "agent_ids": tuple(row.agent_ids)})


class SqlAlchemyApiKeyRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, key: ApiKey) -> None:
        await self._connection.execute(insert(api_keys).values(_to_row(key)))

    async def get(self, key_id: str) -> ApiKey | None:
        row = (await self._connection.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        return None if row is None else _from_row(row)

    async def by_hash(self, secret_hash: str) -> ApiKey | None:
        query = select(api_keys).where(api_keys.c.secret_hash == secret_hash)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _from_row(row)

    async def list_all(self) -> list[ApiKey]:
        rows = await self._connection.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
        return [_from_row(row) for row in rows]

    async def update(self, key: ApiKey) -> None:
        await self._connection.execute(update(api_keys).where(api_keys.c.id == key.id).values(_to_row(key)))

    async def count(self) -> int:
        return (await self._connection.execute(select(func.count()).select_from(api_keys))).scalar_one()
