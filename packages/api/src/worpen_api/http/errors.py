"""Errors over HTTP: one body ({"status", "code", "detail", "field"}) for every error, domain errors
answered from the one table (worpen_api.error_codes), and Litestar's own errors in the same shape."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.types import ExceptionHandlersMap
from msgspec import UNSET, Meta, UnsetType

from worpen_api.error_codes import ERROR_CODES, error_code
from worpen_api.http.wire import Wire
from worpen_core.automation.service import ScriptInvalid
from worpen_core.shared.errors import (
    InvalidInput,
    RateLimited,
    Unauthenticated,
    Unavailable,
    WorpenError,
)

log = structlog.get_logger("worpen.api")


Position = (
    Annotated[int, Meta(description="Where a script does not compile, 1-based; only then")] | UnsetType | None
)


class ErrorOut(Wire):
    status: int
    code: Annotated[
        str,
        Meta(
            description="What went wrong, stable and snake_case: the domain error's code (`not_found`, "
            "`invalid_input`, `conflict`, ...) or the HTTP status's name (`bad_request`, ...)",
            examples=["not_found"],
        ),
    ]
    detail: str
    field: str | None = None
    line: Position = UNSET
    """With `column`, only in the answer to a script that does not compile (`script_invalid`)."""
    column: Position = UNSET


CLIENT_CLOSED_REQUEST = 499
"""nginx's status for a client that left before sending its whole request: not a server error."""

_CODES_OF_STATUSES = {
    CLIENT_CLOSED_REQUEST: "client_closed_request",
    500: ERROR_CODES[WorpenError].code,
    # Litestar's 422 (a value its validation refused) is the same error as the domain's InvalidInput, with
    # `field` naming the value: one code, whichever layer caught it.
    422: ERROR_CODES[InvalidInput].code,
    # Python 3.13 renamed these statuses' phrases; their codes stay as published.
    413: "request_entity_too_large",
    414: "request_uri_too_long",
    416: "requested_range_not_satisfiable",
}


def code_of_status(status: int) -> str:
    """The code of an error that is not a domain error: the status's name in snake_case."""
    if status in _CODES_OF_STATUSES:
        return _CODES_OF_STATUSES[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:  # not a status the standard names
        return f"http_{status}"
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def documented(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the errors a route can answer, all in the one error shape."""
    reasons = {
        400: "Malformed request (e.g. invalid JSON)",
        401: "Missing, unknown, expired or revoked API key",
        403: "The key's role does not allow this",
        404: "Not found",
        409: "Conflicts with the current state",
        413: "Request body too large",
        422: "A value is invalid; `field` names it",
        429: "Too many failed authentications from this client; see Retry-After",
        502: "A Docker engine (or the registry behind it) answered with an error; `detail` carries it",
        503: "A dependency (the database, a node's Docker engine) is unavailable; `detail` names it",
        504: "The operation started but stalled (no progress within its deadline) and was abandoned",
    }
    return {
        status: ResponseSpec(ErrorOut, description=reasons[status], generate_examples=False)
        for status in sorted({401, 403, 429, *statuses})
    }


def error_response(
    status: int,
    detail: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
    *,
    line: int | UnsetType | None = UNSET,
    column: int | UnsetType | None = UNSET,
) -> Response[ErrorOut]:
    """The error body; `code` defaults to the status's (see `code_of_status`)."""
    body = ErrorOut(
        status=status,
        code=code or code_of_status(status),
        detail=detail,
        field=field,
        line=line,
        column=column,
    )
    return Response(body, status_code=status, headers=headers)


def response_for(exc: WorpenError) -> Response[ErrorOut]:
    entry = error_code(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="worpen"'
    elif isinstance(exc, Unavailable):
        log.warning("dependency.unavailable", dependency=exc.dependency, detail=exc.detail)
    field = exc.field if isinstance(exc, InvalidInput) else None
    if isinstance(exc, ScriptInvalid):
        return error_response(
            entry.http_status, exc.detail, field, headers, entry.code, line=exc.line, column=exc.column
        )
    return error_response(entry.http_status, exc.detail, field, headers, entry.code)


def _worpen_error(_: Request[Any, Any, Any], exc: WorpenError) -> Response[ErrorOut]:
    return response_for(exc)


def _empty_body(request: Request[Any, Any, Any]) -> Response[ErrorOut]:
    """A route whose body is required got none: name the fields it must have."""
    data = request.route_handler.parsed_data_field
    body = None if data is None else data.annotation
    required = (
        [field.encode_name for field in msgspec.structs.fields(body) if field.required]
        if isinstance(body, type) and issubclass(body, msgspec.Struct)
        else []
    )
    if not required:
        return error_response(422, "the request body is empty or null: expected a JSON object")
    names = ", ".join(f"`{name}`" for name in required)
    return error_response(
        422, f"the request body is empty or null: expected a JSON object with {names}", required[0]
    )


def _validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorOut]:
    """Litestar's parse and validation failures: malformed JSON is 400, a valid JSON but invalid value 422."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    first = problems[0] if problems and isinstance(problems[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    field = first.get("key") or None
    if message == "'data'":  # Litestar's KeyError for a body that is empty or JSON null
        return _empty_body(request)
    if field == "data":  # the body as a whole: name the missing field if there is one
        missing = message.partition("missing required field `")[2]
        field = missing.rstrip("`") or None
    if field is None and " - at `$." in message:
        message, _sep, at = message.partition(" - at `$.")
        field = at.rstrip("`")
    malformed = (
        "malformed" in message.lower() or "invalid json" in message.lower() or "truncated" in message.lower()
    )
    detail = f"{field}: {message}" if field else message
    return error_response(400 if malformed else 422, detail, field)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorOut]:
    if exc.detail == "client disconnected prematurely":  # Litestar says so with a 500
        return error_response(CLIENT_CLOSED_REQUEST, "the client left before sending its whole request")
    if exc.status_code >= 500:
        log.error("request.failed", method=request.method, path=request.url.path, exc_info=exc)
    return error_response(exc.status_code, exc.detail, headers=exc.headers)


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[ErrorOut]:
    """A body nested deeper than the JSON decoder goes (thousands of levels): the client's fault."""
    return error_response(400, "the request body is nested too deeply to be read")


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorOut]:
    log.exception("request.failed", method=request.method, path=request.url.path)
    return error_response(500, "internal error: the server logged the details")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    WorpenError: _worpen_error,
    ValidationException: _validation_error,
    HTTPException: _http_error,
    RecursionError: _too_deep,
    Exception: _unexpected,
}
