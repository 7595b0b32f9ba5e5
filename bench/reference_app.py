"""Reference endpoints, served with the same uvicorn settings as the service, so every figure
can be given as a ratio to what the framework, one Redis round trip and one raw psycopg
statement cost on this machine in the same run.

    GET  /bare      a JSON body the size of a seat map (50 seats), nothing else
    GET  /redis     one Redis GET, through the link the service uses (`adapters.redis.link`)
    POST /psycopg   one conditional UPDATE on raw psycopg (a hold's shape), autocommit
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.redis import connect

SEAT_MAP = {  # as large as the service's answer for the demo date
    "seats": [
        {
            "seat_id": n,
            "section": "Floor",
            "row": "A",
            "number": n,
            "label": f"Floor A-{n}",
            "price": 50_000,
            "status": "available",
        }
        for n in range(1, 51)
    ]
}
ROWS = 100_000
POOL = 8
HOLD = (
    "UPDATE bench_reference SET holder = %s, held_until = now() + interval '1 millisecond' "
    "WHERE seat_id = %s AND held_until < now()"
)


async def prepare(conninfo: str) -> None:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS bench_reference "
            "(seat_id int PRIMARY KEY, holder int, held_until timestamptz NOT NULL)"
        )
        await connection.execute(
            "INSERT INTO bench_reference SELECT n, NULL, now() FROM generate_series(1, %s) n "
            "ON CONFLICT DO NOTHING",
            (ROWS,),
        )


def create() -> Starlette:
    conninfo = os.environ["BENCH_PSYCOPG"]
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["redis"] = connect(os.environ["BENCH_REDIS"])
        pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
        for _ in range(POOL):
            pool.put_nowait(await psycopg.AsyncConnection.connect(conninfo, autocommit=True))
        state["pool"] = pool
        yield
        while not pool.empty():
            await pool.get_nowait().close()
        await state["redis"].aclose()

    async def bare(request: Request) -> JSONResponse:
        return JSONResponse(SEAT_MAP)

    async def one_redis(request: Request) -> JSONResponse:
        value = await state["redis"].call("GET", "bench:reference")
        return JSONResponse({"value": value})

    async def one_update(request: Request) -> JSONResponse:
        connection = await state["pool"].get()
        try:
            cursor = await connection.execute(HOLD, (1, random.randint(1, ROWS)))
        finally:
            state["pool"].put_nowait(connection)
        return JSONResponse({"updated": cursor.rowcount}, status_code=201)

    return Starlette(
        routes=[
            Route("/bare", bare),
            Route("/redis", one_redis),
            Route("/psycopg", one_update, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
