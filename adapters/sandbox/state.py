"""In-memory state of the sandbox: the simulated partner systems of CONTRACT §4.

One ``SandboxState`` holds everything a run of the simulators knows (each system's documents,
the call log, active faults, capacity limits), so a test can build a fresh one and an operator
can put it back to the seeds with ``POST /_sandbox/reset``.
"""

from __future__ import annotations

import random
import tomllib
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from adapters.sandbox.capacity import CapacityBoard
from adapters.sandbox.faults import FaultBoard

if TYPE_CHECKING:
    from litestar import Controller

SEED_PATH = Path(__file__).with_name("seed.toml")
MAX_CALLS = 20_000
#: Longest request/response text kept per call; order documents are far below it, and a load
#: run of oversized bodies must not hold megabytes per entry.
MAX_LOGGED_CHARS = 256 * 1024


def load_seed(path: Path = SEED_PATH) -> dict[str, Any]:
    """Read the seeded archives, one top-level table per system name."""
    with path.open("rb") as fh:
        return tomllib.load(fh)


class SystemStore(Protocol):
    """What every simulated system keeps: documents shown by ``GET /_sandbox/{system}/documents``."""

    def documents(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class SimulatedSystem:
    """One pluggable simulator: its routes, how to build its store from its seed section, limits.

    Attributes:
        name: the ``{system}`` name of CONTRACT §4 (``u8``, ``k3``, ``taobao`` ...).
        controller: Litestar controller with the partner's own paths; it must carry
            ``PartnerCallMiddleware`` for this name so calls are logged, faulted and throttled.
        new_store: builds the in-memory store from the system's seed table.
        max_body_bytes: larger request bodies are refused without reaching the controller.
        oversize_status: what the partner answers for such a body.
    """

    name: str
    controller: type[Controller]
    new_store: Callable[[Mapping[str, Any]], SystemStore]
    max_body_bytes: int = 5 * 1024 * 1024
    oversize_status: int = 413


class CallRecord(msgspec.Struct):
    """One call to a simulated system, as ``GET /_sandbox/calls`` shows it."""

    system: str
    method: str
    path: str
    request: str
    status: int
    response: str
    outcome: str
    at: str
    ms: float


def loggable(data: bytes) -> str:
    """Bytes as log text: UTF-8 with replacement, cut at ``MAX_LOGGED_CHARS``."""
    text = data[: MAX_LOGGED_CHARS * 4].decode("utf-8", "replace")
    if len(text) > MAX_LOGGED_CHARS:
        return f"{text[:MAX_LOGGED_CHARS]}…[truncated, {len(data)} bytes]"
    return text


class SandboxState:
    """Everything the simulators hold; safe to touch only from the server's event loop."""

    def __init__(
        self,
        seed: Mapping[str, Any] | None = None,
        *,
        rng_seed: int = 0,
        max_calls: int = MAX_CALLS,
    ) -> None:
        self.seed: dict[str, Any] = load_seed() if seed is None else dict(seed)
        self.rng_seed = rng_seed
        # One generator for every fault draw, so a seeded run repeats the same pattern.
        self.rng = random.Random(rng_seed)
        self.calls: deque[CallRecord] = deque(maxlen=max_calls)
        self.faults = FaultBoard()
        self.capacity = CapacityBoard()
        self.systems: dict[str, SimulatedSystem] = {}
        self.stores: dict[str, SystemStore] = {}

    def install(self, systems: Iterable[SimulatedSystem]) -> None:
        """Register simulators and build their stores from the seed (existing stores are kept)."""
        for system in systems:
            self.systems[system.name] = system
            if system.name not in self.stores:
                self.stores[system.name] = system.new_store(self.seed.get(system.name, {}))

    def store(self, name: str) -> Any:
        """The store of system ``name`` (typed ``Any``: each simulator knows its own store class)."""
        return self.stores[name]

    def record(self, call: CallRecord) -> None:
        self.calls.append(call)

    def calls_of(self, system: str | None = None) -> list[CallRecord]:
        return [c for c in self.calls if system is None or c.system == system]

    def reset(self) -> None:
        """Back to the seeds: documents, calls, faults, capacity and the fault dice."""
        self.calls.clear()
        self.faults.clear()
        self.capacity.clear()
        self.rng.seed(self.rng_seed)
        self.stores = {name: s.new_store(self.seed.get(name, {})) for name, s in self.systems.items()}
