"""An interactive command on an agent (an exec in a container, a shell on the node) as a terminal."""

from __future__ import annotations

from worpen_core.agents.model import CommandRefused
from worpen_core.agents.ports import CommandStream
from worpen_core.shared.errors import WorpenError


class CommandTerminal:
    """A streaming command as a TerminalChannel: its output, its input, and cancel on close."""

    def __init__(self, stream: CommandStream) -> None:
        self._stream = stream

    async def read(self) -> bytes:
        """The next output; b"" once the process ended, however it ended (the agent went away too): a
        terminal has no other way to tell, as a direct engine's socket that closes."""
        while True:
            try:
                output = await self._stream.next()
            except (WorpenError, CommandRefused):
                return b""
            if output is None:
                return b""
            if isinstance(output, bytes) and output:
                return output

    async def write(self, data: bytes) -> None:
        await self._stream.write(data)

    async def close(self) -> None:
        await self._stream.close()
