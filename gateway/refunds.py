"""Refunds: a platform's refund or after-sale record applied to the stored canonical order, per line.

Pure: the order and the refund in, the updated order out. A refund names its line where the
platform says so (Taobao ``oid``); otherwise it is matched by SKU; a refund that can only be
matched by its amount is attached to that line but flagged ``needs_review`` and not counted —
it is never silently guessed. ``totals.refunded_fen`` counts only confirmed (REFUNDED) refunds.
"""

from __future__ import annotations

import msgspec

from gateway.errors import Conflict
from schemas.order import CanonicalOrder, Line, LineRefund
from schemas.refund import CanonicalRefund


class RefundUnmatched(Conflict):
    code = "REFUND_UNMATCHED"
    message_zh = "退款无法对应到订单行"
    message_en = "The refund cannot be tied to a line of the order"


def _match(order: CanonicalOrder, refund: CanonicalRefund) -> tuple[int, bool]:
    """The index of the refunded line and whether a person must confirm the match."""
    lines = order.lines
    for key in ("line_id", "sku_id", "merchant_sku"):
        value = getattr(refund, key)
        if value:
            hits = [i for i, ln in enumerate(lines) if getattr(ln, key) == value]
            if len(hits) == 1:
                return hits[0], False
    # Already attached to a line by an earlier version of the same refund.
    for i, ln in enumerate(lines):
        if refund.refund_id in ln.refund.refund_ids:
            return i, ln.refund.needs_review
    if refund.amount_fen is not None:
        hits = [i for i, ln in enumerate(lines) if ln.paid_fen == refund.amount_fen]
        if len(hits) == 1:
            return hits[0], True
    raise RefundUnmatched(
        f"refund {refund.refund_id} of order {refund.order_id} names no line, SKU or unique amount of the order",
        f"退款 {refund.refund_id} 无法对应订单 {refund.order_id} 的任何行",
        hint="Check the refund in the platform's after-sale console and record it by hand",
    )


def apply_refund(order: CanonicalOrder, refund: CanonicalRefund) -> tuple[CanonicalOrder, bool]:
    """Return the order with the refund applied, and whether anything changed."""
    index, review = _match(order, refund)
    line: Line = order.lines[index]
    ids = (
        line.refund.refund_ids
        if refund.refund_id in line.refund.refund_ids
        else [*line.refund.refund_ids, refund.refund_id]
    )
    new_refund = LineRefund(
        state=refund.state,
        qty=refund.qty if refund.qty is not None else line.refund.qty,
        amount_fen=refund.amount_fen if refund.amount_fen is not None else line.refund.amount_fen,
        refund_ids=ids,
        needs_review=review,
    )
    if new_refund == line.refund:
        return order, False
    lines = list(order.lines)
    lines[index] = msgspec.structs.replace(line, refund=new_refund)
    refunded = sum(
        ln.refund.amount_fen or 0 for ln in lines if ln.refund.state == "REFUNDED" and not ln.refund.needs_review
    )
    totals = msgspec.structs.replace(order.totals, refunded_fen=refunded)
    return msgspec.structs.replace(order, lines=lines, totals=totals), True
