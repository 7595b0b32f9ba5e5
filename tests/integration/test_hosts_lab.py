"""The hosts lab, short (`hosts_lab`; ``nox -s hosts`` runs the whole one): three hosts in
network namespaces behind HAProxy, on PostgreSQL and Redis, through the five scenarios.

A rolling restart under load fails no request, each host living its shutdown grace and marked
DOWN by HAProxy before it exits; a host killed mid-rush is marked DOWN within 3 s and fails only
requests that were in flight on it, and every request whose key it left in use completes; a
hold whose answer was lost (a named seat, the best two), sent again with its Idempotency-Key,
gets the same answer and is the customer's only reservation since; every host reads what
another answered; PostgreSQL holds every invariant after every scenario; and nothing the lab
made is left afterwards.

Needs root and haproxy: without them it skips loudly (fails under CI=true). Run with ``-s``
for the table.
"""

from __future__ import annotations

import time

import pytest

import services
from hosts_lab import netns, stores
from hosts_lab.lab import Options, missing
from hosts_lab.results import Result
from hosts_lab.run import LabRun, run

SHORT = Options(hosts=3, customers=100, seats=20, seconds=8.0, rounds=3)


@pytest.fixture(scope="module")
def lab() -> LabRun:
    why = missing()
    if why is not None:
        services.missing(f"the hosts lab {why}")
    started = time.monotonic()
    done = run(SHORT, show_config=False)
    print(f"\n{done.text}\n(hosts lab, short: {time.monotonic() - started:.0f} s)")
    return done


def scenario(lab: LabRun, number: int) -> Result:
    return next(result for result in lab.results if result.name.startswith(f"{number} "))


def test_every_customer_of_the_rush_is_served_without_a_failure(lab: LabRun) -> None:
    rush = scenario(lab, 1)
    assert not rush.failed, rush.all_problems
    assert rush.passed, rush.all_problems


def test_a_host_killed_mid_rush_fails_only_requests_in_flight_on_it(lab: LabRun) -> None:
    killed = scenario(lab, 2)
    assert killed.kills, "no host was killed"
    assert not killed.unexpected, killed.all_problems
    assert all(wait.completed for wait in killed.waits), killed.all_problems
    assert killed.passed, killed.all_problems


def test_a_rolling_restart_under_load_fails_no_request(lab: LabRun) -> None:
    rolling = scenario(lab, 3)
    assert len(rolling.outcomes) > 100
    assert not rolling.failed, rolling.all_problems
    assert rolling.passed, rolling.all_problems


def test_every_host_reads_at_once_what_another_answered(lab: LabRun) -> None:
    reads = scenario(lab, 4)
    assert reads.passed, reads.all_problems


def test_a_hold_sent_again_after_its_answer_was_lost_is_the_same_reservation(
    lab: LabRun,
) -> None:
    lost = scenario(lab, 5)
    assert len(lost.expected_ids) == 2  # the answers the proxy dropped: a named seat, best two
    assert len(lost.kills) == 2
    assert lost.passed, lost.all_problems


def test_postgres_holds_every_invariant_after_every_scenario(lab: LabRun) -> None:
    assert len(lab.results) == 5
    broken = [
        f"{result.name}: {invariant.name}: {invariant.problems}"
        for result in lab.results
        for invariant in result.invariants
        if not invariant.held
    ]
    assert not broken
    assert all(len(result.invariants) == 5 for result in lab.results)


def test_the_lab_removes_everything_it_made(lab: LabRun) -> None:
    assert not lab.leftovers
    assert not netns.leftovers()
    assert not stores.stale_workdirs()
