"""Interactive shells in containers and on agents' nodes, over a WebSocket."""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from litestar import Controller, WebSocket, get, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.params import PathParameter, QueryParameter

from worpen_api.error_codes import error_code
from worpen_api.http.errors import documented
from worpen_api.http.parameters import ContainerRef, Node
from worpen_api.http.security import principal_of, requires
from worpen_api.http.terminal.dto import TerminalSessionOut
from worpen_core.access.model import Permission
from worpen_core.agents.service import Agents
from worpen_core.containers.service import Containers, TerminalSession
from worpen_core.shared.errors import WorpenError
from worpen_core.shared.ids import AGENT_ID_MAX_LENGTH

log = structlog.get_logger("worpen.terminal")
SUBPROTOCOL = "worpen.terminal.v1"
DEFAULT_SHELL = "/bin/sh"
Shell = Annotated[str, QueryParameter(min_length=1, max_length=255)]


class TerminalController(Controller):
    path = "/api/v1/terminal"
    tags = ["terminal"]

    @websocket("/container/{container_id:str}", opt=requires(Permission.OPERATE))
    async def container_shell(
        self,
        socket: WebSocket[Any, Any, Any],
        containers: NamedDependency[Containers],
        container_id: ContainerRef,
        node: Node = None,
        shell: Shell = DEFAULT_SHELL,
    ) -> None:
        """A shell (Docker exec with a TTY) in the container. Client to server: text frames, each a
        command line (a newline is added) or a control character such as "\\x03" (Ctrl+C), sent as is.
        Server to client: JSON text frames `connected` (with the session id), `output`, and
        `disconnected` before the server closes. Failures close with 4000 + the HTTP status."""
        principal = principal_of(socket)
        await _serve(
            socket, containers, lambda: containers.open_terminal(principal, container_id, node, [shell])
        )

    @websocket("/agent/{agent_id:str}", opt=requires(Permission.OPERATE))
    async def agent_shell(
        self,
        socket: WebSocket[Any, Any, Any],
        agent_channel: NamedDependency[Agents],
        containers: NamedDependency[Containers],
        agent_id: Annotated[str, PathParameter(max_length=AGENT_ID_MAX_LENGTH)],
        shell: Shell = DEFAULT_SHELL,
    ) -> None:
        """A shell (a PTY) on the node of an agent connected over the command channel, through its
        stream; the same frames as the container terminal. Only agents started with --allow-shell open
        one: others close with 4403, an agent that is not connected with 4503, an unknown one with 4404."""
        principal = principal_of(socket)
        await _serve(socket, containers, lambda: agent_channel.open_shell(principal, agent_id, [shell]))

    @get(
        "/sessions",
        operation_id="listTerminalSessions",
        responses=documented(),
        opt=requires(Permission.OPERATE),
        summary="Open terminal sessions",
        sync_to_thread=False,
    )
    def sessions(self, containers: NamedDependency[Containers]) -> list[TerminalSessionOut]:
        return [TerminalSessionOut.of(session) for session in containers.terminals()]


async def _serve(
    socket: WebSocket[Any, Any, Any],
    containers: Containers,
    opening: Callable[[], Awaitable[TerminalSession]],
) -> None:
    """Accept the WebSocket, open the session and relay it until either side ends; a session that cannot
    be opened is told in a `disconnected` frame, then closed with 4000 + the HTTP status."""
    offered = socket.scope.get("subprotocols") or []
    await socket.accept(subprotocols=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    try:
        session = await opening()
    except WorpenError as exc:
        await socket.send_json({"type": "disconnected", "message": exc.detail})
        await socket.close(code=4000 + error_code(exc).http_status, reason=exc.detail[:120])
        return
    log.info("terminal.opened", session=session.id, node=session.node, container=session.container_name)
    await socket.send_json({"type": "connected", "session_id": session.id})
    output = asyncio.ensure_future(_pump_output(socket, session))
    typed = asyncio.ensure_future(_pump_input(socket, session))
    try:
        await asyncio.wait([output, typed], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (output, typed):
            task.cancel()
        await asyncio.gather(output, typed, return_exceptions=True)
        await containers.close_terminal(session)
        log.info("terminal.closed", session=session.id)
    if output.done() and not output.cancelled() and output.exception() is None:
        await socket.close(code=1000, reason="the shell exited")


async def _pump_output(socket: WebSocket[Any, Any, Any], session: TerminalSession) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while data := await session.channel.read():
        text = decoder.decode(data)
        if text:
            await socket.send_json({"type": "output", "data": text})
    await socket.send_json({"type": "disconnected", "message": "the shell exited"})


async def _pump_input(socket: WebSocket[Any, Any, Any], session: TerminalSession) -> None:
    try:
        while True:
            text = await socket.receive_text()
            control = len(text) == 1 and ord(text) < 32
            if not control and not text.endswith(("\n", "\r")):
                text += "\n"
            await session.channel.write(text.encode())
    except WebSocketDisconnect:
        return
