"""A circuit breaker per ERP target (CONTRACT §5): stop calling an ERP that is down, probe it now
and then, and resume when it answers.

    closed ──N consecutive failures──▶ open ──open_seconds pass──▶ half_open
      ▲                                  ▲                             │
      └──────── a probe succeeds ────────┼──── a probe fails ──────────┘

While closed every call goes through. While open none does. Half-open lets at most
``half_open_probes`` calls through at a time; the first probe result decides.

Only failures that mean "the ERP is down or not answering" may be recorded as failures: refused
connections, timeouts, HTTP 5xx, an outcome-unknown call. A business rejection (``PermanentError``:
unknown customer, bad SKU) proves the ERP is up and working; the caller must record it as a
success, or a run of bad orders would stop good ones.

The breaker is pure and single-threaded (one per process and target, driven from one event loop):
no I/O, no locks, time from an injected monotonic clock. Delivery reaches it through the
``CircuitBoard`` port: ``Circuits`` serves one process (the embedded queue), and
``adapters.redis.circuit.RedisCircuits`` keeps the same state machine in Redis so that every
arq worker on every machine shares one circuit per target — during an outage the ERP sees
``half_open_probes`` probes per interval in all, and every process reports the same state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Annotated, Literal, NamedTuple, Protocol

import msgspec
from msgspec import Meta

CircuitState = Literal["closed", "half_open", "open"]
CallOutcome = Literal["success", "failure", "cancelled"]
OnChange = Callable[[CircuitState, CircuitState], None]


class Pass(NamedTuple):
    """The answer to "may a call go to this target now?"."""

    allowed: bool
    retry_after: float = 0.0  # when refused: seconds until a call may go
    probe: str | None = None  # when the call is a half-open probe: its id, to report it by


class CircuitBoard(Protocol):
    """The circuits of every ERP target, as delivery uses them.

    ``allow`` before an ERP call; when it allowed the call, exactly one ``record`` after it:
    ``success`` (the ERP answered, a business rejection included), ``failure`` (down, timed out,
    5xx, outcome unknown) or ``cancelled`` (no call was made after all). Implementations raise
    ``gateway.limits.LimitsUnavailableError`` from ``allow`` when their shared state is out of
    reach, and never raise from ``record``.
    """

    async def allow(self, target: str) -> Pass: ...

    async def record(self, target: str, ticket: Pass, outcome: CallOutcome) -> None: ...

    async def read(self, targets: Iterable[str]) -> dict[str, CircuitState]: ...


class CircuitConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The circuit of one ERP target (``[targets.X.circuit]``)."""

    failure_threshold: Annotated[int, Meta(ge=1)] = 5
    """Consecutive failures that open the circuit."""
    open_seconds: Annotated[float, Meta(gt=0)] = 30.0
    """How long the circuit stays open before a probe may go."""
    half_open_probes: Annotated[int, Meta(ge=1)] = 1
    """Probe calls allowed in flight at once while half-open."""
    probe_timeout_s: Annotated[float, Meta(gt=0)] = 120.0
    """A probe not reported back within this time is forgotten (its caller died or was
    cancelled without ``record_cancelled``), so the circuit cannot stay stuck half-open."""


