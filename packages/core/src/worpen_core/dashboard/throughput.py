"""Messages ingested per second, over a sliding window: what the dashboard calls throughput."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from worpen_core.shared.ports import Clock


class Throughput:
    """Reads monotonic counters of ingested messages (heartbeats, log lines, events) on every `tick` and
    gives their rate over the last `window`. Counting stays where the messages arrive (a plain integer
    increment); this only reads the totals, once a second, off the hot path."""

    def __init__(
        self, clock: Clock, counters: Sequence[Callable[[], int]], window: timedelta = timedelta(minutes=1)
    ) -> None:
        self._clock = clock
        self._counters = tuple(counters)
        self._window = window
        self._readings: deque[tuple[datetime, int]] = deque()

    def tick(self) -> None:
        now = self._clock.now()
        self._readings.append((now, sum(counter() for counter in self._counters)))
        # Keep the newest reading at or before the window's start, so the rate spans the whole window.
        while len(self._readings) > 2 and self._readings[1][0] <= now - self._window:
            self._readings.popleft()

    def per_second(self) -> float:
        """The rate over the window (over the time since the first tick, in the first minute)."""
        if len(self._readings) < 2:
            return 0.0
        (first_at, first), (last_at, last) = self._readings[0], self._readings[-1]
        seconds = (last_at - first_at).total_seconds()
        return max(0, last - first) / seconds if seconds > 0 else 0.0


_SCALES = ((1e9, "G"), (1e6, "M"), (1e3, "k"))


def human_rate(per_second: float) -> str:
    """'0/s', '0.4/s', '12/s', '1.2k/s', '34k/s', '5.6M/s', as the cockpit shows it."""
    value, suffix = per_second, ""
    for scale, name in _SCALES:
        if per_second >= scale:
            value, suffix = per_second / scale, name
            break
    if value == 0:
        return "0/s"
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return f"{text.removesuffix('.0')}{suffix}/s"
