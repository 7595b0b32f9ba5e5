"""The one table from core errors to HTTP status, and the JSON error body on every error."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from concert_domain import errors

log = logging.getLogger("concert.http")

STATUS: dict[type[errors.ConcertError], int] = {
    errors.InvalidRequest: 422,
    errors.EmailTaken: 409,
    errors.InvalidCredentials: 401,
    errors.RateLimited: 429,
    errors.Unauthorized: 401,
    errors.QueueTokenRequired: 401,
    errors.QueueTokenInvalid: 403,
    errors.QueueTokenNotActive: 403,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.SaleNotOpen: 409,
    errors.SaleClosed: 409,
    errors.ReservationNotPaid: 409,
    errors.SeatUnavailable: 409,
    errors.HoldLimitReached: 409,
    errors.SeatsNotTogether: 409,
    errors.ExtensionLimitReached: 409,
    errors.ReservationNotHeld: 409,
    errors.HoldExpired: 409,
    errors.InsufficientBalance: 402,
    errors.IdempotencyKeyReused: 422,
    errors.IdempotencyKeyInUse: 409,
    errors.StoreUnavailable: 503,
}


class MalformedJson(errors.InvalidRequest):
    """The body is not JSON at all: 400, where JSON that breaks a rule is 422."""


STATUS[MalformedJson] = 400


def error_body(status: int, code: str, message: str) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def status_of(error: errors.ConcertError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def on_concert_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ConcertError)
    status = status_of(exc)
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return error_body(status, exc.code, exc.message)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_body(404, "not_found", f"no such path: {request.url.path}")
    if exc.status_code == 405:
        response = error_body(
            405, "invalid_request", f"{request.method} is not allowed on {request.url.path}"
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    return error_body(exc.status_code, "invalid_request", str(exc.detail))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_body(500, "internal_error", "something went wrong on our side")
