"""The errors of the domain: each says what went wrong; the API maps each class to an HTTP status and a
gRPC code."""

from __future__ import annotations


class WorpenError(Exception):
    """Base of every error Worpen raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(WorpenError):
    """A value breaks a rule of the domain; `field` names it when one field is to blame."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class NotFound(WorpenError):
    def __init__(self, kind: str, identifier: str) -> None:
        super().__init__(f"{kind} {identifier!r} not found")
        self.kind = kind
        self.identifier = identifier


class Conflict(WorpenError):
    """The request clashes with the current state."""


class Ambiguous(Conflict):
    """A reference (an id prefix, a name) matches more than one thing; `candidates` lists them."""

    def __init__(self, reference: str, candidates: tuple[str, ...] = (), hint: str = "") -> None:
        listed = f": {', '.join(candidates)}" if candidates else ""
        super().__init__(f"{reference!r} matches more than one container{listed}{hint}")
        self.reference = reference
        self.candidates = candidates


class Unauthenticated(WorpenError):
    """No credential, or one that is unknown, expired or revoked."""


class Forbidden(WorpenError):
    """The caller is known but its role does not allow this."""


class RateLimited(WorpenError):
    """Too many of something (failed authentications, open terminals); `retry_after` says in how many
    seconds to try again, when that is known."""

    def __init__(self, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(WorpenError):
    """A dependency (the database, a Docker engine, ...) cannot be reached or is busy."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency} unavailable: {detail}")
        self.dependency = dependency
        self.reason = detail


class TooLarge(WorpenError):
    """A request carries more than Worpen takes at once (too many items, too many bytes)."""


class TimedOut(WorpenError):
    """An operation that had started stopped making progress and was abandoned after its deadline."""


class EngineFailed(WorpenError):
    """A dependency Worpen drives (a Docker engine, a registry behind it) answered with an error;
    `detail` carries its own message."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"{dependency}: {detail}")
        self.dependency = dependency


def failure_reason(exc: BaseException) -> str:
    return exc.detail if isinstance(exc, WorpenError) else f"{type(exc).__name__}: {exc}"
