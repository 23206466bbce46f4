"""Orders: intake from the platforms, dry runs of the dictionaries, and reads for WMS / ERP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from gateway.app.security import authorize, caller_of, requires
from gateway.disclosure import unmask_order
from gateway.errors import NotFound, PayloadInvalid
from gateway.intake import accept_order, decode_payload, evaluate, translate
from gateway.pii import mask_order

_READERS = ("wms", "erp", "it", "auditor")
_PLATFORMS = frozenset({"platform"})
_json = msgspec.json.Encoder().encode

# How often intake may wake the outbox relay (with Redis). Each relay pass reads up to 500 due rows
# (and PostgreSQL plans that query badly on a fast-growing outbox); woken by each of several
# hundred orders a second, it read them back to back, a quarter of the process's CPU
# (docs/benchmarks.md). A relayed job waits for arq's 0.1 s poll and an ERP call anyway.
RELAY_WAKE_INTERVAL_S = 0.25


class CoalescedWake:
    """Calls ``wake`` at once, then at most once per ``interval_s``: calls within the interval
    become one call at its end, so every call is followed by a wake within ``interval_s``."""

    def __init__(self, wake: Callable[[], None], interval_s: float) -> None:
        self._wake = wake
        self._interval = interval_s
        self._last = float("-inf")
        self._pending: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._last + self._interval
        if loop.time() >= due:
            self._fire()
        else:
            self._pending = loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._pending = None
        self._last = asyncio.get_running_loop().time()
        self._wake()


def intake_wake(container: Any) -> Callable[[], None]:
    """What intake calls after a 202: the embedded worker's wake as it is (it coalesces itself),
    the relay's through ``CoalescedWake``."""
    if container.worker is not None:
        return container.wake_delivery
    return CoalescedWake(container.wake_delivery, RELAY_WAKE_INTERVAL_S)


class OrderController(Controller):
    path = "/v1"
    tags = ["orders"]

    @post("/orders/{platform:str}", status_code=202)
    async def submit(self, request: Request, platform: FromPath[str]) -> Response:
        """Take one order exactly as the platform's order-detail API returned it (role ``platform``)."""
        await authorize(request, _PLATFORMS)
        c = request.app.state.container
        started = time.perf_counter()
        body = await request.body()
        try:
            result = await accept_order(
                platform,
                body,
                shop_header=request.headers.get("x-shop-id"),
                uow_factory=c.uow_factory,
                runtime=c.runtime,
                clock=c.clock,
                max_bytes=c.settings.max_body_bytes,
                fingerprint_key=c.settings.fingerprint_key_bytes,
                observe_unknown=c.unknown_fields.observe if c.unknown_fields is not None else None,
            )
        except PayloadInvalid:
            c.metrics.count_intake(platform, "invalid")
            raise
        c.metrics.count_intake(platform, result.outcome)
        c.metrics.intake_seconds.observe(time.perf_counter() - started)
        c.metrics.rules_seconds.observe(result.rules_seconds)
        if result.status_code == 202:
            request.app.state.intake_wake()
        # Encoded here, once, rather than handed to Litestar's serialisation as a dict.
        return Response(_json(result.body), status_code=result.status_code, media_type=MediaType.JSON)

    @post("/mappings/{platform:str}/dry-run", guards=[requires("it", "platform")], status_code=200)
    async def dry_run(self, request: Request, platform: FromPath[str]) -> dict[str, Any]:
        """Translate and check a payload without storing anything."""
        c = request.app.state.container
        payload = decode_payload(await request.body(), max_bytes=c.settings.max_body_bytes)
        order, unknown = translate(platform, payload, c.runtime, shop_header=request.headers.get("x-shop-id"))
        violations = evaluate(order, c.runtime)
        return {
            "canonical": msgspec.to_builtins(order),
            "unknown_fields": unknown,
            "warnings": [msgspec.to_builtins(v) for v in violations if v.severity == "warn"],
            "violations": [msgspec.to_builtins(v) for v in violations],
            "mapping_version": c.runtime.platform_dictionaries[platform].version,
            "rules_version": c.runtime.ruleset.version,
        }

    @get("/orders/{order_id:str}", guards=[requires(*_READERS)])
    async def read(self, request: Request, order_id: FromPath[str]) -> dict[str, Any]:
        """The canonical order with its gateway state, timeline and ERP document."""
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            order = await uow.orders.get(order_id)
            if order is None:
                raise NotFound(f"no order {order_id}", f"订单 {order_id} 不存在")
            timeline = await uow.orders.timeline(order_id)
        return _order_body(order, timeline, role=request.scope["state"]["role"])

    @post("/orders/{order_id:str}/unmask", guards=[requires("auditor")], status_code=200)
    async def unmask(self, request: Request, order_id: FromPath[str]) -> dict[str, Any]:
        """The order's receiver and buyer in clear (roles ``auditor``, ``admin``); the disclosure is
        written to the audit log (``pii.unmasked``: who, which order, which fields) first."""
        c = request.app.state.container
        caller = caller_of(request)
        return await unmask_order(c.uow_factory, order_id, actor=caller.actor, role=caller.role)

    @get("/orders", guards=[requires(*_READERS)])
    async def list_orders(
        self,
        request: Request,
        platform: FromQuery[str | None] = None,
        order_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Orders, newest first, filtered by platform and platform order id; cursor-paginated."""
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            page = await uow.orders.list(platform=platform, platform_order_id=order_id, cursor=cursor, limit=limit)
        role = request.scope["state"]["role"]
        return {"items": [_order_body(o, None, role=role) for o in page.items], "next_cursor": page.next_cursor}


def _order_body(order: Any, timeline: list[Any] | None, *, role: str) -> dict[str, Any]:
    # The WMS and the ERP ship the goods and need the address; everyone else sees it masked.
    canonical = order.canonical if role in ("wms", "erp") else mask_order(order.canonical)
    body = dict(canonical)
    body.update(
        id=order.id,
        state=order.state,
        mapping_version=order.mapping_version,
        rules_version=order.rules_version,
        erp={"target": order.erp_target, "document_no": order.erp_document_no, "status": order.erp_status},
        created_at=order.created_at.isoformat() if order.created_at else None,
    )
    if timeline is not None:
        body["timeline"] = [{"at": t.at.isoformat(), "kind": t.kind, "detail": t.detail} for t in timeline]
    return body
