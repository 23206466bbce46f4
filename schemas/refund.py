"""A platform refund or after-sale record in the gateway's own words (reference/canonical.md §1,
line ``refund``; §3 line refund states). Refund dictionaries (``mappings/refunds/``) produce it."""

from __future__ import annotations

import msgspec

from schemas.order import NonNegFen, Qty, RefundState, Timestamp


class CanonicalRefund(msgspec.Struct, kw_only=True):
    platform: str
    order_id: str
    refund_id: str
    line_id: str | None = None  # None: the platform does not say which line (JD refund-apply)
    # Set by a person who confirmed which line a refund belongs to (``needs_review`` resolved);
    # kept across later versions of the same refund.
    confirmed_line_id: str | None = None
    confirmed_by: str | None = None
    sku_id: str | None = None
    merchant_sku: str | None = None
    state: RefundState
    amount_fen: NonNegFen | None = None
    qty: Qty | None = None
    reason: str | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    platform_version: str | None = None
