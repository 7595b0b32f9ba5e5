"""What the schemathesis run (`integration/test_fuzz.py`) needs beside schemathesis: its budget,
the customer it acts as, its configuration, and the answers of the contract that no schema can
foretell for a schema-valid request.

`positive_data_acceptance` runs as the built-in check with exactly five answers excused, each
only when this run's own record, or the answer itself, shows it is the contract's answer
(`API.md`):

- an ``Idempotency-Key`` is scoped to its customer, so a key the fuzzer already sent with another
  request is refused with 422 ``idempotency_key_reused``, and a retry of the first request gets
  the first answer again, whatever it was;
- a wallet charge that would take the balance past ``BALANCE_MAX`` is refused with 422
  ``invalid_request``;
- money is "an integer number of won (no fractions, no floats)" and an id is a value the client
  echoes back, so ``100.0`` is refused with 422 ``invalid_request``, where JSON Schema counts
  it as the integer 100 and no schema can tell the two apart;
- a page's ``cursor`` is opaque, "the ``next`` of the page before": one no page handed out is
  refused with 422 ``invalid_request`` ("a bad query"), though any string of its alphabet
  fits the schema;
- several seats are held together only if they are "of one date": a list of seats of more
  than one date is refused with 422 ``invalid_request``, where the schema sees only ids.

The first two depend on what was sent before; the last three are limits of JSON Schema.

`use_after_free` runs as the built-in check but for one answer: cancelling a hold is
``DELETE /reservations/{id}``, and the contract keeps the reservation readable afterwards, with
status ``cancelled`` (`API.md`, "Reservations"), where the check expects 404. A cancelled
reservation read back as anything else still fails it.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import attrs
import httpx
import schemathesis
from schemathesis.auths import AuthProvider
from schemathesis.specs.openapi.checks import positive_data_acceptance as built_in_acceptance
from schemathesis.specs.openapi.checks import use_after_free as built_in_use_after_free
from schemathesis.wfc.escalation import EscalatingAuthProvider

from concert_domain.wallet import BALANCE_MAX, CHARGE_MAX
from http_support import PASSWORD

Case: TypeAlias = schemathesis.Case[Any]

# The bounded run, part of the default test command; `nox -s fuzz` raises them.
DEFAULT_EXAMPLES = 100  # fuzzing-phase cases per operation, beside the coverage phase's
DEFAULT_SEED = 20261201
FUNDING_CHARGES = 3  # of CHARGE_MAX each: enough to pay for every seat of the demo
# A hold lapses quickly, so the fuzzer's customer is not stuck at the hold limit for long
HOLD_SECONDS = 5
SLOW_ANSWER_SECONDS = 10.0  # `max_response_time`: far above any answer the service gives


@attrs.frozen
class Budget:
    """How much to generate, from the environment: ``CONCERT_FUZZ_EXAMPLES`` cases per
    operation in the fuzzing phase, ``CONCERT_FUZZ_SCENARIOS`` call sequences of up to
    ``CONCERT_FUZZ_STEPS`` calls, ``CONCERT_FUZZ_SEED``."""

    examples: int
    scenarios: int
    steps: int
    seed: int

    @property
    def bounded(self) -> bool:
        """The default run: the same cases every time."""
        return self.examples == DEFAULT_EXAMPLES and self.seed == DEFAULT_SEED

    @classmethod
    def from_environment(cls) -> Budget:
        def number(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip()
            return int(raw) if raw else default

        examples = number("CONCERT_FUZZ_EXAMPLES", DEFAULT_EXAMPLES)
        return cls(
            examples=examples,
            scenarios=number("CONCERT_FUZZ_SCENARIOS", 2 * examples),
            steps=number("CONCERT_FUZZ_STEPS", 10),
            seed=number("CONCERT_FUZZ_SEED", DEFAULT_SEED),
        )


def configuration(budget: Budget) -> schemathesis.Config:
    """Every phase the pytest integration runs (examples, coverage, fuzzing; the stateful one
    is a test of its own), positive and negative data, every check enabled, answers slower
    than `SLOW_ANSWER_SECONDS` failing, and reproducible output: a fixed seed, no example
    database, and curl commands with their real headers (the tokens are a throwaway server's)."""
    return schemathesis.Config.from_dict(
        {
            "seed": budget.seed,
            "output": {"sanitization": {"enabled": False}},
            "request-timeout": 30,
            "generation": {
                "mode": "all",
                "max-examples": budget.examples,
                "deterministic": budget.bounded,
                "database": "none",
            },
            "checks": {"max_response_time": SLOW_ANSWER_SECONDS},
            "phases": {"stateful": {"max-steps": budget.steps}},
        }
    )


@attrs.define
class Customer:
    """A customer the fuzzer acts as: logged in, with money, admitted from the line. Paying
    expires the queue token (`API.md`), so `join_queue` takes a new one after each payment."""

    base_url: str
    email: str
    access_token: str
    queue_token: str = ""

    @classmethod
    def sign_up(cls, base_url: str, *, charges: int = FUNDING_CHARGES) -> Customer:
        email = f"fuzz-{secrets.token_hex(4)}@example.com"
        with httpx.Client(base_url=base_url, timeout=30) as http:
            account = {"email": email, "password": PASSWORD}
            assert http.post("/auth/signup", json=account).status_code == 201
            login = http.post("/auth/login", json=account)
            assert login.status_code == 200, login.text
            customer = cls(base_url, email, login.json()["access_token"])
            for _ in range(charges):
                charged = http.post(
                    "/wallet/charges", json={"amount": CHARGE_MAX}, headers=customer.auth
                )
                assert charged.status_code == 200, charged.text
        customer.join_queue()
        return customer

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def headers(self) -> dict[str, str]:
        """Both credentials: every path but the open ones needs the first, the queue paths
        (and `GET /queue/status`) the second too."""
        return {**self.auth, "X-Queue-Token": self.queue_token}

    def join_queue(self) -> None:
        joined = httpx.post(f"{self.base_url}/queue/tokens", headers=self.auth, timeout=30)
        assert joined.status_code in (200, 201), joined.text
        assert joined.json()["status"] == "active", joined.text  # capacity is far above use
        self.queue_token = joined.json()["token"]

    def balance(self) -> int:
        answer = httpx.get(f"{self.base_url}/wallet", headers=self.auth, timeout=30)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["balance"])

    def sent(self, case: Case) -> bool:
        """Whether ``case`` went out with this customer's access token."""
        return bool(case.headers.get("Authorization") == self.auth["Authorization"])


