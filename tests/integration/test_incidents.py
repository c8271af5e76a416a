"""Incidents over HTTP against a real server and its database: the list the cockpit reads (filtered,
newest first), one incident with its timeline, resolution by hand (audited, in the central log, 409 the
second time), 404 for an unknown id, and viewers who read but cannot resolve.

The rule engine that opens incidents is another feature; these tests open them with the core service
itself, on the server's own database while it serves, as a second writer would."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence

import httpx
import pytest

from tests.fakes.bus import FakeEventBus
from tests.integration.docker_support import wait_for
from tests.integration.support import Keys, WorpenServer
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.model import Incident, IncidentPolicy, IncidentReport, Severity
from worpen_core.incidents.service import Incidents
from worpen_infra.clock import SystemClock
from worpen_infra.sql.database import create_engine
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory


def seed(server: WorpenServer, reports: Sequence[IncidentReport], fail: int | None = None) -> list[Incident]:
    """Report each of `reports` in order through the core service on the server's database; fail the
    `fail`-th incident reported, if given."""

    async def run() -> list[Incident]:
        engine = create_engine(server.database_url)
        try:
            uow = SqlAlchemyUnitOfWorkFactory(engine)
            clock, bus = SystemClock(), FakeEventBus()
            audit = AuditTrail(uow, clock, bus)
            incidents = Incidents(
                uow,
                clock,
                bus,
                Fleet(uow, bus, clock, FleetPolicy()),
                Containers([], audit, clock, bus, ContainerLimits()),
                audit,
                IncidentPolicy(),
            )
            made = [await incidents.report(report) for report in reports]
            if fail is not None:
                await incidents.step(made[fail].id, "restarting it", action="docker.restart")
                await incidents.fail(made[fail].id, "gave up after 3 attempts")
            return made
        finally:
            await engine.dispose()

    return asyncio.run(run())


def scripted(service: str, issue: str = "checkout is slow", node: str = "node-a") -> IncidentReport:
    """An incident as a script opens it: no condition Worpen could check, so it stays open until resolved."""
    return IncidentReport(service, node, issue, Severity.MEDIUM, message=f"{issue} on {service}")


@pytest.fixture
def service() -> str:
    return f"shop-{secrets.token_hex(4)}"


def test_the_list_is_newest_first_filtered_and_says_what_the_cockpit_reads(
    fleet_server: WorpenServer, admin: httpx.Client, service: str
) -> None:
    first, second, elsewhere, again = seed(
        fleet_server,
        [
            scripted(service),
            scripted(service, "payments fail"),
            scripted(service, node="node-b"),
            scripted(service),
        ],
        fail=1,
    )
    assert again.id == first.id

    listed = admin.get("/api/v1/incidents", params={"service": service})

    assert listed.status_code == 200, listed.text
    items = listed.json()
    assert [item["id"] for item in items] == [elsewhere.id, second.id, first.id]
    newest = items[2]
    assert {key: newest[key] for key in ("id", "service", "node", "issue", "action", "status")} == {
        "id": first.id,
        "service": service,
        "node": "node-a",
        "issue": "checkout is slow",
        "action": "",
        "status": "PENDING",
    }
    assert newest["time"] == newest["openedAt"]
    assert (newest["occurrences"], newest["severity"], newest["resolvedAt"], newest["method"]) == (
        2,
        "medium",
        None,
        None,
    )
    assert "timeline" not in newest
    failed = admin.get("/api/v1/incidents", params={"service": service, "status": "FAILED"}).json()
    assert [(item["id"], item["action"]) for item in failed] == [(second.id, "docker.restart")]
    on_b = admin.get("/api/v1/incidents", params={"service": service, "node": "node-b"}).json()
    assert [item["id"] for item in on_b] == [elsewhere.id]
    assert len(admin.get("/api/v1/incidents", params={"service": service, "limit": 1}).json()) == 1
    assert admin.get("/api/v1/incidents", params={"status": "OPEN"}).status_code == 422


def test_one_incident_is_read_with_its_timeline_and_an_unknown_id_is_404(
    fleet_server: WorpenServer, admin: httpx.Client, service: str
) -> None:
    [incident, _] = seed(fleet_server, [scripted(service), scripted(service)], fail=0)

    detail = admin.get(f"/api/v1/incidents/{incident.id}")

    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert (body["status"], body["occurrences"], body["action"]) == ("FAILED", 2, "docker.restart")
    assert [(entry["kind"], entry["message"]) for entry in body["timeline"]] == [
        ("opened", f"checkout is slow on {service}"),
        ("occurrence", f"checkout is slow on {service}"),
        ("remediation", "restarting it"),
        ("escalation", "gave up after 3 attempts"),
    ]
    missing = admin.get("/api/v1/incidents/0123456789abcdef")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_an_operator_resolves_by_hand_once_audited_and_logged(
    fleet_server: WorpenServer, keys: Keys, admin: httpx.Client, service: str
) -> None:
    [incident] = seed(fleet_server, [scripted(service)])
    with fleet_server.client(keys.operator.secret) as operator:
        resolved = operator.post(
            f"/api/v1/incidents/{incident.id}/resolve", json={"method": "MANUAL", "notes": "cache flushed"}
        )
        assert resolved.status_code == 200, resolved.text
        body = resolved.json()
        assert (body["status"], body["method"], body["notes"]) == ("RESOLVED", "MANUAL", "cache flushed")
        assert body["resolvedBy"]
        assert body["resolvedAt"] is not None
        assert body["timeline"][-1]["kind"] == "resolved"

        again = operator.post(f"/api/v1/incidents/{incident.id}/resolve", json={"notes": "twice"})
        assert again.status_code == 409
        assert "already resolved" in again.json()["detail"]
        assert operator.post("/api/v1/incidents/0123456789abcdef/resolve", json={}).status_code == 404
        assert (
            operator.post(f"/api/v1/incidents/{incident.id}/resolve", json={"method": "AUTO"}).status_code
            == 422
        )

    audited = admin.get("/api/v1/audit", params={"action": "incident.resolve"}).json()
    mine = [entry for entry in audited if entry["target"] == incident.id]
    assert [entry["outcome"] for entry in mine] == ["FAILED", "SUCCEEDED"]
    assert {entry["node"] for entry in mine} == {"node-a"}

    def logged() -> list[dict[str, object]]:
        lines = admin.get("/api/v1/logs", params={"q": incident.id, "level": "SUCCESS"}).json()
        return [line for line in lines if "resolved by hand" in str(line["message"])]

    [line] = wait_for(logged, "the resolution's line in the central log")
    assert line["level"] == "SUCCESS"
    assert "cache flushed" in str(line["message"])
    assert admin.get(f"/api/v1/incidents/{incident.id}").json()["status"] == "RESOLVED"


def test_a_viewer_reads_incidents_but_may_not_resolve_them(
    fleet_server: WorpenServer, keys: Keys, service: str
) -> None:
    [incident] = seed(fleet_server, [scripted(service)])
    with fleet_server.client(keys.viewer.secret) as viewer:
        assert [
            item["id"] for item in viewer.get("/api/v1/incidents", params={"service": service}).json()
        ] == [incident.id]
        assert viewer.get(f"/api/v1/incidents/{incident.id}").status_code == 200
        refused = viewer.post(f"/api/v1/incidents/{incident.id}/resolve", json={"notes": "fine"})
        assert refused.status_code == 403
        assert viewer.get(f"/api/v1/incidents/{incident.id}").json()["status"] == "PENDING"
    with fleet_server.client() as anonymous:
        assert anonymous.get("/api/v1/incidents").status_code == 401
