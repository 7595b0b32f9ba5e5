"""The lab's customers: every request timed, classified and given an ``X-Request-ID`` of its
own (`Recorder`), so that HAProxy's access log can say which host it went to.

A customer behaves as a careful client: a request that got no answer or a 5xx is sent again
(POSTs with the same ``Idempotency-Key``), a few times at most; every attempt is counted. A
``409 idempotency_key_in_use`` (the first attempt with that key still holds its claim: it died
with a killed host) is neither a refusal nor a failure but a wait: the request is sent again
every `KEY_IN_USE_EVERY` s, `KEY_IN_USE_FOR` s at most (the service's claim lease is 60 s),
until it completes; each such request is kept (`KeyWait`). A request that never completes
(attempts spent, or the key still in use) is a failure of its own (`Outcome.gave_up`).
`Shop` holds what the customers sent and were told: every keyed write sent and answered, and
the payments answered 201.

- `Visits.rush_visit`: join the line, wait to be admitted, read the seat map, hold one of the
  first available seats (another when it was taken), charge the wallet, pay.
- `Visits.steady`: the same customers again and again on a large date, holding, paying,
  cancelling or abandoning holds, reading the seat map and ``/me``, until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from fault_lab import NORMAL_REFUSALS as FAULT_LAB_REFUSALS
from fault_lab import Customer  # the same customer: an account, its tokens, its keys

from .client import Answer, Browser, NoAnswer
from .haproxy import SERVER_HEADER

CLIENT_TIMEOUT = 10.0
ATTEMPTS = 4
KEY_IN_USE_CODE = "idempotency_key_in_use"
# answers that are part of racing and paying, not failures; a key in use is counted apart
NORMAL_REFUSALS = FAULT_LAB_REFUSALS - {KEY_IN_USE_CODE}
KEY_IN_USE_EVERY = 1.0  # seconds between attempts while the key is in use
KEY_IN_USE_FOR = 70.0  # at most: the service takes a dead request's claim over after 60 s
OK, REFUSED, FAILED, KEY_IN_USE = "ok", "refused", "failed", "key in use"
# the writes that honour an Idempotency-Key, by path, as the Shop counts them
KEYED_WRITES = {"/reservations": "hold", "/wallet/charges": "charge", "/payments": "pay"}


@attrs.frozen
class Outcome:
    what: str  # method and route, e.g. "POST /reservations"
    request_id: str
    started: float  # time.time()
    ended: float
    kind: str  # OK, REFUSED, FAILED or KEY_IN_USE
    status: int | None = None
    code: str | None = None
    detail: str = ""  # for a failure: what it was, e.g. "502", "no answer (ReadError)"
    server: str | None = None  # the host that answered (X-Lab-Server), when known
    via: str = "haproxy"  # or the host's name when sent to it directly
    port: int | None = None  # the customer's local port, for a request without an answer
    termination: str = ""  # HAProxy's termination state, from its access log
    gave_up: bool = False  # not an attempt: the request, which never completed

    @property
    def failed(self) -> bool:
        return self.kind == FAILED


def error_code(answer: Answer) -> str | None:
    """The code of an error body ``{"error": {"code", "message"}}``, exactly that shape."""
    try:
        body = answer.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) and set(body) == {"error"} else None
    if not (isinstance(error, dict) and set(error) == {"code", "message"}):
        return None
    code = error["code"]
    return code if isinstance(code, str) and isinstance(error["message"], str) else None


def classify(answer: Answer) -> tuple[str, str | None, str]:
    status = answer.status
    code = error_code(answer)
    if status < 300:
        return OK, None, ""
    if status == 409 and code == KEY_IN_USE_CODE:
        return KEY_IN_USE, code, ""
    if 400 <= status < 500 and code in NORMAL_REFUSALS:
        return REFUSED, code, ""
    if code is not None:
        return FAILED, code, f"{status} {code}"
    # HAProxy's own answers carry no X-Request-ID; the service's every answer does
    source = "the service" if "x-request-id" in answer.headers else "HAProxy"
    return FAILED, code, f"{status} from {source}"


def route(method: str, url: str) -> str:
    """``METHOD /path`` with its ids as ``{id}``."""
    return f"{method} {re.sub(r'/[0-9]+', '/{id}', urlsplit(url).path)}"


@attrs.frozen
class KeyWait:
    """A request answered ``409 idempotency_key_in_use``, sent again until it completed."""

    what: str
    key: str
    started: float  # its first attempt (time.time())
    ended: float  # its last answer
    answers: int  # how many 409s
    completed: bool
    last: str  # the last answer, e.g. "201"


class Recorder:
    """Every request of a scenario, in the order answered."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.outcomes: list[Outcome] = []
        self.waits: list[KeyWait] = []
        self._numbers = itertools.count(1)

    async def call(
        self,
        browser: Browser,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json: Any = None,
        via: str = "haproxy",
        what: str | None = None,
    ) -> Answer | None:
        """The answer, or None when there was none."""
        request_id = f"{self.label}-{next(self._numbers)}-{secrets.token_hex(3)}"
        label = what or route(method, url)
        started = time.time()
        direct = None if via == "haproxy" else via
        failure = ""
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                answer = await browser.request(
                    method, url, {**headers, "X-Request-ID": request_id}, json
                )
        except TimeoutError:
            failure = f"no answer in {CLIENT_TIMEOUT:.0f} s"
        except NoAnswer as e:
            failure = f"no answer: {e}"
        if failure:
            self.outcomes.append(
                Outcome(
                    label,
                    request_id,
                    started,
                    time.time(),
                    FAILED,
                    detail=failure,
                    server=direct,
                    via=via,
                    port=browser.last_port,
                )
            )
            return None
        kind, code, detail = classify(answer)
        server = answer.headers.get(SERVER_HEADER.lower()) or direct
        self.outcomes.append(
            Outcome(
                label,
                request_id,
                started,
                time.time(),
                kind,
                answer.status,
                code,
                detail,
                server,
                via,
            )
        )
        return answer

    def gave_up(self, what: str, started: float, detail: str, via: str = "haproxy") -> None:
        """A request that never completed, whatever its attempts were: a failure of its own."""
        request_id = f"{self.label}-{next(self._numbers)}-gave-up"
        self.outcomes.append(
            Outcome(
                what, request_id, started, time.time(), FAILED, detail=detail, via=via, gave_up=True
            )
        )


