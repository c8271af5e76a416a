"""What an agent measures of itself: sent with every heartbeat, kept as its telemetry.

A new metric is a field here (with its kind), a migration and a field in the proto's Heartbeat. The
command, the agent, the telemetry sample, the storage columns and the proto mapping all follow from this
class; the HTTP DTOs spell the fields once more, as the wire's documented shape."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter

from worpen_core.shared.errors import InvalidInput

COUNTER_MAX = 2**63 - 1
"""Counters are stored as signed 64-bit integers."""


class Kind(StrEnum):
    PERCENT = "percent"
    """A share, 0 to 100, as a float."""
    COUNTER = "counter"
    """A count (bytes, seconds), 0 to COUNTER_MAX, as an int."""


_PERCENT = {"kind": Kind.PERCENT}
_COUNTER = {"kind": Kind.COUNTER}


@dataclass(frozen=True, slots=True)
class Readings:
    """One heartbeat's measurements. cpu and ram are always sent; the others when the agent has them."""

    cpu: float = field(metadata=_PERCENT)
    ram: float = field(metadata=_PERCENT)
    disk: float | None = field(default=None, metadata=_PERCENT)
    net_rx_bytes: int | None = field(default=None, metadata=_COUNTER)
    net_tx_bytes: int | None = field(default=None, metadata=_COUNTER)
    uptime_seconds: int | None = field(default=None, metadata=_COUNTER)

    def __post_init__(self) -> None:
        for name, kind, wire_name in _CHECKS:
            value = getattr(self, name)
            if value is None:
                continue
            if kind is Kind.PERCENT:
                if not math.isfinite(value) or not 0 <= value <= 100:
                    raise InvalidInput(f"must be a percentage between 0 and 100, got {value}", wire_name)
            elif not 0 <= value <= COUNTER_MAX:
                raise InvalidInput(f"must be between 0 and {COUNTER_MAX}, got {value}", wire_name)


@dataclass(frozen=True, slots=True)
class Reading:
    """What one field of Readings is: for adapters that derive their columns and mappings from it."""

    name: str
    kind: Kind
    required: bool


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


READINGS = tuple(
    Reading(f.name, f.metadata["kind"], f.default is dataclasses.MISSING)
    for f in dataclasses.fields(Readings)
)
"""The fields of Readings, in order."""
_CHECKS = tuple((reading.name, reading.kind, _camel(reading.name)) for reading in READINGS)
READING_NAMES = tuple(reading.name for reading in READINGS)
values_of = attrgetter(*READING_NAMES)
"""A Readings' values as a tuple, in the order of READINGS (and of the constructor's parameters)."""
