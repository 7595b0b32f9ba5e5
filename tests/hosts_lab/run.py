"""The whole lab in one call: built, every scenario run, the table written, everything
removed (`LabRun.leftovers` says what could not be)."""

from __future__ import annotations

import asyncio

import attrs

from . import netns
from .lab import Options, lab_running
from .report import table
from .results import Result
from .scenarios import run_all


@attrs.define
class LabRun:
    results: list[Result]
    text: str
    leftovers: list[str]
    setup_seconds: float
    config: str

    @property
    def passed(self) -> bool:
        return not self.leftovers and all(result.passed for result in self.results)


def run(options: Options, *, only: set[int] | None = None, show_config: bool = False) -> LabRun:
    with lab_running(options) as lab:
        head = (
            f"hosts lab: {options.hosts} hosts in namespaces on {netns.SUBNET} ("
            f"{options.workers} worker(s), {options.schedulers} scheduler(s) each) behind "
            f"HAProxy; {options.customers} customers; ready in {lab.setup_seconds:.0f} s"
        )
        results = asyncio.run(run_all(lab, only))
    text = "\n".join(
        [head, "", table(results)]
        + (
            [f"removed: NOT everything: {lab.cleanup_problems}"]
            if lab.cleanup_problems
            else ["removed: everything the lab made (namespaces, veths, bridge, processes, files)"]
        )
        + (["", "HAProxy's configuration:", lab.haproxy.config] if show_config else [])
    )
    return LabRun(results, text, lab.cleanup_problems, lab.setup_seconds, lab.haproxy.config)