@attrs.frozen
class Credentials:
    """A schemathesis auth provider: both of a customer's credentials on a request, as they
    are at the moment it is generated."""

    customer: Customer

    def get(self, case: Case, context: schemathesis.AuthContext) -> dict[str, str]:
        return self.customer.headers

    def set(self, case: Case, data: dict[str, str], context: schemathesis.AuthContext) -> None:
        case.headers.update(data)


def as_customer_with_a_peer(customer: Customer, peer: Customer) -> AuthProvider[dict[str, str]]:
    """Every request as ``customer``; ``peer`` stands by for `object_level_authorization`,
    which replays the customer's successful reads of their own things (a hold, say) as the
    peer and fails if the peer is shown them. Schemathesis builds this for ``[auth.wfc]``
    users with ``peers``; those have fixed headers, and a queue token changes on payment."""
    names = ["customer", "peer"]
    return EscalatingAuthProvider(
        [Credentials(customer), Credentials(peer)], names, peers=tuple(names), pinned="customer"
    )


@attrs.frozen
class KeyUse:
    """One request sent with an ``Idempotency-Key``: what it asked, what it was told, and
    whether that was one of the refusals excused here (so a stored answer, not a key or body
    refused before the service looked the key up)."""

    request: str
    status: int
    body: bytes
    excused: bool

    @property
    def may_hold_the_key(self) -> bool:
        """Whether the service may have kept this answer for the key."""
        return self.status not in (400, 401, 403, 413, 422) or self.excused


