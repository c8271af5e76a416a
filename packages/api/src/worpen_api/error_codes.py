"""The one table from core errors to what both driving adapters answer: an HTTP status, a gRPC status code
and a stable code string (the `code` of an HTTP error body, the `worpen-error-code` trailer of a gRPC
error). Every WorpenError class has its own entry (tests/unit/test_error_codes.py walks them)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from worpen_core.automation.service import ScriptInvalid
from worpen_core.shared.errors import (
    Ambiguous,
    Conflict,
    EngineFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TimedOut,
    TooLarge,
    Unauthenticated,
    Unavailable,
    WorpenError,
)


@dataclass(frozen=True, slots=True)
class ErrorCode:
    http_status: int
    grpc_status: grpc.StatusCode
    code: str
    """snake_case, stable: clients may branch on it, so a code once published is never renamed."""


ERROR_CODES: dict[type[WorpenError], ErrorCode] = {
    WorpenError: ErrorCode(500, grpc.StatusCode.INTERNAL, "internal"),
    InvalidInput: ErrorCode(422, grpc.StatusCode.INVALID_ARGUMENT, "invalid_input"),
    # An automation script that does not compile; the HTTP body also says where (`line`, `column`).
    ScriptInvalid: ErrorCode(422, grpc.StatusCode.INVALID_ARGUMENT, "script_invalid"),
    NotFound: ErrorCode(404, grpc.StatusCode.NOT_FOUND, "not_found"),
    Conflict: ErrorCode(409, grpc.StatusCode.FAILED_PRECONDITION, "conflict"),
    Ambiguous: ErrorCode(409, grpc.StatusCode.FAILED_PRECONDITION, "ambiguous"),
    Unauthenticated: ErrorCode(401, grpc.StatusCode.UNAUTHENTICATED, "unauthenticated"),
    Forbidden: ErrorCode(403, grpc.StatusCode.PERMISSION_DENIED, "forbidden"),
    RateLimited: ErrorCode(429, grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited"),
    Unavailable: ErrorCode(503, grpc.StatusCode.UNAVAILABLE, "unavailable"),
    TimedOut: ErrorCode(504, grpc.StatusCode.DEADLINE_EXCEEDED, "timed_out"),
    # The code of Litestar's own 413 (a body over the size limit), so that clients see one code for both.
    TooLarge: ErrorCode(413, grpc.StatusCode.RESOURCE_EXHAUSTED, "request_entity_too_large"),
    # The engine (or the registry behind it) did answer, with an error of its own that Worpen relays: a bad
    # gateway in HTTP. gRPC has no such code; UNKNOWN is its code for an error raised elsewhere whose kind
    # the server cannot tell (INTERNAL would blame Worpen, UNAVAILABLE would invite a retry).
    EngineFailed: ErrorCode(502, grpc.StatusCode.UNKNOWN, "engine_failed"),
}


def error_code(exc: WorpenError) -> ErrorCode:
    """The entry of the exception's class, or of its nearest ancestor that has one (WorpenError has)."""
    return next(
        ERROR_CODES[kind]
        for kind in type(exc).__mro__
        if issubclass(kind, WorpenError) and kind in ERROR_CODES
    )
