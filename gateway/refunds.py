"""Refunds: a platform's refund or after-sale record applied to the stored canonical order, per line.

Pure: the order and the refund in, the updated order out. A refund names its line where the
platform says so (Taobao ``oid``); otherwise it is matched by SKU; a refund that can only be
matched by its amount is attached to that line but flagged ``needs_review`` and not counted —
it is never silently guessed. ``totals.refunded_fen`` counts only confirmed (REFUNDED) refunds.

Also pure: reading every refund out of one refund or after-sale response (``decode_refunds``: a
dictionary's ``root`` may name a list, e.g. JD's page of refund-apply records), applying a run of
stored refunds (``apply_refunds``) and telling a stale version of a refund (``older_version``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from gateway.errors import Conflict, MappingError
from gateway.mapping.dictionary import CompiledDictionary, _walk_unknown
from schemas.order import CanonicalOrder, Line, LineRefund, RefundPart
from schemas.refund import CanonicalRefund


class RefundUnmatched(Conflict):
    code = "REFUND_UNMATCHED"
    message_zh = "退款无法对应到订单行"
    message_en = "The refund cannot be tied to a line of the order"


def _match(order: CanonicalOrder, refund: CanonicalRefund) -> tuple[int, bool]:
    """The index of the refunded line and whether a person must confirm the match."""
    lines = order.lines
    if refund.confirmed_line_id:
        hits = [i for i, ln in enumerate(lines) if ln.line_id == refund.confirmed_line_id]
        if len(hits) == 1:
            return hits[0], False
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


_ENDED = ("REJECTED", "CLOSED")
# The state of a line with several refund records: what asks most of people wins.
_SUMMARY_ORDER = ("IN_PROGRESS", "REQUESTED", "REFUNDED")


def summarise(parts: list[RefundPart]) -> LineRefund:
    """A line's refund from its records: sums over the records still standing, one state."""
    standing = [p for p in parts if p.state not in _ENDED]
    state = next((s for s in _SUMMARY_ORDER if any(p.state == s for p in standing)), None)
    if state is None:
        state = parts[-1].state if parts else "NONE"
    qtys = [p.qty for p in standing if p.qty is not None]
    amounts = [p.amount_fen for p in standing if p.amount_fen is not None]
    return LineRefund(
        state=state,
        qty=sum(qtys) if qtys else None,
        amount_fen=sum(amounts) if amounts else None,
        refund_ids=[p.refund_id for p in parts],
        needs_review=any(p.needs_review for p in parts),
        parts=parts,
    )


def refunded_fen(lines: list[Line]) -> int:
    """Σ confirmed refunds: records REFUNDED and not waiting for a person to confirm their line.
    A line whose refund came only with the order (no record) counts with its own figures."""
    total = 0
    for ln in lines:
        r = ln.refund
        if r.parts:
            total += sum(p.amount_fen or 0 for p in r.parts if p.state == "REFUNDED" and not p.needs_review)
        elif r.state == "REFUNDED" and not r.needs_review:
            total += r.amount_fen or 0
    return total


def apply_refund(order: CanonicalOrder, refund: CanonicalRefund) -> tuple[CanonicalOrder, bool]:
    """Return the order with the refund applied, and whether anything changed.

    The refund becomes (or replaces, by ``refund_id``) one record of its line; the line's refund
    is the summary of its records, and ``totals.refunded_fen`` counts confirmed ones only.
    """
    index, review = _match(order, refund)
    line: Line = order.lines[index]
    part = RefundPart(
        refund_id=refund.refund_id,
        state=refund.state,
        qty=refund.qty,
        amount_fen=refund.amount_fen,
        needs_review=review,
    )
    parts = [p for p in line.refund.parts if p.refund_id != refund.refund_id]
    at = next((i for i, p in enumerate(line.refund.parts) if p.refund_id == refund.refund_id), len(parts))
    parts.insert(at, part)
    new_refund = summarise(parts)
    if new_refund == line.refund:
        return order, False
    lines = list(order.lines)
    lines[index] = msgspec.structs.replace(line, refund=new_refund)
    totals = msgspec.structs.replace(order.totals, refunded_fen=refunded_fen(lines))
    return msgspec.structs.replace(order, lines=lines, totals=totals), True


