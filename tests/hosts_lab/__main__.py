"""``python -m tests.hosts_lab [--hosts 3] [--seconds 30] ...`` (or ``nox -s hosts -- ...``):
the whole lab, its table printed; exit status 0 when every scenario kept its promises, 1 when
one did not, 2 when the lab cannot run here (said in one line)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the lab removes everything on its way out


def main(argv: list[str] | None = None) -> int:
    tests = str(Path(__file__).resolve().parents[1])
    if tests not in sys.path:  # the lab uses the test suite's helpers (services, fault_lab)
        sys.path.insert(0, tests)
    from .lab import Options, missing

    defaults = Options()
    parser = argparse.ArgumentParser(prog="python -m tests.hosts_lab", description=__doc__)
    parser.add_argument("--hosts", type=int, default=defaults.hosts)
    parser.add_argument("--workers", type=int, default=defaults.workers, help="per host")
    parser.add_argument("--schedulers", type=int, default=defaults.schedulers, help="per host")
    parser.add_argument("--customers", type=int, default=defaults.customers)
    parser.add_argument("--seats", type=int, default=defaults.seats)
    parser.add_argument(
        "--seconds",
        type=float,
        default=defaults.seconds,
        help="steady load around the rolling restart, at least",
    )
    parser.add_argument(
        "--rounds", type=int, default=defaults.rounds, help="read-your-writes rounds per customer"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=defaults.grace,
        help="CONCERT_SHUTDOWN_GRACE_SECONDS given to the hosts",
    )
    parser.add_argument("--only", type=int, action="append", help="run scenario N (repeatable)")
    parser.add_argument("--keep-logs", type=Path, help="copy the logs and HAProxy's config there")
    parser.add_argument("--show-config", action="store_true", help="print HAProxy's config")
    args = parser.parse_args(argv)
    if args.hosts < 2:
        parser.error("--hosts must be 2 or more")
    why = missing()
    if why is not None:
        print(f"hosts lab: {why}", file=sys.stderr)
        return 2
    options = Options(
        hosts=args.hosts,
        workers=args.workers,
        schedulers=args.schedulers,
        customers=args.customers,
        seats=args.seats,
        seconds=args.seconds,
        rounds=args.rounds,
        grace=args.grace,
        keep_logs=args.keep_logs,
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    from .run import run

    started = time.monotonic()
    try:
        outcome = run(options, only=set(args.only or ()), show_config=args.show_config)
    except KeyboardInterrupt:
        print("hosts lab: interrupted; everything it made is removed", file=sys.stderr)
        return 130
    print(outcome.text)
    print(f"\n(the whole lab: {time.monotonic() - started:.0f} s)")
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    sys.exit(main())
