"""Refunds from the platforms: ``POST /v1/refunds/{platform}`` (CONTRACT §2), role ``platform``."""

from __future__ import annotations

import msgspec
from litestar import Controller, MediaType, Request, Response, post
from litestar.params import FromPath

from gateway.app.security import authorize, caller_of, requires
from gateway.errors import PayloadInvalid
from gateway.refund_intake import accept_refunds, confirm_refund_line

_PLATFORMS = frozenset({"platform"})


class ConfirmLine(msgspec.Struct, forbid_unknown_fields=True):
    line_id: str | None = None


_json = msgspec.json.Encoder().encode


class RefundController(Controller):
    path = "/v1"
    tags = ["refunds"]

    @post("/refunds/{platform:str}", status_code=202)
    async def submit(self, request: Request, platform: FromPath[str]) -> Response:
        """Take a platform's refund or after-sale API response exactly as returned.

        202 ``{"order", "platform", "order_id", "refunds": [...], "changed": true, "pending"}`` when
        something changed (``pending``: the order is not here yet; the refund waits for it), 200
        with the same shape for a repeat. 400 ``PAYLOAD_INVALID`` naming the path, 400
        ``REFUNDS_IN_ORDER`` (Douyin: refunds come inside the order), 404 ``UNKNOWN_PLATFORM``, 409
        ``REFUND_UNMATCHED``, 413 ``PAYLOAD_TOO_LARGE``.
        """
        await authorize(request, _PLATFORMS)
        c = request.app.state.container
        result = await accept_refunds(
            platform,
            await request.body(),
            shop_header=request.headers.get("x-shop-id"),
            uow_factory=c.uow_factory,
            runtime=c.runtime,
            clock=c.clock,
            max_bytes=c.settings.max_body_bytes,
        )
        return Response(_json(result.body), status_code=result.status_code, media_type=MediaType.JSON)

    @post("/orders/{order_id:str}/refunds/{refund_id:str}/confirm", guards=[requires("it")], status_code=200)
    async def confirm_line(self, request: Request, order_id: FromPath[str], refund_id: FromPath[str]) -> dict:
        """Confirm which line a refund belongs to (body ``{"line_id"}``, default: the line it was
        matched to by amount). A refund the platform did not tie to a line (JD refund-apply) counts
        in ``refunded_fen`` only after this; the confirmation survives later versions of the refund."""
        c = request.app.state.container
        raw = await request.body()
        try:
            body = msgspec.json.decode(raw, type=ConfirmLine) if raw.strip() else ConfirmLine()
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise PayloadInvalid(
                f'the request is invalid: {exc}; send {{"line_id": "..."}}', f"请求无效：{exc}"
            ) from None
        return await confirm_refund_line(
            c.uow_factory, order_id, refund_id, line_id=body.line_id, actor=caller_of(request).actor, clock=c.clock
        )
