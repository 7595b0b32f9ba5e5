"""`concert serve` told to stop (SIGTERM) fails no request that reached it: `/readyz` answers
503 at once while it serves on for its grace period, each answer then closes its connection,
and the requests in flight when the drain begins are answered before it exits."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import free_port

pytestmark = pytest.mark.integration

GRACE = 2.0
DRAIN = 10


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``concert serve`` on the embedded default with the demo, one worker, with the grace
    period above."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONCERT_SHUTDOWN_GRACE_SECONDS": str(GRACE),
        "CONCERT_SHUTDOWN_DRAIN_SECONDS": str(DRAIN),
        "CONCERT_LOG_FORMAT": "text",
    }
    seeded = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "seed-demo"], cwd=tmp_path, env=env, check=False
    )
    assert seeded.returncode == 0
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "entrypoints.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while _status(port, "/readyz") != 200:
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "serve.log"
            ).read_text()
            time.sleep(0.1)
        yield process, port
    finally:
        process.kill()
        process.wait(timeout=10)
        log.close()


def _status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def test_a_stop_fails_no_request_that_reached_the_server(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = server
    # a balancer's keep-alive connection, idle when the stop comes
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    kept.request("GET", "/healthz")
    first = kept.getresponse()
    first.read()
    assert first.getheader("connection") != "close"
    # a request whose body has not all arrived when the stop comes, nor when the drain begins
    body = json.dumps({"email": "late@example.com", "password": "a long enough password"})
    late = http.client.HTTPConnection("127.0.0.1", port, timeout=DRAIN)
    late.putrequest("POST", "/auth/signup")
    late.putheader("Content-Type", "application/json")
    late.putheader("Content-Length", str(len(body)))
    late.endheaders()

    told = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)  # as a service manager and a supervisor both may

    # at once: not ready, so that a balancer sends no more; but serving
    ready = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    ready.request("GET", "/readyz")
    answer = ready.getresponse()
    assert (answer.status, json.loads(answer.read())) == (503, {"status": "stopping"})
    assert answer.getheader("connection") == "close"
    # the kept connection still serves, and its answer closes it where both ends agree
    kept.request("GET", "/healthz")
    during = kept.getresponse()
    assert during.status == 200 and during.read() == b'{"status":"ok"}'
    assert during.getheader("connection") == "close"
    assert time.monotonic() - told < GRACE, "the checks took the whole grace period"

    # past the grace period the drain has begun: new connections are refused
    time.sleep(GRACE + 0.5)
    assert _status(port, "/healthz") is None
    # ... and the request in flight is answered in full
    late.send(body.encode())
    signed_up = late.getresponse()
    assert signed_up.status == 201, signed_up.read()
    assert json.loads(signed_up.read())["email"] == "late@example.com"

    process.wait(timeout=DRAIN)
    assert time.monotonic() - told < GRACE + DRAIN
    for connection in (kept, late, ready):
        connection.close()


def _call(port: int, method: str, path: str, body: object = None, **headers: str) -> object:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        sent = None if body is None else json.dumps(body)
        connection.request(method, path, sent, {"Content-Type": "application/json", **headers})
        answer = connection.getresponse()
        assert answer.status < 300, answer.read()
        return json.loads(answer.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("told", "ends_within"),
    [(signal.SIGTERM, (GRACE, GRACE + DRAIN / 2)), (signal.SIGINT, (0, 1.5))],
    ids=["SIGTERM: after the grace period", "SIGINT: at once"],
)
def test_live_seat_maps_end_when_the_drain_begins_rather_than_hold_it(
    server: tuple[subprocess.Popen[bytes], int], told: int, ends_within: tuple[float, float]
) -> None:
    process, port = server
    login = {"email": "mina@example.com", "password": "a long enough password"}
    _call(port, "POST", "/auth/signup", login)
    token = _call(port, "POST", "/auth/login", login)["access_token"]  # type: ignore[index]
    auth = {"Authorization": f"Bearer {token}"}
    queue = _call(port, "POST", "/queue/tokens", **auth)["token"]  # type: ignore[index]
    dates = _call(port, "GET", "/concerts/1/dates", **auth, **{"X-Queue-Token": queue})
    date_id = dates["dates"][0]["date_id"]  # type: ignore[index]
    stream = http.client.HTTPConnection("127.0.0.1", port, timeout=GRACE + DRAIN)
    stream.request(
        "GET", f"/concerts/1/dates/{date_id}/seats/events", headers={**auth, "X-Queue-Token": queue}
    )
    events = stream.getresponse()
    assert events.status == 200
    assert events.readline().startswith(b"event: snapshot")

    sent = time.monotonic()
    process.send_signal(told)
    while events.readline():  # the rest of the snapshot, heartbeats; then the end
        assert time.monotonic() - sent < GRACE + DRAIN
    ended = time.monotonic() - sent
    stream.close()
    process.wait(timeout=DRAIN)
    earliest, latest = ends_within
    assert earliest <= ended < latest, ended  # not kept to the drain's limit