class CircuitBreaker:
    """The circuit of one ERP target.

    Args:
        config: Thresholds and intervals.
        clock: Monotonic seconds; ``time.monotonic`` unless a test injects a fake.
        on_change: Called with ``(old, new)`` on every transition, for metrics and logs. It runs
            inside ``allow``/``record_*``/``state``, so it must be quick and must not raise.
    """

    def __init__(
        self,
        config: CircuitConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.config = config or CircuitConfig()
        self._clock = clock
        self._on_change = on_change
        self._state: CircuitState = "closed"
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._probes: list[float] = []  # start times of the probes in flight (half-open only)

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> CircuitState:
        """``closed``, ``half_open`` or ``open``; an open circuit whose interval has passed reads
        (and becomes) ``half_open``."""
        self._advance()
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_after(self) -> float:
        """Seconds until a call may go: 0 when one may go now.

        Open: the rest of the interval. Half-open with every probe slot taken: until the oldest
        probe would be forgotten, at most ``open_seconds`` (its result usually comes much sooner).
        """
        self._advance()
        if self._state == "closed":
            return 0.0
        now = self._clock()
        if self._state == "open":
            return max(0.0, self._opened_at + self.config.open_seconds - now)
        if len(self._probes) < self.config.half_open_probes:
            return 0.0
        oldest = min(self._probes)
        return max(0.0, min(self.config.open_seconds, oldest + self.config.probe_timeout_s - now))

    # ------------------------------------------------------------------ calling

    def allow(self) -> bool:
        """May a call go now? While half-open a True takes a probe slot: the caller must then
        report the call with ``record_success``, ``record_failure`` or ``record_cancelled``."""
        self._advance()
        if self._state == "closed":
            return True
        if self._state == "open":
            return False
        if len(self._probes) >= self.config.half_open_probes:
            return False
        self._probes.append(self._clock())
        return True

    def record_success(self) -> None:
        """The ERP answered (including a business rejection): reset the count; a probe closes."""
        self._advance()
        if self._state == "closed":
            self._failures = 0
        elif self._state == "half_open" and self._take_probe():
            self._failures = 0
            self._probes.clear()
            self._move("closed")
        # Open: a straggler started before the circuit opened; one late answer does not prove
        # recovery, the probe after the interval does.

    def record_failure(self) -> None:
        """The ERP is down or did not answer: count it; a probe failure re-opens the circuit."""
        self._advance()
        if self._state == "closed":
            self._failures += 1
            if self._failures >= self.config.failure_threshold:
                self._open()
        elif self._state == "half_open" and self._take_probe():
            self._open()
        # Open: already stopped; a straggler's failure must not stretch the interval.

    def record_cancelled(self) -> None:
        """An allowed call was not made after all (no concurrency permit, cancelled): give a
        half-open probe slot back. Harmless in other states."""
        if self._state == "half_open":
            self._take_probe()

    # ------------------------------------------------------------------ internals

    def _take_probe(self) -> bool:
        # A result while half-open with no probe in flight is a straggler from before: ignored.
        if not self._probes:
            return False
        self._probes.pop(0)
        return True

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._probes.clear()
        self._move("open")

    def _advance(self) -> None:
        now = self._clock()
        if self._state == "open" and now >= self._opened_at + self.config.open_seconds:
            self._move("half_open")
        elif self._state == "half_open" and self._probes:
            self._probes = [t for t in self._probes if now - t < self.config.probe_timeout_s]

    def _move(self, new: CircuitState) -> None:
        old, self._state = self._state, new
        if old != new and self._on_change is not None:
            self._on_change(old, new)


class Circuits:
    """One breaker per ERP target, made on first use, in this process (a ``CircuitBoard``).

    Args:
        configs: Per-target settings; a target not listed gets ``default``.
        clock: Shared by every breaker.
        on_change: Called with ``(target, old, new)``, e.g. to set ``Metrics.set_circuit`` and log.
        default: Settings for targets without their own.
    """

    def __init__(
        self,
        configs: dict[str, CircuitConfig] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, CircuitState, CircuitState], None] | None = None,
        default: CircuitConfig | None = None,
    ) -> None:
        self._configs = dict(configs or {})
        self._default = default or CircuitConfig()
        self._clock = clock
        self._on_change = on_change
        self._breakers: dict[str, CircuitBreaker] = {}
        for target in self._configs:
            self.get(target)

    def get(self, target: str) -> CircuitBreaker:
        """The breaker of ``target``."""
        breaker = self._breakers.get(target)
        if breaker is None:
            hook = self._on_change
            breaker = CircuitBreaker(
                self._configs.get(target, self._default),
                clock=self._clock,
                on_change=(lambda old, new: hook(target, old, new)) if hook else None,
            )
            self._breakers[target] = breaker
        return breaker

    def states(self, targets: Iterable[str] | None = None) -> dict[str, CircuitState]:
        """The state of each target's circuit, for ``/health/ready``."""
        names = self._breakers if targets is None else targets
        return {name: self.get(name).state for name in names}

    # ------------------------------------------------------------------ CircuitBoard

    async def allow(self, target: str) -> Pass:
        breaker = self.get(target)
        if breaker.allow():
            return Pass(True, probe="local" if breaker._state == "half_open" else None)
        return Pass(False, retry_after=breaker.retry_after())

    async def record(self, target: str, ticket: Pass, outcome: CallOutcome) -> None:
        breaker = self.get(target)
        if outcome == "success":
            breaker.record_success()
        elif outcome == "failure":
            breaker.record_failure()
        else:
            breaker.record_cancelled()

    async def read(self, targets: Iterable[str]) -> dict[str, CircuitState]:
        return self.states(targets)
