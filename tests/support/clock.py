"""A monotonic fake clock for unit tests of time-based logic (circuits, limits)."""

from __future__ import annotations


class FakeMonotonic:
    """Callable like ``time.monotonic``; moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
