"""Incidents over HTTP: the list the cockpit shows, one incident with its timeline, resolution by hand."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Example
from litestar.params import Body, PathParameter, QueryParameter

from worpen_api.http.errors import documented
from worpen_api.http.incidents.dto import IncidentDetailOut, IncidentOut, ResolveIn
from worpen_api.http.parameters import Node
from worpen_api.http.security import principal_of, requires
from worpen_core.access.model import Permission
from worpen_core.incidents.model import SERVICE_MAX_LENGTH, IncidentQuery, IncidentStatus
from worpen_core.incidents.service import Incidents

IncidentId = Annotated[str, PathParameter(min_length=1, max_length=40, description="The incident's id")]


class IncidentController(Controller):
    path = "/api/v1/incidents"
    tags = ["incidents"]

    @get(
        operation_id="listIncidents",
        responses=documented(422, 503),
        opt=requires(Permission.READ),
        summary="Incidents, newest first",
        description="A bare array of incidents, newest (by when they opened) first, without their "
        "timelines. An incident is one problem (service, node, issue): while it is open (PENDING or "
        "FAILED) a recurrence is counted in `occurrences` rather than opening another.",
    )
    async def list_incidents(
        self,
        incidents: NamedDependency[Incidents],
        incident_status: Annotated[IncidentStatus | None, QueryParameter(name="status")] = None,
        service: Annotated[str | None, QueryParameter(min_length=1, max_length=SERVICE_MAX_LENGTH)] = None,
        node: Node = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> list[IncidentOut]:
        query = IncidentQuery(status=incident_status, service=service, node=node, limit=limit)
        return [IncidentOut.of(incident) for incident in await incidents.query(query)]

    @get(
        "/{incident_id:str}",
        operation_id="getIncident",
        responses=documented(404, 422, 503),
        opt=requires(Permission.READ),
        summary="One incident with its timeline",
    )
    async def get_incident(
        self, incidents: NamedDependency[Incidents], incident_id: IncidentId
    ) -> IncidentDetailOut:
        return IncidentDetailOut.of(await incidents.get(incident_id))

    @post(
        "/{incident_id:str}/resolve",
        operation_id="resolveIncident",
        responses=documented(400, 404, 409, 422, 503),
        opt=requires(Permission.OPERATE),
        status_code=200,
        summary="Resolve an incident by hand",
        description="Resolves an open (PENDING or FAILED) incident with method MANUAL, by the key's name; "
        "audited as `incident.resolve`. An incident already resolved is a 409.",
    )
    async def resolve(
        self,
        request: Request[Any, Any, Any],
        incidents: NamedDependency[Incidents],
        incident_id: IncidentId,
        data: Annotated[
            ResolveIn, Body(examples=[Example(value={"method": "MANUAL", "notes": "disk cleaned up"})])
        ],
    ) -> IncidentDetailOut:
        await incidents.resolve_as(principal_of(request), incident_id, data.notes)
        return IncidentDetailOut.of(await incidents.get(incident_id))
