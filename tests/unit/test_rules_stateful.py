"""The rules that read what the database knows of an order (gateway/rules/stateful.py), each with an
order that passes and one that fails: exact code, severity, both messages and path. The facts are
built here as intake would read them (tests/integration/test_stateful_rules_http.py runs the same
rules through intake on a real database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from gateway.ports import FingerprintMatch, StockLevel
from gateway.rules.catalog import RuleContext, Violation
from gateway.rules.facts import Facts, fingerprint
from gateway.versions import diff_orders
from schemas.order import CanonicalOrder, Fulfilment
from tests.unit.test_rules_catalog import RULESET, TABLES, order, setting

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FREIGHT = {"310000": 800, "330000": 800, "440000": 1200, "650000": 3500, "*": 1200}


def judge(o: CanonicalOrder, facts: Facts, *, tables: dict[str, Any] | None = None) -> list[Violation]:
    ctx = RuleContext(shop_id=f"demo-{o.platform}", target="demo-u8", tables=tables or TABLES, facts=facts)
    return RULESET.judge(o, ctx)[1]


def moved(**receiver: Any):
    """A Taobao mutation: the receiver moves (fields of trade_fullinfo_get's flat receiver_*)."""
    return setting(**{f"receiver_{k}": v for k, v in receiver.items()})


def version(o: CanonicalOrder, previous: CanonicalOrder, *, earlier: tuple[datetime, ...] = ()) -> Facts:
    before = msgspec.to_builtins(previous)
    return Facts(
        now=NOW,
        previous=before,
        changes=diff_orders(before, msgspec.to_builtins(o)),
        changed_at=NOW,
        address_changes=earlier,
    )


# --------------------------------------------------------------------------- ADDRESS_CHANGE_REPEATED


def test_the_first_address_change_passes_and_the_second_within_24h_is_held() -> None:
    first = order("taobao", "01_single_line_paid.json")
    changed = order("taobao", "01_single_line_paid.json", moved(address="文三路 100 号 2 幢"))
    assert judge(changed, version(changed, first)) == []  # the first change
    assert judge(changed, version(changed, first, earlier=(NOW - timedelta(hours=30),))) == []  # 30 h ago
    assert judge(changed, version(changed, first, earlier=(NOW - timedelta(hours=3),))) == [
        Violation(
            rule="ADDRESS_CHANGE_REPEATED",
            severity="hold",
            message_zh="收货地址 24 小时内已修改 2 次（detail），转人工审核",
            message_en="The delivery address changed 2 times within 24 h (detail); held for review",
            path="receiver",
        )
    ]


def test_a_version_that_changes_no_address_is_not_an_address_change() -> None:
    first = order("taobao", "01_single_line_paid.json")
    memo = order("taobao", "01_single_line_paid.json", setting(seller_memo="加急"))
    facts = version(memo, first, earlier=(NOW - timedelta(hours=1), NOW - timedelta(hours=2)))
    assert facts.changes is not None and facts.changes.address == ()
    assert judge(memo, facts) == []


# --------------------------------------------------------------------------- ADDRESS_FREIGHT_DIFF


def test_an_address_change_within_15_yuan_of_freight_passes_and_beyond_is_held() -> None:
    tables = {**TABLES, "freight_by_region": FREIGHT}
    zhejiang = order("taobao", "01_single_line_paid.json")  # 浙江省 800
    shanghai = order("taobao", "01_single_line_paid.json", moved(state="上海", city="上海市", district="浦东新区"))
    assert judge(shanghai, version(shanghai, zhejiang), tables=tables) == []
    xinjiang = order(
        "taobao", "01_single_line_paid.json", moved(state="新疆维吾尔自治区", city="乌鲁木齐市", district="天山区")
    )
    assert judge(xinjiang, version(xinjiang, zhejiang), tables=tables) == [
        Violation(
            rule="ADDRESS_FREIGHT_DIFF",
            severity="hold",
            message_zh="改址后运费变化 2700 分（浙江省 800 分 → 新疆维吾尔自治区 3500 分），超过 ±1500 分",
            message_en="The address change moves freight by 2700 fen (浙江省 800 fen → 新疆维吾尔自治区 3500 fen), "
            "more than ±1500 fen",
            path="receiver.province",
        )
    ]
    # Without a freight table for the target the rule's own `freight` parameter is used; with
    # neither it does not run.
    assert judge(xinjiang, version(xinjiang, zhejiang), tables=TABLES) == []


# --------------------------------------------------------------------------- CROSS_CHANNEL_DUPLICATE


def _plain(o: CanonicalOrder) -> CanonicalOrder:
    receiver = msgspec.structs.replace(
        o.receiver, name="王小明", phone="13900001111", pii_state="plain", detail="文三路 90 号"
    )
    return msgspec.structs.replace(o, receiver=receiver)


def test_the_same_receiver_and_skus_on_another_platform_is_held_on_the_same_platform_not() -> None:
    o = _plain(order("taobao", "01_single_line_paid.json"))
    fp = fingerprint(msgspec.to_builtins(o), b"k")
    assert fp is not None and len(fp) == 64 and "13900001111" not in fp
    jd = FingerprintMatch(order_id="01JD", platform="jd", shop_id="demo-jd", platform_order_id="JD77", at=NOW)
    tb = FingerprintMatch(order_id="01TB", platform="taobao", shop_id="demo-taobao", platform_order_id="TB9", at=NOW)
    assert judge(o, Facts(now=NOW, fingerprint=fp, duplicates=())) == []
    assert judge(o, Facts(now=NOW, fingerprint=fp, duplicates=(tb,))) == []  # same platform: not cross-channel
    old = msgspec.structs.replace(jd, at=NOW - timedelta(hours=25))
    assert judge(o, Facts(now=NOW, fingerprint=fp, duplicates=(old,))) == []  # outside the window
    assert judge(o, Facts(now=NOW, fingerprint=fp, duplicates=(jd,))) == [
        Violation(
            rule="CROSS_CHANNEL_DUPLICATE",
            severity="hold",
            message_zh="疑似跨平台重复订单：24 小时内 jd 订单 JD77 的收货人电话、地址和商品相同",
            message_en="Possible cross-channel duplicate: jd order JD77 has the same receiver phone, address and SKUs "
            "within 24 h",
            path="receiver",
        )
    ]


def test_fingerprints_need_a_receiver_in_clear_and_ignore_spacing_and_gifts() -> None:
    o = order("taobao", "01_single_line_paid.json")
    assert o.receiver.pii_state == "masked" and fingerprint(msgspec.to_builtins(o), b"k") is None
    a = msgspec.to_builtins(_plain(o))
    b = msgspec.to_builtins(_plain(o))
    b["receiver"]["detail"] = "文三路９０号"  # full-width digits, no spaces
    b["receiver"]["phone"] = "+86 139-0000-1111"
    b["lines"].append({**b["lines"][0], "line_id": "g", "merchant_sku": "GIFT", "is_gift": True})
    assert fingerprint(a, b"k") == fingerprint(b, b"k")
    assert fingerprint(a, b"k") != fingerprint(a, b"other key")
    b["lines"][0]["merchant_sku"] = "OTHER"
    assert fingerprint(a, b"k") != fingerprint(b, b"k")


# --------------------------------------------------------------------------- OVERSELL


def _level(sku: str, warehouse: str, on_hand: int, reserved: int = 0, pending: int = 0) -> StockLevel:
    return StockLevel(sku=sku, warehouse=warehouse, on_hand=on_hand, reserved=reserved, pending=pending, as_of=NOW)


def test_oversell_in_the_chosen_warehouse_with_safety_stock() -> None:
    o = order("taobao", "01_single_line_paid.json")  # 1 × HOME-PILLOW-GRY-4874, 浙江 → WH-SH
    sku = o.lines[0].merchant_sku
    assert sku == "HOME-PILLOW-GRY-4874" and o.lines[0].qty == 1
    enough = {sku: {"WH-SH": _level(sku, "WH-SH", 10, reserved=3, pending=5)}}  # 2 available
    assert judge(o, Facts(now=NOW, stock=enough)) == []
    assert judge(o, Facts(now=NOW, stock={})) == []  # no count of the SKU: not checked
    short = {sku: {"WH-SH": _level(sku, "WH-SH", 10, reserved=3, pending=7), "WH-GZ": _level(sku, "WH-GZ", 0)}}
    assert judge(o, Facts(now=NOW, stock=short)) == [
        Violation(
            rule="OVERSELL",
            severity="hold",
            message_zh="库存不足：HOME-PILLOW-GRY-4874 在仓库 WH-SH 可用 0（安全库存 0），订单需要 1",
            message_en="Not enough stock: HOME-PILLOW-GRY-4874 in warehouse WH-SH has 0 available (safety stock 0); "
            "the order needs 1",
            path="lines[0].qty",
        )
    ]
    safety = {**TABLES, "safety_stock": {sku: 2}}
    assert [v.rule for v in judge(o, Facts(now=NOW, stock=enough), tables=safety)] == ["OVERSELL"]


def test_the_warehouse_falls_back_when_the_regions_first_is_short() -> None:
    o = order("taobao", "03_partial_refund.json")  # 广东 → WH-GZ first
    skus = [ln.merchant_sku for ln in o.lines]
    gz_short = {s: {"WH-GZ": _level(s, "WH-GZ", 0), "WH-SH": _level(s, "WH-SH", 100)} for s in skus}
    ctx = RuleContext(shop_id="demo-taobao", target="demo-u8", tables=TABLES, facts=Facts(now=NOW, stock=gz_short))
    acted, violations = RULESET.judge(o, ctx)
    assert acted.fulfilment.warehouse == "WH-SH" and violations == []
    ctx = RuleContext(shop_id="demo-taobao", target="demo-u8", tables=TABLES, facts=Facts(now=NOW, stock={}))
    assert RULESET.judge(o, ctx)[0].fulfilment.warehouse == "WH-GZ"


def test_a_newer_version_is_checked_only_for_what_it_adds() -> None:
    o = order("taobao", "01_single_line_paid.json")
    sku = o.lines[0].merchant_sku or ""
    none_left = {sku: {"WH-SH": _level(sku, "WH-SH", 1, pending=1)}}  # its own 1 is reserved already
    same = Facts(now=NOW, previous=msgspec.to_builtins(o), stock=none_left)
    assert judge(o, same) == []
    more = msgspec.structs.replace(o, lines=[msgspec.structs.replace(o.lines[0], qty=3)])
    found = judge(more, Facts(now=NOW, previous=msgspec.to_builtins(o), stock=none_left))
    assert [v.message_en for v in found if v.rule == "OVERSELL"] == [
        "Not enough stock: HOME-PILLOW-GRY-4874 in warehouse WH-SH has 0 available (safety stock 0); the order needs 2"
    ]


def test_without_facts_the_stateful_rules_do_not_run() -> None:
    o = _plain(order("taobao", "01_single_line_paid.json"))
    assert judge(o, Facts()) == []
    assert o.fulfilment == Fulfilment()
