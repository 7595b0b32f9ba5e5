"""The OpenAPI 3 description of every path, written out so that it says exactly what the
service does: request and response schemas, the security each path needs, every error."""

from __future__ import annotations

from functools import cache
from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
ID = {"type": "integer", "minimum": 1, "format": "int64"}
TIMESTAMP = {"type": "string", "format": "date-time"}
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
QUEUE: list[dict[str, list[str]]] = [{"bearer": [], "queueToken": []}]
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
    "description": "Retries with the same key and body get the first answer again.",
}


def obj(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "malformed JSON",
        401: "missing or bad credentials or queue token",
        402: "insufficient balance",
        403: "queue token invalid or not active",
        404: "not found",
        409: "conflict with the current state",
        413: "body too large",
        422: "a rule is broken",
        429: "rate limited",
        503: "a store is unavailable",
    }
    return {str(s): answer(meaning[s], ERROR) for s in statuses}


def path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def operation(
    summary: str,
    responses: dict[str, Any],
    *,
    security: list[dict[str, list[str]]] | None = None,
    request: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    found: dict[str, Any] = {"summary": summary, "responses": responses}
    found["security"] = security if security is not None else []
    if request is not None:
        found["requestBody"] = body(request)
    if parameters:
        found["parameters"] = parameters
    return found


@cache
def openapi_document() -> dict[str, Any]:
    reservation = {"$ref": "#/components/schemas/Reservation"}
    queue_status = {"$ref": "#/components/schemas/QueueStatus"}
    credentials = obj(
        ["email", "password"],
        email={"type": "string", "format": "email", "maxLength": 254},
        password={"type": "string", "minLength": 8, "maxLength": 256},
    )
    balance = obj(["balance"], balance={"type": "integer", "minimum": 0})
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Concert seat reservations",
            "version": "1.0.0",
            "description": "Sign up, queue, hold a seat for five minutes, pay from a wallet.",
        },
        "paths": {
            "/auth/signup": {
                "post": operation(
                    "Create an account",
                    {
                        "201": answer(
                            "created",
                            obj(["user_id", "email"], user_id=ID, email={"type": "string"}),
                        ),
                        **errors(400, 409, 413, 422, 503),
                    },
                    request=credentials,
                )
            },
            "/auth/login": {
                "post": operation(
                    "Trade email and password for an access token",
                    {
                        "200": answer(
                            "logged in",
                            obj(
                                ["access_token", "token_type", "expires_in"],
                                access_token={"type": "string"},
                                token_type={"type": "string", "enum": ["Bearer"]},
                                expires_in={"type": "integer"},
                            ),
                        ),
                        **errors(400, 401, 413, 422, 429, 503),
                    },
                    request=obj(
                        ["email", "password"], email={"type": "string"}, password={"type": "string"}
                    ),
                )
            },
            "/queue/tokens": {
                "post": operation(
                    "Join the waiting line, or get your live token back",
                    {
                        "201": answer("a new token", queue_status),
                        "200": answer("your token, still waiting or active", queue_status),
                        **errors(401, 503),
                    },
                    security=BEARER,
                )
            },
            "/queue/status": {
                "get": operation(
                    "Where your token stands",
                    {"200": answer("status", queue_status), **errors(401, 403, 503)},
                    security=QUEUE,
                )
            },
            "/concerts": {
                "get": operation(
                    "Every concert",
                    {
                        "200": answer(
                            "concerts",
                            obj(
                                ["concerts"],
                                concerts={
                                    "type": "array",
                                    "items": obj(
                                        ["concert_id", "title"],
                                        concert_id=ID,
                                        title={"type": "string"},
                                    ),
                                },
                            ),
                        ),
                        **errors(503),
                    },
                )
            },
            "/concerts/{concert_id}/dates": {
                "get": operation(
                    "Open dates with available seats, soonest first",
                    {
                        "200": answer(
                            "dates",
                            obj(
                                ["dates"],
                                dates={
                                    "type": "array",
                                    "items": obj(
                                        ["date_id", "date", "starts_at", "available_seats"],
                                        date_id=ID,
                                        date={"type": "string", "format": "date"},
                                        starts_at=TIMESTAMP,
                                        available_seats={"type": "integer", "minimum": 1},
                                    ),
                                },
                            ),
                        ),
                        **errors(401, 403, 404, 503),
                    },
                    security=QUEUE,
                    parameters=[path_id("concert_id")],
                )
            },
            "/concerts/{concert_id}/dates/{date_id}/seats": {
                "get": operation(
                    "The seat map of a date, by number",
                    {
                        "200": answer(
                            "seats",
                            obj(
                                ["seats"],
                                seats={
                                    "type": "array",
                                    "items": obj(
                                        ["seat_id", "number", "price", "status"],
                                        seat_id=ID,
                                        number={"type": "integer"},
                                        price={"type": "integer", "minimum": 0},
                                        status={
                                            "type": "string",
                                            "enum": ["available", "held", "sold"],
                                        },
                                    ),
                                },
                            ),
                        ),
                        **errors(401, 403, 404, 503),
                    },
                    security=QUEUE,
                    parameters=[path_id("concert_id"), path_id("date_id")],
                )
            },
            "/reservations": {
                "post": operation(
                    "Hold a seat for CONCERT_HOLD_SECONDS",
                    {
                        "201": answer("held", reservation),
                        **errors(400, 401, 403, 404, 409, 413, 422, 503),
                    },
                    security=QUEUE,
                    request=obj(["seat_id"], seat_id=ID),
                )
            },
            "/reservations/{reservation_id}": {
                "get": operation(
                    "One of your reservations",
                    {"200": answer("reservation", reservation), **errors(401, 404, 503)},
                    security=BEARER,
                    parameters=[path_id("reservation_id")],
                ),
                "delete": operation(
                    "Cancel your hold; the seat is available at once",
                    {"200": answer("cancelled", reservation), **errors(401, 404, 409, 503)},
                    security=BEARER,
                    parameters=[path_id("reservation_id")],
                ),
            },
            "/wallet": {
                "get": operation(
                    "Your balance",
                    {"200": answer("balance", balance), **errors(401, 503)},
                    security=BEARER,
                )
            },
            "/wallet/charges": {
                "post": operation(
                    "Add money to your wallet",
                    {"200": answer("new balance", balance), **errors(400, 401, 409, 413, 422, 503)},
                    security=BEARER,
                    request=obj(
                        ["amount"], amount={"type": "integer", "minimum": 1, "maximum": 10_000_000}
                    ),
                    parameters=[IDEMPOTENCY_KEY],
                )
            },
            "/payments": {
                "post": operation(
                    "Pay for a hold: seat sold, balance debited, queue token expired",
                    {
                        "201": answer(
                            "paid",
                            obj(
                                ["payment_id", "reservation_id", "amount", "balance", "status"],
                                payment_id=ID,
                                reservation_id=ID,
                                amount={"type": "integer"},
                                balance={"type": "integer", "minimum": 0},
                                status={"type": "string", "enum": ["paid"]},
                            ),
                        ),
                        **errors(400, 401, 402, 403, 404, 409, 413, 422, 503),
                    },
                    security=QUEUE,
                    request=obj(["reservation_id"], reservation_id=ID),
                    parameters=[IDEMPOTENCY_KEY],
                )
            },
            "/healthz": {
                "get": operation(
                    "The process runs",
                    {"200": answer("ok", obj(["status"], status={"type": "string"}))},
                )
            },
            "/readyz": {
                "get": operation(
                    "The database and Redis answer",
                    {
                        "200": answer("ready", obj(["status"], status={"type": "string"})),
                        "503": answer(
                            "not ready; the failing part is named",
                            obj(["status"], status={"type": "string"}),
                        ),
                    },
                )
            },
            "/openapi.json": {
                "get": operation("This document", {"200": answer("OpenAPI 3", {"type": "object"})})
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "queueToken": {"type": "apiKey", "in": "header", "name": "X-Queue-Token"},
            },
            "schemas": {
                "Error": obj(
                    ["error"],
                    error=obj(
                        ["code", "message"], code={"type": "string"}, message={"type": "string"}
                    ),
                ),
                "QueueStatus": obj(
                    ["token", "status", "position", "estimated_wait_seconds"],
                    token={"type": "string"},
                    status={"type": "string", "enum": ["waiting", "active", "expired"]},
                    position={"type": "integer", "minimum": 1, "nullable": True},
                    estimated_wait_seconds={"type": "integer", "minimum": 0},
                ),
                "Reservation": obj(
                    [
                        "reservation_id",
                        "seat_id",
                        "date_id",
                        "concert_id",
                        "number",
                        "price",
                        "status",
                        "expires_at",
                    ],
                    reservation_id=ID,
                    seat_id=ID,
                    date_id=ID,
                    concert_id=ID,
                    number={"type": "integer"},
                    price={"type": "integer", "minimum": 0},
                    status={"type": "string", "enum": ["held", "paid", "cancelled", "expired"]},
                    expires_at=TIMESTAMP,
                ),
            },
        },
    }
