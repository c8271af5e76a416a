"""Background work a feature declares; the API's lifecycle runs it from start to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Periodic:
    """`step` every `seconds`. A failing step is logged and tried again next time: it keeps what it had
    to do (buffered telemetry stays buffered) rather than stop the loop for good."""

    name: str
    seconds: float
    step: Callable[[], Awaitable[object]]
    singleton: bool = False
    """Run by one replica at a time, the one holding the leader's lease (a sweep, a rollup, a cron tick);
    otherwise every replica runs it (a flush of what this replica buffered)."""


@dataclass(frozen=True, slots=True)
class Continuous:
    """`run` once, for as long as the server runs: it returns soon after `stopping` is set."""

    name: str
    run: Callable[[asyncio.Event], Awaitable[None]]
    singleton: bool = False
    """Run by one replica at a time (see Periodic.singleton): started when this replica becomes the
    leader, asked to stop (`stopping` set) when it stops being one."""


Job = Periodic | Continuous
