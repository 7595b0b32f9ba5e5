"""Schemathesis against the service as `concert serve` runs it on the embedded default (SQLite,
the line in the process), driven by the `/openapi.json` it serves.

Every operation gets the coverage phase's boundary and invalid cases and the fuzzing phase's
random ones, valid and invalid; then call sequences follow the links schemathesis infers from
the document (a seat map's seat into a hold, a hold's `reservation_id` into a payment, a cancel,
a read). Every request is sent as one customer with money and an active queue token, except
where schemathesis leaves the credentials out or spoils them on purpose, which must answer 401
or 403; a second customer stands by so that a customer's reads of their own holds can be tried
as someone else. Every check schemathesis has runs on every answer: no 5xx; status codes,
content types, headers and bodies as documented; invalid input refused; valid input accepted;
required headers; unsupported methods and their `Allow`; credentials enforced; another
customer's things not shown; a created hold readable; a cancelled one not read back as live;
no answer slower than ten seconds. Two of them make exceptions for answers of `API.md` that a
schema cannot foretell, each checked against the run's own record (`fuzz_support`).

The bounded run (a fixed seed, `fuzz_support.DEFAULT_EXAMPLES` cases per operation, twice as
many call sequences) is part of the default test command; `nox -s fuzz` runs a long one
(`CONCERT_FUZZ_EXAMPLES`, `CONCERT_FUZZ_SCENARIOS`, `CONCERT_FUZZ_STEPS`, `CONCERT_FUZZ_SEED`).
Hypothesis stops an operation at its first failure and shrinks it, so a failing operation
may hide others behind it until it is fixed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis

import services
from fuzz_support import (
    HOLD_SECONDS,
    Budget,
    Case,
    Customer,
    Document,
    Run,
    as_customer_with_a_peer,
    configuration,
)

BUDGET = Budget.from_environment()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`concert serve` on the embedded default, with the demo catalog; its base URL. Tokens
    outlast a long run, and the per-address sign-up and per-customer hold limits are off: the
    fuzzer is one client at full speed, and 429 for most of its requests (which the contract
    allows) would hide what lies behind them."""
    workdir = tmp_path_factory.mktemp("fuzz")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CONCERT_QUEUE_CAPACITY": "100000",
        "CONCERT_QUEUE_ACTIVE_SECONDS": "86400",
        "CONCERT_ACCESS_TOKEN_SECONDS": "86400",
        "CONCERT_HOLD_SECONDS": str(HOLD_SECONDS),
        "CONCERT_AUTH_ATTEMPTS_PER_ADDRESS": "0",
        "CONCERT_HOLD_ATTEMPTS_PER_CUSTOMER": "0",
    }
    seeded = subprocess.run(
        [sys.executable, "-m", "entrypoints.cli", "seed-demo"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    with services.concert_serve(workdir, env) as service:
        yield service.url


@pytest.fixture(scope="module")
def run(served: str, request: pytest.FixtureRequest) -> Iterator[Run]:
    """The customer, the peer and the record of the whole module; prints what was sent at the
    end."""
    document = Document(httpx.get(f"{served}/openapi.json", timeout=30).json())
    state = Run(Customer.sign_up(served), Customer.sign_up(served, charges=0), document)
    yield state
    capture: Any = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{state.summary()}; seed {BUDGET.seed}")


@pytest.fixture(scope="module")
def api(served: str, run: Run) -> schemathesis.BaseSchema:
    """The served document, every request in it sent as the run's customer."""
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json", config=configuration(BUDGET))

    @schema.hook("after_validate")
    def count(
        context: schemathesis.HookContext,
        case: Case,
        response: schemathesis.Response,
        results: list[schemathesis.CheckResult],
    ) -> None:
        run.checked(results)

    schema.auth.providers.append(as_customer_with_a_peer(run.customer, run.peer))
    # the live seat map's stream never ends, which a fuzzer waiting for a whole answer takes
    # for a hang: its refusals are the seat map's (fuzzed), and the end-to-end tests and
    # test_seat_events.py hold the stream itself to the contract
    return schema.exclude(path_regex=STREAMS)


@pytest.fixture
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """Schemathesis 4.32 names each operation's subtest through ``Node._nodeid``, which
    pytest 9.2 no longer has; give it back the node's id."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


STREAMS = r".*/seats/events$"
schema = schemathesis.pytest.from_fixture("api").exclude(path_regex=STREAMS)


@schema.parametrize()
@pytest.mark.usefixtures("_node_id_for_schemathesis")
def test_every_operation_keeps_the_contract(case: Case, run: Run) -> None:
    run.send(case)


def test_sequences_of_calls_keep_the_contract(api: schemathesis.BaseSchema, run: Run) -> None:
    class Sequences(api.as_state_machine()):  # type: ignore[misc]
        def after_call(self, response: schemathesis.Response, case: Case) -> None:
            super().after_call(response, case)  # records it for the stateful checks
            run.after_call(case, response)

        def validate_response(
            self,
            response: schemathesis.Response,
            case: Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            run.validate(case, response, transport_kwargs=kwargs or None, recorder=self.recorder)

        def teardown(self) -> None:
            run.scenarios += 1
            super().teardown()

    # A sequence's next call depends on the server's answers so far, which change as the run
    # sells seats, so Hypothesis may find a sequence it replays drawing differently and stop
    # (schemathesis's own runner starts again then). Start again until the budget is spent.
    while run.scenarios < BUDGET.scenarios:
        before = run.scenarios
        try:
            Sequences.run(
                settings=hypothesis.settings(
                    Sequences.TestCase.settings,
                    max_examples=BUDGET.scenarios - run.scenarios,
                    stateful_step_count=BUDGET.steps,
                    derandomize=BUDGET.bounded,
                    database=None,
                )
            )
        except (hypothesis.errors.FlakyStrategyDefinition, AssertionError) as e:
            if not replayed_differently(e) or run.scenarios == before:
                raise
            run.restarts += 1
            continue
        break


def replayed_differently(error: BaseException) -> bool:
    """Whether Hypothesis stopped because a sequence drew differently on a replay: it raises
    `FlakyStrategyDefinition`, or at times fails an assertion of its own data tree."""
    if isinstance(error, hypothesis.errors.FlakyStrategyDefinition):
        return True
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_globals.get("__name__", "").startswith(
        "hypothesis.internal.conjecture"
    )
