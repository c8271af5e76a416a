"""JournalSignal on PostgreSQL's LISTEN/NOTIFY: every replica listens on one channel and notifies it
after committing events or log entries (and on a second channel of the same connection, after storing
stages' log lines). The tables stay the truth: a notification only wakes the tails, so one lost while a
connection was down costs a poll's delay, never an entry."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

log = structlog.get_logger("worpen.events")

CHANNEL = "worpen_journal"
STAGES_CHANNEL = "worpen_stages"
FIRST_RETRY = 0.5
"""Seconds before the first reconnection; each failure doubles it, up to MAX_RETRY."""
MAX_RETRY = 10.0
KEEPALIVE = 5.0
"""Seconds between two checks that the listening connection still answers (a silent network loss)."""

_LOST = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What a lost or refused connection raises."""


class PostgresSignalChannel:
    """One channel of a PostgresJournalSignal's connection, a JournalSignal of its own."""

    def __init__(self, name: str, sending: asyncio.Event) -> None:
        self.name = name
        self._sending = sending
        self.heard = asyncio.Event()
        self.pending = False

    def announce(self) -> None:
        self.heard.set()  # this replica's own waiter need not wait for the round trip
        self.pending = True
        self._sending.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.heard.wait(), seconds)
        self.heard.clear()


class PostgresJournalSignal:
    """One dedicated connection per replica: it listens on CHANNEL and sends this replica's
    announcements (coalesced: a burst of commits is one notification while one is being sent). Lost, it
    is reconnected with backoff, saying so in the log; once back, the waiters are woken, to read what was
    announced meanwhile."""

    def __init__(self, url: str, *, connect_timeout: float = 5.0) -> None:
        self._dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._connect_timeout = connect_timeout
        self._to_send = asyncio.Event()
        self._journal = PostgresSignalChannel(CHANNEL, self._to_send)
        self._channels = {CHANNEL: self._journal}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while the connection listens (for tests and diagnostics)."""

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listening(), name="journal-signal")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def channel(self, name: str) -> PostgresSignalChannel:
        """Another channel on the same connection (one waiter each); asked for before `start`."""
        if name not in self._channels:
            self._channels[name] = PostgresSignalChannel(name, self._to_send)
        return self._channels[name]

    def announce(self) -> None:
        self._journal.announce()

    async def wait(self, seconds: float) -> None:
        await self._journal.wait(seconds)

    async def _keep_listening(self) -> None:
        retry = FIRST_RETRY
        lost = False
        while True:
            try:
                connection = await asyncpg.connect(self._dsn, timeout=self._connect_timeout)
            except _LOST as exc:
                if not lost:
                    log.warning("journal_signal.unreachable", detail=str(exc) or type(exc).__name__)
                    lost = True
                await asyncio.sleep(retry)
                retry = min(retry * 2, MAX_RETRY)
                continue
            try:
                for name in self._channels:
                    await connection.add_listener(name, self._notified)
                if lost:
                    log.info("journal_signal.reconnected")
                lost = False
                retry = FIRST_RETRY
                self.listening.set()
                for channel in self._channels.values():
                    channel.heard.set()  # what other replicas announced while no one listened
                await self._serve(connection)
            except _LOST as exc:
                log.warning(
                    "journal_signal.lost", detail=str(exc) or type(exc).__name__, retry_in=FIRST_RETRY
                )
                lost = True
            finally:
                self.listening.clear()
                connection.terminate()
            await asyncio.sleep(FIRST_RETRY)

    async def _serve(self, connection: asyncpg.Connection) -> None:
        """Send the announcements, and check the connection when there is none to send; raises once
        the connection is lost."""
        closed = asyncio.Event()
        connection.add_termination_listener(lambda _: closed.set())
        while True:
            sending = asyncio.ensure_future(self._to_send.wait())
            ending = asyncio.ensure_future(closed.wait())
            try:
                await asyncio.wait((sending, ending), timeout=KEEPALIVE, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sending.cancel()
                ending.cancel()
            if closed.is_set():
                raise ConnectionError("the database closed the connection")
            if self._to_send.is_set():
                self._to_send.clear()
                for channel in self._channels.values():
                    if channel.pending:
                        channel.pending = False
                        await connection.execute(
                            "SELECT pg_notify($1, '')", channel.name, timeout=self._connect_timeout
                        )
            else:
                await connection.execute("SELECT 1", timeout=self._connect_timeout)

    def _notified(self, _connection: object, _pid: object, channel: str, _payload: object) -> None:
        listener = self._channels.get(channel)
        if listener is not None:
            listener.heard.set()
