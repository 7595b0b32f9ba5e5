"""The lab's table: one row per scenario, then what each row needs said in words."""

from __future__ import annotations

from .results import Result, describe

HEAD = (
    "| scenario | s | requests | failed | what failed | key in use | recovery | invariants "
    "| load per host | verdict |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _split(result: Result) -> str:
    total = sum(result.split.values()) or 1
    return ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in sorted(result.split.items()))


def _failed(result: Result) -> str:
    failed = result.failed
    if not failed:
        return "0"
    expected = len(failed) - len(result.unexpected)
    return f"{len(failed)} ({expected} expected)" if expected else str(len(failed))


def _key_in_use(result: Result) -> str:
    """Requests answered 409 idempotency_key_in_use (their first attempt died with a host),
    sent again until they completed: how many, and how long the longest took."""
    waits = result.waits
    if not waits:
        return "0"
    done = sum(wait.completed for wait in waits)
    longest = max(wait.ended - wait.started for wait in waits)
    return f"{len(waits)} ({done} completed, within {longest:.0f} s)"


def row(result: Result) -> str:
    invariants = (
        "ok"
        if all(i.held for i in result.invariants)
        else "FAILED: " + ", ".join(i.name for i in result.invariants if not i.held)
    )
    what = describe(result.failed, most=3) if result.failed else "-"
    return (
        f"| {result.name} | {result.seconds:.0f} | {len(result.outcomes)} | {_failed(result)} "
        f"| {what} | {_key_in_use(result)} | {result.recovery} | {invariants} | {_split(result)} "
        f"| {'ok' if result.passed else 'FAILED'} |"
    )


def table(results: list[Result]) -> str:
    lines = [HEAD, *(row(result) for result in results), ""]
    for result in results:
        lines.append(f"{result.name}:")
        lines += [f"  - {note}" for note in result.notes]
        figures = "; ".join(f"{i.name} ({i.figure})" for i in result.invariants)
        lines.append(f"  - invariants checked in PostgreSQL: {figures}")
        lines += [f"  - PROBLEM: {problem}" for problem in result.all_problems]
    return "\n".join(lines)