def detach(order: CanonicalOrder, refund_id: str) -> CanonicalOrder:
    """The order without the record ``refund_id`` on any line (before it is attached elsewhere)."""
    lines = list(order.lines)
    for i, ln in enumerate(lines):
        if any(p.refund_id == refund_id for p in ln.refund.parts):
            parts = [p for p in ln.refund.parts if p.refund_id != refund_id]
            lines[i] = msgspec.structs.replace(ln, refund=summarise(parts) if parts else LineRefund())
    if lines == order.lines:
        return order
    totals = msgspec.structs.replace(order.totals, refunded_fen=refunded_fen(lines))
    return msgspec.structs.replace(order, lines=lines, totals=totals)


def apply_refunds(
    order: CanonicalOrder, refunds: Iterable[CanonicalRefund]
) -> tuple[CanonicalOrder, list[CanonicalRefund]]:
    """Apply ``refunds`` in turn, skipping those no line matches; return the order and the skipped.
    Whether the order changed is ``result != order`` (one refund may undo another's step)."""
    unmatched: list[CanonicalRefund] = []
    for refund in refunds:
        try:
            if refund.confirmed_line_id:  # a person moved it: off whatever line it was on
                order = detach(order, refund.refund_id)
            order, _ = apply_refund(order, refund)
        except RefundUnmatched:
            unmatched.append(refund)
    return order, unmatched


def refund_line(order: CanonicalOrder, refund_id: str) -> Line | None:
    """The line a refund was attached to, if any."""
    return next((ln for ln in order.lines if refund_id in ln.refund.refund_ids), None)


def older_version(new: str | None, stored: str | None) -> bool:
    """Whether ``new`` is an older platform version than ``stored``: a stale copy that must not
    overwrite it. Digits compare as numbers (Taobao's millisecond ``refund_version``, Unix times),
    anything else as text (ISO-8601 times in one offset). A missing version is never older, and
    nothing is older than a missing one."""
    if new is None or stored is None:
        return False
    if new.isdigit() and stored.isdigit():
        return int(new) < int(stored)
    return new < stored


def decode_refunds(dictionary: CompiledDictionary, payload: Any) -> tuple[list[CanonicalRefund], list[str]]:
    """Every refund in one refund or after-sale response, and the source fields nobody mapped.

    The dictionary's ``root`` (or the payload itself when it has none) is one refund object, or a
    list of them — JD's refund-apply query answers a page, ``queryResult.result[]``. Then each
    element is translated on its own and errors name it (``…result[1].status``); unknown fields
    are reported as ``[].field``. An empty list holds no refund: ``PAYLOAD_INVALID``.
    """
    meta = dictionary.spec.dictionary
    what = meta.source or dictionary.name
    obj = payload
    walked: list[str] = []
    for key in meta.root.split(".") if meta.root else []:
        walked.append(key)
        if not isinstance(obj, dict) or key not in obj:
            raise MappingError(
                ".".join(walked), f"missing: this is not a {what} response", f"缺失：这不是 {what} 的返回报文"
            )
        obj = obj[key]
    root = meta.root or ""
    if isinstance(obj, list):
        if not obj:
            raise MappingError(root or "$", "the response holds no refund", "报文中没有退款记录")
        elements = [(element, f"{root}[{i}].", "[]") for i, element in enumerate(obj)]
    elif isinstance(obj, dict):
        elements = [(obj, f"{root}." if root else "", "")]
    else:
        raise MappingError(root or "$", "expected an object or a list of objects", "应为对象或对象列表")
    refunds: list[CanonicalRefund] = []
    unknown: set[str] = set()
    for element, base, prefix in elements:
        refunds.append(dictionary.mapper(element, {}, base))
        _walk_unknown(element, dictionary.known, prefix, unknown)
    return refunds, sorted(unknown)
