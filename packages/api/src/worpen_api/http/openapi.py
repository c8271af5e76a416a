"""What the OpenAPI schema says where Litestar 2 alone would say something else than the server does.

- Bodies and answers (msgspec Structs) are described by msgspec's own JSON Schema, the exact contract of
  the decoder that parses them. Litestar's plugin drops the constraints of list items, minimums of 0 and
  `forbid_unknown_fields` (`additionalProperties: false`).
- An OPTIONS request is answered with every method of its path: Litestar 2 lists only the methods of
  the first handler registered on a path (litestar-org/litestar#4169, fixed in Litestar 3).
- Operations whose body may be left out, and answers that are JSON lines or Server-Sent Events, say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response
from litestar.enums import HttpMethod
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Reference, Schema
from litestar.plugins import OpenAPISchemaPlugin
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT
from litestar.typing import FieldDefinition

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator

EVENT_STREAM = "text/event-stream"
NDJSON = "application/x-ndjson"
SERVER_SENT_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "event": Schema(type=OpenAPIType.STRING),
        "data": Schema(type=OpenAPIType.STRING, description="A JSON object"),
        "id": Schema(type=OpenAPIType.STRING),
    },
    required=["event", "data"],
    description="One Server-Sent Event: its type and its data",
)
_REF = "#/components/schemas/{name}"
_ALIASES = Schema.field_aliases()
_SUBSCHEMA = {"items", "additionalProperties", "not", "if", "then", "else"}
_SUBSCHEMAS = {"anyOf", "oneOf", "allOf", "prefixItems"}
_CAMEL_HUMP = re.compile(r"(?<!^)(?=[A-Z])")
Refer = Callable[[str], Schema | Reference]


class StructSchemaPlugin(OpenAPISchemaPlugin):
    """Describes msgspec Structs by `msgspec.json.schema_components`; the Structs and enums they refer to
    become components of their own, as Litestar names them. A Struct states what msgspec cannot derive
    from its fields (a rule across fields) in a `json_schema_extra` class variable."""

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return not field_definition.is_union and field_definition.is_subclass_of(msgspec.Struct)

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        struct = field_definition.type_
        _, components = msgspec.json.schema_components([struct], ref_template=_REF)
        named = _named_types(msgspec.inspect.type_info(struct), {})
        # Registered before its fields are described, so that a Struct may refer to itself.
        schema = schema_creator.schema_registry.get_schema_for_field_definition(field_definition)

        def refer(name: str) -> Schema | Reference:  # a Struct or enum by its component name
            return schema_creator.for_field_definition(FieldDefinition.from_annotation(named[name]))

        component = {**components[struct.__name__], **getattr(struct, "json_schema_extra", {})}
        for name, value in _fields(component, refer).items():
            setattr(schema, name, value)
        return schema


def _named_types(info: msgspec.inspect.Type, found: dict[str, type]) -> dict[str, type]:
    """The Structs and enums that `info` refers to, by the name of their msgspec schema component."""
    inspect = msgspec.inspect
    children: list[inspect.Type] = []
    if isinstance(info, inspect.StructType | inspect.EnumType):
        if info.cls.__name__ in found:
            return found
        found[info.cls.__name__] = info.cls
        if isinstance(info, inspect.StructType):
            children = [field.type for field in info.fields]
    elif isinstance(info, inspect.Metadata):
        children = [info.type]
    elif isinstance(info, inspect.UnionType):
        children = list(info.types)
    elif isinstance(info, inspect.ListType | inspect.SetType | inspect.FrozenSetType | inspect.VarTupleType):
        children = [info.item_type]
    elif isinstance(info, inspect.TupleType):
        children = list(info.item_types)
    elif isinstance(info, inspect.DictType):
        children = [info.key_type, info.value_type]
    for child in children:
        _named_types(child, found)
    return found


def _schema(node: dict[str, Any], refer: Refer) -> Schema | Reference:
    """A JSON Schema object (as msgspec writes it) as Litestar's Schema, `$ref`s resolved by `refer`."""
    fields = _fields(node, refer)
    if "$ref" not in node:
        return Schema(**fields)
    reference = refer(node["$ref"].rpartition("/")[2])
    return Schema(all_of=[reference], **fields) if fields else reference


def _fields(node: dict[str, Any], refer: Refer) -> dict[str, Any]:
    """The fields of Litestar's Schema for a JSON Schema object, but its `$ref`."""
    fields: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            continue
        if key == "properties":
            value = {name: _schema(sub, refer) for name, sub in value.items()}
        elif key in _SUBSCHEMA and isinstance(value, dict):
            value = _schema(value, refer)
        elif key in _SUBSCHEMAS:
            value = [_schema(sub, refer) for sub in value]
        elif key == "type":
            value = OpenAPIType(value)
        fields[_ALIASES.get(key) or _CAMEL_HUMP.sub("_", key).lower()] = value
    return fields


async def answer_options(request: Request[Any, Any, Any]) -> Response[None] | None:
    """Before every handler: an OPTIONS request is answered here, with an `Allow` header that lists
    every method of its path."""
    if request.method != HttpMethod.OPTIONS:
        return None
    template = request.scope["path_template"]
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, HTTPRoute) and route.path_format == template
        for method in route.methods
    }
    return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": ", ".join(sorted(methods))})


@dataclass
class OptionalBody(Operation):
    """An operation whose request body may be left out (Litestar 2 marks every body required)."""

    def __post_init__(self) -> None:
        if self.request_body is not None and not isinstance(self.request_body, Reference):
            self.request_body.required = False


@dataclass
class MayStream(Operation):
    """An operation whose successful answer may instead be a stream of Server-Sent Events (as its
    description says when)."""

    def __post_init__(self) -> None:
        success = (self.responses or {}).get("200")
        if isinstance(success, OpenAPIResponse):
            success.content = {**(success.content or {}), EVENT_STREAM: _EVENTS}


@dataclass
class LinesOrStream(Operation):
    """An operation whose successful answer is JSON lines, or a stream of Server-Sent Events (as its
    description says when). A route's own media type would be forced on its event streams too."""

    def __post_init__(self) -> None:
        success = (self.responses or {}).get("200")
        if isinstance(success, OpenAPIResponse):
            success.content = {NDJSON: _LINES, EVENT_STREAM: _EVENTS}


_EVENTS = OpenAPIMediaType(schema=SERVER_SENT_EVENT)
_LINES = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, description="One JSON object per line"))


@dataclass
class EventStream(Operation):
    """An operation whose successful answer is a stream of Server-Sent Events, and nothing else."""

    def __post_init__(self) -> None:
        success = (self.responses or {}).get("200")
        if isinstance(success, OpenAPIResponse):
            success.content = {EVENT_STREAM: OpenAPIMediaType(schema=SERVER_SENT_EVENT)}
