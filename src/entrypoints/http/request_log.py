"""Pure ASGI middleware: every request gets an id, every answer carries it as ``X-Request-ID``,
and every request leaves one log line with it, and is counted in the metrics
(`metrics.Metrics.count_request`).

The id is the caller's own when it is 1 to 128 printable ASCII characters, else a new one. The
line (logger ``concert.requests``) gives the method, the route (the path's template, so that ids
do not multiply the routes), the status, the duration and, once the endpoint knows it, the
caller's user id; never a header, a body or a token. An unexpected error is logged here, once,
with its traceback, and answered 500 ``internal_error`` with the id; every record written while
a request is served carries its id (the log formatter reads `logs.REQUEST_ID`).
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entrypoints.http.errors import error_body
from entrypoints.logs import REQUEST_ID

log = logging.getLogger("concert.requests")
errors_log = logging.getLogger("concert.errors")
_GIVEN_ID = re.compile(r"[\x20-\x7e]{1,128}")
HEADER = b"x-request-id"


def request_id_of(scope: Scope) -> str:
    """The caller's request id if it is one, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            given: str = value.decode("latin-1").strip()
            if _GIVEN_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500  # until an answer starts: a request that never answers failed
        started_answer = False

        async def with_id(message: Message) -> None:
            nonlocal status
            nonlocal started_answer
            if message["type"] == "http.response.start":
                status, started_answer = message["status"], True
                message["headers"] = [
                    *message.get("headers", ()),
                    (HEADER, request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        except Exception:
            errors_log.exception("unexpected error on %s %s", scope["method"], scope.get("path"))
            if not started_answer:  # the caller is told, with the id
                await error_body(500, "internal_error", "something went wrong on our side")(
                    scope, receive, with_id
                )
        finally:
            route = scope.get("route")
            state = scope.get("state") or {}
            seconds = time.perf_counter() - started
            metrics = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                path = getattr(route, "path", None) or "(no route)"
                metrics.count_request(scope["method"], path, status, seconds)
            log.info(
                "%s %s %s",
                scope["method"],
                getattr(route, "path", None) or "(no route)",
                status,
                extra={
                    "method": scope["method"],
                    "route": getattr(route, "path", None),
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "user_id": state.get("user_id"),
                },
            )
            REQUEST_ID.reset(token)
