"""The checks behind the rule codes. Each is pure: the order and the context in, findings out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gateway.rules.catalog import Finding, RuleContext, check
from schemas.order import CanonicalOrder


@check("UNKNOWN_SHOP")
def unknown_shop(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    if ctx.shop_id not in ctx.tables.get("customers", {}):
        yield Finding("shop_id", {"shop_id": ctx.shop_id})


@check("UNKNOWN_SKU")
def unknown_sku(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    inventory = ctx.tables.get("inventory", {})
    for i, line in enumerate(order.lines):
        if not line.merchant_sku or line.merchant_sku not in inventory:
            yield Finding(
                f"lines[{i}].merchant_sku",
                {"merchant_sku": line.merchant_sku or "(none)", "line_id": line.line_id},
            )


@check("AMOUNT_MISMATCH")
def amount_mismatch(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    t = order.totals
    expected = t.goods_fen - t.discount_fen + t.freight_fen + t.buyer_fee_fen
    if expected != t.paid_fen:
        yield Finding(
            "totals.paid_fen",
            {
                "what": "商品 − 优惠 + 运费 + 买家服务费 ≠ 实付",
                "what_en": "goods − discounts + freight + buyer fees ≠ paid",
                "expected_fen": expected,
                "actual_fen": t.paid_fen,
            },
        )
    goods = sum(line.line_total_fen for line in order.lines)
    if goods != t.goods_fen:
        yield Finding(
            "totals.goods_fen",
            {
                "what": "各行金额之和 ≠ 商品总额",
                "what_en": "sum of lines ≠ goods total",
                "expected_fen": goods,
                "actual_fen": t.goods_fen,
            },
        )
    lines_paid = sum(line.paid_fen for line in order.lines) + t.freight_fen + t.buyer_fee_fen
    if lines_paid != t.paid_fen:
        yield Finding(
            "totals.paid_fen",
            {
                "what": "各行实付 + 运费 + 买家服务费 ≠ 实付",
                "what_en": "lines paid + freight + buyer fees ≠ paid",
                "expected_fen": lines_paid,
                "actual_fen": t.paid_fen,
            },
        )
    for i, line in enumerate(order.lines):
        if line.line_total_fen - line.discount_fen != line.paid_fen:
            yield Finding(
                f"lines[{i}].paid_fen",
                {
                    "what": f"行 {line.line_id} 金额 − 优惠 ≠ 实付",
                    "what_en": f"line {line.line_id} total − discount ≠ paid",
                    "expected_fen": line.line_total_fen - line.discount_fen,
                    "actual_fen": line.paid_fen,
                },
            )


@check("PAID_HOLD")
def paid_hold(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    if order.status == "PAID_HOLD":
        yield Finding("status", {"platform_status": order.platform_status or order.status})


@check("COUPON_STACK_LIMIT")
def coupon_stack_limit(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    limit = int(params.get("max_coupons", 2))
    count = sum(1 for p in order.promotions if p.kind == "coupon")
    if count > limit:
        yield Finding("promotions", {"count": count, "max_coupons": limit})