def error_code(response: schemathesis.Response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return code if isinstance(code, str) else None
    return None


@attrs.define
class Run:
    """The state one fuzzing run shares between its tests: the customer, every use of an
    idempotency key so far, and what was sent."""

    customer: Customer
    peer: Customer
    document: Document
    key_uses: dict[str, list[KeyUse]] = attrs.field(factory=dict)
    cases: Counter[str] = attrs.field(factory=Counter)  # by phase
    operations: set[str] = attrs.field(factory=set)
    checks: Counter[str] = attrs.field(factory=Counter)  # by check, how many answers it judged
    scenarios: int = 0
    restarts: int = 0
    started: float = attrs.field(factory=time.monotonic)

    # -- around each call ---------------------------------------------------------------------

    def after_call(self, case: Case, response: schemathesis.Response) -> None:
        if (
            case.operation.label == "POST /payments"
            and response.status_code == 201
            and self.customer.sent(case)
        ):
            self.customer.join_queue()  # the payment expired the queue token

    def validate(
        self,
        case: Case,
        response: schemathesis.Response,
        **kwargs: Any,
    ) -> None:
        """Every check schemathesis has, two of them with the excuses above."""
        try:
            case.validate_response(
                response,
                excluded_checks=[built_in_acceptance, built_in_use_after_free],
                additional_checks=[self.positive_data_acceptance_check(), use_after_free],
                **kwargs,
            )
        finally:
            self.record(case, response)

    def send(self, case: Case) -> None:
        response = case.call()
        self.after_call(case, response)
        self.validate(case, response)

    def record(self, case: Case, response: schemathesis.Response) -> None:
        phase = case.meta.phase.name.value if case.meta is not None else "explicit"
        self.cases[phase] += 1
        self.operations.add(case.operation.label)
        key = self.idempotency_key(case)
        if key is not None:
            excused = self.documented_refusal(case, response)
            use = KeyUse(self.request_of(case), response.status_code, response.content, excused)
            self.key_uses.setdefault(key, []).append(use)

    # -- the five excused answers ------------------------------------------------------------

    def positive_data_acceptance_check(self) -> Callable[..., bool | None]:
        run = self

        def positive_data_acceptance(
            ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
        ) -> bool | None:
            """The built-in check, but for the answers `Run.documented_refusal` names."""
            if run.documented_refusal(case, response):
                return None
            return built_in_acceptance(ctx, response, case)

        return positive_data_acceptance

    def documented_refusal(self, case: Case, response: schemathesis.Response) -> bool:
        """Whether a 422 to this request is the contract's answer, going by this run's record."""
        if response.status_code != 422 or not self.customer.sent(case):
            return False
        code = error_code(response)
        key = self.idempotency_key(case)
        if key is not None:
            request = self.request_of(case)
            earlier = [use for use in self.key_uses.get(key, []) if use.may_hold_the_key]
            if code == "idempotency_key_reused" and any(u.request != request for u in earlier):
                return True
            first = next((use for use in earlier if use.request == request), None)
            if first is not None and (first.status, first.body) == (422, response.content):
                return True  # the first answer to this key and request, replayed
        if (
            code == "invalid_request"
            and isinstance(case.query, Mapping)
            and "cursor" in case.query
            and b"cursor must be the `next` of a page" in response.content
        ):
            return True  # a cursor no page handed out
        if code != "invalid_request" or not isinstance(case.body, Mapping):
            return False
        seat_ids = case.body.get("seat_ids")
        if (
            case.operation.label == "POST /reservations"
            and isinstance(seat_ids, list)
            and len(seat_ids) > 1
            and b"must be of one date" in response.content
        ):
            return True  # seats of several dates
        fields = self.document.body_fields(case)
        if any(
            isinstance(value, float) and value.is_integer() and declares_integer(fields[name])
            for name, value in case.body.items()
            if name in fields
        ):
            return True  # an integer written as a float
        amount = case.body.get("amount")
        return (
            case.operation.label == "POST /wallet/charges"
            and isinstance(amount, int)
            and self.customer.balance() + amount > BALANCE_MAX  # the balance would pass it
        )

    def idempotency_key(self, case: Case) -> str | None:
        if not self.document.takes_idempotency_key(case) or not self.customer.sent(case):
            return None
        key = case.headers.get("Idempotency-Key")
        return key if isinstance(key, str) else None

    def request_of(self, case: Case) -> str:
        """What the service fingerprints: the operation and the body's declared fields (it
        ignores any others)."""
        body = case.body
        if isinstance(body, Mapping):
            fields = self.document.body_fields(case)
            body = {name: value for name, value in body.items() if name in fields}
        return json.dumps([case.operation.label, body], sort_keys=True, default=repr)

    def checked(self, results: list[schemathesis.CheckResult]) -> None:
        self.checks.update(result.name for result in results)

    def summary(self) -> str:
        phases = ", ".join(f"{count} {phase}" for phase, count in sorted(self.cases.items()))
        return (
            f"fuzzing: {len(self.operations)} operations, {self.cases.total()} requests "
            f"({phases}; {self.scenarios} call sequences, {self.restarts} restarts), "
            f"{len(self.checks)} checks "
            f"({', '.join(sorted(self.checks))}), {time.monotonic() - self.started:.0f} s"
        )


def use_after_free(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: Case
) -> bool | None:
    """The built-in check, but for a cancelled reservation read back as cancelled."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and body.get("status") == "cancelled":
        return None
    return built_in_use_after_free(ctx, response, case)


def declares_integer(field: Any) -> bool:
    kinds = field.get("type") if isinstance(field, Mapping) else None
    return kinds == "integer" or (isinstance(kinds, list) and "integer" in kinds)


@attrs.frozen
class Document:
    """What the served ``/openapi.json`` says about an operation."""

    raw: Mapping[str, Any]

    def operation(self, case: Case) -> Mapping[str, Any]:
        found: Mapping[str, Any] = self.raw["paths"][case.operation.path][
            case.operation.method.lower()
        ]
        return found

    def takes_idempotency_key(self, case: Case) -> bool:
        parameters = self.operation(case).get("parameters", [])
        return any(p.get("name", "").lower() == "idempotency-key" for p in parameters)

    def body_fields(self, case: Case) -> Mapping[str, Any]:
        """The top-level properties of the operation's JSON request body, by name."""
        content = self.operation(case).get("requestBody", {}).get("content", {})
        shape = self.resolve(content.get("application/json", {}).get("schema", {}))
        fields = shape.get("properties", {}) if isinstance(shape, Mapping) else {}
        return {name: self.resolve(field) for name, field in fields.items()}

    def resolve(self, node: Any) -> Any:
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            target: Any = self.raw
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node
