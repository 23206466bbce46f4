"""Manual review (``gateway.review``): the queue of held orders and its decisions, and the
two-person override of intercepts. Roles ``it`` and ``admin``; auditors may read."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from gateway.app.security import caller_of, requires
from gateway.errors import NotFound, PayloadInvalid
from gateway.review import Reviewer, decide, override_body, override_intercept, parse_reason, queue_item


class ReviewController(Controller):
    path = "/v1"
    tags = ["review"]

    @get("/review", guards=[requires("it")])
    async def queue(
        self,
        request: Request,
        platform: FromQuery[str | None] = None,
        shop: FromQuery[str | None] = None,
        rule: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Held orders waiting for a decision, oldest first, each with why it is held; filters
        ``platform``, ``shop``, ``rule``; cursor-paginated."""
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            page = await uow.reviews.queue(platform=platform, shop=shop, rule=rule, cursor=cursor, limit=limit)
        now = c.clock.now()
        return {"items": [queue_item(item, now) for item in page.items], "next_cursor": page.next_cursor}

    @post("/review/{order_id:str}/approve", guards=[requires("it")], status_code=200)
    async def approve(self, request: Request, order_id: FromPath[str]) -> dict[str, Any]:
        """Release a held order to delivery. Body ``{"reason"}`` (400 ``REASON_REQUIRED``); 409
        ``ORDER_NOT_HELD`` when it is not held (decided already)."""
        return await self._decide(request, order_id, "approve")

    @post("/review/{order_id:str}/reject", guards=[requires("it")], status_code=200)
    async def reject(self, request: Request, order_id: FromPath[str]) -> dict[str, Any]:
        """Cancel a held order: it is never delivered. Body ``{"reason"}``; errors as approve."""
        return await self._decide(request, order_id, "reject")

    async def _decide(self, request: Request, order_id: str, decision: Any) -> dict[str, Any]:
        c = request.app.state.container
        reason = parse_reason(await request.body())
        body = await decide(
            order_id,
            decision,
            reason=reason,
            reviewer=Reviewer.of(caller_of(request)),
            uow_factory=c.uow_factory,
            clock=c.clock,
        )
        if decision == "approve":
            c.wake_delivery()
        return body

    @get("/review/overrides", guards=[requires("it", "auditor")])
    async def overrides(
        self,
        request: Request,
        wanted: Annotated[str | None, QueryParameter(name="state")] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Override requests of intercepts, newest first; ``state=requested`` lists those waiting
        for a second person."""
        state = wanted or None
        if state not in (None, "requested", "confirmed"):
            raise PayloadInvalid(
                f"state is {state!r}; one of requested, confirmed", f"state 为 {state!r}，应为 requested 或 confirmed"
            )
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            page = await uow.reviews.overrides(state=state, cursor=cursor, limit=limit)
        return {"items": [override_body(o) for o in page.items], "next_cursor": page.next_cursor}

    @get("/intercepts/{intercept_id:str}", guards=[requires("it", "auditor")])
    async def intercept(self, request: Request, intercept_id: FromPath[str]) -> dict[str, Any]:
        """One intercept (its snapshot masked, as in ``GET /v1/intercepts``) with its override."""
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            record = await uow.intercepts.get(intercept_id)
        if record is None:
            raise NotFound(f"no intercept {intercept_id}", f"拦截记录 {intercept_id} 不存在")
        body = msgspec.to_builtins(record)
        body["override"] = override_body(record.override) if record.override is not None else None
        return body

    @post("/intercepts/{intercept_id:str}/override", guards=[requires("it")], status_code=200)
    async def override(self, request: Request, intercept_id: FromPath[str]) -> Response:
        """Body ``{"reason"}``. The first person's call records a request (202 ``requested``); a
        second, different person's call confirms it (200 ``overridden``): the order is stored from
        the intercept's raw payload, without the overridden rules, and goes on to delivery (or to
        the review queue, if another rule holds it). 403 ``SECOND_PERSON_REQUIRED``, 409
        ``INTERCEPT_ALREADY_OVERRIDDEN`` / ``INTERCEPT_NOT_OVERRIDABLE`` / ``OVERRIDE_REFUSED``."""
        c = request.app.state.container
        reason = parse_reason(await request.body())
        result = await override_intercept(
            intercept_id,
            reason=reason,
            reviewer=Reviewer.of(caller_of(request)),
            uow_factory=c.uow_factory,
            runtime=c.runtime,
            clock=c.clock,
        )
        body: dict[str, Any] = {
            "intercept_id": intercept_id,
            "status": result.status,
            "override": override_body(result.override),
        }
        if result.order is None:
            body["hint"] = "another person confirms with the same call"
            return Response(body, status_code=202)
        body["order"] = result.order.body
        c.wake_delivery()
        return Response(body, status_code=200)
