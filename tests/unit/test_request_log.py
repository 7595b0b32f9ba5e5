"""Every answer carries X-Request-ID, and every request leaves one log line with it; an
unexpected error is logged once, with its request id, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import httpx
import pytest

from adapters.clock import ManualClock
from booking import memory_deps
from concert_domain import Dependencies
from entrypoints.http import create_app
from entrypoints.logs import JsonFormatter, TextFormatter
from http_support import PASSWORD, sign_up_and_log_in


@pytest.fixture
def deps(clock: ManualClock) -> Dependencies:
    return memory_deps(clock)


@pytest.fixture
async def client(deps: Dependencies) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(deps), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """The JSON lines the service has written so far in a test, as a real handler formats
    them (at the moment each record is written, so with the request id of its task)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


def requests_of(lines: Lines) -> list[dict[str, Any]]:
    return [line for line in lines() if line["logger"] == "concert.requests"]


async def test_every_answer_carries_the_callers_id_or_a_new_one(
    client: httpx.AsyncClient,
) -> None:
    mine = await client.get("/healthz", headers={"X-Request-ID": "trace-42 abc"})
    assert mine.headers["x-request-id"] == "trace-42 abc"
    for bad in ("x" * 129, "tab\there"):
        given = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert len(given.headers["x-request-id"]) == 32 and given.headers["x-request-id"] != bad
    missing = await client.get("/no/such/path")
    assert missing.status_code == 404 and len(missing.headers["x-request-id"]) == 32


async def test_one_line_per_request_with_its_route_status_duration_and_caller(
    client: httpx.AsyncClient, lines: Lines
) -> None:
    mina = await sign_up_and_log_in(client, "mina@example.com")
    await client.get("/reservations/77", headers={**mina.auth, "X-Request-ID": "r-1"})
    await client.get("/wallet", headers={"Authorization": "Bearer not-a-token"})
    signup, login, found, refused = requests_of(lines)
    assert (signup["method"], signup["route"], signup["status"]) == ("POST", "/auth/signup", 201)
    assert (login["route"], login["status"], login["user_id"]) == ("/auth/login", 200, None)
    assert found["request_id"] == "r-1"
    assert (found["route"], found["status"]) == ("/reservations/{reservation_id}", 404)
    assert found["user_id"] == 1 and found["level"] == "info"
    assert (
        found["duration_ms"] >= 0 and found["message"] == "GET /reservations/{reservation_id} 404"
    )
    assert (refused["status"], refused["user_id"]) == (401, None)
    assert len({line["request_id"] for line in (signup, login, found, refused)}) == 4


async def test_the_lines_name_no_secret(client: httpx.AsyncClient, lines: Lines) -> None:
    mina = await sign_up_and_log_in(client, "mina@example.com")
    await client.get("/wallet", headers=mina.auth)
    written = "\n".join(map(json.dumps, lines()))
    assert PASSWORD not in written and mina.token not in written


async def test_an_unexpected_error_is_answered_500_and_logged_once_with_its_id(
    client: httpx.AsyncClient, deps: Dependencies, lines: Lines
) -> None:
    mina = await sign_up_and_log_in(client, "mina@example.com")
    broken = create_app(attrs.evolve(deps, clock=Broken()))
    transport = httpx.ASGITransport(app=broken, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        answer = await http.get("/me", headers={**mina.auth, "X-Request-ID": "boom-1"})
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert answer.headers["x-request-id"] == "boom-1"
    errors = [line for line in lines() if line["level"] == "error"]
    assert len(errors) == 1 and errors[0]["request_id"] == "boom-1"
    assert "ZeroDivisionError: a bug" in errors[0]["error"]
    [line] = [line for line in requests_of(lines) if line["request_id"] == "boom-1"]
    assert (line["route"], line["status"]) == ("/me", 500)


def test_the_text_format_reads_as_one_line_for_people() -> None:
    record = logging.makeLogRecord(
        {
            "name": "concert.requests",
            "levelname": "INFO",
            "msg": "GET /wallet 200",
            "request_id": "r-9",
            "status": 200,
            "duration_ms": 1.5,
        }
    )
    line = TextFormatter().format(record)
    assert "INFO concert.requests [r-9]: GET /wallet 200" in line
    assert line.endswith("status=200 duration_ms=1.5")


def test_a_log_format_that_is_not_known_stops_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "migrate"],
        env={"CONCERT_LOG_FORMAT": "yaml", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "concert: CONCERT_LOG_FORMAT: must be one of json, text"


@attrs.frozen
class Broken:
    """A clock that fails as a bug would."""

    def now(self) -> Any:
        raise ZeroDivisionError("a bug")
