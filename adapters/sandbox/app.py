"""The sandbox application (``gateway sandbox``): simulated partner systems on one port, CONTRACT §4.

Each simulated system is one module exposing a ``SimulatedSystem`` (a controller on the
partner's own paths carrying ``PartnerCallMiddleware``, plus a store built from its table in
``seed.toml``); list it in ``SYSTEMS`` and it shares the ``/_sandbox`` control plane.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State

from adapters.sandbox.control import SandboxControlController
from adapters.sandbox.k3soap import K3_SOAP
from adapters.sandbox.k3webapi import K3_WEBAPI
from adapters.sandbox.pipeline import quiet_deliberate_drops
from adapters.sandbox.state import SandboxState, SimulatedSystem
from adapters.sandbox.u8eai import U8_EAI
from adapters.sandbox.u8openapi import U8_OPENAPI

#: Every simulated system the sandbox serves; add later ones (u8openapi, k3, ...) here.
SYSTEMS: tuple[SimulatedSystem, ...] = (U8_EAI, K3_WEBAPI, U8_OPENAPI, K3_SOAP)


def create_sandbox_app(state: SandboxState | None = None) -> Litestar:
    """Build the sandbox app around ``state`` (a fresh, seeded one when omitted).

    Args:
        state: the in-memory state to serve; tests keep a reference to look inside.
    """
    state = state if state is not None else SandboxState()
    state.install(SYSTEMS)
    quiet_deliberate_drops()
    return Litestar(
        route_handlers=[SandboxControlController, *(system.controller for system in SYSTEMS)],
        state=State({"sandbox": state}),
        openapi_config=None,
        logging_config=None,  # the process's logging is configured once, by the CLI
    )


def run_sandbox(host: str = "127.0.0.1", port: int = 8090, *, state: SandboxState | None = None) -> None:
    """Serve the sandbox with uvicorn until interrupted."""
    import uvicorn

    # A held ``timeout`` fault must not keep the process from stopping.
    uvicorn.run(create_sandbox_app(state), host=host, port=port, timeout_graceful_shutdown=5)
