"""FleetService over a real loopback gRPC channel, next to the REST API of the same server."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from tests.integration.support import Keys, WorpenServer, accepted
from worpen_proto.v1 import fleet_pb2, fleet_pb2_grpc

pytestmark = pytest.mark.integration

UNKNOWN = fleet_pb2.AgentStatus.ValueType(99)
"""A status this server's proto does not define (as a newer agent could send)."""


@pytest.fixture(scope="module")
def fleet_service(fleet_server: WorpenServer) -> Iterator[fleet_pb2_grpc.FleetServiceStub]:
    with grpc.insecure_channel(fleet_server.grpc_target) as channel:
        yield fleet_pb2_grpc.FleetServiceStub(channel)


def report(
    service: fleet_pb2_grpc.FleetServiceStub, message: fleet_pb2.Heartbeat, key: str | None
) -> fleet_pb2.HeartbeatAck:
    metadata = [("authorization", f"Bearer {key}")] if key is not None else []
    ack: fleet_pb2.HeartbeatAck = service.ReportHeartbeat(message, metadata=metadata, timeout=30)
    return ack


def refusal(
    service: fleet_pb2_grpc.FleetServiceStub, message: fleet_pb2.Heartbeat, key: str | None
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        report(service, message, key)
    return raised.value


def error_code(error: grpc.RpcError) -> object:
    """The code the server put in the `worpen-error-code` trailer, as an HTTP error body's `code`."""
    return dict(error.trailing_metadata() or ()).get("worpen-error-code")


def test_a_heartbeat_over_grpc_registers_the_agent_as_one_over_rest_would(
    fleet_service: fleet_pb2_grpc.FleetServiceStub, admin: httpx.Client, keys: Keys
) -> None:
    fields: dict[str, object] = {
        "cpu": 33.5,
        "ram": 44.25,
        "name": "twin",
        "ip": "192.0.2.10",
        "os": "linux",
        "version": "2.0.0",
        "uptimeSeconds": 86400,
        "disk": 71.5,
        "netRxBytes": 123456,
        "netTxBytes": 654321,
        "peers": ["grpc-twin-rest"],
    }
    ack = report(
        fleet_service,
        fleet_pb2.Heartbeat(
            id="grpc-twin-grpc",
            cpu=33.5,
            ram=44.25,
            status=fleet_pb2.AGENT_STATUS_ONLINE,
            name="twin",
            ip="192.0.2.10",
            os="linux",
            version="2.0.0",
            uptime_seconds=86400,
            disk=71.5,
            net_rx_bytes=123456,
            net_tx_bytes=654321,
            peers=["grpc-twin-rest"],
        ),
        keys.admin,
    )
    rest_ack = accepted(
        admin.post("/api/v1/internal/heartbeat", json={"id": "grpc-twin-rest", "status": "ONLINE", **fields})
    )

    assert ack.status == fleet_pb2.AGENT_STATUS_ONLINE
    assert ack.next_heartbeat_seconds == rest_ack["nextHeartbeatSeconds"]

    def shown(agent_id: str) -> dict[str, object]:
        response = admin.get(f"/api/v1/agents/{agent_id}")
        assert response.status_code == 200, response.text
        view: dict[str, object] = response.json()
        telemetry = view.pop("telemetry")
        assert isinstance(telemetry, dict)
        for moment in ("lastSeen", "registeredAt"):
            assert isinstance(view.pop(moment), str)
        assert isinstance(telemetry.pop("at"), str)
        return {**view, "telemetry": telemetry}

    over_grpc, over_rest = shown("grpc-twin-grpc"), shown("grpc-twin-rest")
    assert over_grpc["id"] == "grpc-twin-grpc"
    assert over_grpc == {**over_rest, "id": "grpc-twin-grpc"}
    listed = admin.get("/api/v1/agents", params={"limit": 1000}).json()
    assert "grpc-twin-grpc" in [agent["id"] for agent in listed]


def test_a_critical_report_over_grpc_is_answered_with_the_critical_status(
    fleet_service: fleet_pb2_grpc.FleetServiceStub, admin: httpx.Client, keys: Keys
) -> None:
    message = fleet_pb2.Heartbeat(id="grpc-critical", cpu=5, ram=5, status=fleet_pb2.AGENT_STATUS_CRITICAL)

    assert report(fleet_service, message, keys.admin).status == fleet_pb2.AGENT_STATUS_CRITICAL
    assert admin.get("/api/v1/agents/grpc-critical").json()["status"] == "CRITICAL"


@pytest.mark.parametrize(
    "key", [None, "wpn_notAKeyThisServerKnowsAbout0000000000000"], ids=["none", "unknown"]
)
def test_a_heartbeat_over_grpc_without_a_valid_key_is_unauthenticated(
    fleet_service: fleet_pb2_grpc.FleetServiceStub, admin: httpx.Client, key: str | None
) -> None:
    error = refusal(fleet_service, fleet_pb2.Heartbeat(id="grpc-anonymous", cpu=1, ram=1), key)

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_code(error) == "unauthenticated"
    assert admin.get("/api/v1/agents/grpc-anonymous").status_code == 404


def test_an_agent_key_over_grpc_reports_for_its_agent_and_no_other(
    fleet_service: fleet_pb2_grpc.FleetServiceStub, admin: httpx.Client, keys: Keys
) -> None:
    own = report(fleet_service, fleet_pb2.Heartbeat(id="bee-001", cpu=1, ram=1), keys.agent.secret)
    error = refusal(fleet_service, fleet_pb2.Heartbeat(id="bee-002", cpu=1, ram=1), keys.agent.secret)

    assert own.status == fleet_pb2.AGENT_STATUS_ONLINE
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_code(error) == "forbidden"
    assert "bee-002" in (error.details() or "")
    assert admin.get("/api/v1/agents/bee-002").status_code == 404


@pytest.mark.parametrize(
    ("message", "field"),
    [
        pytest.param(fleet_pb2.Heartbeat(id="grpc-hot", cpu=250, ram=1), "cpu", id="cpu-250"),
        pytest.param(fleet_pb2.Heartbeat(id="grpc-cold", cpu=1, ram=-1), "ram", id="ram-negative"),
        pytest.param(fleet_pb2.Heartbeat(id="", cpu=1, ram=1), "id", id="id-empty"),
        pytest.param(fleet_pb2.Heartbeat(id="x" * 10_000, cpu=1, ram=1), "id", id="id-of-10000-characters"),
        pytest.param(fleet_pb2.Heartbeat(id="grpc-ip", cpu=1, ram=1, ip="nope"), "ip", id="bad-ip"),
        pytest.param(
            fleet_pb2.Heartbeat(id="grpc-up", cpu=1, ram=1, uptime_seconds=-1), "uptime", id="uptime"
        ),
        pytest.param(
            fleet_pb2.Heartbeat(id="grpc-st", cpu=1, ram=1, status=UNKNOWN),
            "status",
            id="unknown-status",
        ),
    ],
)
def test_an_invalid_heartbeat_over_grpc_is_an_invalid_argument_naming_the_field(
    fleet_service: fleet_pb2_grpc.FleetServiceStub, keys: Keys, message: fleet_pb2.Heartbeat, field: str
) -> None:
    error = refusal(fleet_service, message, keys.admin)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_code(error) == "invalid_input"
    assert (error.details() or "").startswith(field)
