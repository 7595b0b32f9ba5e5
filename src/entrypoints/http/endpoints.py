"""An endpoint declared once: its method and path, who may call it, its body type and its
answers by status. From that one declaration come the Starlette route (auth, decoding,
encoding) and the endpoint's part of `/openapi.json` (`openapi`)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from concert_domain import Dependencies, queue, usecases
from concert_domain.accounts import Identity
from concert_domain.errors import InvalidRequest, NotFound, Unauthorized
from concert_domain.ids import UserId
from entrypoints.http.clients import client_address
from entrypoints.http.errors import MalformedJson
from entrypoints.http.schema import Answer, Body, Query

MAX_ID = 2**63 - 1
JSON = "application/json"
encode = msgspec.json.Encoder().encode


class Access(enum.Enum):
    ANYONE = "anyone"
    CUSTOMER = "a customer's access token"
    ADMITTED = "an access token and an active queue token of the same customer"
    QUEUED = "an access token and a queue token of the same customer, active or not"
    ADMIN = "an admin's access token (the use case refuses anyone else: 403)"


ANONYMOUS = Identity(UserId(0), datetime.max.replace(tzinfo=UTC))


@attrs.frozen
class Call:
    """What a handler is given: the request, the ports, the caller, and the decoded body and
    query string."""

    request: Request
    deps: Dependencies
    caller: Identity
    body: Any
    query: Any = None

    @property
    def user(self) -> UserId:
        return self.caller.user_id

    def path_id(self, name: str) -> int:
        """An id in the path; anything but plain ASCII digits naming a positive 64-bit
        integer names nothing there is: 404."""
        raw: str = self.request.path_params[name]
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= MAX_ID:
            raise NotFound(f"no such {name.removesuffix('_id')}: {raw[:40]}")
        return int(raw)

    @property
    def client(self) -> str | None:
        return client_address(self.request)

    @property
    def queue_token(self) -> str | None:
        return self.request.headers.get("x-queue-token") or None

    @property
    def idempotency_key(self) -> str | None:
        return self.request.headers.get("idempotency-key")


# an answer, its JSON already encoded, or a response of its own (a stream)
Handler = Callable[[Call], Awaitable[tuple[int, Answer | dict[str, Any] | bytes | Response]]]


@attrs.frozen
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Handler
    access: Access
    # an answer of one of several shapes names them in a tuple
    answers: Mapping[
        int, type[Answer] | tuple[type[Answer], ...] | type[dict[str, Any]] | type[str]
    ]
    body: type[Body] | None = None
    query: type[Query] | None = None
    media_type: str = JSON  # of the answers named in ``answers``
    # for an event stream: each event's name and the type of its data
    events: Mapping[str, object] | None = None
    conflicts: tuple[int, ...] = ()  # statuses beside those access, body and path bring
    idempotency_key: bool = False
    uses_stores: bool = True  # so a store that is down answers 503

    @property
    def path_ids(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    @property
    def error_statuses(self) -> list[int]:
        statuses = set(self.conflicts)
        if self.access is not Access.ANYONE:
            statuses.add(401)
        if self.access in (Access.ADMITTED, Access.QUEUED, Access.ADMIN):
            statuses.add(403)
        if self.body is not None:
            statuses.update((400, 413, 422))
        if self.query is not None:
            statuses.add(422)
        if self.path_ids:
            statuses.add(404)
        if self.idempotency_key:
            statuses.update((409, 422))
        if self.uses_stores:
            statuses.add(503)
        return sorted(statuses - set(self.answers))

    async def serve(self, request: Request) -> Response:
        deps: Dependencies = request.app.state.deps
        who = ANONYMOUS if self.access is Access.ANYONE else await caller(request, deps)
        if who is not ANONYMOUS:
            request.state.user_id = who.user_id  # for the request's log line
        if self.access in (Access.ADMITTED, Access.QUEUED):  # before anything in the body
            queue.required(request.headers.get("x-queue-token"))
        if self.access is Access.ADMIN:  # the use case checks it too; a customer's body waits
            usecases.require_admin(who)
        body = None if self.body is None else await decoded(request, self.body)
        query = None if self.query is None else parsed(request, self.query)
        status, answer = await self.handler(Call(request, deps, who, body, query))
        if isinstance(answer, Response):
            return answer
        encoded = answer if isinstance(answer, bytes) else encode(answer)
        return Response(encoded, status, media_type=JSON)


def routes(endpoints: Sequence[Endpoint]) -> list[Route]:
    """One route per path, answering each of its methods, so that a method it does not
    answer gets 405 with an ``Allow`` header naming all those it does."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    return [_route(path, methods) for path, methods in by_path.items()]


def _route(path: str, methods: dict[str, Endpoint]) -> Route:
    if "GET" in methods:
        methods = {**methods, "HEAD": methods["GET"]}

    async def serve(request: Request) -> Response:
        return await methods[request.method].serve(request)

    return Route(path, serve, methods=list(methods))


async def caller(request: Request, deps: Dependencies) -> Identity:
    """Whom the bearer token names, in which role. Raises `Unauthorized`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send Authorization: Bearer <access token> from /auth/login")
    return await usecases.authenticate(token.strip(), deps=deps)


async def decoded(request: Request, kind: type[Body]) -> Any:
    """The body as ``kind``: 400 if it is not JSON, 422 if it is JSON that breaks a rule."""
    raw = await request.body()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as e:
        if not _well_formed(raw):
            raise MalformedJson("the body must be JSON") from None
        raise InvalidRequest(str(e)) from None
    except (msgspec.DecodeError, RecursionError):
        raise MalformedJson("the body must be JSON, nested at most a few hundred deep") from None


def parsed(request: Request, kind: type[Query]) -> Any:
    """The query string as ``kind`` (the last of a repeated parameter): 422 if it breaks a
    rule."""
    try:
        return msgspec.convert(dict(request.query_params), type=kind, strict=False)
    except msgspec.ValidationError as e:
        raise InvalidRequest(f"query: {e}") from None


def _well_formed(raw: bytes) -> bool:
    try:
        msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True
