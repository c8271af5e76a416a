"""Reconnection delays: exponential backoff with full jitter (AWS, "Exponential Backoff and Jitter").

Full jitter draws each delay uniformly from zero to the exponential ceiling, so a fleet of agents that
lost the same server at the same moment does not come back as one synchronized wave."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError("backoff base and cap must be positive")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._attempt = 0

    @property
    def ceiling(self) -> float:
        """The upper bound of the next delay: min(cap, base * 2**attempt)."""
        return min(self.cap, self.base * float(2**self._attempt))

    def next_delay(self) -> float:
        """A delay in [0, ceiling]; the ceiling doubles for the next attempt until it reaches the cap."""
        delay = self._rng.uniform(0, self.ceiling)
        if self.ceiling < self.cap and self._attempt < 64:
            self._attempt += 1
        return delay

    def reset(self) -> None:
        """After a connection that stayed up: the next failure is retried quickly again."""
        self._attempt = 0
