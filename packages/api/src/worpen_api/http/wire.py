"""What every feature's DTOs share: the Wire base (camelCase JSON, msgspec), common field types and
durations."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec
from msgspec import Meta

from worpen_core.fleet.commands import TEXT_MAX_LENGTH
from worpen_core.fleet.readings import COUNTER_MAX
from worpen_core.shared.ids import AGENT_ID_MAX_LENGTH, AGENT_ID_PATTERN

AgentId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=AGENT_ID_MAX_LENGTH,
        pattern=AGENT_ID_PATTERN,
        description="Agent id: letters, digits, '.', '_', ':' and '-'",
        examples=["bee-001"],
    ),
]


Percent = Annotated[float, Meta(ge=0, le=100, description="Percent, 0 to 100", examples=[42.5])]
Counter = Annotated[int, Meta(ge=0, le=COUNTER_MAX)]
Text = Annotated[str, Meta(max_length=TEXT_MAX_LENGTH)]


class Wire(msgspec.Struct, rename="camel", omit_defaults=False):
    pass


_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
"""Durations as people write them, largest first: `expiresIn` is read in them, uptimes shown in them."""


def human_duration(seconds: int) -> str:
    """`3d 4h`, `1h`, `12m`, `45s`: the largest unit and the next one unless it is zero (as a cockpit
    shows an uptime)."""
    counts: list[tuple[int, str]] = []
    rest = seconds
    for unit, size in _UNITS.items():
        count, rest = divmod(rest, size)
        if count or counts:
            counts.append((count, unit))
    shown = counts[:2] if counts else [(0, "s")]
    return " ".join(f"{count}{unit}" for count, unit in shown if count or len(shown) == 1)


Duration = Annotated[
    str, Meta(pattern=r"^([1-9][0-9]{0,5}[smhd]|[1-9][0-9]{0,4}w)$", examples=["30d", "12h"])
]
"""Up to 999999 seconds, minutes, hours or days, or 99999 weeks: a date that far ahead still exists."""


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '90m', '45s', '2w' as a timedelta."""
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])


NodeName = Annotated[str, Meta(min_length=1, max_length=128, examples=["edge-7"])]
