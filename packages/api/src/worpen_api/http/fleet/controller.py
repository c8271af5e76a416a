"""The fleet: agents, their heartbeats, and resynchronisation."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, FromQuery, PathParameter, QueryParameter
from litestar.types import Scope

from worpen_api.http.errors import documented
from worpen_api.http.fleet.dto import (
    AgentDetail,
    AgentOut,
    HeartbeatAck,
    HeartbeatIn,
    SyncIn,
    SyncOut,
    Telemetry,
)
from worpen_api.http.openapi import OptionalBody
from worpen_api.http.security import principal_of, requires
from worpen_api.observability import mark_routine
from worpen_api.settings import Settings
from worpen_core.access.model import Permission, Principal
from worpen_core.agents.service import Agents
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.ids import AGENT_ID_MAX_LENGTH

NEXT_CURSOR = "X-Next-Cursor"
HEARTBEAT_PATH = "/api/v1/internal/heartbeat"
HEARTBEAT_OPT = requires(Permission.REPORT)
CURSOR_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$"
"""Unpadded base64url: what `_encode_cursor` hands out, and any text `_decode_cursor` takes."""


def _encode_cursor(agent_id: str) -> str:
    return base64.urlsafe_b64encode(agent_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    """The id after which the page starts. Agent ids are ASCII, so a cursor this server handed out decodes
    to one; the bytes of any other are read as Latin-1, which still orders agents."""
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("latin-1")


class AgentController(Controller):
    path = "/api/v1/agents"
    tags = ["agents"]

    @get(
        operation_id="listAgents",
        responses=documented(422),
        opt=requires(Permission.READ),
        summary="List agents",
        description=f"A bare array ordered by id. When more remain, the {NEXT_CURSOR} header "
        "holds the cursor for the next page.",
        sync_to_thread=False,
    )
    def list_agents(
        self,
        fleet: NamedDependency[Fleet],
        agent_channel: NamedDependency[Agents],
        status: FromQuery[AgentStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 500,
        cursor: Annotated[
            str | None,
            QueryParameter(
                max_length=256, pattern=CURSOR_PATTERN, description=f"The {NEXT_CURSOR} of the previous page"
            ),
        ] = None,
    ) -> Response[list[AgentOut]]:
        found = fleet.query(status, None if cursor is None else _decode_cursor(cursor))
        page = found[:limit]
        headers = {NEXT_CURSOR: _encode_cursor(page[-1].id)} if len(found) > limit else {}
        return Response(
            [AgentOut.of(agent, agent_channel.connection(agent.id)) for agent in page], headers=headers
        )

    @get(
        "/{agent_id:str}",
        operation_id="getAgent",
        responses=documented(404, 422),
        opt=requires(Permission.READ),
        summary="One agent with its latest telemetry",
        sync_to_thread=False,
    )
    def get_agent(
        self,
        fleet: NamedDependency[Fleet],
        agent_channel: NamedDependency[Agents],
        agent_id: Annotated[str, PathParameter(max_length=AGENT_ID_MAX_LENGTH)],
    ) -> AgentDetail:
        return AgentDetail.of(fleet.get(agent_id), agent_channel.connection(agent_id))

    @get(
        "/{agent_id:str}/telemetry",
        operation_id="getAgentTelemetry",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="An agent's newest telemetry samples, newest first",
    )
    async def telemetry(
        self,
        fleet: NamedDependency[Fleet],
        agent_id: Annotated[str, PathParameter(max_length=AGENT_ID_MAX_LENGTH)],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[Telemetry]:
        return [Telemetry.of(sample) for sample in await fleet.history(agent_id, limit)]

    @post(
        "/sync",
        operation_id="syncAgents",
        operation_class=OptionalBody,
        responses=documented(400, 404, 422, 503),
        opt=requires(Permission.OPERATE),
        summary="Resynchronise agents",
        description="Asks every agent connected over the command channel (or the target alone) to send "
        "its inventory and a heartbeat now, and answers once each has acknowledged or "
        "WORPEN_AGENT_SYNC_TIMEOUT seconds have passed: `agents` were asked, `acknowledged` answered in "
        "time, `missing` names those that did not (a target that is known but not connected is missing). "
        "Then re-evaluates the status of every agent (or of the target) right away: `wentOffline` names "
        "those found OFFLINE. Without a body, every agent; an unknown target is a 404.",
        status_code=200,
    )
    async def sync(
        self,
        fleet: NamedDependency[Fleet],
        agent_channel: NamedDependency[Agents],
        settings: NamedDependency[Settings],
        data: Annotated[
            SyncIn,
            Body(
                examples=[
                    Example(summary="every agent", value={"target": "all"}),
                    Example(summary="one agent", value={"target": "bee-001"}),
                ]
            ),
        ] = SyncIn(),  # noqa: B008 (an immutable default body)
    ) -> SyncOut:
        target = None if data.target == "all" else data.target
        # Ask first: the heartbeats the agents send before acknowledging count in the re-evaluation.
        report = await agent_channel.sync(target, settings.agents.sync_timeout)
        events = await fleet.sweep(None if target is None else [target])
        return SyncOut.of(report, [event.agent_id for event in events])


async def report_heartbeat(
    scope: Scope, fleet: Fleet, principal: Principal, data: HeartbeatIn
) -> HeartbeatAck:
    """The work of the heartbeat route once the caller is authenticated and the body decoded, whichever
    path took the request: HeartbeatController, or worpen_api.http.fleet.intake in front of Litestar."""
    principal.authorize_report(data.id)
    ack = await fleet.record_heartbeat(data.to_command())
    if not ack.changed:
        mark_routine(scope)
    return HeartbeatAck(next_heartbeat_seconds=ack.next_heartbeat_seconds, status=ack.status)


class HeartbeatController(Controller):
    """Requests that worpen_api.http.fleet.intake does not take itself come here (see there); the route is
    documented here in the OpenAPI schema either way."""

    path = HEARTBEAT_PATH
    tags = ["agents"]

    @post(
        operation_id="reportHeartbeat",
        responses=documented(400, 413, 422, 503),
        opt=HEARTBEAT_OPT,
        status_code=202,
        summary="Report a heartbeat (agent keys, for their own ids)",
        description="Registers the agent on its first heartbeat. The answer says when to report next.",
    )
    async def heartbeat(
        self,
        request: Request[Any, Any, Any],
        fleet: NamedDependency[Fleet],
        data: Annotated[
            HeartbeatIn,
            Body(
                examples=[
                    Example(
                        summary="a healthy node",
                        value={
                            "id": "bee-001",
                            "cpu": 12.5,
                            "ram": 40.1,
                            "status": "ONLINE",
                            "ip": "10.0.0.7",
                        },
                    )
                ]
            ),
        ],
    ) -> HeartbeatAck:
        return await report_heartbeat(request.scope, fleet, principal_of(request), data)
