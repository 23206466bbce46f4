"""The rule set's actions (gateway/rules/actions.py, [[actions]] of mappings/rules/default.toml): a
test per action of the default set, on orders from the samples through the real dictionaries."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.errors import ConfigError
from gateway.rules.actions import parse_combo
from gateway.rules.catalog import RuleContext, ruleset_from_text
from gateway.rules.facts import Facts
from schemas.order import Buyer, CanonicalOrder, Line
from tests.unit.test_rules_catalog import RULESET, TABLES, order


def with_lines(o: CanonicalOrder, *skus_qty: tuple[str, int], level: str | None = None) -> CanonicalOrder:
    """``o`` with its first line repeated for each (merchant SKU, quantity), amounts kept whole."""
    template = o.lines[0]
    lines = [
        msgspec.structs.replace(
            template,
            line_id=f"L{i}",
            merchant_sku=sku,
            qty=qty,
            line_total_fen=template.unit_price_fen * qty,
            discount_fen=0,
            paid_fen=template.unit_price_fen * qty,
        )
        for i, (sku, qty) in enumerate(skus_qty)
    ]
    goods = sum(ln.line_total_fen for ln in lines)
    totals = msgspec.structs.replace(
        o.totals, goods_fen=goods, discount_fen=0, paid_fen=goods + o.totals.freight_fen + o.totals.buyer_fee_fen
    )
    return msgspec.structs.replace(o, lines=lines, totals=totals, promotions=[], buyer=Buyer(member_level=level))


def act(o: CanonicalOrder, **facts: Any) -> tuple[CanonicalOrder, list[Any]]:
    ctx = RuleContext(shop_id=f"demo-{o.platform}", target="demo-u8", tables=TABLES, facts=Facts(**facts))
    return RULESET.judge(o, ctx)


def test_love_2026_orders_get_the_vip_love_tag_and_ship_by_sf() -> None:
    base = order("taobao", "01_single_line_paid.json")
    plain, violations = act(with_lines(base, ("HOME-PILLOW-GRY-4874", 1)))
    assert plain.fulfilment.tags == [] and plain.fulfilment.carrier is None and violations == []
    love, violations = act(with_lines(base, ("LOVE-2026", 1), ("HOME-PILLOW-GRY-4874", 1)))
    assert violations == []
    assert love.fulfilment.tags == ["VIP-LOVE"]
    assert love.fulfilment.carrier == "SF"
    assert love.fulfilment.actions == ["love-2026-vip", "vip-love-by-sf", "warehouse-by-region"]


def test_the_warehouse_is_chosen_by_the_receivers_province() -> None:
    guangdong, _ = act(order("taobao", "03_partial_refund.json"))
    zhejiang, _ = act(order("taobao", "01_single_line_paid.json"))
    fujian, _ = act(order("wechat_channels", "02_multi_line_coupons.json"))
    assert (guangdong.fulfilment.warehouse, zhejiang.fulfilment.warehouse, fujian.fulfilment.warehouse) == (
        "WH-GZ",
        "WH-SH",
        "WH-GZ",
    )


def test_the_snack_combination_gets_one_gift_per_combination_for_gold_members_on_douyin() -> None:
    base = order("douyin", "01_single_paid.json")
    combo = with_lines(base, ("SNK-2026-01", 4), ("SNK-2026-02", 3), level="金卡")
    acted, violations = act(combo)
    assert violations == []
    gifts = [ln for ln in acted.lines if ln.added_by]
    assert gifts == [
        Line(
            line_id="gift:snack-combo-gift",
            merchant_sku="SNK-GIFT-2026",
            title="零食礼包（赠品）",
            qty=2,  # 4 × 01 and 3 × 02 hold the 2 × 01 + 1 × 02 combination twice
            unit_price_fen=0,
            line_total_fen=0,
            paid_fen=0,
            is_gift=True,
            added_by="snack-combo-gift",
        )
    ]
    assert "snack-combo-gift" in acted.fulfilment.actions
    # Not a gold member, too few of one SKU, or another platform: no gift.
    assert not [
        ln for ln in act(with_lines(base, ("SNK-2026-01", 4), ("SNK-2026-02", 3), level="银卡"))[0].lines if ln.added_by
    ]
    assert not [
        ln for ln in act(with_lines(base, ("SNK-2026-01", 1), ("SNK-2026-02", 3), level="金卡"))[0].lines if ln.added_by
    ]
    tb = with_lines(order("taobao", "01_single_line_paid.json"), ("SNK-2026-01", 2), ("SNK-2026-02", 1), level="金卡")
    assert not [ln for ln in act(tb)[0].lines if ln.added_by]


def test_judging_again_gives_the_gift_once() -> None:
    combo = with_lines(order("douyin", "01_single_paid.json"), ("SNK-2026-01", 2), ("SNK-2026-02", 1), level="钻石")
    once, _ = act(combo)
    twice, _ = act(once)
    assert (
        [ln.line_id for ln in twice.lines] == [ln.line_id for ln in once.lines] == ["L0", "L1", "gift:snack-combo-gift"]
    )
    assert twice.fulfilment == once.fulfilment


def test_combination_patterns_and_bad_actions_are_refused_with_where() -> None:
    assert parse_combo("SNK-2026-01*2+SNK-2026-02*1") == (("SNK-2026-01", 2), ("SNK-2026-02", 1))
    assert parse_combo("A + B*3") == (("A", 1), ("B", 3))
    head = '[ruleset]\nname = "x"\n[rules.PAID_HOLD]\nseverity = "hold"\nmessage_zh = "z"\nmessage_en = "e"\n'
    for body, what in (
        ('[[actions]]\nid = "a"\ndo = "gift"\n', "needs gift_sku"),
        ('[[actions]]\nid = "a"\ndo = "tag"\ntag = "T"\n[[actions]]\nid = "a"\ndo = "tag"\ntag = "U"\n', "used twice"),
        ('[[actions]]\nid = "a"\ndo = "gift"\ngift_sku = "G"\nwhen = { combo = "A*0" }\n', "above 0"),
        ('[[actions]]\nid = "a"\ndo = "paint"\n', "paint"),
    ):
        with pytest.raises(ConfigError, match=what):
            ruleset_from_text(head + body, origin="test.toml")
