"""The path every call to a simulated partner system takes (CONTRACT §4): capacity, faults, log.

A raw ASGI middleware that each simulator's controller carries. It reads the whole body (so it
can be logged and size-checked), waits for a service slot, acts out the faults drawn for the
call, lets the simulator answer, records the call, and finally sends the answer — or, for
``drop_after_commit``, sends only the response head and hangs up, so the client sees a transport
error although the document was written (reference/erp-protocols.md §1.7: the case that makes
an adapter look up before it retries).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.sandbox.state import CallRecord, SandboxState, loggable

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

SCOPE_KEY = "sandbox.call"
#: Reads (liveness pages, WSDL, templates) are spared so a probe does not trip over a fault.
FAULTED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# IIS's own error page: what a client of a broken ASP/WCF host really gets instead of XML/JSON.
ERROR_PAGE = (
    "<html><head><title>500 - 内部服务器错误。</title></head><body>"
    "<h2>500 - 内部服务器错误。</h2><h3>{detail}</h3></body></html>"
)
_HTML = "text/html; charset=utf-8"
_dropping: contextvars.ContextVar[bool] = contextvars.ContextVar("sandbox_dropping", default=False)


@dataclass
class PartnerCall:
    """What the pipeline tells the simulator about this call, and what the simulator tells back.

    The simulator reads ``body`` (already read from the wire) and ``fault`` (``"reject"`` means:
    answer with your business rejection and write nothing), and sets ``outcome`` to
    ``"rejected"`` or ``"error"`` when that is what it answered.
    """

    system: str
    state: SandboxState
    body: bytes
    fault: str | None = None
    outcome: str = "ok"


@dataclass
class Reply:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes = b""
    drop: bool = False

    async def deliver(self, send: Send) -> None:
        headers = [(k, v) for k, v in self.headers if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(self.body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        if self.drop:
            # Returning now leaves the response incomplete: uvicorn closes the connection.
            _dropping.set(True)
            return
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def canned(status: int, text: str, content_type: str = _HTML) -> Reply:
    return Reply(status, [(b"content-type", content_type.encode())], text.encode("utf-8"))


def error_page(detail: str) -> str:
    return ERROR_PAGE.format(detail=detail)


def current_call(request: Request[Any, Any, Any]) -> PartnerCall:
    """The ``PartnerCall`` of a request that came through ``PartnerCallMiddleware``."""
    return request.scope[SCOPE_KEY]  # type: ignore[literal-required]


class _DeliberateDrop(logging.Filter):
    """Hide uvicorn's complaint about the response we left incomplete on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _dropping.get()


def quiet_deliberate_drops() -> None:
    """Install the filter once on uvicorn's error logger (the contextvar limits it to our drops)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DeliberateDrop) for f in logger.filters):
        logger.addFilter(_DeliberateDrop())


class PartnerCallMiddleware:
    """Raw ASGI middleware for one simulated system (``DefineMiddleware(..., system="u8")``)."""

    def __init__(self, app: ASGIApp, system: str) -> None:
        self.app = app
        self.system = system

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: SandboxState = scope["litestar_app"].state.sandbox
        sim = state.systems[self.system]
        started, at = time.perf_counter(), datetime.now(UTC)
        body, size = await _read_body(receive, sim.max_body_bytes)
        call = PartnerCall(self.system, state, body)
        scope[SCOPE_KEY] = call  # type: ignore[literal-required]
        async with state.capacity.slot(self.system):
            if size > sim.max_body_bytes:
                call.outcome = "error"
                reply = canned(sim.oversize_status, error_page(f"请求内容超过 {sim.max_body_bytes} 字节"))
            else:
                reply = await self._serve(scope, receive, call)
        outcome = call.outcome
        if outcome == "ok" and reply.status >= 500:
            outcome = "error"
        request_text = loggable(body) if size <= sim.max_body_bytes else f"[{size} bytes, over the limit]"
        state.record(
            CallRecord(
                system=self.system,
                method=scope["method"],
                path=scope["path"],
                request=request_text,
                status=reply.status,
                response=loggable(reply.body),
                outcome=outcome,
                at=at.isoformat(timespec="milliseconds"),
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
        )
        await reply.deliver(send)

    async def _serve(self, scope: Scope, receive: Receive, call: PartnerCall) -> Reply:
        if scope["method"] not in FAULTED_METHODS:
            return await self._answer(scope, receive, call)
        fault, slow = call.state.faults.draw(self.system, call.state.rng)
        if slow is not None:
            # A sluggish ERP still does the work: the client may give up, the document lands.
            await asyncio.sleep((slow.ms or 0) / 1000)
        if fault is None:
            reply = await self._answer(scope, receive, call)
            if slow is not None and call.outcome == "ok":
                call.outcome = "fault:slow"
            return reply
        label = f"fault:{fault.mode}"
        if fault.mode == "http500":
            call.outcome = label
            return canned(500, error_page("服务器内部错误，未处理任何单据。"))
        if fault.mode == "timeout":
            call.outcome = label
            await _hold(fault.ms or 0, receive)
            return canned(504, "504 Gateway Timeout", "text/plain; charset=utf-8")
        call.fault = fault.mode  # reject / drop_after_commit: the simulator answers first
        reply = await self._answer(scope, receive, call)
        call.outcome = label
        reply.drop = fault.mode == "drop_after_commit"
        return reply

    async def _answer(self, scope: Scope, receive: Receive, call: PartnerCall) -> Reply:
        """Run the simulator with the buffered body and capture its answer instead of sending it."""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": call.body, "more_body": False}
            return await receive()

        reply = Reply(500, [])
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                reply.status = message["status"]
                reply.headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, replay, capture)
        reply.body = b"".join(chunks)
        return reply


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, int]:
    """Read the request body; past ``limit`` keep draining (so the client can read our answer)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return (b"".join(chunks) if size <= limit else b""), size


async def _hold(ms: float, receive: Receive) -> None:
    """Hang like a stuck ERP for ``ms``, but stop as soon as the client hangs up.

    Nothing would read the answer after that, and a held request would only delay shutdown.
    """

    async def client_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(client_gone(), ms / 1000)
    except TimeoutError:
        pass
