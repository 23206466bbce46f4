"""How much a simulated legacy ERP can take at once (CONTRACT §4 ``/_sandbox/capacity``).

A legacy ERP (U8 EAI behind IIS/ASP, K3 WISE) serves a few requests at a time and queues the
rest. ``CapacityBoard.slot`` plays that: at most ``concurrency`` calls are served together, each
takes at least ``service_ms``. It also counts what arrives, so a delivery test can prove the
gateway itself never sent more than its own limit (``peak_open``), not just that the sandbox
queued (``peak_in_flight``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from msgspec import Meta


class CapacitySpec(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /_sandbox/capacity``; ``concurrency: null`` lifts the limit."""

    system: str
    concurrency: Annotated[int, Meta(ge=1)] | None = None
    service_ms: Annotated[float, Meta(ge=0)] = 0.0


@dataclass
class Capacity:
    """Limit and counters of one system. Counters start afresh when the limit is set."""

    concurrency: int | None = None
    service_ms: float = 0.0
    peak_in_flight: int = 0  # served at the same time (never above ``concurrency``)
    peak_open: int = 0  # arrived and not yet answered, queued ones included
    served: int = 0
    in_flight: int = 0
    open: int = 0
    gate: asyncio.Semaphore | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "service_ms": self.service_ms,
            "peak_in_flight": self.peak_in_flight,
            "peak_open": self.peak_open,
            "served": self.served,
            "in_flight": self.in_flight,
        }


class CapacityBoard:
    """Per-system capacity; systems without a configured limit are still counted."""

    def __init__(self) -> None:
        self._by_system: dict[str, Capacity] = {}

    def configure(self, spec: CapacitySpec) -> Capacity:
        # A fresh object: calls already inside keep and release the old gate.
        gate = asyncio.Semaphore(spec.concurrency) if spec.concurrency else None
        cap = Capacity(concurrency=spec.concurrency, service_ms=spec.service_ms, gate=gate)
        self._by_system[spec.system] = cap
        return cap

    def clear(self) -> None:
        self._by_system.clear()

    def get(self, system: str) -> Capacity:
        return self._by_system.setdefault(system, Capacity())

    def view(self) -> dict[str, dict[str, Any]]:
        return {system: cap.view() for system, cap in self._by_system.items()}

    @asynccontextmanager
    async def slot(self, system: str) -> AsyncIterator[None]:
        """Hold one service slot of ``system`` for the body of the ``async with``."""
        cap = self.get(system)
        cap.open += 1
        cap.peak_open = max(cap.peak_open, cap.open)
        try:
            if cap.gate is not None:
                await cap.gate.acquire()
            try:
                cap.in_flight += 1
                cap.peak_in_flight = max(cap.peak_in_flight, cap.in_flight)
                started = time.monotonic()
                try:
                    yield
                finally:
                    try:
                        remaining = cap.service_ms / 1000 - (time.monotonic() - started)
                        if remaining > 0:
                            await asyncio.sleep(remaining)
                    finally:
                        cap.in_flight -= 1
                        cap.served += 1
            finally:
                if cap.gate is not None:
                    cap.gate.release()
        finally:
            cap.open -= 1
