"""A scenario's result: its requests, which failures it expects (those in flight on a host
it killed, the answer it lost on purpose), how fast things recovered, what PostgreSQL holds
afterwards and how the load was split between the hosts.

`collected` completes a result once its scenario is over: the host of each request from
HAProxy's access log, the load split, the invariants, and what the hosts logged as warnings
and errors meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
from pathlib import Path

import attrs
import httpx

from . import invariants
from .haproxy import access_log
from .invariants import Invariant
from .lab import Lab
from .load import REFUSED, KeyWait, Outcome


@attrs.frozen
class Kill:
    host: str
    began: float  # time.time(), before HAProxy's sessions were read
    done: float  # when the SIGKILLs were sent
    # the customers' ports HAProxy was serving with the host just before the SIGKILLs (and
    # just after): a request unanswered and unlogged on one of them was in flight on the host
    ports: frozenset[int] = frozenset()


@attrs.define
class Result:
    name: str
    outcomes: list[Outcome] = attrs.Factory(list)
    recovery: str = "-"
    notes: list[str] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)  # the scenario's own expectations not met
    expected_ids: set[str] = attrs.Factory(set)  # failures made on purpose
    kills: list[Kill] = attrs.Factory(list)
    waits: list[KeyWait] = attrs.Factory(list)  # requests answered "key in use", sent again
    invariants: list[Invariant] = attrs.Factory(list)
    split: collections.Counter[str] = attrs.Factory(collections.Counter)
    seconds: float = 0.0

    def expected(self, outcome: Outcome) -> bool:
        """A failure made on purpose, or a request in flight on a host when it was killed
        (`on_killed_host`); a request that never completed never is."""
        if outcome.request_id in self.expected_ids:
            return True
        return not outcome.gave_up and any(on_killed_host(outcome, k) for k in self.kills)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failed]

    @property
    def unexpected(self) -> list[Outcome]:
        return [o for o in self.failed if not self.expected(o)]

    @property
    def all_problems(self) -> list[str]:
        found = list(self.problems)
        if self.unexpected:
            found.append(f"{len(self.unexpected)} failed requests: {describe(self.unexpected)}")
        for invariant in self.invariants:
            found += [f"{invariant.name}: {problem}" for problem in invariant.problems]
        return found

    @property
    def passed(self) -> bool:
        return not self.all_problems


def describe(outcomes: list[Outcome], most: int = 4) -> str:
    """Failures grouped: how many of each request, answer and host."""
    groups = collections.Counter(
        (o.what, o.detail or str(o.status), o.server or "no host") for o in outcomes
    )
    shown = [
        f"{n}x {what} -> {detail} on {server}"
        for (what, detail, server), n in groups.most_common(most)
    ]
    more = len(groups) - most
    return "; ".join(shown) + (f"; and {more} more kinds" if more > 0 else "")


def in_flight(started: float, ended: float, kill: Kill) -> bool:
    """Started before the SIGKILLs and ended after the kill began."""
    return started <= kill.done and ended >= kill.began


def on_killed_host(outcome: Outcome, kill: Kill) -> bool:
    """A failed request that was in flight on ``kill``'s host when it was killed, as far as
    can be told: it started before the SIGKILL, ended after, and either HAProxy's log line says
    that host's side ended it (termination state ``S...``: the server aborted), or it was sent
    to that host directly, or it has neither answer nor log line and went out on a connection
    HAProxy was serving with that host at the kill (`Kill.ports`)."""
    if not in_flight(outcome.started, outcome.ended, kill):
        return False
    if outcome.via != "haproxy":
        return outcome.via == kill.host
    if outcome.termination:
        return outcome.server == kill.host and outcome.termination.startswith("S")
    return outcome.status is None and outcome.port is not None and outcome.port in kill.ports


def _unlogged(outcome: Outcome, kills: list[Kill]) -> Outcome:
    """A request HAProxy closed the customer's connection on, unanswered and unlogged, as it
    does when the host connection it used closes before any answer to a request it may not
    send again (so that the client may send it again, as it would to the host itself): the
    host is the one HAProxy was serving that connection with at a kill, if any."""
    for kill in kills:
        if outcome.port in kill.ports and in_flight(outcome.started, outcome.ended, kill):
            detail = (
                f"{outcome.detail}, unlogged: HAProxy closed the connection it served "
                f"with {kill.host} at the kill"
            )
            return attrs.evolve(outcome, server=kill.host, detail=detail)
    return attrs.evolve(outcome, detail=f"{outcome.detail}, unlogged")


def _nearest_kill(kills: list[Kill], moment: float) -> float | None:
    """When the kill nearest ``moment`` began."""
    return min((kill.began for kill in kills), key=lambda began: abs(began - moment), default=None)


def _key_in_use_notes(result: Result) -> list[str]:
    """The requests answered key in use, grouped by route and how they ended; and a problem
    for each one not in flight at a kill (its first attempt after every SIGKILL, or ended
    before it): only a first attempt that died with its host may leave its key in use."""
    groups: dict[tuple[str, str], list[KeyWait]] = collections.defaultdict(list)
    for wait in result.waits:
        groups[wait.what, wait.last].append(wait)
        if not any(in_flight(wait.started, wait.ended, kill) for kill in result.kills):
            result.problems.append(
                f"{wait.what} answered key in use, its first attempt not in flight at a kill"
            )
    notes = []
    for (what, last), waits in sorted(groups.items(), key=lambda group: -len(group[1])):
        took = [wait.ended - wait.started for wait in waits]
        answers = [wait.answers for wait in waits]
        began = [
            wait.started - kill
            for wait in waits
            if (kill := _nearest_kill(result.kills, wait.started)) is not None
        ]
        when = (
            f" (which started {min(began):+.2f} to {max(began):+.2f} s from the kill)"
            if began
            else ""
        )
        notes.append(
            f"key in use: {len(waits)}x {what} answered 409 idempotency_key_in_use "
            f"{min(answers)}-{max(answers)} times, then {last} {min(took):.1f}-{max(took):.1f} s "
            f"after the first attempt{when}"
        )
    return notes


def log_offsets(lab: Lab) -> dict[str, int]:
    return {path.name: path.stat().st_size for path in lab.workdir.glob("h*.log")}


def _logged_since(path: Path, offset: int) -> collections.Counter[str]:
    kinds: collections.Counter[str] = collections.Counter()
    with path.open("rb") as log:
        log.seek(offset)
        for line in log.read().decode(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                if line.strip() and not line.startswith((" ", "Traceback")):
                    kinds[f"(not JSON) {line[:100]}"] += 1
                continue
            if isinstance(record, dict) and record.get("level") in ("warning", "error", "critical"):
                kinds[f"{record['level']}: {str(record.get('message'))[:100]}"] += 1
    return kinds


def host_log_notes(lab: Lab, offsets: dict[str, int]) -> list[str]:
    notes = []
    for path in sorted(p for host in lab.hosts for p in lab.workdir.glob(f"{host.name}-*.log")):
        kinds = _logged_since(path, offsets.get(path.name, 0))
        for kind, count in kinds.most_common(3):
            notes.append(f"{path.stem} logged {count}x {kind}")
    return notes


async def sold_reported(lab: Lab) -> dict[int, int]:
    """Each stage's sold seats as the service reports them to the operator."""
    sold = {}
    async with httpx.AsyncClient(base_url=lab.haproxy.url, timeout=10) as client:
        for stage in lab.stages.values():
            path = f"/admin/concerts/{stage.concert_id}/dates/{stage.date_id}/sales"
            for _ in range(5):
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.get(path, headers=lab.admin)
                    if answer.status_code == 200:
                        sold[stage.date_id] = int(answer.json()["sold"])
                        break
                await asyncio.sleep(0.2)
    return sold


