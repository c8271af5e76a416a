"""The `worpen-agent` command: read the configuration, then serve until SIGTERM or SIGINT (exit 0)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from worpen_agent.config import AgentConfig, ConfigError, load, parser
from worpen_agent.engine import Engine
from worpen_agent.metrics import Metrics
from worpen_agent.supervisor import Supervisor
from worpen_agent.version import agent_version

log = logging.getLogger("worpen_agent")


def main(argv: Sequence[str] | None = None) -> None:
    try:
        config = load(argv)
    except ConfigError as exc:
        parser().error(str(exc))
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(_serve(config, Metrics(config.agent_id, agent_version())))
    # The stream is closed and the log written. A call the engine never answers (a hung engine) would
    # still hold its worker thread, which the interpreter joins at exit: leave without waiting for it.
    logging.shutdown()
    os._exit(0)


async def _serve(config: AgentConfig, metrics: Metrics) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "worpen-agent %s for %s: server %s (%s), labels %s, shell %s",
        agent_version(),
        config.agent_id,
        config.server,
        "TLS" if config.tls_ca is not None else "plaintext",
        dict(config.labels) or "none",
        "allowed" if config.allow_shell else "refused",
    )
    engine = Engine(config.docker_url, allow_shell=config.allow_shell)
    await Supervisor(config, engine, metrics).run(stop)
