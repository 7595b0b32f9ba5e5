"""The OpenAPI 3.1 document, generated from the endpoint table and the body types, so that code
and document cannot drift: every request body, every answer, and the error body for every
status an endpoint can give."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from concert_domain.idempotency import KEY_PATTERN
from entrypoints.http import schema

if TYPE_CHECKING:
    from entrypoints.http.endpoints import Endpoint

REF = "#/components/schemas/{name}"
JSON = "application/json"
ERROR_MEANINGS = {
    400: "the body is not JSON",
    401: "no valid access token, or no queue token",
    402: "the balance does not cover it",
    403: "not an operator, or the queue token is not valid or not active yet",
    404: "no such thing, or not yours",
    409: "it conflicts with the current state",
    413: "the body is too large",
    422: "well-formed, but a rule is broken",
    429: "too many attempts",
    503: "a store is unavailable; try again",
}
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "ANYONE": [],
    "CUSTOMER": [{"bearer": []}],
    "ADMITTED": [{"bearer": [], "queueToken": []}],
    "QUEUED": [{"bearer": [], "queueToken": []}],
    "ADMIN": [{"bearer": []}],
}


def openapi_document(endpoints: Sequence[Endpoint]) -> dict[str, Any]:
    kinds: set[type] = {schema.Error}
    for endpoint in endpoints:
        if endpoint.media_type == JSON:
            for kind in endpoint.answers.values():
                kinds.update(
                    kind if isinstance(kind, tuple) else () if kind in (dict, str) else (kind,)
                )
        if endpoint.body is not None:
            kinds.add(endpoint.body)
    ordered = sorted(kinds, key=lambda kind: kind.__name__)
    refs, components = msgspec.json.schema_components(ordered, ref_template=REF)
    ref_of = dict(zip(ordered, refs, strict=True))
    for endpoint in endpoints:  # the types of events' data, beside the answers'
        if endpoint.events is not None:
            types = list(endpoint.events.values())
            _, used = msgspec.json.schema_components(types, ref_template=REF)
            components.update(used)
    for kind in ordered:
        forms = getattr(kind, "forms", ())
        if forms:
            components[kind.__name__]["oneOf"] = [{"required": list(form)} for form in forms]
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, ref_of)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Concert seat reservations",
            "version": "1.0.0",
            "description": "Sign up, queue, hold a seat for five minutes, pay from a wallet.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "queueToken": {"type": "apiKey", "in": "header", "name": "X-Queue-Token"},
            },
            "schemas": components,
        },
    }


def _operation(endpoint: Endpoint, ref_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, kind in endpoint.answers.items():
        if endpoint.events is not None:
            content = {endpoint.media_type: {"schema": _event_shape(endpoint.events)}}
            responses[str(status)] = {"description": endpoint.summary, "content": content}
            continue
        if endpoint.media_type != JSON:
            content = {endpoint.media_type: {"schema": {"type": "string"}}}
            responses[str(status)] = {"description": endpoint.summary, "content": content}
            continue
        shape: dict[str, Any]
        if isinstance(kind, tuple):
            shape = {"oneOf": [ref_of[one] for one in kind]}
        else:
            shape = {"type": "object"} if kind is dict else ref_of[kind]
        responses[str(status)] = _json(f"answered with {status}", shape)
    for status in endpoint.error_statuses:
        responses[str(status)] = _json(ERROR_MEANINGS[status], ref_of[schema.Error])
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method.lower()}{endpoint.path}".replace("/", "_"),
        "security": SECURITY[endpoint.access.name],
        "responses": responses,
    }
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
        }
        for name in endpoint.path_ids
    ]
    if endpoint.query is not None:
        parameters.extend(_query_parameters(endpoint.query))
    if endpoint.idempotency_key:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": KEY_PATTERN},
                "description": "A retry with the same key and body gets the first answer again.",
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if endpoint.body is not None:
        body = _json("a JSON object", ref_of[endpoint.body])
        operation["requestBody"] = {"required": True, "content": body["content"]}
    return operation


def _event_shape(events: Mapping[str, object]) -> dict[str, Any]:
    """One event of a stream, as OpenAPI 3.1 describes each event of ``text/event-stream``:
    its name, and its data, JSON of the named event's type."""
    shapes, _ = msgspec.json.schema_components(list(events.values()), ref_template=REF)
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": list(events)},
            "data": {
                "type": "string",
                "contentMediaType": JSON,
                "contentSchema": {"oneOf": list(shapes)},
            },
        },
    }


def _query_parameters(kind: type[schema.Query]) -> list[dict[str, Any]]:
    _, components = msgspec.json.schema_components([kind], ref_template=REF)
    shape = components[kind.__name__]
    return [
        {"name": name, "in": "query", "required": False, "schema": field}
        for name, field in shape["properties"].items()
    ]


def _json(description: str, shape: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": shape}}}