async def collected(lab: Lab, result: Result, offsets: dict[str, int]) -> Result:
    await asyncio.sleep(0.3)  # HAProxy's last log lines
    lines = access_log(lab.haproxy.log_path)
    outcomes = []
    for outcome in result.outcomes:
        line = lines.get(outcome.request_id)
        if outcome.gave_up:
            pass  # not a request of its own: its attempts are counted
        elif outcome.via == "haproxy":
            if line is not None:
                outcome = attrs.evolve(outcome, server=line.server, termination=line.termination)
            elif outcome.status is None:
                outcome = _unlogged(outcome, result.kills)
            result.split[outcome.server or "no log line"] += 1
        else:
            result.split[f"{outcome.via} direct"] += 1
        outcomes.append(outcome)
    result.outcomes = outcomes
    result.notes += _key_in_use_notes(result)
    refused = collections.Counter(
        f"{o.what} {o.status} {o.code}" for o in outcomes if o.kind == REFUSED
    )
    if refused:
        result.notes.append(
            "refusals (part of racing): "
            + ", ".join(f"{n}x {what}" for what, n in refused.most_common(6))
        )
    for failure in result.failed[:5]:
        since = _nearest_kill(result.kills, failure.started)
        when = "" if since is None else f", started {failure.started - since:+.3f} s from the kill"
        where = f" on {failure.server}" if failure.server else ""
        state = f" (HAProxy: {failure.termination})" if failure.termination else ""
        result.notes.append(
            f"failed: {failure.request_id} {failure.what} -> {failure.detail}{where}{state} "
            f"after {failure.ended - failure.started:.3f} s{when}"
        )
    result.invariants = await invariants.check(
        lab.postgres.url, list(lab.stages.values()), await sold_reported(lab), lab.shop
    )
    result.notes += host_log_notes(lab, offsets)
    return result
