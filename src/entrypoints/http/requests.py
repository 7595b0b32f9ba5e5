"""Reading requests: JSON bodies, typed fields, path ids and the auth headers."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from concert_domain import Dependencies, usecases
from concert_domain.errors import InvalidRequest, NotFound, Unauthorized
from concert_domain.ids import UserId
from entrypoints.http.errors import MalformedJson

MAX_ID = 2**63 - 1


async def json_object(request: Request) -> dict[str, Any]:
    body = await request.body()
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedJson("the body must be JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("the body must be a JSON object")
    return parsed


def string_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string")
    return value


def integer_field(body: dict[str, Any], name: str) -> int:
    """An integer; the use case judges its range."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer")
    return value


def identifier_field(body: dict[str, Any], name: str) -> int:
    """An id in a body: an integer, or 404 for an id that cannot exist."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer id")
    if not 1 <= value <= MAX_ID:
        raise NotFound(f"no such {name.removesuffix('_id')}: {value}")
    return value


def path_id(request: Request, name: str) -> int:
    """An id in the path; anything but a positive integer names nothing there is: 404."""
    raw = request.path_params[name]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise NotFound(f"no such {name.removesuffix('_id')}: {raw}")
    return int(raw)


def caller(request: Request) -> UserId:
    """The customer the bearer token names. Raises `Unauthorized`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <access token> from /auth/login")
    deps: Dependencies = request.app.state.deps
    return usecases.authenticate(token.strip(), deps=deps)


def queue_token(request: Request) -> str | None:
    return request.headers.get("x-queue-token") or None


def idempotency_key(request: Request) -> str | None:
    return request.headers.get("idempotency-key")
