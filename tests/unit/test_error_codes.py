"""The one error table: every core error class has its own entry, and each instance finds its class's."""

from __future__ import annotations

import gc
import importlib
import inspect
import pkgutil

import grpc
import pytest

import worpen_core
from worpen_api.error_codes import ERROR_CODES, ErrorCode, error_code
from worpen_api.http.errors import code_of_status
from worpen_core.shared.errors import Conflict, WorpenError


def _import_all_of_core() -> None:
    """Every module of worpen_core, so that an error class defined anywhere in it is a known subclass."""
    for module in pkgutil.walk_packages(worpen_core.__path__, "worpen_core."):
        importlib.import_module(module.name)


def _error_classes(root: type[WorpenError] = WorpenError) -> list[type[WorpenError]]:
    """`root` and every subclass of it, however deep."""
    found = [root]
    for subclass in root.__subclasses__():
        found.extend(_error_classes(subclass))
    return found


_import_all_of_core()
ERROR_CLASSES = _error_classes()


def _instance(kind: type[WorpenError]) -> WorpenError:
    """An instance of `kind`, whatever its constructor takes: a string for each required argument."""
    required = [
        parameter
        for name, parameter in inspect.signature(kind).parameters.items()
        if parameter.default is inspect.Parameter.empty and name not in {"args", "kwargs"}
    ]
    return kind(*(f"{parameter.name}-value" for parameter in required))


def test_the_walk_finds_the_errors_of_the_domain() -> None:
    assert len(ERROR_CLASSES) == len(set(ERROR_CLASSES)) >= 11


@pytest.mark.parametrize("kind", ERROR_CLASSES, ids=lambda kind: kind.__name__)
def test_every_error_class_has_its_own_entry(kind: type[WorpenError]) -> None:
    entry = ERROR_CODES.get(kind)

    assert entry is not None, f"{kind.__name__} has no entry in worpen_api.error_codes.ERROR_CODES"
    assert 400 <= entry.http_status <= 599
    assert isinstance(entry.grpc_status, grpc.StatusCode)
    assert entry.grpc_status is not grpc.StatusCode.OK
    assert entry.code
    assert entry.code == entry.code.lower().strip("_")
    assert entry.code.replace("_", "").isalnum()


def test_codes_are_unique_and_the_table_holds_only_error_classes() -> None:
    codes = [entry.code for entry in ERROR_CODES.values()]

    assert len(codes) == len(set(codes))
    assert set(ERROR_CODES) == set(ERROR_CLASSES)


@pytest.mark.parametrize("kind", ERROR_CLASSES, ids=lambda kind: kind.__name__)
def test_error_code_of_an_instance_is_its_class_entry(kind: type[WorpenError]) -> None:
    assert error_code(_instance(kind)) is ERROR_CODES[kind]


def test_an_error_class_without_an_entry_takes_its_nearest_ancestors() -> None:
    class Unlisted(Conflict):
        pass

    try:
        assert error_code(Unlisted("clash")) is ERROR_CODES[Conflict]
    finally:
        del Unlisted  # gone from Conflict.__subclasses__() once collected, not to fail the walk elsewhere
        gc.collect()


@pytest.mark.parametrize(
    ("code", "http_status", "grpc_status"),
    [
        ("internal", 500, grpc.StatusCode.INTERNAL),
        ("invalid_input", 422, grpc.StatusCode.INVALID_ARGUMENT),
        ("not_found", 404, grpc.StatusCode.NOT_FOUND),
        ("conflict", 409, grpc.StatusCode.FAILED_PRECONDITION),
        ("ambiguous", 409, grpc.StatusCode.FAILED_PRECONDITION),
        ("unauthenticated", 401, grpc.StatusCode.UNAUTHENTICATED),
        ("forbidden", 403, grpc.StatusCode.PERMISSION_DENIED),
        ("rate_limited", 429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("unavailable", 503, grpc.StatusCode.UNAVAILABLE),
        ("timed_out", 504, grpc.StatusCode.DEADLINE_EXCEEDED),
        ("engine_failed", 502, grpc.StatusCode.UNKNOWN),
    ],
)
def test_the_published_codes_keep_their_statuses(
    code: str, http_status: int, grpc_status: grpc.StatusCode
) -> None:
    assert ErrorCode(http_status, grpc_status, code) in ERROR_CODES.values()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "bad_request"),
        (404, "not_found"),
        (405, "method_not_allowed"),
        (413, "request_entity_too_large"),
        (422, "invalid_input"),
        (499, "client_closed_request"),
        (500, "internal"),
    ],
)
def test_litestars_own_errors_take_the_code_of_their_status(status: int, code: str) -> None:
    assert code_of_status(status) == code
