"""The checks behind the rule codes. Each is pure: the order and the context in, findings out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from gateway.rules.catalog import Finding, RuleContext, check
from schemas.order import CanonicalOrder, Promotion


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


# --------------------------------------------------------------------------- promotions

# A threshold in a promotion's name, for platforms that do not send it as a number
# (Promotion.threshold_fen is None everywhere today: the dictionary language has no transform that
# reads "满300减30"). Matches "满300减30", "满300元减30元", "满199.9立减20", "满300-30", "店铺满200减10元券"
# and "每满200减5" (per each 200); several tiers in one name ("满200减20,满300减40") give several
# matches. A quantity threshold ("满2件减10"), a free-shipping one ("满99包邮") and a discount
# rate ("满300享9折") do not match, and their promotions are not checked.
THRESHOLD_IN_NAME = re.compile(r"(每)?满\s*(\d+(?:\.\d{1,2})?)\s*元?\s*(?:立?减|-)\s*(\d+(?:\.\d{1,2})?)")


def _fen(yuan: str) -> int:
    return int(Decimal(yuan) * 100)


def _thresholds(name: str | None) -> list[tuple[int, int, bool]]:
    """``(threshold_fen, reduction_fen, per_each)`` for each tier written in ``name``."""
    return [(_fen(m[2]), _fen(m[3]), bool(m[1])) for m in THRESHOLD_IN_NAME.finditer(name or "")]


def threshold_needed(promo: Promotion) -> int | None:
    """The goods a threshold promotion needs for the amount it took off; None: not known."""
    if promo.threshold_fen is not None:
        return promo.threshold_fen
    tiers = _thresholds(promo.name)
    if not tiers:
        return None
    for threshold, reduction, per_each in tiers:
        if not per_each and reduction == promo.amount_fen:
            return threshold  # the tier whose reduction was given
    for threshold, reduction, per_each in tiers:
        if per_each and reduction > 0:
            return threshold * -(-promo.amount_fen // reduction)  # 每满200减5 taking 10 off needs 400
    return min(t for t, _, _ in tiers)  # no tier matches the amount: the most lenient one


def _goods(order: CanonicalOrder, line_id: str | None) -> int | None:
    """The goods of the order (line_id None) or of one line, gifts left out; None: no such line."""
    if line_id is None:
        return sum(line.line_total_fen for line in order.lines if not line.is_gift)
    for line in order.lines:
        if line.line_id == line_id:
            return line.line_total_fen
    return None


@check("FULL_REDUCTION_THRESHOLD")
def full_reduction_threshold(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """A 满减 promotion that took money off goods below its threshold.

    The goods it is measured on: the order's goods (gift lines left out) for an order-level promotion,
    the line's for a line-level one, less the discounts that apply before a full reduction (kinds
    ``before_kinds``, default ``item_discount``: 限时折扣, 单品促销) on the same goods. Coupons apply
    after it and are not subtracted. The threshold: ``threshold_fen`` where the dictionary filled
    it, else the promotion's name (``THRESHOLD_IN_NAME``); a promotion with neither is not checked,
    nor one that took nothing off, nor a cross-shop one (a name with one of
    ``skip_name_markers``, default 跨店: its threshold counts the buyer's goods in other shops too).
    """
    kinds = set(params.get("kinds", ["full_reduction"]))
    before = set(params.get("before_kinds", ["item_discount"]))
    markers = list(params.get("skip_name_markers", ["跨店"]))
    for i, promo in enumerate(order.promotions):
        if promo.kind not in kinds or promo.amount_fen <= 0:
            continue
        if promo.name and any(m in promo.name for m in markers):
            continue
        needed = threshold_needed(promo)
        if needed is None:
            continue
        line_id = promo.line_id if promo.scope == "line" else None
        if promo.scope == "line" and line_id is None:
            continue
        goods = _goods(order, line_id)
        if goods is None:
            continue
        earlier = sum(
            p.amount_fen
            for p in order.promotions
            if p.kind in before and p is not promo and (line_id is None or (p.scope == "line" and p.line_id == line_id))
        )
        basis = goods - earlier
        if basis < needed:
            yield Finding(
                f"promotions[{i}]",
                {
                    "name": promo.name or promo.promo_id or "(unnamed)",
                    "threshold_fen": needed,
                    "basis_fen": basis,
                    "amount_fen": promo.amount_fen,
                },
            )


@check("MEMBER_DISCOUNT_LIMIT")
def member_discount_limit(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """Member discounts (promotions of the kinds ``kinds``, default ``member``) beyond the buyer's tier.

    The tiers (tier name → the largest member discount in percent of the goods) come from the
    target's value table named by ``table`` (default ``member_tiers``, the file
    ``mappings/values/member_tiers.toml`` when the target lists it in its ``values``); a target
    without that table uses the rule's own ``tiers`` parameter. A ``"*"`` tier is the limit of
    tiers the table does not name; without one, an unknown tier is not checked (a new tier on the
    platform must not stop orders), nor one whose limit is not a number, nor an order without
    ``buyer.member_level``.
    Order-level member discounts are measured on the order's goods (gifts left out), line-level
    ones on their line's goods.
    """
    level = order.buyer.member_level
    if not level:
        return
    tiers = ctx.tables.get(str(params.get("table", "member_tiers"))) or params.get("tiers") or {}
    limit = tiers.get(level, tiers.get("*"))
    try:
        pct_limit = Decimal(str(limit))
    except InvalidOperation:
        return  # no limit, or not a number: the tier is not checked
    if not pct_limit.is_finite():
        return
    kinds = set(params.get("kinds", ["member"]))
    groups: dict[str | None, list[int]] = {}
    for i, promo in enumerate(order.promotions):
        if promo.kind in kinds and promo.amount_fen > 0:
            groups.setdefault(promo.line_id if promo.scope == "line" else None, []).append(i)
    for line_id, idx in groups.items():
        goods = _goods(order, line_id)
        if not goods:
            continue
        discount = sum(order.promotions[i].amount_fen for i in idx)
        if discount * 100 > goods * pct_limit:
            yield Finding(
                f"promotions[{idx[0]}]" if len(idx) == 1 else "promotions",
                {
                    "member_level": level,
                    "max_pct": f"{pct_limit.normalize():f}",
                    "discount_fen": discount,
                    "basis_fen": goods,
                    "pct": f"{Decimal(discount * 100) / goods:.2f}",
                    "what": "订单" if line_id is None else f"行 {line_id} ",
                    "what_en": "the order" if line_id is None else f"line {line_id}",
                },
            )


# --------------------------------------------------------------------------- payment

_NOT_PAID = {
    "PENDING_PAYMENT": ("待付款", "awaiting payment"),
    "CANCELLED": ("付款前已关闭", "closed before payment"),
}


@check("NOT_PAID")
def not_paid(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """An order the buyer has not paid (canonical ``statuses``, default PENDING_PAYMENT and
    CANCELLED — closed before payment) never goes to the ERP."""
    if order.status in params.get("statuses", ["PENDING_PAYMENT", "CANCELLED"]):
        what, what_en = _NOT_PAID.get(order.status, (order.status, order.status))
        yield Finding(
            "status",
            {"what": what, "what_en": what_en, "platform_status": order.platform_status or order.status},
        )


_STAGES = {
    "deposit_unpaid": ("定金未付", "deposit not paid"),
    "deposit_paid": ("定金已付、尾款未付", "deposit paid, balance not paid"),
    "balance_paid": ("尾款已付", "balance paid"),
}


def _amount(fen: int | None) -> str:
    return "?" if fen is None else str(fen)


@check("PRESALE_BALANCE_UNPAID")
def presale_balance_unpaid(order: CanonicalOrder, ctx: RuleContext, params: dict[str, Any]) -> Iterator[Finding]:
    """A presale (定金预售) order whose balance (尾款) is not paid yet, whatever its status says."""
    p = order.presale
    if p is None or p.balance_paid:
        return
    stage, stage_en = _STAGES.get(p.stage or "", ("阶段未知", "stage unknown"))
    yield Finding(
        "presale.balance_paid",
        {
            "stage": stage,
            "stage_en": stage_en,
            "deposit_fen": _amount(p.deposit_fen),
            "paid_fen": _amount(p.paid_fen),
            "balance_fen": _amount(p.balance_fen),
        },
    )
