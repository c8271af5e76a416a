"""The agent relay over TLS: two `worpen serve` replicas on one PostgreSQL database serving gRPC over TLS
only (one self-signed certificate for 127.0.0.1), a real `worpen-agent` connected to replica A over TLS,
and its node's containers listed, stopped and started through replica B, which reaches A's relay trusting
that certificate."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.agent_support import AgentProcess, agent_key, agent_view, launch_agent
from tests.integration.docker_support import Containers, wait_for
from tests.integration.replica_support import admin_clients, replicas
from tests.integration.support import WorpenServer
from tests.integration.test_replicas_agents import listed
from tests.tls_support import self_signed

pytestmark = pytest.mark.integration

SETTINGS = {
    "WORPEN_AGENT_TTL": "4",
    "WORPEN_SWEEP_INTERVAL": "0.5",
    "WORPEN_HEARTBEAT_INTERVAL": "1",
    "WORPEN_AGENT_COMMAND_TIMEOUT": "3",
}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The replicas' certificate (PEM), its key beside it as key.pem."""
    root = tmp_path_factory.mktemp("tls")
    cert, key = self_signed()
    (root / "cert.pem").write_bytes(cert)
    (root / "key.pem").write_bytes(key)
    return root / "cert.pem"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, certificate: Path) -> Iterator[list[WorpenServer]]:
    tls = {
        "WORPEN_GRPC_TLS_CERT": str(certificate),
        "WORPEN_GRPC_TLS_KEY": str(certificate.with_name("key.pem")),
    }
    with replicas(tmp_path_factory.mktemp("replicas-tls"), 2, {**SETTINGS, **tls}) as servers:
        yield servers


@pytest.fixture(scope="module")
def clients(pair: list[WorpenServer]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with admin_clients(pair) as (a, b):
        yield a, b


@pytest.fixture(scope="module")
def agent(
    pair: list[WorpenServer],
    clients: tuple[httpx.Client, httpx.Client],
    certificate: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AgentProcess]:
    """An agent connected to replica A over TLS, verifying A with the replicas' certificate, and known as
    connected on replica B."""
    a, b = clients
    agent_id = f"tls-{secrets.token_hex(3)}"
    process = launch_agent(
        pair[0],
        agent_id,
        agent_key(a, agent_id),
        tmp_path_factory.mktemp("agent"),
        ["--tls-ca", str(certificate)],
    )
    try:
        wait_for(lambda: (agent_view(a, agent_id) or {}).get("connected"), "the agent on A over TLS")
        wait_for(
            lambda: b.get("/api/v1/containers", params={"node": agent_id}).status_code == 200,
            "B listing the agent's node",
        )
        yield process
    finally:
        process.stop()


def test_b_commands_the_agent_connected_to_a_through_the_relay_over_tls(
    clients: tuple[httpx.Client, httpx.Client], agent: AgentProcess, containers: Containers
) -> None:
    _, b = clients
    node = agent.agent_id
    container = containers.run("sleep 600")
    name = str(container.name)

    wait_for(
        lambda: (c := listed(b, node, name)) is not None and c["state"] == "RUNNING",
        "the agent's running container listed on B",
    )
    detail = b.get(f"/api/v1/containers/{name}", params={"node": node})
    assert detail.status_code == 200, detail.text
    assert detail.json()["node"] == node

    stopped = b.post(f"/api/v1/containers/{name}/stop", params={"node": node, "timeout": 1})
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "EXITED"
    container.reload()
    assert container.status == "exited", "the engine itself stopped it"

    started = b.post(f"/api/v1/containers/{name}/start", params={"node": node})
    assert started.status_code == 200, started.text
    container.reload()
    assert container.status == "running"
