"""HTTP controllers: thin handlers that parse, call a use case and convert."""

from worpen_api.controllers.agents import AgentController, HeartbeatController
from worpen_api.controllers.apikeys import ApiKeyController
from worpen_api.controllers.audit import AuditController, EventController
from worpen_api.controllers.containers import ContainerController, DockerController, ImageController
from worpen_api.controllers.system import SystemController
from worpen_api.controllers.terminal import TerminalController

__all__ = [
    "AgentController",
    "ApiKeyController",
    "AuditController",
    "ContainerController",
    "DockerController",
    "EventController",
    "HeartbeatController",
    "ImageController",
    "SystemController",
    "TerminalController",
]
