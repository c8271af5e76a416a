"""What automation needs from the outside: a sandbox to run scripts in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from worpen_core.automation.plan import SandboxLimits, ScriptError, ScriptOutcome
from worpen_core.events.model import JsonValue


class ScriptSandbox(Protocol):
    """Runs untrusted scripts with no I/O of their own: they see a read-only context and can only record
    actions through the capability API."""

    async def check(self, script: str) -> ScriptError | None:
        """Why `script` does not compile, or None when it does."""
        ...

    async def run(self, script: str, context: Mapping[str, JsonValue], limits: SandboxLimits) -> ScriptOutcome:
        """Run `script` with `context`'s keys as read-only globals. Never raises for anything the script
        does: a throw, a limit reached or a bad call is the outcome's status and error."""
        ...
