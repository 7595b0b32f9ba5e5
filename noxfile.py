"""Developer sessions. ``nox`` runs lint, typecheck and tests; ``nox -l`` lists them all.

Arguments after ``--`` go to the session's tool, e.g. ``nox -s tests -- -k payments``.
"""

from __future__ import annotations

import os
import random

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True

PATHS = ["src", "tests", "bench", "noxfile.py"]


def install(session: nox.Session, *extras: str) -> None:
    """Install the project, editable, with the given optional dependency groups."""
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", *PATHS)
    session.run("ruff", "format", "--check", *PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the library and the tests with mypy --strict."""
    install(session, "test", "lint")
    session.run("mypy", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (Hypothesis uses its ci profile when CI is set)."""
    install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """A long schemathesis run against `concert serve` on the embedded default: every check,
    1,000 cases per operation and 2,000 call sequences (CONCERT_FUZZ_EXAMPLES,
    CONCERT_FUZZ_SCENARIOS, CONCERT_FUZZ_STEPS to change) and a new seed each time
    (CONCERT_FUZZ_SEED to repeat one). The default test command runs a bounded one."""
    install(session, "test")
    seed = os.environ.get("CONCERT_FUZZ_SEED") or str(random.randrange(2**32))
    session.log(f"CONCERT_FUZZ_SEED={seed}")
    session.run(
        "pytest",
        "tests/integration/test_fuzz.py",
        *session.posargs,
        env={
            "CONCERT_FUZZ_EXAMPLES": os.environ.get("CONCERT_FUZZ_EXAMPLES", "1000"),
            "CONCERT_FUZZ_SEED": seed,
        },
    )


@nox.session
def bench(session: nox.Session) -> None:
    """The on-sale rush: every scenario on PostgreSQL + Redis and on the embedded default,
    against reference endpoints measured in the same run. Prints one markdown table;
    ``-- --profile DIR`` records each run with py-spy."""
    install(session, "test", "bench")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(name="bench-sql")
def bench_sql(session: nox.Session) -> None:
    """SQL adapter hold throughput against raw psycopg, and round trips per hold and payment."""
    install(session, "test")
    session.run("python", "bench/sql_hold.py", *session.posargs)


@nox.session(name="bench-queue")
def bench_queue(session: nox.Session) -> None:
    """100,000 customers join one Redis line: joins/s, admission step, position, memory."""
    install(session, "test")
    session.run("python", "bench/queue_scale.py", *session.posargs)


@nox.session(name="bench-store")
def bench_store(session: nox.Session) -> None:
    """CPU per operation of PostgreSQL and Redis for each use case (join, status, hold, charge,
    payment, seat maps), on throwaway servers; one markdown table (docs/scaling.md)."""
    install(session, "test")
    session.run("python", "bench/store_cpu.py", *session.posargs)


@nox.session
def hosts(session: nox.Session) -> None:
    """The hosts lab: 3 hosts (network namespaces) each running `concert serve` and `concert
    scheduler` behind HAProxy 2.6, on throwaway PostgreSQL and Redis; the rush, a host
    SIGKILLed mid-rush, a rolling restart under load, read-your-writes on every host and a
    lost answer retried with its Idempotency-Key, in one table. Needs root and haproxy;
    ``-- --hosts 5 --seconds 60`` (``-- --help`` lists the options)."""
    install(session, "test")
    session.run("python", "-m", "tests.hosts_lab", *session.posargs)


@nox.session(name="format")
def format_code(session: nox.Session) -> None:
    """Rewrite the code in place: ruff's fixes and formatting."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", "--fix", *PATHS)
    session.run("ruff", "format", *PATHS)
