"""The Starlette app: the routes of the endpoint table, the body limit and the error handlers,
over ``deps`` (tests, the library) or over what a lifespan puts in ``app.state`` (a server,
`entrypoints.wiring.build_app`)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from concert_domain import Dependencies
from concert_domain.errors import ConcertError
from entrypoints.http.errors import on_concert_error, on_http_error, on_unexpected
from entrypoints.http.limits import BodySizeLimit
from entrypoints.http.routes import ENDPOINTS, SeatMapBodies

Check = Callable[[], Awaitable[None]]
Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]


def create_app(
    deps: Dependencies | None = None,
    *,
    readiness: Mapping[str, Check] | None = None,
    lifespan: Lifespan | None = None,
) -> Starlette:
    """The HTTP service over ``deps``, or over what ``lifespan`` puts in ``app.state``."""
    app = Starlette(
        routes=[endpoint.route() for endpoint in ENDPOINTS],
        middleware=[Middleware(BodySizeLimit)],
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
    return app
