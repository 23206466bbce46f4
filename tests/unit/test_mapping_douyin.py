"""The Douyin dictionary against reference/canonical.md §5, value by value, its edge cases
(reference/platforms.md §3), and its hand-written twin in bench/."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from gateway.errors import MappingError
from gateway.rules.catalog import RuleContext
from gateway.rules.checks import amount_mismatch
from schemas.order import CanonicalOrder
from tests.unit.mapping_support import (
    edge_payloads,
    money,
    platform_dictionary,
    read_sample,
    sample_folder,
    sample_names,
    twin_builtins,
)

DY = sample_folder("douyin")
SAMPLES = sample_names("douyin")
ROOT = "data.shop_order_detail"


@pytest.fixture(scope="module")
def douyin():
    return platform_dictionary("douyin")


def _payload(name: str) -> dict[str, Any]:
    return read_sample("douyin", name)


def _root(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["data"]["shop_order_detail"]


def _map(d, name: str, mutate: Callable[[dict[str, Any]], Any] | None = None) -> CanonicalOrder:
    payload = _payload(name)
    if mutate is not None:
        mutate(_root(payload))
    return d.translate(payload)


# ----------------------------------------------------------------------- canonical.md §5


def test_01_single_paid(douyin) -> None:
    o = _map(douyin, "01_single_paid.json")
    assert (o.platform, o.order_id, o.shop_id, o.shop_name) == (
        "douyin",
        "6921345678901234567",
        "4463798",
        "示例数码专营店",
    )
    assert o.status == "READY_TO_SHIP" and o.hold_reasons == []
    assert o.platform_status == "order_status=2/main_status=2"
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen, t.refunded_fen) == (6900, 0, 0, 6900, 0)
    assert (t.seller_discount_fen, t.platform_discount_fen) == (0, 0)
    (line,) = o.lines
    # single SKU: the SKU order reuses the shop order id
    assert line.line_id == o.order_id == "6921345678901234567"
    assert line.product_id == "3660207428038974001" and line.sku_id == "1784512345678911"
    assert line.merchant_sku == "EAR-BT-01-W" and line.title == "蓝牙耳机 半入耳式"
    assert [(s.name, s.value) for s in line.spec] == [("颜色", "白色")]
    assert money(line) == (1, 6900, 6900, 0, 6900)
    assert line.discount_source == "platform" and line.is_gift is False
    assert (line.refund.state, line.refund.qty, line.refund.amount_fen, line.refund.refund_ids) == (
        "NONE",
        None,
        None,
        [],
    )
    assert o.created_at == "2024-06-18T10:15:10+08:00" and o.paid_at == "2024-06-18T10:15:35+08:00"
    assert o.updated_at == o.platform_version == "2024-06-18T10:15:40+08:00"
    assert o.shipped_at is None and o.completed_at is None  # ship_time / finish_time 0
    assert o.buyer.platform_uid == "1@#SAMPLEOPENID0001" and o.buyer.message is None and o.seller_memo is None
    r = o.receiver
    assert (r.name, r.phone, r.detail) == (
        "##SAMPLE_CIPHER_RECEIVER##",
        "$$SAMPLE_CIPHER_TEL$$",
        "##SAMPLE_CIPHER_DETAIL##",
    )
    assert r.pii_state == "encrypted"
    assert (r.province, r.city, r.district, r.street) == ("四川省", "成都市", "武侯区", "桂溪街道")
    assert r.region_codes == {"province": "51", "city": "510100", "district": "510107", "street": "510107062"}
    assert r.division_codes == {"province": "510000", "city": "510100", "district": "510107"}
    assert o.promotions == [] and o.shipments == []


def test_02_multi_line_coupons(douyin) -> None:
    o = _map(douyin, "02_multi_line_coupons.json")
    assert o.status == "READY_TO_SHIP"
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen) == (20880, 1500, 0, 19380)
    assert (t.seller_discount_fen, t.platform_discount_fen) == (1000, 500)
    assert [ln.line_id for ln in o.lines] == ["6921876543210987651", "6921876543210987652"]
    assert [money(ln) for ln in o.lines] == [(1, 12900, 12900, 927, 11973), (2, 3990, 7980, 573, 7407)]
    assert all(ln.discount_source == "platform" for ln in o.lines)
    assert [(s.name, s.value) for s in o.lines[0].spec] == [("颜色", "海盐蓝"), ("容量", "600ml")]
    got = [(p.promo_id, p.name, p.kind, p.funded_by, p.amount_fen, p.scope, p.line_id) for p in o.promotions]
    assert got == [
        ("7380012345678", "店铺满200减10元券", "coupon", "seller", 1000, "order", None),
        ("7390000000001", "平台跨店每满200减5", "full_reduction", "platform", 500, "order", None),
    ]
    # discount_fen is the platform's promotion_amount (+ promotion_pay_amount, 0 here)
    assert t.discount_fen == _root(_payload("02_multi_line_coupons.json"))["promotion_amount"]
    assert o.buyer.message == "水壶要蓝色的" and o.paid_at == "2024-06-19T22:00:42+08:00"
    r = o.receiver
    assert (r.province, r.city, r.district, r.street) == ("北京市", "北京市", "朝阳区", "望京街道")
    assert r.region_codes == {"province": "11", "city": "110100", "district": "110105", "street": "110105026"}


def test_03_partial_refund_and_shipment(douyin) -> None:
    o = _map(douyin, "03_partial_refund.json")
    assert o.status == "SHIPPED" and o.platform_status == "order_status=3/main_status=3"
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen, t.refunded_fen) == (8980, 0, 0, 8980, 2990)
    mug, coaster = o.lines
    assert money(mug) == (1, 5990, 5990, 0, 5990) and money(coaster) == (1, 2990, 2990, 0, 2990)
    assert (mug.refund.state, mug.refund.amount_fen) == ("NONE", None)
    # refunded before shipping (after_sale_type 2, refund_status 3); amount from the line pay_amount
    assert (coaster.refund.state, coaster.refund.qty, coaster.refund.amount_fen) == ("REFUNDED", None, 2990)
    (ship,) = o.shipments
    assert (ship.carrier_platform_code, ship.carrier, ship.carrier_name) == ("yuantong", "YTO", "圆通快递")
    assert ship.waybill_no == "YT1234567890123" and ship.shipped_at == "2024-06-17T12:55:00+08:00"
    assert [(s.line_id, s.qty) for s in ship.lines] == [("6922000011112222331", 1)]
    assert o.shipped_at == "2024-06-17T12:55:00+08:00" and o.completed_at is None
    assert o.seller_memo == "杯垫缺货已退"
    assert o.receiver.region_codes == {"province": "33", "city": "330200", "district": "330212", "street": "330212009"}


@pytest.mark.parametrize("name", SAMPLES)
def test_money_reconciles_to_the_fen(douyin, name: str) -> None:
    o = _map(douyin, name)
    t = o.totals
    assert sum(ln.paid_fen for ln in o.lines) == t.goods_fen - t.discount_fen
    assert t.paid_fen == t.goods_fen - t.discount_fen + t.freight_fen
    assert all(ln.line_total_fen - ln.discount_fen == ln.paid_fen for ln in o.lines)
    assert list(amount_mismatch(o, RuleContext(shop_id="s", target="t", tables={}), {})) == []
    # what comes out survives the canonical schema's own validation
    assert msgspec.json.decode(msgspec.json.encode(o), type=CanonicalOrder) == o


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_have_no_unknown_fields(douyin, name: str) -> None:
    assert douyin.unknown_fields(_payload(name)) == []


def test_new_fields_are_reported_not_fatal(douyin) -> None:
    payload = _payload("02_multi_line_coupons.json")
    _root(payload)["packing_amount"] = 100
    _root(payload)["sku_order_list"][0]["tax_amount"] = 5
    _root(payload)["promotion_detail"]["platform_discount_detail"]["redpack_info"] = [
        {"redpack_trans_id": "R1", "redpack_amount": 0, "x": 1}
    ]
    assert douyin.unknown_fields(payload) == [
        "packing_amount",
        "promotion_detail.platform_discount_detail.redpack_info[].x",
        "sku_order_list[].tax_amount",
    ]
    douyin.translate(payload)


# -------------------------------------------------------------------------- the twin


def _gift(root: dict[str, Any]) -> None:
    gift = copy.deepcopy(root["sku_order_list"][1])
    gift.update(
        order_id="6921876543210987653",
        given_product_type="FREE",
        item_num=1,
        origin_amount=0,
        sum_amount=0,
        pay_amount=0,
        order_amount=0,
        promotion_amount=0,
        product_name="赠品 杯刷",
    )
    root["sku_order_list"].append(gift)


def _promotion_mix(root: dict[str, Any]) -> None:
    detail = root["promotion_detail"]
    coupon = copy.deepcopy(detail["shop_discount_detail"]["coupon_info"][0])
    coupon.update(coupon_id=7380000000002, coupon_name="平台券 商家出资", coupon_amount=300)
    coupon["share_discount_cost"] = {"platform_cost": 0, "shop_cost": 300, "author_cost": 0}
    detail["platform_discount_detail"]["coupon_info"].append(coupon)
    detail["platform_discount_detail"]["gold_coin_amount"] = 200
    detail["kol_discount_detail"]["redpack_info"].append(
        {
            "redpack_trans_id": "RP1",
            "redpack_amount": 100,
            "share_discount_cost": {"platform_cost": 50, "shop_cost": 0, "author_cost": 50},
        }
    )


def _masked_only(root: dict[str, Any]) -> None:
    for key in ("encrypt_post_receiver", "encrypt_post_tel"):
        root.pop(key)
    root["post_addr"].pop("encrypt_detail")


def _no_receiver(root: dict[str, Any]) -> None:
    for key in (
        "encrypt_post_receiver",
        "encrypt_post_tel",
        "mask_post_receiver",
        "mask_post_tel",
        "post_addr",
        "mask_post_addr",
    ):
        root.pop(key)


def _no_street(root: dict[str, Any]) -> None:
    root["post_addr"].pop("street")
    root["mask_post_addr"].pop("street")


def _plain(root: dict[str, Any]) -> None:
    root.update(post_receiver="刘小明", post_tel="13812341234")
    root["post_addr"]["detail"] = "天府大道1号"


def _pay_discount(root: dict[str, Any]) -> None:
    """A 2.00 payment-channel discount (支付优惠) on SKU B: pay_amount = order_amount - promotion_pay_amount."""
    root.update(promotion_pay_amount=200, pay_amount=19180)
    root["sku_order_list"][1].update(promotion_pay_amount=200, pay_amount=7207)


def _some_ids(root: dict[str, Any]) -> None:
    for addr in (root["post_addr"], root["mask_post_addr"]):
        addr["city"]["id"] = "0"
        addr["street"]["id"] = ""


EDGES: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
    ("big product id, no _str", "01_single_paid.json", lambda r: r["sku_order_list"][0].pop("product_id_str")),
    ("gift line", "02_multi_line_coupons.json", _gift),
    ("promotion mix", "02_multi_line_coupons.json", _promotion_mix),
    ("risk hold", "01_single_paid.json", lambda r: r.update(order_status=105, main_status=105)),
    ("part paid", "01_single_paid.json", lambda r: r.update(order_status=105, main_status=103)),
    ("cod", "01_single_paid.json", lambda r: r.update(pay_type=0)),
    ("masked only", "01_single_paid.json", _masked_only),
    ("no receiver", "01_single_paid.json", _no_receiver),
    ("plain receiver", "01_single_paid.json", _plain),
    ("no street", "03_partial_refund.json", _no_street),
    ("some region ids", "01_single_paid.json", _some_ids),
    (
        "refund requested",
        "03_partial_refund.json",
        lambda r: r["sku_order_list"][1]["after_sale_info"].update(after_sale_status=6, refund_status=1),
    ),
    ("pay discount", "02_multi_line_coupons.json", _pay_discount),
    ("unset times", "03_partial_refund.json", lambda r: r.update(ship_time=0, pay_time="", finish_time=None)),
]


@pytest.mark.parametrize(
    ("label", "payload"), edge_payloads("douyin", EDGES, _root), ids=lambda v: v if isinstance(v, str) else ""
)
def test_handwritten_twin_gives_the_same_order(douyin, label: str, payload: dict[str, Any]) -> None:
    assert twin_builtins("douyin", payload) == msgspec.to_builtins(douyin.translate(payload))


# ------------------------------------------------------------------------ edge cases


def test_ids_above_2_53_stay_exact(douyin) -> None:
    raw = (DY / "01_single_paid.json").read_bytes().replace(b'"product_id_str": "3660207428038974001",', b"")
    raw = raw.replace(b'"order_id": "6921345678901234567"', b'"order_id": 6921345678901234567')
    o = douyin.translate(msgspec.json.decode(raw))
    assert 3660207428038974001 > 2**53
    assert o.lines[0].product_id == "3660207428038974001"
    assert o.order_id == o.lines[0].line_id == "6921345678901234567"


def test_a_float_id_is_refused_naming_the_path(douyin) -> None:
    def mutate(r):
        r["sku_order_list"][0].pop("product_id_str")
        r["sku_order_list"][0]["product_id"] = 3.660207428038974e18

    with pytest.raises(MappingError) as err:
        _map(douyin, "01_single_paid.json", mutate)
    assert err.value.path == f"{ROOT}.sku_order_list[0].product_id"


@pytest.mark.parametrize("unset", [0, "0", "", None])
def test_unset_times_are_null(douyin, unset) -> None:
    o = _map(douyin, "03_partial_refund.json", lambda r: r.update(ship_time=unset, pay_time=unset, finish_time=unset))
    assert (o.shipped_at, o.paid_at, o.completed_at) == (None, None, None)


def test_a_gift_line(douyin) -> None:
    o = _map(douyin, "02_multi_line_coupons.json", _gift)
    gift = o.lines[2]
    assert gift.is_gift is True and money(gift) == (1, 0, 0, 0, 0)
    assert [ln.is_gift for ln in o.lines] == [False, False, True]
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.paid_fen) == (20880, 1500, 19380)


@pytest.mark.parametrize(
    ("mutate", "pii", "name", "phone"),
    [
        (lambda r: None, "encrypted", "##SAMPLE_CIPHER_RECEIVER##", "$$SAMPLE_CIPHER_TEL$$"),
        (_masked_only, "masked", "刘**", "138****1234"),
        (_no_receiver, "absent", None, None),
        (_plain, "plain", "刘小明", "13812341234"),
    ],
    ids=["encrypted", "masked", "absent", "plain"],
)
def test_pii_state(douyin, mutate, pii, name, phone) -> None:
    r = _map(douyin, "01_single_paid.json", mutate).receiver
    assert (r.pii_state, r.name, r.phone) == (pii, name, phone)


def test_masked_receiver_keeps_the_masked_address(douyin) -> None:
    r = _map(douyin, "01_single_paid.json", _masked_only).receiver
    assert r.detail == "天府大道***号" and r.region_codes == {
        "province": "51",
        "city": "510100",
        "district": "510107",
        "street": "510107062",
    }


def test_absent_receiver_has_no_region(douyin) -> None:
    r = _map(douyin, "01_single_paid.json", _no_receiver).receiver
    assert (r.province, r.city, r.district, r.street, r.detail, r.region_codes, r.division_codes) == (None,) * 7


def test_region_codes_without_a_street(douyin) -> None:
    r = _map(douyin, "03_partial_refund.json", _no_street).receiver
    assert r.region_codes == {"province": "33", "city": "330200", "district": "330212"}
    assert r.street is None


def test_region_codes_keep_the_levels_that_have_an_id(douyin) -> None:
    r = _map(douyin, "01_single_paid.json", _some_ids).receiver
    assert r.region_codes == {"province": "51", "district": "510107"}


def test_risk_held_order(douyin) -> None:
    o = _map(douyin, "01_single_paid.json", lambda r: r.update(order_status=105, main_status=105))
    assert o.status == "PAID_HOLD" and o.hold_reasons == ["RISK_REVIEW"]
    assert o.platform_status == "order_status=105/main_status=105"


@pytest.mark.parametrize(
    ("order_status", "main_status", "status"),
    [
        (1, 1, "PENDING_PAYMENT"),
        (1, 103, "PENDING_PAYMENT"),
        (105, 103, "PENDING_PAYMENT"),  # 部分支付: not paid yet
        (105, 105, "PAID_HOLD"),
        (2, 2, "READY_TO_SHIP"),
        (101, 101, "PARTIALLY_SHIPPED"),
        (3, 3, "SHIPPED"),
        (3, 22, "SHIPPED"),  # a refunded line does not close a shipped order
        (5, 5, "COMPLETED"),
        (4, 4, "CANCELLED"),
        (4, 21, "CLOSED_REFUNDED"),
        (4, 22, "CLOSED_REFUNDED"),
        (4, 39, "CLOSED_REFUNDED"),
        (2, None, "READY_TO_SHIP"),
        (2, 777, "READY_TO_SHIP"),  # an unknown main_status defers to order_status
    ],
)
def test_status_map(douyin, order_status, main_status, status) -> None:
    o = _map(douyin, "01_single_paid.json", lambda r: r.update(order_status=order_status, main_status=main_status))
    assert o.status == status
    assert o.hold_reasons == (["RISK_REVIEW"] if status == "PAID_HOLD" else [])


def test_every_status_code_of_canonical_md_is_in_the_tables(douyin) -> None:
    tables = douyin.spec.tables
    assert set(tables["status"]) == {"1", "105", "2", "101", "3", "4", "5"}
    assert {k for k, v in tables["status_pair"].items() if v} == {"4/21", "4/22", "4/39"}
    assert tables["status_main"]["103"] == "PENDING_PAYMENT"
    assert {k: v for k, v in tables["refund"].items()} == {
        "0": "NONE",
        "1": "IN_PROGRESS",
        "2": "IN_PROGRESS",
        "3": "REFUNDED",
        "4": "REJECTED",
    }


@pytest.mark.parametrize(
    ("refund_status", "after_sale_status", "state"),
    [
        (0, 0, "NONE"),
        (1, 7, "IN_PROGRESS"),
        (2, 11, "IN_PROGRESS"),
        (3, 12, "REFUNDED"),
        (3, 28, "REFUNDED"),  # money went back: that wins
        (4, 0, "REJECTED"),
        (1, 6, "REQUESTED"),
        (1, 28, "CLOSED"),  # the buyer withdrew: refund_status stays 1 (D1)
        (0, 27, "REJECTED"),
        (None, None, "NONE"),
    ],
)
def test_line_refund_state(douyin, refund_status, after_sale_status, state) -> None:
    def mutate(r):
        r["sku_order_list"][1]["after_sale_info"] = {
            "after_sale_status": after_sale_status,
            "refund_status": refund_status,
        }

    o = _map(douyin, "03_partial_refund.json", mutate)
    line = o.lines[1]
    assert line.refund.state == state
    assert line.refund.amount_fen == (2990 if state == "REFUNDED" else None)
    assert o.totals.refunded_fen == (2990 if state == "REFUNDED" else 0)


def test_a_pay_discount_counts_as_a_discount(douyin) -> None:
    o = _map(douyin, "02_multi_line_coupons.json", _pay_discount)
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.paid_fen) == (20880, 1700, 19180)
    assert [(ln.discount_fen, ln.paid_fen) for ln in o.lines] == [(927, 11973), (773, 7207)]
    assert list(amount_mismatch(o, RuleContext(shop_id="s", target="t", tables={}), {})) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r["sku_order_list"][0].update(sum_amount=0),
        lambda r: r["sku_order_list"][1].update(item_num=1),
        lambda r: r["sku_order_list"][1].update(promotion_amount=0),
        lambda r: r.update(promotion_amount=1000),
        lambda r: r.update(pay_amount=19080, modify_amount=-300),  # a price change the dictionary does not read
        lambda r: r.update(post_amount=600),
    ],
    ids=["sum_amount", "item_num", "sku promotion", "order promotion", "modify_amount", "freight"],
)
def test_figures_that_do_not_add_up_are_intercepted(douyin, mutate) -> None:
    """Each amount is the platform's own figure, none derived from another, so a payload whose figures
    disagree gives an order that AMOUNT_MISMATCH stops instead of amounts that silently add up."""
    o = _map(douyin, "02_multi_line_coupons.json", mutate)
    assert list(amount_mismatch(o, RuleContext(shop_id="s", target="t", tables={}), {}))


def test_cash_on_delivery_has_no_paid_at(douyin) -> None:
    assert _map(douyin, "01_single_paid.json", lambda r: r.update(pay_type=0)).paid_at is None
    assert _map(douyin, "01_single_paid.json", lambda r: r.update(pay_type=12)).paid_at is None


def test_promotions_funded_by_who_bears_the_cost(douyin) -> None:
    o = _map(douyin, "02_multi_line_coupons.json", _promotion_mix)
    got = [(p.promo_id, p.kind, p.funded_by, p.amount_fen) for p in o.promotions]
    assert got == [
        ("7380012345678", "coupon", "seller", 1000),
        ("7380000000002", "coupon", "seller", 300),  # a platform coupon the shop pays for
        ("7390000000001", "full_reduction", "platform", 500),
        (None, "points", "platform", 200),  # gold_coin_amount
        ("RP1", "redpack", "talent", 100),  # split cost: the block's own funder
    ]


def test_carrier_unknown_to_the_value_table_is_kept_without_a_code(douyin) -> None:
    o = _map(douyin, "03_partial_refund.json", lambda r: r["logistics_info"][0].update(company="xinkuaidi"))
    (ship,) = o.shipments
    assert (ship.carrier_platform_code, ship.carrier) == ("xinkuaidi", None)


def test_logistics_without_a_waybill_is_no_shipment(douyin) -> None:
    o = _map(douyin, "03_partial_refund.json", lambda r: r["logistics_info"][0].update(tracking_no=""))
    assert o.shipments == []


def test_amounts_as_numeric_text_are_read(douyin) -> None:
    o = _map(
        douyin,
        "02_multi_line_coupons.json",
        lambda r: r["sku_order_list"][1].update(pay_amount="7407", origin_amount=" 3990 "),
    )
    assert money(o.lines[1]) == (2, 3990, 7980, 573, 7407)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda r: r["sku_order_list"][1].__setitem__("pay_amount", "abc"), "sku_order_list[1].pay_amount"),
        (lambda r: r["sku_order_list"][1].__setitem__("origin_amount", 39.9), "sku_order_list[1].origin_amount"),
        (lambda r: r["sku_order_list"][1].__setitem__("sum_amount", True), "sku_order_list[1].sum_amount"),
        (lambda r: r["sku_order_list"][0].__setitem__("item_num", [1]), "sku_order_list[0].item_num"),
        (lambda r: r["sku_order_list"][0].pop("pay_amount"), "sku_order_list[0].pay_amount"),
        (lambda r: r.__setitem__("pay_amount", {"v": 19380}), "pay_amount"),
        (lambda r: r.__setitem__("post_amount", "6.5"), "post_amount"),
        (lambda r: r.__setitem__("order_status", None), "order_status"),
        (lambda r: r.__setitem__("create_time", "yesterday"), "create_time"),
        (lambda r: r["sku_order_list"].__setitem__(0, "text"), "sku_order_list[0]"),
        (
            lambda r: r["promotion_detail"]["shop_discount_detail"]["coupon_info"][0].__setitem__(
                "coupon_amount", "ten"
            ),
            "promotion_detail.shop_discount_detail.coupon_info[0].coupon_amount",
        ),
        (
            lambda r: r["sku_order_list"][1]["after_sale_info"].__setitem__("refund_status", 9),
            "sku_order_list[1].after_sale_info.refund_status",
        ),
        (lambda r: r["sku_order_list"][1].__setitem__("item_num", -2), "sku_order_list[1].item_num"),
    ],
)
def test_bad_values_raise_a_mapping_error_naming_the_path(douyin, mutate, path: str) -> None:
    with pytest.raises(MappingError) as err:
        _map(douyin, "02_multi_line_coupons.json", mutate)
    assert err.value.path == f"{ROOT}.{path}"
    assert err.value.code == "PAYLOAD_INVALID"


def test_unknown_status_code_names_the_value(douyin) -> None:
    with pytest.raises(MappingError) as err:
        _map(douyin, "01_single_paid.json", lambda r: r.update(order_status=999))
    assert err.value.path == f"{ROOT}.order_status"
    assert "999" in err.value.message_en and "status" in err.value.message_en


def test_address_as_a_json_string_is_refused_naming_it(douyin) -> None:
    """platforms.md §3 documents post_addr as an object (only push `data` may be a string): a string is
    an error naming the field, not silently an empty address."""
    import json

    def mutate(r):
        r["post_addr"] = json.dumps(r["post_addr"], ensure_ascii=False)

    with pytest.raises(MappingError) as err:
        _map(douyin, "01_single_paid.json", mutate)
    assert err.value.path == f"{ROOT}.post_addr"


# ------------------------------------------------------------------------ presale (定金预售)


def _phases(*paid: bool) -> list[dict[str, Any]]:
    """A two-stage presale of sample 01's SKU (69.00): 10.00 deposit, 59.00 balance."""
    return [
        {
            "phase_order_id": f"p{n}",
            "total_phase": 2,
            "current_phase": n,
            "sku_price": 6900,
            "pay_success": done,
            "phase_pay_amount": 1000 if n == 1 else 5900,
            "sku_order_id": "6920000000000000001",
            "current_phase_status_desc": "已支付" if done else "待支付",
        }
        for n, done in enumerate(paid, start=1)
    ]


@pytest.mark.parametrize(
    ("phases", "presale"),
    [
        ([], None),
        (
            _phases(False, False),
            {"stage": "deposit_unpaid", "deposit_fen": 1000, "balance_fen": 5900, "paid_fen": 0, "balance_paid": False},
        ),
        (
            _phases(True, False),
            {
                "stage": "deposit_paid",
                "deposit_fen": 1000,
                "balance_fen": 5900,
                "paid_fen": 1000,
                "balance_paid": False,
            },
        ),
        (
            _phases(True, True),
            {"stage": "balance_paid", "deposit_fen": 1000, "balance_fen": 5900, "paid_fen": 6900, "balance_paid": True},
        ),
    ],
)
def test_stage_orders_give_the_presale(douyin, phases: list[dict[str, Any]], presale: Any) -> None:
    payload = read_sample("douyin", "01_single_paid.json")
    _root(payload)["order_phase_list"] = phases
    order = douyin.translate(payload)
    assert msgspec.to_builtins(order.presale) == presale
    assert douyin.unknown_fields(payload) == []
    assert twin_builtins("douyin", payload) == msgspec.to_builtins(order)
