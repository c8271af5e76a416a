"""Masking secrets in a stage's output before it is stored or streamed."""

from __future__ import annotations

from collections.abc import Iterable

from worpen_core.pipelines.model import MASK


class StreamMask:
    """Masks every secret in a stream of text however it is cut into pieces: what could be the start of
    a secret is held back until the next piece shows whether it is one. What is held is shorter than the
    longest secret, so memory stays bounded."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)
        self._held = ""

    def feed(self, text: str) -> str:
        """The part of everything fed so far that can be shown, masked."""
        if not self._secrets:
            return text
        data = self._held + text
        for secret in self._secrets:
            data = data.replace(secret, MASK)
        keep = self._unfinished(data)
        self._held = data[len(data) - keep :]
        return data[: len(data) - keep]

    def flush(self) -> str:
        """What was held back at the end of the stream: only the beginning of a secret, never all of it."""
        held, self._held = self._held, ""
        return held

    def _unfinished(self, data: str) -> int:
        """The length of the longest end of `data` that begins a secret."""
        longest = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(data)), longest, -1):
                if data.endswith(secret[:size]):
                    longest = size
                    break
        return longest
