"""HTTP controllers: thin handlers that parse, call a use case and convert."""

from worpen_api.controllers.agents import AgentController, HeartbeatController
from worpen_api.controllers.apikeys import ApiKeyController
from worpen_api.controllers.system import SystemController

__all__ = ["AgentController", "ApiKeyController", "HeartbeatController", "SystemController"]
