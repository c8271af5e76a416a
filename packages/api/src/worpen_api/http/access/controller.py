"""API keys, for admins."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, PathParameter

from worpen_api.http.access.dto import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from worpen_api.http.errors import documented
from worpen_api.http.security import requires
from worpen_core.access.model import Permission
from worpen_core.access.service import ApiKeys, Authenticator


class ApiKeyController(Controller):
    path = "/api/v1/apikeys"
    tags = ["api keys"]
    opt = requires(Permission.ADMIN)

    @post(
        operation_id="createApiKey",
        responses=documented(400, 409, 422, 503),
        summary="Create an API key",
        description="The answer holds the key itself, shown this once: only its hash is stored.",
    )
    async def create(
        self,
        api_keys: NamedDependency[ApiKeys],
        data: Annotated[
            ApiKeyIn,
            Body(
                examples=[
                    Example(summary="a CI job", value={"name": "ci", "role": "operator", "expiresIn": "30d"}),
                    Example(
                        summary="an agent", value={"name": "bee-001", "role": "agent", "agents": ["bee-001"]}
                    ),
                ]
            ),
        ],
    ) -> ApiKeyCreated:
        return ApiKeyCreated.issued(await api_keys.issue(data.to_command()))

    @get(operation_id="listApiKeys", responses=documented(503), summary="List API keys (never their secrets)")
    async def list_keys(self, api_keys: NamedDependency[ApiKeys]) -> list[ApiKeyOut]:
        return [ApiKeyOut.of(key) for key in await api_keys.list_all()]

    @delete(
        "/{key_id:str}",
        operation_id="revokeApiKey",
        responses=documented(404, 422, 503),
        summary="Revoke an API key",
        status_code=200,
    )
    async def revoke(
        self,
        api_keys: NamedDependency[ApiKeys],
        authenticator: NamedDependency[Authenticator],
        key_id: Annotated[str, PathParameter(max_length=32)],
    ) -> ApiKeyOut:
        key = await api_keys.revoke(key_id)
        authenticator.forget(key)
        return ApiKeyOut.of(key)
