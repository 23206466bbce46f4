"""The Pinduoduo dictionary against canonical.md §5, value by value; its status rules, money
reconciliation and errors; and the hand-written twin in bench/ giving the same orders."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from gateway.errors import MappingError
from gateway.refunds import apply_refund
from schemas.refund import CanonicalRefund
from tests.unit.mapping_support import money_gaps, platform_dictionary, read_sample, sample_names, twin_builtins

SAMPLES = sample_names("pinduoduo")
ROOT = "order_info_get_response.order_info"


@pytest.fixture(scope="module")
def pdd():
    return platform_dictionary("pinduoduo")


def _payload(name: str) -> dict[str, Any]:
    return read_sample("pinduoduo", name)


def _info(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["order_info_get_response"]["order_info"]


def _with(name: str, **changes: Any) -> dict[str, Any]:
    payload = _payload(name)
    _info(payload).update(changes)
    return payload


# ------------------------------------------------------------------ the samples (canonical.md §5)


def test_01_single_paid_ciphertext_receiver(pdd) -> None:
    o = pdd.translate(_payload("01_single_paid.json"))
    assert (o.platform, o.order_id) == ("pinduoduo", "240618-375102948861034")
    assert o.status == "READY_TO_SHIP" and o.hold_reasons == []
    assert o.platform_status == (
        "order_status=1/confirm_status=1/group_status=1/risk_control_status=0/refund_status=1/after_sales_status=0"
    )
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen, t.refunded_fen) == (5980, 0, 0, 5980, 0)
    assert (t.seller_discount_fen, t.platform_discount_fen, t.buyer_fee_fen) == (0, 0, 0)
    (line,) = o.lines
    assert line.line_id == "240618-375102948861034:1234567890123"  # order_sn:sku_id
    assert (line.product_id, line.sku_id, line.merchant_sku) == ("512345678901", "1234567890123", "TISSUE-01-6P")
    assert (line.qty, line.unit_price_fen, line.line_total_fen, line.discount_fen, line.paid_fen) == (
        2,
        2990,
        5980,
        0,
        5980,
    )
    assert line.discount_source == "allocated" and not line.is_gift and line.refund.state == "NONE"
    assert line.title == "加厚抽纸 3层 120抽"
    assert [(s.name, s.value) for s in line.spec] == [(None, "原木色"), (None, "6包")]
    r = o.receiver
    assert r.pii_state == "encrypted"
    assert (r.name, r.phone, r.detail) == (
        "~SAMPLE_CIPHERTEXT_NAME~",
        "~SAMPLE_CIPHERTEXT_PHONE~",
        "~SAMPLE_CIPHERTEXT_ADDR~",
    )
    assert (r.country, r.province, r.city, r.district, r.street) == ("中国", "广东省", "深圳市", "南山区", None)
    # GB/T 2260: 南山区 440305 in 深圳市 440300 in 广东省 440000; PDD's own ids province/city/town_id.
    assert r.division_codes == {"province": "440000", "city": "440300", "district": "440305"}
    assert r.region_codes == {"province": "6", "city": "77", "district": "705"}
    assert (o.created_at, o.paid_at, o.updated_at) == (
        "2024-06-18T09:12:45+08:00",
        "2024-06-18T09:12:58+08:00",
        "2024-06-18T09:13:10+08:00",
    )
    assert o.platform_version == o.updated_at and o.shipped_at is None and o.completed_at is None
    assert o.buyer.message is None and o.buyer.platform_uid is None and o.seller_memo is None
    assert o.promotions == [] and o.shipments == [] and o.fees == []
    assert money_gaps(o) == []


def test_01_masks_stand_in_when_the_ciphertext_is_gone(pdd) -> None:
    """After shipping or under risk control PDD sends "" and the masks (陈** / 138****1234)."""
    o = pdd.translate(_with("01_single_paid.json", receiver_name="", receiver_phone="", receiver_address=""))
    r = o.receiver
    assert (r.name, r.phone, r.detail, r.pii_state) == ("陈**", "138****1234", "粤海街道科技南路***号", "masked")


def test_02_order_level_discounts_allocated_and_a_gift_line(pdd) -> None:
    o = pdd.translate(_payload("02_multi_line_coupons.json"))
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen) == (14970, 1500, 600, 14070)
    assert (t.seller_discount_fen, t.platform_discount_fen) == (1000, 500)
    goods, gift = o.lines
    assert (goods.qty, goods.unit_price_fen, goods.line_total_fen, goods.discount_fen, goods.paid_fen) == (
        3,
        4990,
        14970,
        1500,
        13470,
    )
    assert goods.discount_source == "allocated" and not goods.is_gift
    assert gift.is_gift and gift.line_id == "240619-083311557209846:2234567899999:gift"
    assert (gift.qty, gift.unit_price_fen, gift.line_total_fen, gift.discount_fen, gift.paid_fen) == (1, 0, 0, 0, 0)
    assert (gift.sku_id, gift.merchant_sku, gift.title) == ("2234567899999", "GIFT-SLEEVE-R", "赠品:杯套")
    assert gift.discount_source == "none" and gift.refund.state == "NONE"
    assert [(p.name, p.kind, p.funded_by, p.amount_fen, p.scope) for p in o.promotions] == [
        ("商家优惠", "other", "seller", 1000, "order"),
        ("平台优惠", "other", "platform", 500, "order"),
    ]
    assert o.buyer.message == "送人的，不要放发票"  # typed by a person: only trimmed
    r = o.receiver
    assert (r.province, r.city, r.district, r.street) == ("江苏省", "苏州市", "工业园区", None)
    # 苏州工业园区 is a functional zone without a GB/T 2260 code: kept as sent, no district code.
    assert r.division_codes == {"province": "320000", "city": "320500"}
    assert r.region_codes == {"province": "16", "city": "220", "district": "1790"}
    assert money_gaps(o) == []


def test_03_shipped_partial_refund_masks_only(pdd) -> None:
    o = pdd.translate(_payload("03_partial_refund.json"))
    assert o.status == "SHIPPED" and o.hold_reasons == []
    assert (o.totals.goods_fen, o.totals.paid_fen, o.totals.refunded_fen) == (11970, 11970, 0)
    r = o.receiver
    assert (r.name, r.phone, r.detail, r.pii_state) == ("吴**", "135****7788", "珞喻路***号", "masked")
    assert (r.province, r.city, r.district, r.street) == ("湖北省", "武汉市", "洪山区", None)
    assert r.division_codes == {"province": "420000", "city": "420100", "district": "420111"}
    assert r.region_codes == {"province": "17", "city": "258", "district": "2160"}
    (line,) = o.lines
    # after_sales_status=10 is order-level: the goods line is REFUNDED; how many and how much comes
    # from the refund record (pdd.refund.information.get).
    assert line.refund.state == "REFUNDED" and line.refund.qty is None and line.refund.amount_fen is None
    (ship,) = o.shipments
    assert (ship.waybill_no, ship.carrier_platform_code, ship.carrier) == ("YT7412345678901", "85", "YTO")
    assert ship.shipped_at == o.shipped_at == "2024-06-16T10:22:45+08:00"
    assert [(s.line_id, s.qty) for s in ship.lines] == [(line.line_id, 3)]
    assert o.seller_memo == "1件退货退款已处理"
    assert money_gaps(o) == []


def test_03_refund_record_lands_on_the_line_by_sku(pdd) -> None:
    """canonical.md §5: line refund REFUNDED qty 1, 3990 fen (refund detail is int fen)."""
    o = pdd.translate(_payload("03_partial_refund.json"))
    raw = read_sample("pinduoduo", "03_partial_refund.refund_information.json")
    refund = CanonicalRefund(
        platform="pinduoduo",
        order_id=raw["order_sn"],
        refund_id=str(raw["id"]),
        sku_id=raw["sku_id"],
        state="REFUNDED",
        amount_fen=raw["refund_amount"],
        qty=raw["goods_number"],
    )
    after, changed = apply_refund(o, refund)
    (line,) = after.lines
    assert changed and (line.refund.state, line.refund.qty, line.refund.amount_fen) == ("REFUNDED", 1, 3990)
    assert not line.refund.needs_review and after.totals.refunded_fen == 3990


# ------------------------------------------------------------------ regions


# A city without districts sent with an empty city and a short province, its name (or a township
# of it) in the district slot (`town`); ids of 0 are no ids (the other ids are made up).
REGION_CASES = [
    (
        {"province": "广东", "city": "", "town": "东莞市", "province_id": 6, "city_id": 0, "town_id": 1893},
        ("广东省", "东莞市", None, None),
        {"province": "440000", "city": "441900"},
        {"province": "6", "district": "1893"},
    ),
    (
        {"province": "广东", "city": "", "town": "虎门镇", "province_id": 6, "city_id": 0, "town_id": 0},
        ("广东省", "东莞市", None, "虎门镇"),
        {"province": "440000", "city": "441900"},
        {"province": "6"},
    ),
    (
        {
            "province": "广东省",
            "city": "中山市",
            "town": "中山市",
            "province_id": "6",
            "city_id": "1894",
            "town_id": "0",
        },
        ("广东省", "中山市", None, None),
        {"province": "440000", "city": "442000"},
        {"province": "6", "city": "1894"},
    ),
    (
        {"province": "湖北", "city": "武汉", "town": "洪山", "province_id": 0, "city_id": 0, "town_id": 0},
        ("湖北省", "武汉市", "洪山区", None),
        {"province": "420000", "city": "420100", "district": "420111"},
        None,
    ),
]


@pytest.mark.parametrize(
    ("changes", "names", "division", "ids"), REGION_CASES, ids=["dongguan", "humen", "zhongshan", "short"]
)
def test_regions_normalised_with_codes(pdd, changes: dict[str, Any], names, division, ids) -> None:
    payload = _with("03_partial_refund.json", **changes)
    o = pdd.translate(payload)
    r = o.receiver
    assert (r.province, r.city, r.district, r.street) == names
    assert (r.division_codes, r.region_codes) == (division, ids)
    assert r.detail == "珞喻路***号"  # receiver_address is already without the region
    assert pdd.unknown_fields(payload) == []
    assert twin_builtins("pinduoduo", payload) == msgspec.to_builtins(o)


def test_unknown_region_is_kept_without_codes(pdd) -> None:
    o = pdd.translate(_with("01_single_paid.json", province="火星", city="", town=""))
    r = o.receiver
    assert (r.province, r.city, r.district, r.division_codes) == ("火星", None, None, None)
    assert r.region_codes == {"province": "6", "city": "77", "district": "705"}


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_have_no_unknown_fields(pdd, name: str) -> None:
    assert pdd.unknown_fields(_payload(name)) == []


def test_new_fields_are_reported(pdd) -> None:
    payload = _with("02_multi_line_coupons.json", brand_new_flag=1)
    _info(payload)["gift_list"][0]["gift_new"] = "x"
    assert pdd.unknown_fields(payload) == ["brand_new_flag", "gift_list[].gift_new"]


# ------------------------------------------------------------------ units and edge cases


def test_amounts_as_strings_or_numbers_give_the_same_order(pdd) -> None:
    numbers = _payload("02_multi_line_coupons.json")
    strings = copy.deepcopy(numbers)
    info = _info(strings)
    for k in ("goods_amount", "seller_discount", "platform_discount", "discount_amount", "postage", "pay_amount"):
        info[k] = str(info[k])
    info["item_list"][0]["goods_price"] = "49.90"
    info["item_list"][0]["goods_count"] = "3"
    whole = copy.deepcopy(numbers)
    _info(whole).update(postage=6, seller_discount=10, platform_discount=5, discount_amount=15)
    expected = msgspec.to_builtins(pdd.translate(numbers))
    assert msgspec.to_builtins(pdd.translate(strings)) == expected
    assert msgspec.to_builtins(pdd.translate(whole)) == expected


@pytest.mark.parametrize("unset", ["", "0001-01-01 00:00:00", "1970-01-01 00:00:00", "  "])
def test_unset_dates_are_none(pdd, unset: str) -> None:
    o = pdd.translate(_with("03_partial_refund.json", shipping_time=unset, receive_time=unset, confirm_time=unset))
    assert o.shipped_at is None and o.completed_at is None and o.shipments[0].shipped_at is None


@pytest.mark.parametrize(
    ("changes", "status", "holds"),
    [
        ({"group_status": 0}, "PAID_HOLD", ["GROUP_BUY_PENDING"]),
        ({"confirm_status": 0}, "PAID_HOLD", ["GROUP_BUY_PENDING"]),
        ({"group_status": 0, "confirm_status": 0}, "PAID_HOLD", ["GROUP_BUY_PENDING"]),
        ({"risk_control_status": 1}, "PAID_HOLD", ["RISK_REVIEW"]),
        ({"group_status": 0, "risk_control_status": 1}, "PAID_HOLD", ["GROUP_BUY_PENDING", "RISK_REVIEW"]),
        ({"group_status": "0"}, "PAID_HOLD", ["GROUP_BUY_PENDING"]),  # codes as text
        ({"group_status": 0, "pay_time": ""}, "PENDING_PAYMENT", []),  # not paid: not a hold
        ({"confirm_status": 2}, "CANCELLED", []),
        ({"confirm_status": 2, "risk_control_status": 1}, "CANCELLED", []),
        ({"group_status": 2}, "CANCELLED", []),
        ({"order_status": 2}, "SHIPPED", []),
        ({"order_status": 3}, "COMPLETED", []),
        ({"order_status": 2, "risk_control_status": 1}, "SHIPPED", []),  # a hold no longer applies
        ({"pay_time": ""}, "READY_TO_SHIP", []),  # 先用后付: no pay_time, still to ship
    ],
)
def test_status_rules_combine_several_fields(pdd, changes: dict[str, Any], status: str, holds: list[str]) -> None:
    o = pdd.translate(_with("01_single_paid.json", **changes))
    assert (o.status, o.hold_reasons) == (status, holds)


@pytest.mark.parametrize(
    ("code", "state"),
    [(0, "NONE"), (2, "REQUESTED"), (5, "IN_PROGRESS"), (8, "IN_PROGRESS"), (6, "REJECTED"), (9, "REJECTED")]
    + [(10, "REFUNDED"), (11, "CLOSED"), (13, "CLOSED"), (14, "NONE"), (25, "NONE"), (32, "NONE"), (None, "NONE")],
)
def test_line_refund_state_from_after_sales_status(pdd, code: Any, state: str) -> None:
    o = pdd.translate(_with("02_multi_line_coupons.json", after_sales_status=code))
    assert [ln.refund.state for ln in o.lines] == [state, "NONE"]  # the gift takes no refund


def test_three_lines_allocation_remainders_sum_exactly(pdd) -> None:
    """Σ line totals 15004 fen, 1000 fen of discount: 66.71 / 266.86 / 666.42 → 67 / 267 / 666."""
    payload = _payload("02_multi_line_coupons.json")
    info = _info(payload)
    base = info["item_list"][0]
    info["item_list"] = [
        {**base, "sku_id": "1", "goods_price": 10.01, "goods_count": 1},
        {**base, "sku_id": "2", "goods_price": 20.02, "goods_count": 2},
        {**base, "sku_id": "3", "goods_price": 33.33, "goods_count": 3},
    ]
    info.update(
        goods_amount=150.04,
        seller_discount=6.0,
        platform_discount=4.0,
        discount_amount=10.0,
        postage=0,
        pay_amount=140.04,
    )
    o = pdd.translate(payload)
    goods = [ln for ln in o.lines if not ln.is_gift]
    assert [ln.line_total_fen for ln in goods] == [1001, 4004, 9999]
    assert [ln.discount_fen for ln in goods] == [67, 267, 666]
    assert [ln.paid_fen for ln in goods] == [934, 3737, 9333]
    assert [ln.line_id for ln in goods] == [f"{o.order_id}:1", f"{o.order_id}:2", f"{o.order_id}:3"]
    assert money_gaps(o) == []
    assert twin_builtins("pinduoduo", payload) == msgspec.to_builtins(o)


def test_price_change_counts_as_a_seller_discount(pdd) -> None:
    """goods_amount = price × qty − order_change_amount: the change goes back into goods."""
    o = pdd.translate(
        _with("02_multi_line_coupons.json", order_change_amount=5.0, goods_amount=144.7, pay_amount=135.7)
    )
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.seller_discount_fen, t.platform_discount_fen) == (14970, 2000, 1500, 500)
    assert (o.lines[0].discount_fen, o.lines[0].paid_fen) == (2000, 12970)
    assert [(p.name, p.funded_by, p.amount_fen) for p in o.promotions][-1] == ("商家改价", "seller", 500)
    assert money_gaps(o) == []


def test_discount_amount_missing_is_the_sum_of_its_parts(pdd) -> None:
    payload = _payload("02_multi_line_coupons.json")
    del _info(payload)["discount_amount"]
    assert pdd.translate(payload).totals.discount_fen == 1500


def test_buyer_service_fees_are_part_of_paid(pdd) -> None:
    o = pdd.translate(
        _with(
            "02_multi_line_coupons.json",
            service_fee_detail=[{"service_name": "sf_express_fee", "service_fee": 3.0}],
            pay_amount=143.7,
        )
    )
    assert o.totals.buyer_fee_fen == 300 and o.totals.paid_fen == 14370
    assert [(f.name, f.kind, f.amount_fen, f.payer) for f in o.fees] == [
        ("sf_express_fee", "service_fee", 300, "buyer")
    ]
    assert money_gaps(o) == []


def test_gift_of_the_same_sku_keeps_line_ids_unique(pdd) -> None:
    payload = _payload("02_multi_line_coupons.json")
    info = _info(payload)
    info["gift_list"][0]["sku_id"] = info["item_list"][0]["sku_id"]
    ids = [ln.line_id for ln in pdd.translate(payload).lines]
    assert len(set(ids)) == 2


def test_extra_parcels_are_shipments(pdd) -> None:
    payload = _with(
        "03_partial_refund.json",
        extra_delivery_list=[{"logistics_id": 85, "tracking_number": "YT7412345678902"}],
        gift_delivery_list=[{"logistics_id": 999, "tracking_number": ""}],
    )
    o = pdd.translate(payload)
    assert [(s.waybill_no, s.carrier_platform_code, s.carrier, len(s.lines)) for s in o.shipments] == [
        ("YT7412345678901", "85", "YTO", 1),
        ("YT7412345678902", "85", "YTO", 0),
    ]
    assert pdd.unknown_fields(payload) == []


# ------------------------------------------------------------------ errors name the path


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda o: o.__setitem__("goods_amount", True), "goods_amount"),
        (lambda o: o.__setitem__("pay_amount", [140.7]), "pay_amount"),
        (lambda o: o.__setitem__("postage", {"v": 6}), "postage"),
        (lambda o: o.__setitem__("discount_amount", "15.001"), "discount_amount"),
        (lambda o: o["item_list"][0].__setitem__("goods_price", "abc"), "item_list[0].goods_price"),
        (lambda o: o["item_list"][0].__setitem__("goods_count", 1.5), "item_list[0].goods_count"),
        (lambda o: o["item_list"][0].__setitem__("sku_id", None), "item_list[0].sku_id"),
        (lambda o: o["gift_list"][0].__setitem__("goods_count", "two"), "gift_list[0].goods_count"),
        (lambda o: o.__setitem__("service_fee_detail", [{"service_fee": "x"}]), "service_fee_detail[0].service_fee"),
        (lambda o: o.__setitem__("pay_time", "yesterday"), "pay_time"),
        (lambda o: o.__setitem__("pay_amount", -1), "pay_amount"),
    ],
)
def test_wrong_types_raise_a_mapping_error_naming_the_path(pdd, mutate, path: str) -> None:
    payload = _payload("02_multi_line_coupons.json")
    mutate(_info(payload))
    with pytest.raises(MappingError) as err:
        pdd.translate(payload)
    assert err.value.path == f"{ROOT}.{path}" and err.value.code == "PAYLOAD_INVALID"


@pytest.mark.parametrize(("field", "value"), [("order_status", 9), ("after_sales_status", 99)])
def test_unknown_codes_raise_a_mapping_error_naming_the_value(pdd, field: str, value: int) -> None:
    with pytest.raises(MappingError) as err:
        pdd.translate(_with("01_single_paid.json", **{field: value}))
    assert err.value.path == f"{ROOT}.{field}"
    assert str(value) in err.value.message_en and "not in table" in err.value.message_en


def test_not_a_pdd_response(pdd) -> None:
    with pytest.raises(MappingError) as err:
        pdd.translate({"trade_fullinfo_get_response": {}})
    assert err.value.path == "order_info_get_response"


# ------------------------------------------------------------------ the hand-written twin


@pytest.mark.parametrize("name", SAMPLES)
def test_handwritten_twin_gives_the_same_order(pdd, name: str) -> None:
    payload = _payload(name)
    assert twin_builtins("pinduoduo", payload) == msgspec.to_builtins(pdd.translate(payload))


@pytest.mark.parametrize(
    "changes",
    [
        {"group_status": 0, "risk_control_status": 1},
        {"confirm_status": 2},
        {"group_status": 0, "pay_time": ""},
        {"order_change_amount": 5.0, "goods_amount": 144.7, "pay_amount": 135.7},
        {"service_fee_detail": [{"service_name": "sf_express_fee", "service_fee": 3.0}], "pay_amount": 143.7},
        {"receiver_name": "", "receiver_phone": "", "after_sales_status": 4},
        {"extra_delivery_list": [{"logistics_id": 85, "tracking_number": "YT2"}], "tracking_number": "YT1"},
        {"province": "", "city": "", "town": "", "province_id": 0, "city_id": 0, "town_id": 0},
        {"province": "火星", "city": "", "town": "x"},
    ],
)
def test_handwritten_twin_agrees_on_edge_cases(pdd, changes: dict[str, Any]) -> None:
    payload = _with("02_multi_line_coupons.json", **changes)
    assert twin_builtins("pinduoduo", payload) == msgspec.to_builtins(pdd.translate(payload))


# ------------------------------------------------------------------ presale (定金订单)


def _step(stage: int, deposit: str, paid: str) -> dict[str, Any]:
    return {
        "advanced_paid_fee": deposit,
        "step_paid_fee": paid,
        "step_discount_amount": "0.00",
        "step_trade_status": stage,
    }


@pytest.mark.parametrize(
    ("changes", "presale"),
    [
        ({}, None),
        ({"trade_type": 0, "step_order_info": None}, None),
        (
            {"trade_type": 1, "step_order_info": _step(0, "0.00", "0.00")},
            {"stage": "deposit_unpaid", "deposit_fen": 0, "balance_fen": None, "paid_fen": 0, "balance_paid": False},
        ),
        (
            {"trade_type": 1, "step_order_info": _step(1, "20.00", "20.00")},
            {
                "stage": "deposit_paid",
                "deposit_fen": 2000,
                "balance_fen": None,
                "paid_fen": 2000,
                "balance_paid": False,
            },
        ),
        (
            {"trade_type": 1, "step_order_info": _step(2, "20.00", "140.70")},
            {
                "stage": "balance_paid",
                "deposit_fen": 2000,
                "balance_fen": None,
                "paid_fen": 14070,
                "balance_paid": True,
            },
        ),
        # A deposit order without its stage: a presale whose balance is not known to be paid.
        (
            {"trade_type": 1, "step_order_info": None},
            {"stage": None, "deposit_fen": None, "balance_fen": None, "paid_fen": None, "balance_paid": False},
        ),
    ],
)
def test_deposit_orders_give_the_presale(pdd, changes: dict[str, Any], presale: Any) -> None:
    payload = _with("02_multi_line_coupons.json", **changes)
    order = pdd.translate(payload)
    assert msgspec.to_builtins(order.presale) == presale
    assert pdd.unknown_fields(payload) == []
    assert twin_builtins("pinduoduo", payload) == msgspec.to_builtins(order)
