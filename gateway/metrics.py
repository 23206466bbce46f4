"""Prometheus metrics for intake, delivery and the audit log, served at ``GET /metrics``.

Each :class:`Metrics` owns its own registry instead of using prometheus_client's global one, so
an app, a worker and every test get fresh counters and no "Duplicated timeseries" error when a
second app is built in the same process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from gateway.ports import TargetBacklog
from schemas.order import PLATFORMS

INTAKE_OUTCOMES = ("accepted", "held", "intercepted", "invalid", "duplicate")
DELIVERY_OUTCOMES = ("delivered", "retry", "unknown_outcome", "dead", "lease_lost")
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "open": 2}
"""Values of ``circuit_state``: a gauge needs a number, and "higher is worse" reads on a graph."""

# Intake is parse + rules + one transaction: milliseconds. Delivery waits on a legacy ERP that
# may take seconds per document, and up to the client timeout when it hangs.
_INTAKE_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Acceptance to ERP document: seconds when the ERP keeps up, an hour or more behind a promotion.
_LAG_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)


class Metrics:
    """The gateway's metrics, registered in one private registry.

    Args:
        targets: ERP targets known at start-up; their series start at zero, so a rate or an
            alert on them exists before the first delivery.
        namespace: Optional prefix for every name (``gateway`` gives ``gateway_intake_total``).
    """

    def __init__(self, *, targets: Iterable[str] = (), namespace: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        common = {"namespace": namespace, "registry": self.registry}

        self.intake_total = Counter(
            "intake", "Orders received, by platform and outcome.", ["platform", "outcome"], **common
        )
        self.intake_seconds = Histogram(
            "intake_seconds", "Time from request to durable answer.", buckets=_INTAKE_BUCKETS, **common
        )
        self.rules_seconds = Histogram(
            "rules_seconds",
            "Time intake spent on the rules of one order: reading what they need (stock, duplicates, "
            "history), actions and checks. Its sum over intake_seconds' sum is the rules' share of intake.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1),
            **common,
        )
        self.unknown_fields_total = Counter(
            "unknown_fields", "Payload fields no dictionary maps, by platform.", ["platform"], **common
        )
        self.deliveries_total = Counter(
            "deliveries", "ERP delivery attempts, by target and outcome.", ["target", "outcome"], **common
        )
        self.delivery_seconds = Histogram(
            "delivery_seconds",
            "Duration of one ERP delivery attempt.",
            ["target"],
            buckets=_DELIVERY_BUCKETS,
            **common,
        )
        self.retries_total = Counter("retries", "Deliveries scheduled for a retry.", ["target"], **common)
        self.dead_letters_total = Counter("dead_letters", "Deliveries that failed for good.", ["target"], **common)
        self.outbox_pending = Gauge(
            "outbox_pending",
            "Deliveries not yet done (waiting, retrying or in flight), by target.",
            ["target"],
            **common,
        )
        self.delivery_lag_seconds = Histogram(
            "delivery_lag_seconds",
            "From the order's acceptance to its document in the ERP, by target.",
            ["target"],
            buckets=_LAG_BUCKETS,
            **common,
        )
        self.oldest_undelivered_seconds = Gauge(
            "oldest_undelivered_seconds", "Age of the oldest undelivered outbox row.", ["target"], **common
        )
        self.circuit_state = Gauge(
            "circuit_state",
            "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
            ["target"],
            **common,
        )
        self.stop_the_line = Gauge(
            "stop_the_line",
            "1 while deliveries to the target are stopped for an operator.",
            ["target"],
            **common,
        )
        self.lease_steals_total = Counter(
            "lease_steals", "Outbox leases taken over from a worker that stopped renewing.", **common
        )
        self.audit_entries_total = Counter("audit_entries", "Audit log entries written.", **common)

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        for platform in PLATFORMS:
            self.unknown_fields_total.labels(platform)
            for outcome in INTAKE_OUTCOMES:
                self.intake_total.labels(platform, outcome)
        for target in targets:
            self.add_target(target)

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: ``labels()`` takes a lock and builds a key
        on every call, and intake and delivery count every order."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def count_intake(self, platform: str, outcome: str) -> None:
        """``intake_total{platform, outcome}`` + 1. A platform name from the URL that is none of
        ours counts as ``unknown``: no series (and no cached child) per typo."""
        self.child(self.intake_total, platform if platform in PLATFORMS else "unknown", outcome).inc()

    def add_target(self, target: str) -> None:
        """Start every per-target series of ``target`` at zero (closed circuit, line running)."""
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries_total.labels(target, outcome)
        self.retries_total.labels(target)
        self.dead_letters_total.labels(target)
        self.oldest_undelivered_seconds.labels(target).set(0)
        self.outbox_pending.labels(target).set(0)
        self.circuit_state.labels(target).set(CIRCUIT_STATES["closed"])
        self.stop_the_line.labels(target).set(0)

    def set_backlog(self, backlog: Mapping[str, TargetBacklog], now: datetime, targets: Iterable[str] = ()) -> None:
        """Queue depth and the age of the oldest undelivered order, per target; targets named in
        ``targets`` but absent from ``backlog`` have none (0)."""
        for target in {*targets, *backlog}:
            b = backlog.get(target)
            self.child(self.outbox_pending, target).set(b.count if b else 0)
            oldest = b.oldest_created_at if b else None
            age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
            self.child(self.oldest_undelivered_seconds, target).set(age)

    def set_circuit(self, target: str, state: str) -> None:
        """Record a circuit's state by name: ``closed``, ``half_open`` or ``open``."""
        self.circuit_state.labels(target).set(CIRCUIT_STATES[state])

    def render(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and the content type to serve it with."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
