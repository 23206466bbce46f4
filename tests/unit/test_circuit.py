"""The circuit breaker with a fake clock: every transition, the probe limit, the callbacks."""

from __future__ import annotations

import msgspec
import pytest

from gateway.circuit import CircuitBreaker, CircuitConfig, Circuits
from tests.support.clock import FakeMonotonic

FakeClock = FakeMonotonic


@pytest.fixture
def clock() -> FakeClock:
    return FakeMonotonic(1000.0)


@pytest.fixture
def changes() -> list[tuple[str, str]]:
    return []


def breaker(clock: FakeClock, changes: list[tuple[str, str]], **config: object) -> CircuitBreaker:
    cfg = CircuitConfig(**{"failure_threshold": 3, "open_seconds": 10.0, **config})  # type: ignore[arg-type]
    return CircuitBreaker(cfg, clock=clock, on_change=lambda old, new: changes.append((old, new)))


def trip(cb: CircuitBreaker) -> None:
    for _ in range(cb.config.failure_threshold):
        assert cb.allow()
        cb.record_failure()


def test_defaults() -> None:
    cfg = CircuitConfig()
    assert (cfg.failure_threshold, cfg.open_seconds, cfg.half_open_probes) == (5, 30.0, 1)
    assert CircuitBreaker().state == "closed"


def test_config_rejects_nonsense() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"failure_threshold": 0}, CircuitConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"open_secs": 3}, CircuitConfig)  # a typo must not pass silently


def test_closed_lets_everything_through_and_a_success_resets_the_count(clock, changes) -> None:
    cb = breaker(clock, changes)
    for _ in range(10):  # failures never three in a row
        assert cb.allow()
        cb.record_failure()
        cb.record_failure()
        cb.record_success()
    assert cb.state == "closed"
    assert cb.retry_after() == 0.0
    assert changes == []


def test_opens_after_threshold_consecutive_failures(clock, changes) -> None:
    cb = breaker(clock, changes)
    cb.record_failure()
    cb.record_failure()
    assert cb.state == "closed"
    assert cb.consecutive_failures == 2
    cb.record_failure()
    assert cb.state == "open"
    assert not cb.allow()
    assert cb.retry_after() == pytest.approx(10.0)
    assert changes == [("closed", "open")]


def test_open_refuses_until_the_interval_passes_then_half_opens(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(9.5)
    assert not cb.allow()
    assert cb.retry_after() == pytest.approx(0.5)
    clock.advance(0.5)
    assert cb.state == "half_open"
    assert cb.retry_after() == 0.0
    assert changes == [("closed", "open"), ("open", "half_open")]


def test_half_open_lets_one_probe_at_a_time(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(10)
    assert cb.allow()  # the probe
    assert not cb.allow()
    assert not cb.allow()
    assert cb.retry_after() > 0


def test_half_open_probe_limit_is_configurable(clock, changes) -> None:
    cb = breaker(clock, changes, half_open_probes=2)
    trip(cb)
    clock.advance(10)
    assert [cb.allow() for _ in range(4)] == [True, True, False, False]


def test_a_probe_success_closes(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(10)
    assert cb.allow()
    cb.record_success()
    assert cb.state == "closed"
    assert cb.consecutive_failures == 0
    assert all(cb.allow() for _ in range(5))
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_probe_failure_reopens_for_another_interval(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(10)
    assert cb.allow()
    clock.advance(2)  # the probe took a while to fail
    cb.record_failure()
    assert cb.state == "open"
    assert cb.retry_after() == pytest.approx(10.0)  # counted from the probe's failure
    clock.advance(9.9)
    assert not cb.allow()
    clock.advance(0.1)
    assert cb.allow()
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("open", "half_open")]


def test_after_closing_it_takes_a_full_threshold_to_open_again(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(10)
    cb.allow()
    cb.record_success()
    cb.record_failure()
    cb.record_failure()
    assert cb.state == "closed"
    cb.record_failure()
    assert cb.state == "open"


def test_stragglers_do_not_move_an_open_circuit(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(5)
    cb.record_success()  # a call started before the circuit opened answers late
    assert cb.state == "open"
    cb.record_failure()  # and another fails late: the interval is not stretched
    assert cb.retry_after() == pytest.approx(5.0)


def test_results_without_a_probe_in_flight_do_not_decide_half_open(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(10)
    cb.record_failure()
    cb.record_success()
    assert cb.state == "half_open"
    assert cb.allow()


def test_a_cancelled_probe_gives_its_slot_back(clock, changes) -> None:
    cb = breaker(clock, changes)
    trip(cb)
    clock.advance(10)
    assert cb.allow()
    assert not cb.allow()
    cb.record_cancelled()
    assert cb.state == "half_open"
    assert cb.allow()


def test_a_probe_never_reported_is_forgotten_after_its_timeout(clock, changes) -> None:
    cb = breaker(clock, changes, probe_timeout_s=60.0)
    trip(cb)
    clock.advance(10)
    assert cb.allow()  # its worker dies; nobody records a result
    clock.advance(30)
    assert not cb.allow()
    assert cb.retry_after() == pytest.approx(10.0)  # capped at open_seconds
    clock.advance(30)
    assert cb.retry_after() == 0.0
    assert cb.allow()


def test_record_cancelled_is_harmless_when_closed_or_open(clock, changes) -> None:
    cb = breaker(clock, changes)
    cb.record_cancelled()
    assert cb.state == "closed"
    trip(cb)
    cb.record_cancelled()
    assert cb.state == "open"


def test_circuits_are_per_target_and_report_changes_with_the_target(clock) -> None:
    seen: list[tuple[str, str, str]] = []
    circuits = Circuits(
        {"u8": CircuitConfig(failure_threshold=1, open_seconds=5)},
        clock=clock,
        on_change=lambda target, old, new: seen.append((target, old, new)),
        default=CircuitConfig(failure_threshold=2),
    )
    circuits.get("u8").record_failure()
    circuits.get("k3").record_failure()
    assert circuits.states() == {"u8": "open", "k3": "closed"}
    assert circuits.get("u8") is circuits.get("u8")
    clock.advance(5)
    assert circuits.states(["u8"]) == {"u8": "half_open"}
    assert seen == [("u8", "closed", "open"), ("u8", "open", "half_open")]
