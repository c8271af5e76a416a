"""The script sandbox port on V8 isolates (mini-racer)."""

from worpen_infra.sandbox.mini_racer import CONTEXT_NAMES, MiniRacerSandbox

__all__ = ["CONTEXT_NAMES", "MiniRacerSandbox"]