@attrs.frozen
class Stage:
    """A date made for one scenario: its seats in layout order."""

    name: str
    concert_id: int
    date_id: int
    seat_ids: list[int]
    price: int

    @property
    def seat_map(self) -> str:
        return f"/concerts/{self.concert_id}/dates/{self.date_id}/seats"


@attrs.define
class Shop:
    """What the customers sent and were told, over every scenario: payments answered 201
    (reservation ids to the payment's amount); each customer's keyed writes (`KEYED_WRITES`:
    holds, charges, payments), sent and answered with success, as key to how many rows it
    makes (the seats of a hold)."""

    paid: dict[int, int] = attrs.Factory(dict)
    sent: dict[tuple[int, str], dict[str, int]] = attrs.Factory(dict)
    answered: dict[tuple[int, str], dict[str, int]] = attrs.Factory(dict)

    def sending(self, user_id: int, method: str, path: str, key: str | None, body: Any) -> None:
        kind = KEYED_WRITES.get(path)
        if method == "POST" and kind is not None and key is not None:
            self.sent.setdefault((user_id, kind), {})[key] = _rows_made(kind, body)

    def told(self, user_id: int, method: str, path: str, key: str | None, answer: Answer) -> None:
        kind = KEYED_WRITES.get(path)
        if method == "POST" and kind is not None and key is not None and answer.status < 300:
            made = self.sent.get((user_id, kind), {}).get(key, 1)
            self.answered.setdefault((user_id, kind), {})[key] = made

    def counts(self, kind: str) -> dict[int, tuple[int, int]]:
        """Each customer's rows of ``kind`` answered and sent (at least, at most made)."""
        users = {user for user, k in self.sent if k == kind}
        return {
            user: (
                sum(self.answered.get((user, kind), {}).values()),
                sum(self.sent.get((user, kind), {}).values()),
            )
            for user in users
        }


