"""Prometheus metrics of the service, ``GET /metrics``, every worker process together.

Counters and histograms are prometheus-client's. With several workers (`concert serve
--workers N`) each process writes its own to files in one directory (prometheus-client's
multiprocess mode, `Settings.metrics_dir`), and whichever worker answers ``/metrics`` adds them
up. Gauges of shared state (the waiting line) are read from the store when scraped, so any
worker gives the same figures.

What is counted: every request by method, route and status, and its duration by route (the
request log's middleware, `RequestLog`); hold requests by outcome (``held`` or the error code);
seats sold and the won they brought, once per payment (a replayed answer is not counted again);
lapsed holds the scheduler released and its ticks' durations; the line's waiting and active
tickets, its admission rate over the last minute and the estimated wait of the last in line;
requests waiting for a database connection and the time they waited; the connections the
Redis link opened (so its reconnects).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from concert_domain.queue import LineReport
from concert_domain.usecases import TickReport

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds; holds and payments take milliseconds, a store that does not answer two seconds
# no ``_created`` series beside each counter: a scrape says how many, not since when
disable_created_metrics()  # type: ignore[no-untyped-call]
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def use_directory(directory: Path) -> None:
    """Make this process write its metrics to files in ``directory`` (prometheus-client's
    multiprocess mode), before any metric is made. The library reads the place from its
    environment variable, in this process only."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


class Metrics:
    """The service's metrics, in a registry of their own (several apps in one process, as in
    tests, do not clash)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "concert_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "concert_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.holds = Counter(
            "concert_holds",
            "Hold requests, by outcome (held, or the error code)",
            ["outcome"],
            registry=r,
        )
        self.seats_sold = Counter("concert_seats_sold", "Seats sold", registry=r)
        self.revenue = Counter("concert_revenue_won", "Won paid for seats", registry=r)
        self.holds_expired = Counter(
            "concert_holds_expired", "Lapsed holds the scheduler released", registry=r
        )
        self.pool_waiting = Gauge(
            "concert_db_pool_requests_waiting",
            "Requests waiting now for a database connection",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.pool_wait = Gauge(
            "concert_db_pool_wait_seconds",
            "Time requests have waited for a database connection, in all",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.redis_connections = Gauge(
            "concert_redis_connections_opened",
            "Connections the Redis link has opened: one, then one a reconnect",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ticks = Histogram(
            "concert_scheduler_tick_seconds",
            "Time a scheduler tick took",
            buckets=BUCKETS,
            registry=r,
        )

    def observe_stores(self, pool: Mapping[str, int], redis_connections: int) -> None:
        """This process's database pool and Redis link as they stand (summed over the live
        workers when scraped)."""
        self.pool_waiting.set(pool.get("requests_waiting", 0))
        self.pool_wait.set(pool.get("requests_wait_ms", 0) / 1000)
        self.redis_connections.set(redis_connections)

    def count_tick(self, report: TickReport, seconds: float) -> None:
        """A scheduler tick: the lapsed holds it released, the time it took."""
        self.holds_expired.inc(report.expired_holds)
        self.ticks.observe(seconds)

    def count_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(route).observe(seconds)

    def exposition(self, queue: LineReport) -> bytes:
        """The text format, every worker's metrics added up, with the line's sizes."""
        scraped = CollectorRegistry(auto_describe=False)
        if self.directory is None:
            scraped.register(_Forwarded(self.registry))
        else:
            multiprocess.MultiProcessCollector(scraped, path=str(self.directory))  # type: ignore[no-untyped-call]
        scraped.register(_Line(queue))
        return generate_latest(scraped)


class _Forwarded(Collector):
    """This process's own metrics, as they stand."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _Line(Collector):
    """The waiting line, read from the store for this scrape."""

    def __init__(self, line: LineReport) -> None:
        self._line = line

    def collect(self) -> Iterable[Metric]:
        line = self._line
        yield GaugeMetricFamily(
            "concert_queue_waiting", "Queue tickets waiting", value=line.waiting
        )
        yield GaugeMetricFamily("concert_queue_active", "Queue tickets active", value=line.active)
        yield GaugeMetricFamily(
            "concert_queue_admissions_per_second",
            "Queue tickets admitted per second over the last minute",
            value=line.admissions_per_second,
        )
        yield GaugeMetricFamily(
            "concert_queue_clear_seconds",
            "Estimated seconds until the last waiting ticket is admitted (0: nobody waits)",
            value=line.clears_in_seconds,
        )
