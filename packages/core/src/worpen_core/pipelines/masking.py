"""Masking secrets in a stage's output before it is stored or streamed."""

from __future__ import annotations

import re
from collections.abc import Iterable

from worpen_core.pipelines.model import MASK

MIN_LINE_MASKED = 8
"""Each line of a secret of several lines (a private key) that is at least this long is masked on its
own too, so printing the secret line by line shows none of it."""


def masked_values(secrets: Iterable[str]) -> set[str]:
    """What to mask for these secret values: each without the newlines around it (a value read from a
    file ends with one, and a stage prints it inside a line), and the long lines of multi-line values."""
    values: set[str] = set()
    for secret in secrets:
        value = secret.strip("\r\n")
        if value:
            values.add(value)
        if "\n" in value:
            values.update(
                line
                for line in (part.strip("\r") for part in value.split("\n"))
                if len(line) >= MIN_LINE_MASKED
            )
    return values


class StreamMask:
    """Masks every secret in a stream of text however it is cut into pieces: what could be the start of
    a secret (or of a longer secret beginning with a shorter one) is held back until the next piece shows
    whether it is one. What is held is shorter than the longest secret, so memory stays bounded."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted(masked_values(secrets), key=len, reverse=True)
        self._longest = len(self._secrets[0]) if self._secrets else 0
        # Longest first: where two secrets start at the same place, the longer one is masked whole.
        self._pattern = re.compile("|".join(map(re.escape, self._secrets))) if self._secrets else None
        self._held = ""

    def feed(self, text: str) -> str:
        """The part of everything fed so far that can be shown, masked."""
        if self._pattern is None:
            return text
        data = self._held + text
        hold = self._unfinished(data)
        out: list[str] = []
        shown = 0
        for match in self._pattern.finditer(data):
            if match.start() >= hold:
                break
            out += [data[shown : match.start()], MASK]
            shown = match.end()
        end = max(shown, hold)
        out.append(data[shown:end])
        self._held = data[end:]
        return "".join(out)

    def flush(self) -> str:
        """What was held back at the end of the stream (the beginning of a longer secret, which may itself
        hold a whole shorter one), masked."""
        held, self._held = self._held, ""
        return held if self._pattern is None else self._pattern.sub(MASK, held)

    def _unfinished(self, data: str) -> int:
        """Where the end of `data` that could still grow into a secret begins (len(data) if none does)."""
        for start in range(max(0, len(data) - self._longest + 1), len(data)):
            tail = data[start:]
            if any(len(secret) > len(tail) and secret.startswith(tail) for secret in self._secrets):
                return start
        return len(data)