def _rows_made(kind: str, body: Any) -> int:
    """How many rows a keyed write makes at most: a hold one per seat."""
    if kind == "hold" and isinstance(body, dict):
        if isinstance(body.get("quantity"), int):
            return int(body["quantity"])
        if isinstance(body.get("seat_ids"), list):
            return len(body["seat_ids"])
    return 1


def _retry_worthy(answer: Answer | None) -> bool:
    return answer is None or answer.status >= 500


def _key_in_use(answer: Answer | None) -> bool:
    return answer is not None and answer.status == 409 and error_code(answer) == KEY_IN_USE_CODE


class Visits:
    """The customers' ways through the service, over one client and recorder."""

    def __init__(self, base: str, recorder: Recorder, shop: Shop, seed: int) -> None:
        self.base = base  # HAProxy
        self.recorder = recorder
        self.shop = shop
        self.rng = random.Random(seed)
        self.browsers: dict[int, Browser] = {}

    def close(self) -> None:
        for browser in self.browsers.values():
            browser.close()

    async def send(
        self,
        c: Customer,
        method: str,
        path: str,
        headers: Mapping[str, str],
        json: Any = None,
        *,
        base: str | None = None,
        via: str = "haproxy",
        attempts: int = ATTEMPTS,
    ) -> Answer | None:
        """The customer's request, sent again (same headers, so the same key) while it
        fails, ``attempts`` times at most, and while its key is in use, `KEY_IN_USE_FOR` s at
        most; the last answer. A request that never completes is recorded as a failure."""
        browser = self.browsers.setdefault(c.user_id, Browser())
        key = headers.get("Idempotency-Key")
        self.shop.sending(c.user_id, method, path, key, json)
        url = (base or self.base) + path
        started = time.time()
        answer = None
        failures = in_use = 0
        waiting_since: float | None = None
        for _ in range(attempts + int(KEY_IN_USE_FOR / KEY_IN_USE_EVERY) + 2):
            answer = await self.recorder.call(
                browser, method, url, headers=headers, json=json, via=via
            )
            if _retry_worthy(answer):
                failures += 1
                if failures >= attempts:
                    break
                await asyncio.sleep(0.1 * failures)
            elif _key_in_use(answer):
                in_use += 1
                now = time.monotonic()
                waiting_since = now if waiting_since is None else waiting_since
                if now - waiting_since >= KEY_IN_USE_FOR:
                    break
                await asyncio.sleep(KEY_IN_USE_EVERY)
            else:
                break
        done = answer is not None and not _retry_worthy(answer) and not _key_in_use(answer)
        last = (
            "no answer" if answer is None else f"{answer.status} {error_code(answer) or ''}".strip()
        )
        if in_use:
            self.recorder.waits.append(
                KeyWait(route(method, url), key or "", started, time.time(), in_use, done, last)
            )
        if not done:
            self.recorder.gave_up(
                route(method, url),
                started,
                f"never completed: {failures} failed attempts, {in_use} answered key in use, "
                f"the last {last.strip()}",
                via,
            )
        elif answer is not None:
            self.shop.told(c.user_id, method, path, key, answer)
        return answer

    async def pause(self, low: float, high: float, stop: asyncio.Event | None = None) -> None:
        if stop is None:
            await asyncio.sleep(self.rng.uniform(low, high))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.rng.uniform(low, high)):
                await stop.wait()

    async def admitted(self, c: Customer, deadline: float) -> bool:
        """Join the line (or find the token again) and wait until admitted, until
        ``deadline`` (time.monotonic()) at most."""
        joined = await self.send(c, "POST", "/queue/tokens", c.auth)
        if joined is None or joined.status not in (200, 201):
            return False
        body = joined.json()
        c.queue_token = str(body["token"])
        status = body["status"]
        for _ in range(1000):  # polls, one every 0.5 to 1 s
            if status != "waiting" or time.monotonic() > deadline:
                break
            await self.pause(0.5, 1.0)
            polled = await self.send(c, "GET", "/queue/status", c.queued)
            if polled is None or polled.status != 200:
                return False
            status = polled.json()["status"]
        if status != "active":
            c.queue_token = None
            return False
        return True

    async def available(self, c: Customer, stage: Stage) -> list[int] | None:
        answer = await self.send(c, "GET", stage.seat_map, c.queued)
        if answer is None or answer.status != 200:
            return None
        return [s["seat_id"] for s in answer.json()["seats"] if s["status"] == "available"]

    async def hold(self, c: Customer, seat: int) -> tuple[int | None, str | None]:
        """The reservation id, or the code of the refusal."""
        headers = {**c.queued, "Idempotency-Key": c.key("hold")}
        held = await self.send(c, "POST", "/reservations", headers, {"seat_id": seat})
        if held is not None and held.status == 201:
            return int(held.json()["reservation_id"]), None
        return None, None if held is None else (error_code(held) or str(held.status))

    async def charge(self, c: Customer, amount: int) -> bool:
        headers = {**c.auth, "Idempotency-Key": c.key("charge")}
        charged = await self.send(c, "POST", "/wallet/charges", headers, {"amount": amount})
        return charged is not None and charged.status == 200

    async def pay(self, c: Customer, reservation_id: int) -> bool:
        headers = {**c.queued, "Idempotency-Key": c.key("pay")}
        paid = await self.send(c, "POST", "/payments", headers, {"reservation_id": reservation_id})
        if paid is None or paid.status != 201:
            return False
        self.shop.paid[reservation_id] = int(paid.json()["amount"])
        c.queue_token = None  # paying expires the queue token
        return True

    async def cancel(self, c: Customer, reservation_id: int) -> bool:
        cancelled = await self.send(c, "DELETE", f"/reservations/{reservation_id}", c.auth)
        return cancelled is not None and cancelled.status in (200, 409)

    async def rush_visit(self, c: Customer, stage: Stage, deadline: float) -> str:
        """One customer's visit at the opening; what came of it."""
        await self.pause(0, 0.5)
        if not await self.admitted(c, deadline):
            return "not admitted"
        reservation_id = None
        for _ in range(6):
            seats = await self.available(c, stage)
            if seats is None:
                return "no seat map"
            if not seats:
                return "sold out"
            reservation_id, refused = await self.hold(c, self.rng.choice(seats[:10]))
            if reservation_id is not None:
                break
            if refused != "seat_unavailable":
                return f"hold refused: {refused}"
        if reservation_id is None:
            return "every seat tried was taken"
        if not await self.charge(c, stage.price):
            return "charge failed"
        return "bought" if await self.pay(c, reservation_id) else "payment failed"

    async def steady(self, c: Customer, stage: Stage, stop: asyncio.Event, deadline: float) -> None:
        """Again and again until ``stop`` (or ``deadline``, time.monotonic())."""
        await self.pause(0, 0.3)
        for _ in range(10_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            if c.queue_token is None and not await self.admitted(c, deadline):
                await self.pause(0.2, 0.4, stop)
                continue
            roll = self.rng.random()
            if roll < 0.1:
                await self.send(c, "GET", "/me", c.auth)
            elif roll < 0.2:
                await self.available(c, stage)
            reservation_id, refused = await self.hold(c, self.rng.choice(stage.seat_ids))
            if refused in ("queue_token_invalid", "queue_token_not_active"):
                c.queue_token = None
            if reservation_id is not None:
                await self.pause(0.05, 0.2, stop)
                choice = self.rng.random()
                if choice < 0.6:
                    if await self.charge(c, stage.price):
                        await self.pay(c, reservation_id)
                elif choice < 0.95:
                    await self.cancel(c, reservation_id)
                # else abandoned: the hold lapses and a scheduler sweeps it
            await self.pause(0.05, 0.15, stop)
