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
from .load import REFUSED, Outcome


@attrs.frozen
class Kill:
    host: str
    began: float  # time.time(), before the host's processes were looked up
    done: float  # when the SIGKILLs were sent


@attrs.define
class Result:
    name: str
    outcomes: list[Outcome] = attrs.Factory(list)
    recovery: str = "-"
    notes: list[str] = attrs.Factory(list)
    problems: list[str] = attrs.Factory(list)  # the scenario's own expectations not met
    expected_ids: set[str] = attrs.Factory(set)  # failures made on purpose
    kills: list[Kill] = attrs.Factory(list)
    invariants: list[Invariant] = attrs.Factory(list)
    split: collections.Counter[str] = attrs.Factory(collections.Counter)
    seconds: float = 0.0

    def expected(self, outcome: Outcome) -> bool:
        """A failure made on purpose, or a request in flight on a host when it was killed."""
        if outcome.request_id in self.expected_ids:
            return True
        return any(
            outcome.server == kill.host
            and outcome.started <= kill.done
            and outcome.ended >= kill.began
            for kill in self.kills
        )

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


def _silently_closed(outcome: Outcome, kills: list[Kill]) -> Outcome:
    """A request HAProxy closed the customer's connection on, unanswered and unlogged, as it
    does when the host connection it reused closes before any answer (so that the client may
    send it again, as it would to the host itself): on the host killed meanwhile, if any."""
    for kill in kills:
        if outcome.started <= kill.done and kill.began <= outcome.ended <= kill.done + 2:
            detail = f"{outcome.detail}, unlogged: HAProxy closed the connection"
            return attrs.evolve(outcome, server=kill.host, detail=detail)
    return outcome


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
        if outcome.via == "haproxy":
            if line is not None and outcome.server is None:
                outcome = attrs.evolve(outcome, server=line.server)
            elif line is None and outcome.status is None:
                outcome = _silently_closed(outcome, result.kills)
            result.split[outcome.server or "no log line"] += 1
        else:
            result.split[f"{outcome.via} direct"] += 1
        outcomes.append(outcome)
    result.outcomes = outcomes
    refused = collections.Counter(
        f"{o.what} {o.status} {o.code}" for o in outcomes if o.kind == REFUSED
    )
    if refused:
        result.notes.append(
            "refusals (part of racing): "
            + ", ".join(f"{n}x {what}" for what, n in refused.most_common(6))
        )
    since = min((kill.began for kill in result.kills), default=None)
    for failure in result.failed[:5]:
        when = "" if since is None else f", started {failure.started - since:+.3f} s from the kill"
        result.notes.append(
            f"failed: {failure.request_id} {failure.what} -> {failure.detail} after "
            f"{failure.ended - failure.started:.3f} s{when}"
        )
    result.invariants = await invariants.check(
        lab.postgres.url, list(lab.stages.values()), await sold_reported(lab), lab.shop
    )
    result.notes += host_log_notes(lab, offsets)
    return result
