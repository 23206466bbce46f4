"""Inspection and control of the sandbox, ``/_sandbox/...`` (CONTRACT §4): documents, call log,
faults, capacity, reset. Shared by every simulated system; paths and JSON fields are fixed there.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, delete, get, post

from adapters.sandbox.capacity import CapacitySpec
from adapters.sandbox.faults import FaultSpec
from adapters.sandbox.state import SandboxState

_Spec = TypeVar("_Spec", FaultSpec, CapacitySpec)
AnyRequest = Request[Any, Any, Any]


class BadControlRequest(Exception):
    """A control body the sandbox cannot act on; answered with 400 and the reason."""


def _state(request: AnyRequest) -> SandboxState:
    return request.app.state.sandbox


async def _decode(request: AnyRequest, spec: type[_Spec]) -> _Spec:
    try:
        value = msgspec.json.decode(await request.body(), type=spec)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadControlRequest(str(exc)) from exc
    if value.system not in _state(request).systems:
        raise BadControlRequest(f"unknown system {value.system!r}; known: {sorted(_state(request).systems)}")
    return value


def _bad_request(_: AnyRequest, exc: BadControlRequest) -> Response[dict[str, str]]:
    return Response({"error": str(exc)}, status_code=400)


def _faults(state: SandboxState) -> dict[str, Any]:
    return {"faults": [msgspec.to_builtins(f) for f in state.faults.list()]}


class SandboxControlController(Controller):
    """``/_sandbox``: what tests and operators use to look inside and to break things on purpose."""

    path = "/_sandbox"
    exception_handlers = {BadControlRequest: _bad_request}

    @get("/{system:str}/documents", sync_to_thread=False)
    def documents(self, request: AnyRequest) -> Response[dict[str, Any]]:
        """What ``system`` holds, in its own field names."""
        state, system = _state(request), request.path_params["system"]
        if system not in state.stores:
            return Response({"error": f"unknown system {system!r}"}, status_code=404)
        return Response({"system": system, "documents": state.store(system).documents()})

    @get("/calls", sync_to_thread=False)
    def calls(self, request: AnyRequest) -> dict[str, Any]:
        """The call log, oldest first; ``?system=`` filters, ``?limit=N`` keeps the newest N."""
        calls = _state(request).calls_of(request.query_params.get("system") or None)
        limit = request.query_params.get("limit", "")
        if limit.isdigit():
            calls = calls[-int(limit) :] if int(limit) > 0 else []
        return {"calls": msgspec.to_builtins(calls)}

    @get("/faults", sync_to_thread=False)
    def list_faults(self, request: AnyRequest) -> dict[str, Any]:
        return _faults(_state(request))

    @post("/faults", status_code=200)
    async def set_fault(self, request: AnyRequest) -> dict[str, Any]:
        """Activate (or replace) the fault for one system and mode; ``seed`` re-seeds the dice."""
        spec = await _decode(request, FaultSpec)
        state = _state(request)
        if spec.seed is not None:
            state.rng.seed(spec.seed)
        state.faults.set(spec)
        return _faults(state)

    @delete("/faults", status_code=200, sync_to_thread=False)
    def clear_faults(self, request: AnyRequest) -> dict[str, Any]:
        """Clear every fault, or only those of ``?system=``."""
        state = _state(request)
        state.faults.clear(request.query_params.get("system") or None)
        return _faults(state)

    @get("/capacity", sync_to_thread=False)
    def capacity(self, request: AnyRequest) -> dict[str, Any]:
        return _state(request).capacity.view()

    @post("/capacity", status_code=200)
    async def set_capacity(self, request: AnyRequest) -> dict[str, Any]:
        """Limit how many calls the system serves at once, and its service time; counters restart."""
        spec = await _decode(request, CapacitySpec)
        state = _state(request)
        state.capacity.configure(spec)
        return state.capacity.view()

    @post("/reset", status_code=200, sync_to_thread=False)
    def reset(self, request: AnyRequest) -> dict[str, Any]:
        """Back to the seeds: documents, calls, faults and capacity."""
        _state(request).reset()
        return {"reset": True, "systems": sorted(_state(request).systems)}
