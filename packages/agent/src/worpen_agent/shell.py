"""A shell on the node itself, in a pseudo-terminal: the agent's side of Worpen's node shell.

The terminal's master side is read and written without blocking, from the event loop (no thread waits on
it): the command's output is read only as fast as it is sent on, and ending the shell needs no thread to
wake up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import signal
import subprocess
import termios
import threading
from collections.abc import Sequence
from pathlib import Path

READ_BYTES = 65536


class Shell:
    """A command (by default a shell) running in its own session, whose controlling terminal is a PTY."""

    def __init__(self, command: Sequence[str]) -> None:
        master, slave = pty.openpty()
        try:
            self._process = subprocess.Popen(  # noqa: S603 (the operator's own command, on their node)
                list(command),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=Path.home(),
                env={**os.environ, "TERM": "xterm"},
                start_new_session=True,
                # In the new session, the terminal becomes the controlling one: ^C reaches the foreground
                # job, and the shell can run jobs in process groups of their own.
                preexec_fn=_take_terminal,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        self._closed = False
        self._waiting: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def read(self) -> bytes:
        """The next output; b"" once the terminal's other side is closed (the command ended) or the shell
        was closed."""
        while not self._closed:
            try:
                return os.read(self._master, READ_BYTES)
            except BlockingIOError:
                await self._ready(writing=False)
            except OSError:  # EIO: no process holds the terminal any more
                return b""
        return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._closed:
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                await self._ready(writing=True)

    async def exit_code(self) -> int:
        """The command's exit status, as a shell reports it (128 + the signal that ended it)."""
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(None, self._process.wait)
        return code if code >= 0 else 128 - code

    def close(self) -> None:
        """Kill the command's process group and hang the terminal up; idempotent. A read or write waiting
        for the terminal returns."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signal.SIGKILL)
        # Reaped off the loop: a killed process exits at once, unless the kernel holds it a while.
        threading.Thread(target=self._process.wait, name="shell-reaper", daemon=True).start()
        for waiting in self._waiting:
            _settle(waiting)
        if self._loop is not None:  # unwatched before closed: its number may be reused at once
            self._loop.remove_reader(self._master)
            self._loop.remove_writer(self._master)
        os.close(self._master)

    async def _ready(self, *, writing: bool) -> None:
        """Wait until the terminal can be read (or written) without blocking."""
        loop = self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self._master
        if writing:
            loop.add_writer(fd, _settle, ready)
        else:
            loop.add_reader(fd, _settle, ready)
        self._waiting.add(ready)
        try:
            await ready
        finally:
            self._waiting.discard(ready)
            if not self._closed:
                if writing:
                    loop.remove_writer(fd)
                else:
                    loop.remove_reader(fd)


def _settle(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _take_terminal() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
