"""Stock levels (``gateway.stock``): ``POST /v1/stock`` (CONTRACT §2; roles ``wms``, ``erp``) and
``GET /v1/stock?sku=`` to read them with what is available."""

from __future__ import annotations

from typing import Any

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromQuery

from gateway.app.security import caller_of, requires
from gateway.stock import decode_stock_body, level_body, query_skus, report_stock


class StockController(Controller):
    path = "/v1/stock"
    tags = ["stock"]

    @post("/", guards=[requires("wms", "erp")], status_code=202)
    async def report(self, request: Request) -> Response:
        """Counts of SKUs in warehouses: ``{"items": [{"sku", "warehouse", "on_hand", "reserved"?,
        "as_of"?}]}`` (``reserved`` defaults to 0, ``as_of``, ISO-8601 with an offset, to the time
        received). 202 ``{"applied", "stale", "audit_seq"}``: a count older than the stored one
        for its SKU and warehouse is stale and ignored. 400 ``PAYLOAD_INVALID`` naming the field
        (``path``): wrong types, negative numbers, unknown fields, no items, one SKU and warehouse
        twice, ``as_of`` without an offset or in the future; 413 ``PAYLOAD_TOO_LARGE`` over the
        body limit or 10,000 items. A refused body stores nothing."""
        c = request.app.state.container
        reports = decode_stock_body(await request.body(), max_bytes=c.settings.max_body_bytes, now=c.clock.now())
        result = await report_stock(reports, uow_factory=c.uow_factory, clock=c.clock, actor=caller_of(request).actor)
        return Response(
            {"applied": result.applied, "stale": result.stale, "audit_seq": result.audit_seq},
            status_code=202,
            media_type=MediaType.JSON,
        )

    @get("/", guards=[requires("wms", "erp", "it", "auditor")])
    async def levels(self, request: Request, sku: FromQuery[list[str] | None] = None) -> dict[str, Any]:
        """The levels of the SKUs named (``?sku=A-1&sku=B-2``, at most 100), every warehouse that
        has a count, by SKU and warehouse: ``on_hand``, ``reserved`` (by the WMS), ``pending``
        (reserved by the gateway for orders accepted since the count), ``available`` (on hand less
        both; safety stock not taken off) and ``as_of``. A SKU without a count is absent."""
        skus = query_skus(sku)
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            found = await uow.stock.levels(skus)
        return {"items": [level_body(level) for level in found]}
