"""The audit trail over HTTP."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from worpen_api.http.audit.dto import AuditOut
from worpen_api.http.errors import documented
from worpen_api.http.parameters import Since, since_of
from worpen_api.http.security import requires
from worpen_core.access.model import Permission
from worpen_core.audit.model import AuditQuery
from worpen_core.audit.service import AuditTrail


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get(
        operation_id="readAudit",
        responses=documented(422, 503),
        opt=requires(Permission.ADMIN),
        summary="The audit trail, newest first",
        description="Every change made through Worpen (container start, stop, restart and remove, prune, "
        "image pull, terminal open): who (the key's name), what, on which target and node, when, and how "
        "it ended (SUCCEEDED, FAILED with the error, or PENDING while it runs).",
    )
    async def read(
        self,
        audit: NamedDependency[AuditTrail],
        since: Since = None,
        actor: Annotated[str | None, QueryParameter(max_length=64)] = None,
        action: Annotated[str | None, QueryParameter(max_length=64, examples=[])] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[AuditOut]:
        query = AuditQuery(since=since_of(since), actor=actor, action=action, limit=limit)
        entries = await audit.query(query)
        return [AuditOut.of(entry) for entry in entries]
