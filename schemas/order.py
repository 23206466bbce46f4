"""The canonical order: one shape for every platform's order (reference/canonical.md §1).

Money is integer fen, ids are strings, times are ISO-8601 strings with an offset. Fields are only
ever added, each with a default, because stored orders and queued jobs outlive a deploy.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Fen = Annotated[int, msgspec.Meta(description="Money in integer fen (CNY 0.01)")]
NonNegFen = Annotated[int, msgspec.Meta(ge=0)]
Qty = Annotated[int, msgspec.Meta(ge=0)]
# ISO-8601 with an offset, e.g. "2024-06-18T20:15:41+08:00". Kept as text: it is what is stored,
# compared and shown, and it round-trips exactly.
Timestamp = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$")]

Platform = Literal["taobao", "pinduoduo", "douyin", "jd", "wechat_channels"]
PLATFORMS: tuple[str, ...] = ("taobao", "pinduoduo", "douyin", "jd", "wechat_channels")

OrderStatus = Literal[
    "PENDING_PAYMENT",
    "PAID_HOLD",
    "READY_TO_SHIP",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "COMPLETED",
    "CANCELLED",
    "CLOSED_REFUNDED",
]
HoldReason = Literal["GROUP_BUY_PENDING", "RISK_REVIEW", "ADDRESS_CHANGE_PENDING", "LOCKED", "NO_RECEIVER"]
PiiState = Literal["plain", "masked", "encrypted", "absent"]
RefundState = Literal["NONE", "REQUESTED", "IN_PROGRESS", "REFUNDED", "REJECTED", "CLOSED"]
# ``member``: a discount the buyer gets for a member tier (会员价, 会员折扣), checked by the rule
# MEMBER_DISCOUNT_LIMIT against the tier's limit.
PromotionKind = Literal["coupon", "full_reduction", "item_discount", "redpack", "points", "member", "other"]
FundedBy = Literal["seller", "platform", "talent", "unknown"]
# Where a presale (定金预售, step payment) order stands: deposit not paid, deposit paid and balance
# (尾款) not paid, or both paid.
PresaleStage = Literal["deposit_unpaid", "deposit_paid", "balance_paid"]
# What a fee is for, whatever the platform calls it (达人佣金, 推广服务费, 分销返点 … → channel_fee):
# the names are mapped by the value table ``fee_kinds`` (mappings/values/platforms.toml).
FeeKind = Literal["channel_fee", "platform_fee", "service_fee", "insurance", "other"]


class Base(msgspec.Struct, kw_only=True, omit_defaults=False, forbid_unknown_fields=False):
    """Shared options for every canonical struct."""


class Buyer(Base, kw_only=True):
    platform_uid: str | None = None
    nick: str | None = None
    message: str | None = None
    # The buyer's member tier as the shop names it (普通会员, 银卡, 金卡, 钻石 …), where the platform
    # sends one; None: not a member, or not said (then MEMBER_DISCOUNT_LIMIT does not apply).
    member_level: str | None = None


class Receiver(Base, kw_only=True):
    name: str | None = None
    phone: str | None = None
    pii_state: PiiState = "absent"
    country: str | None = None
    province: str | None = None
    city: str | None = None
    district: str | None = None
    street: str | None = None
    detail: str | None = None
    postal_code: str | None = None
    region_codes: dict[str, str] | None = None  # the platform's own region ids
    division_codes: dict[str, str] | None = None  # GB/T 2260 codes: province, city, district


class Spec(Base, kw_only=True):
    name: str | None = None
    value: str


class RefundPart(Base, kw_only=True):
    """One refund or after-sale record on a line, as the platform last reported it."""

    refund_id: str
    state: RefundState
    qty: Qty | None = None
    amount_fen: NonNegFen | None = None
    needs_review: bool = False


class LineRefund(Base, kw_only=True):
    """A line's refund: one summary over its refund records (``parts``) — a line may be refunded in
    several goes (2 of 3 T-shirts, one after-sale each). ``qty`` and ``amount_fen`` add up the
    records that are not rejected or closed; ``state`` is the one that asks most of people."""

    state: RefundState = "NONE"
    qty: Qty | None = None
    amount_fen: NonNegFen | None = None
    refund_ids: list[str] = msgspec.field(default_factory=list)
    needs_review: bool = False
    parts: list[RefundPart] = msgspec.field(default_factory=list)


class Line(Base, kw_only=True):
    line_id: str
    product_id: str | None = None
    sku_id: str | None = None
    merchant_sku: str | None = None
    title: str | None = None
    spec: list[Spec] = msgspec.field(default_factory=list)
    qty: Qty
    unit_price_fen: NonNegFen
    line_total_fen: NonNegFen
    discount_fen: Fen = 0
    discount_source: Literal["platform", "allocated", "none"] = "none"
    paid_fen: Fen
    is_gift: bool = False
    refund: LineRefund = msgspec.field(default_factory=LineRefund)
    # The rule set's action that added this line (a gift chosen by ``gateway.rules.actions``);
    # None for the platform's own lines.
    added_by: str | None = None


class Totals(Base, kw_only=True):
    goods_fen: NonNegFen
    discount_fen: Fen = 0
    seller_discount_fen: Fen | None = None
    platform_discount_fen: Fen | None = None
    freight_fen: NonNegFen = 0
    buyer_fee_fen: NonNegFen = 0  # fees the buyer paid on top (PDD service fees): part of paid_fen
    paid_fen: NonNegFen
    refunded_fen: NonNegFen = 0


class Promotion(Base, kw_only=True):
    promo_id: str | None = None
    name: str | None = None
    kind: PromotionKind = "other"
    funded_by: FundedBy = "unknown"
    amount_fen: Fen = 0
    scope: Literal["order", "line"] = "order"
    line_id: str | None = None
    # The goods amount a threshold promotion (满300减30: 30000) needs, where the platform says it as a
    # number; None: not said (FULL_REDUCTION_THRESHOLD then reads the threshold from the name).
    threshold_fen: NonNegFen | None = None


class Presale(Base, kw_only=True):
    """A presale (定金预售) order's stages: the deposit (定金) and the balance (尾款). None of it is set
    for an ordinary order (``CanonicalOrder.presale`` is None); amounts a platform does not say are None."""

    stage: PresaleStage | None = None
    deposit_fen: NonNegFen | None = None  # the deposit
    balance_fen: NonNegFen | None = None  # the balance (尾款)
    paid_fen: NonNegFen | None = None  # paid so far over the stages
    balance_paid: bool = False


class Fee(Base, kw_only=True):
    """A fee on the order: what the buyer paid on top (``payer = "buyer"``), or what the platform,
    a talent or a distributor takes from the seller (``payer = "seller"``, not part of paid_fen)."""

    name: str | None = None  # as the platform wrote it
    kind: FeeKind = "other"
    amount_fen: Fen = 0
    payer: Literal["buyer", "seller"] = "seller"


class ShipmentLine(Base, kw_only=True):
    line_id: str
    qty: Qty


class Shipment(Base, kw_only=True):
    carrier: str | None = None  # the gateway's carrier code (ZTO, SF, …), from the carriers value table
    carrier_platform_code: str | None = None
    carrier_name: str | None = None
    waybill_no: str
    shipped_at: Timestamp | None = None
    lines: list[ShipmentLine] = msgspec.field(default_factory=list)


class Source(Base, kw_only=True):
    via: Literal["pull", "push"] = "push"
    fetched_at: Timestamp | None = None
    raw_sha256: str | None = None


class Fulfilment(Base, kw_only=True):
    """What the rule set's actions chose for the order (``gateway.rules.actions``): the ERP
    document carries it (the ERP dictionary decides where)."""

    tags: list[str] = msgspec.field(default_factory=list)
    carrier: str | None = None  # the gateway's carrier code (SF, ZTO, …)
    warehouse: str | None = None  # the warehouse code stock is taken from
    actions: list[str] = msgspec.field(default_factory=list)  # ids of the actions applied, in order


class CanonicalOrder(Base, kw_only=True):
    """One platform order in the gateway's own words."""

    platform: Platform
    shop_id: str | None = None
    shop_name: str | None = None
    order_id: str
    status: OrderStatus
    platform_status: str | None = None
    hold_reasons: list[HoldReason] = msgspec.field(default_factory=list)
    created_at: Timestamp | None = None
    paid_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    shipped_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    platform_version: str | None = None
    buyer: Buyer = msgspec.field(default_factory=Buyer)
    seller_memo: str | None = None
    receiver: Receiver = msgspec.field(default_factory=Receiver)
    lines: list[Line]
    totals: Totals
    promotions: list[Promotion] = msgspec.field(default_factory=list)
    fees: list[Fee] = msgspec.field(default_factory=list)
    shipments: list[Shipment] = msgspec.field(default_factory=list)
    source: Source = msgspec.field(default_factory=Source)
    presale: Presale | None = None  # a presale (定金预售) order's stages; None for an ordinary order
    fulfilment: Fulfilment = msgspec.field(default_factory=Fulfilment)
