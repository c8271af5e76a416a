"""The agent's life: connections retried with backoff until it is told to stop, heartbeats produced at the
server's pace and engine events followed whether connected or not (both into the outbox)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from worpen_agent.backoff import Backoff
from worpen_agent.channel import Connection, Engine, StreamEnded, open_channel
from worpen_agent.config import AgentConfig
from worpen_agent.metrics import Metrics
from worpen_agent.outbox import Outbox
from worpen_proto.v1 import agent_pb2

log = logging.getLogger("worpen_agent")

DEFAULT_HEARTBEAT_SECONDS = 10
"""The pace before any Welcome said otherwise; afterwards the server's last pace holds, connected or not."""


class Supervisor:
    def __init__(self, config: AgentConfig, engine: Engine, metrics: Metrics) -> None:
        self._config = config
        self._engine = engine
        self._metrics = metrics
        self.outbox = Outbox(config.buffer)
        self.backoff = Backoff(cap=config.backoff_max)
        self.pace = DEFAULT_HEARTBEAT_SECONDS
        self._last_beat = 0.0
        self._pace_changed = asyncio.Event()
        self._connection: Connection | None = None

    def set_pace(self, seconds: int) -> None:
        if seconds > 0 and seconds != self.pace:
            self.pace = seconds
            self._pace_changed.set()

    def beat_now(self) -> None:
        """A heartbeat now (into the outbox), and the next one a full pace later."""
        self.outbox.put(agent_pb2.AgentMessage(heartbeat=self._metrics.heartbeat()))
        self._last_beat = time.monotonic()
        self._pace_changed.set()

    def set_ip(self, ip: str) -> None:
        self._metrics.ip = ip

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: stay connected, reconnecting with backoff after every end of the stream."""
        background = [
            asyncio.create_task(self._heartbeats(), name="heartbeats"),
            asyncio.create_task(self._engine_events(), name="engine events"),
        ]
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                ended = await self._connect_once(stopping)
                if ended is None:
                    break
                self._log_end(ended)
                if ended.welcomed:
                    self.backoff.reset()
                ceiling = self.backoff.ceiling
                delay = self.backoff.next_delay()
                log.info("retry in %.2f s (backoff up to %.2f s)", delay, ceiling)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), delay)
        finally:
            stopping.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(stopping, *background, return_exceptions=True)
            await self._engine.close()
        log.info("stopped")

    async def _connect_once(self, stopping: asyncio.Task[bool]) -> StreamEnded | None:
        """One connection to its end (StreamEnded), or None when told to stop meanwhile (the stream is
        cancelled: the server sees it closed)."""
        log.info("connecting to %s as %s", self._config.server, self._config.agent_id)
        channel = open_channel(self._config)
        connection = Connection(self._config, self._engine, self.outbox, self)
        self._connection = connection
        session = asyncio.create_task(connection.run(channel))
        try:
            await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not session.done():
                session.cancel()
                with contextlib.suppress(asyncio.CancelledError, StreamEnded):
                    await session
                return None
            error = session.exception()
            if isinstance(error, StreamEnded):
                return error
            log.error("the connection failed in the agent", exc_info=error)
            return StreamEnded("BROKEN", f"the connection failed: {error!r}", welcomed=connection.welcomed)
        finally:
            self._connection = None
            await channel.close()

    def _log_end(self, ended: StreamEnded) -> None:
        if ended.refused:
            log.error(
                "refused by the server (%s): %s; retrying with backoff (fix the key, id or version: no "
                "restart needed)",
                ended.code,
                ended.details,
            )
        elif ended.code == "PROTOCOL":
            log.error("disconnected: %s", ended.details)
        elif ended.welcomed:
            log.warning("disconnected (%s): %s", ended.code, ended.details or "stream ended")
        else:
            log.warning("cannot connect (%s): %s", ended.code, ended.details or "stream ended")

    async def _heartbeats(self) -> None:
        while True:
            remaining = self._last_beat + self.pace - time.monotonic()
            if remaining <= 0:
                try:
                    self.beat_now()
                except Exception:
                    log.exception("no heartbeat: the node's readings failed; trying again at the next pace")
                    self._last_beat = time.monotonic()
                continue
            self._pace_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pace_changed.wait(), remaining)

    async def _engine_events(self) -> None:
        """The engine's events for the life of the process; container events refresh the inventory."""
        retry = Backoff(cap=self._config.backoff_max)
        while True:
            try:
                async for event in self._engine.events():
                    retry.reset()
                    self.outbox.put(agent_pb2.AgentMessage(engine_event=event))
                    if self._connection is not None and _is_container_event(event):
                        self._connection.inventory_soon()
            except Exception:
                log.exception("the engine's event stream failed")
            await asyncio.sleep(retry.next_delay())


def _is_container_event(event: agent_pb2.EngineEvent) -> bool:
    try:
        decoded = json.loads(event.event_json)
    except ValueError:
        return False
    return isinstance(decoded, dict) and decoded.get("Type") == "container"
