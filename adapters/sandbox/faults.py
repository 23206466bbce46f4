"""Fault injection for the simulated partner systems (CONTRACT §4, reference/erp-protocols.md §5.7).

A fault is one (system, mode) pair with a rate; several may be active at once. The pipeline
(``pipeline.py``) draws them per call and acts them out; ``reject`` is acted out by the system's
own controller, because only it knows what a business rejection looks like.
"""

from __future__ import annotations

import random
from typing import Annotated, Literal, NamedTuple

import msgspec
from msgspec import Meta

FaultMode = Literal["http500", "timeout", "slow", "reject", "drop_after_commit"]

#: ``ms`` when the caller gives none: a hung legacy ERP, and a sluggish one.
DEFAULT_MS: dict[str, float] = {"timeout": 30_000, "slow": 2_000}

#: Which fault decides the call when several fire at once; ``slow`` only adds delay.
_PRECEDENCE: tuple[str, ...] = ("timeout", "http500", "reject", "drop_after_commit", "slow")


class FaultSpec(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /_sandbox/faults``."""

    system: str
    mode: FaultMode
    rate: Annotated[float, Meta(ge=0, le=1)] = 1.0
    ms: Annotated[float, Meta(ge=0)] | None = None
    seed: int | None = None


class Fault(msgspec.Struct):
    """An active fault, as ``GET /_sandbox/faults`` lists it (``ms`` resolved to its default)."""

    system: str
    mode: str
    rate: float
    ms: float | None


class Draw(NamedTuple):
    """The faults that fired for one call: at most one decisive fault, plus an optional delay."""

    fault: Fault | None
    slow: Fault | None


class FaultBoard:
    """Active faults, keyed by (system, mode): a new spec for the same pair replaces the old."""

    def __init__(self) -> None:
        self._active: dict[tuple[str, str], Fault] = {}

    def set(self, spec: FaultSpec) -> Fault:
        ms = spec.ms if spec.ms is not None else DEFAULT_MS.get(spec.mode)
        fault = Fault(spec.system, spec.mode, spec.rate, ms)
        self._active[(spec.system, spec.mode)] = fault
        return fault

    def clear(self, system: str | None = None) -> None:
        if system is None:
            self._active.clear()
        else:
            self._active = {k: f for k, f in self._active.items() if k[0] != system}

    def list(self) -> list[Fault]:
        return list(self._active.values())

    def draw(self, system: str, rng: random.Random) -> Draw:
        """Roll each active fault of ``system`` once, in a fixed order.

        Every active fault rolls even after one has fired, so the number of draws per call is
        constant and a seeded generator gives the same pattern run after run.
        """
        decisive: Fault | None = None
        slow: Fault | None = None
        for mode in _PRECEDENCE:
            fault = self._active.get((system, mode))
            if fault is None or rng.random() >= fault.rate:
                continue
            if mode == "slow":
                slow = fault
            elif decisive is None:
                decisive = fault
        return Draw(decisive, slow)
