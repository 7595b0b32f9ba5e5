"""The Starlette app: the routes of the endpoint table, the body limit and the error handlers,
over ``deps`` (tests, the library) or over what a lifespan puts in ``app.state`` (a server,
`entrypoints.wiring.build_app`)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from concert_domain import Dependencies
from concert_domain.errors import ConcertError
from entrypoints.http import web
from entrypoints.http.clients import Proxies
from entrypoints.http.endpoints import routes
from entrypoints.http.errors import on_concert_error, on_http_error, on_unexpected
from entrypoints.http.headers import SecurityHeaders
from entrypoints.http.limits import BodySizeLimit
from entrypoints.http.metrics import Metrics
from entrypoints.http.request_log import RequestLog
from entrypoints.http.routes import ENDPOINTS, SeatMapBodies
from entrypoints.http.seat_events import SeatFeeds
from entrypoints.http.stopping import CloseWhenStopping, Stopping

Check = Callable[[], Awaitable[None]]
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]


def create_app(
    deps: Dependencies | None = None,
    *,
    readiness: Mapping[str, Check] | None = None,
    lifespan: Lifespan | None = None,
    proxies: Proxies | None = None,
    metrics: Metrics | None = None,
) -> Starlette:
    """The HTTP service over ``deps``, or over what ``lifespan`` puts in ``app.state``.
    ``proxies`` are those whose ``X-Forwarded-For`` names the client (none by default)."""
    stopping = Stopping()
    app = Starlette(
        routes=[*routes(ENDPOINTS), Route("/web/{name}", web.asset)],
        middleware=[
            Middleware(CloseWhenStopping, stopping=stopping),  # every answer, errors too
            Middleware(RequestLog),
            Middleware(SecurityHeaders),
            Middleware(BodySizeLimit),
        ],
        exception_handlers={
            ConcertError: on_concert_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    if deps is not None:
        app.state.deps = deps
    app.state.readiness = dict(readiness or {})
    app.state.seat_map_bodies = SeatMapBodies()
    app.state.proxies = proxies or Proxies()
    app.state.metrics = metrics or Metrics()
    app.state.seat_feeds = SeatFeeds()
    app.state.stopping = stopping
    return app
