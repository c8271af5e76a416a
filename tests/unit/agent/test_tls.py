"""--tls-ca: the agent connects over TLS to a server whose certificate that CA signed, and to no other."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc import aio

from tests.tls_support import self_signed
from tests.unit.agent.stand_ins import ScriptedServer, StandInEngine
from worpen_agent.config import AgentConfig
from worpen_agent.metrics import Metrics
from worpen_agent.supervisor import Supervisor
from worpen_proto.v1 import agent_pb2_grpc


async def run_against_tls(trust_server: bool, seconds: float) -> tuple[ScriptedServer, int]:
    """Run an agent for `seconds` against a TLS server, given the server's own CA or another one: what the
    server saw, and how many heartbeats arrived."""
    cert, key = self_signed()
    servicer = ScriptedServer()
    server = aio.server()
    agent_pb2_grpc.add_AgentChannelServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    await server.start()
    ca = cert if trust_server else self_signed()[0]
    config = AgentConfig(
        server=f"127.0.0.1:{port}", agent_id="bee-001", key="wpn_k", tls_ca=ca, backoff_max=0.2
    )
    stop = asyncio.Event()
    task = asyncio.create_task(Supervisor(config, StandInEngine(), Metrics("bee-001", "test")).run(stop))
    try:
        await asyncio.sleep(seconds)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await server.stop(grace=None)
    return servicer, len(servicer.of("heartbeat"))


async def test_the_agent_trusts_a_server_its_ca_signed() -> None:
    servicer, heartbeats = await run_against_tls(True, 1.5)
    assert servicer.streams[0].hello.id == "bee-001"
    assert heartbeats >= 1


async def test_the_agent_refuses_a_server_another_ca_signed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="worpen_agent")
    servicer, _ = await run_against_tls(False, 1.5)
    assert servicer.streams == []
    assert "cannot connect (UNAVAILABLE)" in caplog.text
    assert caplog.text.count("retry in") >= 2
