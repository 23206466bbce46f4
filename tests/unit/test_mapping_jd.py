"""The JD dictionary against canonical.md §5, value by value; its status rules, coupon allocation,
money reconciliation and errors; and the hand-written twin in bench/ giving the same orders."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from gateway.errors import MappingError
from gateway.refunds import apply_refund
from gateway.rules.checks import amount_mismatch
from schemas.refund import CanonicalRefund
from tests.unit.mapping_support import CTX, money_gaps, platform_dictionary, read_sample, sample_names, twin_builtins

SAMPLES = sample_names("jd")
ROOT = "jingdong_pop_order_get_responce.orderDetailInfo.orderInfo"


@pytest.fixture(scope="module")
def jd():
    return platform_dictionary("jd")


def _payload(name: str) -> dict[str, Any]:
    return read_sample("jd", name)


def _info(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["jingdong_pop_order_get_responce"]["orderDetailInfo"]["orderInfo"]


def _with(name: str, **changes: Any) -> dict[str, Any]:
    payload = _payload(name)
    _info(payload).update(changes)
    return payload


def _without_receiver(name: str, **changes: Any) -> dict[str, Any]:
    payload = _with(name, **changes)
    del _info(payload)["consigneeInfo"]
    return payload


# ------------------------------------------------------------------ the samples (canonical.md §5)


def test_01_single_wait_stockout(jd) -> None:
    o = jd.translate(_payload("01_single_wait_stockout.json"))
    assert (o.platform, o.order_id) == ("jd", "295612345678")
    assert (o.status, o.platform_status, o.hold_reasons) == ("READY_TO_SHIP", "WAIT_SELLER_STOCK_OUT", [])
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen, t.refunded_fen) == (19900, 0, 0, 19900, 0)
    assert (t.seller_discount_fen, t.platform_discount_fen, t.buyer_fee_fen) == (0, None, 0)
    assert o.completed_at is None  # orderEndTime "0001-01-01 00:00:00"
    assert (o.created_at, o.paid_at, o.updated_at) == (
        "2024-06-18T11:02:33+08:00",
        "2024-06-18T11:02:51+08:00",
        "2024-06-18T11:03:00+08:00",
    )
    assert o.platform_version == o.updated_at and o.shipped_at is None
    (line,) = o.lines
    assert line.line_id == "295612345678:100012345678"  # orderId:skuId
    assert (line.product_id, line.sku_id, line.merchant_sku, line.title) == (
        "10001234567",
        "100012345678",
        "KB-MECH-87-BR",
        "机械键盘 87键 茶轴",
    )
    assert (line.qty, line.unit_price_fen, line.line_total_fen, line.discount_fen, line.paid_fen) == (
        1,
        19900,
        19900,
        0,
        19900,
    )
    assert line.spec == [] and line.discount_source == "allocated" and line.refund.state == "NONE"
    r = o.receiver
    assert (r.name, r.phone, r.pii_state) == ("赵**", "138****1234", "masked")
    # The short province name is completed; fullAddress loses its region prefix down to the street.
    assert (r.province, r.city, r.district, r.street) == ("广东省", "深圳市", "南山区", "粤海街道")
    assert r.detail == "科技南路***号"  # fullAddress "广东深圳市南山区粤海街道科技南路***号"
    assert r.division_codes == {"province": "440000", "city": "440300", "district": "440305"}
    assert r.region_codes == {"province": "19", "city": "1607", "district": "3155", "street": "63117"}
    assert (o.buyer.platform_uid, o.buyer.nick, o.buyer.message, o.seller_memo) == (
        "SAMPLE_OPEN_ID_BUYER_01",
        "jd_****5a2b",
        None,
        None,
    )
    assert o.promotions == [] and o.shipments == [] and o.fees == []
    assert money_gaps(o) == []


def test_02_coupons_line_level_and_allocated(jd) -> None:
    o = jd.translate(_payload("02_multi_line_coupons.json"))
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen) == (46380, 6200, 600, 40780)
    assert (t.seller_discount_fen, t.platform_discount_fen) == (5000, None)
    a, b, c = o.lines
    # 4200 order-level over A 29900 / B 9980 (11980 - 2000 单品) / C 4500 → 2830 / 944 / 426
    assert (a.line_total_fen, a.discount_fen, a.paid_fen) == (29900, 2830, 27070)
    assert (b.line_total_fen, b.discount_fen, b.paid_fen) == (11980, 2944, 9036)  # 2000 line-level + 944
    assert (c.line_total_fen, c.discount_fen, c.paid_fen) == (4500, 426, 4074)
    assert (b.qty, b.unit_price_fen, c.qty, c.unit_price_fen) == (2, 5990, 3, 1500)
    assert all(ln.discount_source == "allocated" for ln in o.lines)
    assert [(p.name, p.kind, p.funded_by, p.amount_fen, p.scope, p.line_id) for p in o.promotions] == [
        ("单品促销", "item_discount", "seller", 2000, "line", b.line_id),
        ("店铺优惠", "coupon", "seller", 3000, "order", None),
        ("京东券", "coupon", "unknown", 1000, "order", None),
        ("京豆", "points", "unknown", 200, "order", None),
    ]
    assert sum(p.amount_fen for p in o.promotions if p.funded_by == "seller") == t.seller_discount_fen
    assert sum(p.amount_fen for p in o.promotions if p.funded_by == "unknown") == 1200
    assert o.completed_at is None  # orderEndTime "1970-01-01 00:00:00"
    assert o.buyer.message == "工作日送货"
    r = o.receiver
    assert (r.province, r.city, r.district, r.street) == ("江苏省", "南京市", "鼓楼区", "宁海路街道")
    # fullAddress "江苏南京市鼓楼区宁海路街道北京西路***号": the street goes too (it is in .street).
    assert r.detail == "北京西路***号"
    assert r.division_codes == {"province": "320000", "city": "320100", "district": "320106"}
    assert r.region_codes == {"province": "12", "city": "904", "district": "3373"}  # townId "0": none
    assert money_gaps(o) == []


def test_03_shipped_with_waybill(jd) -> None:
    o = jd.translate(_payload("03_partial_refund.json"))
    assert o.status == "SHIPPED" and o.hold_reasons == []
    assert (o.totals.goods_fen, o.totals.paid_fen, o.totals.refunded_fen) == (16400, 16400, 0)
    first, second = o.lines
    assert (first.paid_fen, second.paid_fen) == (12800, 3600)
    (ship,) = o.shipments
    assert (ship.waybill_no, ship.carrier_platform_code, ship.carrier) == ("JDVA12345678901", "467", "JD")
    assert [(s.line_id, s.qty) for s in ship.lines] == [(first.line_id, 1), (second.line_id, 1)]
    assert o.seller_memo == "手机壳缺货, 已退款"
    r = o.receiver
    assert (r.province, r.city, r.district, r.street) == ("山东省", "青岛市", "市南区", "香港中路街道")
    assert r.detail == "香港中路***号"  # "山东青岛市市南区香港中路街道香港中路***号": the road stays
    assert r.division_codes == {"province": "370000", "city": "370200", "district": "370202"}
    assert r.region_codes == {"province": "13", "city": "1007", "district": "3519"}
    assert money_gaps(o) == []


def test_03_refund_apply_without_sku_matches_by_amount_for_review(jd) -> None:
    """canonical.md §5: the refund-apply names no skuId; 36.00 matches line B → needs_review, and
    refunded_fen stays 0 until a person confirms it."""
    o = jd.translate(_payload("03_partial_refund.json"))
    raw = read_sample("jd", "03_partial_refund.refundapply.json")
    apply = raw["jingdong_pop_afs_soa_refundapply_queryPageList_responce"]["queryResult"]["result"][0]
    refund = CanonicalRefund(
        platform="jd",
        order_id=apply["orderId"],
        refund_id=str(apply["id"]),
        state="IN_PROGRESS",
        amount_fen=round(apply["applyRefundSum"] * 100),
    )
    after, _ = apply_refund(o, refund)
    assert after.lines[1].refund.needs_review and after.lines[1].refund.amount_fen == 3600
    assert after.lines[0].refund.state == "NONE" and after.totals.refunded_fen == 0


# ------------------------------------------------------------------ regions


def _consignee(**changes: Any) -> dict[str, Any]:
    payload = _payload("02_multi_line_coupons.json")
    _info(payload)["consigneeInfo"].update(changes)
    return payload


# (consigneeInfo changes, (province, city, district, street), detail, division_codes, region_codes);
# ids other than the samples' are made up.
REGION_CASES = [
    # a city without districts: empty city, the city in the county slot, a street in town
    (
        {
            "province": "广东",
            "city": "",
            "county": "中山市",
            "town": "石岐街道",
            "fullAddress": "广东中山市石岐街道孙文中路***号",
        }
        | {"provinceId": "19", "cityId": "0", "countyId": "1658", "townId": "0"},
        ("广东省", "中山市", None, "石岐街道"),
        "孙文中路***号",
        {"province": "440000", "city": "442000"},
        {"province": "19", "district": "1658"},
    ),
    # the same with a township in the county slot and no town: it becomes the street
    (
        {"province": "广东", "city": "", "county": "虎门镇", "town": "", "fullAddress": "广东东莞市虎门镇连升路***号"}
        | {"provinceId": "19", "cityId": "0", "countyId": "0", "townId": "0"},
        ("广东省", "东莞市", None, "虎门镇"),
        "连升路***号",
        {"province": "440000", "city": "441900"},
        {"province": "19"},
    ),
    # fullAddress with the full province name while province is short: the normalised name goes first
    (
        {"fullAddress": "江苏省南京市鼓楼区宁海路街道北京西路***号"},
        ("江苏省", "南京市", "鼓楼区", "宁海路街道"),
        "北京西路***号",
        {"province": "320000", "city": "320100", "district": "320106"},
        {"province": "12", "city": "904", "district": "3373"},
    ),
    # short city and district names: the names as sent are stripped too
    (
        {"city": "南京", "county": "鼓楼", "fullAddress": "江苏南京鼓楼宁海路街道北京西路***号"},
        ("江苏省", "南京市", "鼓楼区", "宁海路街道"),
        "北京西路***号",
        {"province": "320000", "city": "320100", "district": "320106"},
        {"province": "12", "city": "904", "district": "3373"},
    ),
    # a municipality with the district in the city slot (JD's tree): the rest is the street
    (
        {
            "province": "北京",
            "city": "朝阳区",
            "county": "三环以内",
            "town": "",
            "fullAddress": "北京朝阳区三环以内建国路***号",
        }
        | {"provinceId": "1", "cityId": "72", "countyId": "2799", "townId": "0"},
        ("北京市", "北京市", "朝阳区", "三环以内"),
        "建国路***号",
        {"province": "110000", "city": "110100", "district": "110105"},
        {"province": "1", "city": "72", "district": "2799"},
    ),
    # a fullAddress that does not start with the region is kept whole
    (
        {"fullAddress": "北京西路***号"},
        ("江苏省", "南京市", "鼓楼区", "宁海路街道"),
        "北京西路***号",
        {"province": "320000", "city": "320100", "district": "320106"},
        {"province": "12", "city": "904", "district": "3373"},
    ),
]


@pytest.mark.parametrize(
    ("changes", "names", "detail", "division", "ids"),
    REGION_CASES,
    ids=["zhongshan", "dongguan-township", "full-province", "short-names", "municipality", "no-prefix"],
)
def test_regions_normalised_and_detail_stripped(jd, changes, names, detail, division, ids) -> None:
    payload = _consignee(**changes)
    o = jd.translate(payload)
    r = o.receiver
    assert (r.province, r.city, r.district, r.street) == names
    assert (r.detail, r.division_codes, r.region_codes) == (detail, division, ids)
    assert jd.unknown_fields(payload) == []
    assert twin_builtins("jd", payload) == msgspec.to_builtins(o)


def test_no_consignee_no_region(jd) -> None:
    r = jd.translate(_without_receiver("01_single_wait_stockout.json")).receiver
    assert (r.province, r.city, r.district, r.street, r.detail) == (None, None, None, None, None)
    assert r.division_codes is None and r.region_codes is None


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_have_no_unknown_fields(jd, name: str) -> None:
    assert jd.unknown_fields(_payload(name)) == []


def test_new_fields_are_reported(jd) -> None:
    payload = _with("02_multi_line_coupons.json", brandNew="1")
    _info(payload)["couponDetailList"][0]["couponName"] = "x"
    _info(payload)["consigneeInfo"]["encrypt_mobile"] = "##x##"
    assert jd.unknown_fields(payload) == ["brandNew", "consigneeInfo.encrypt_mobile", "couponDetailList[].couponName"]


# ------------------------------------------------------------------ units and edge cases


def test_amounts_as_strings_or_numbers_give_the_same_order(jd) -> None:
    texts = _payload("02_multi_line_coupons.json")
    short = copy.deepcopy(texts)  # "90" as well as "90.00"
    _info(short).update(orderTotalPrice="463.8", freightPrice="6", orderPayment="407.8", sellerDiscount="50")
    _info(short)["itemInfoList"][0]["jdPrice"] = "299"
    numbers = copy.deepcopy(texts)
    _info(numbers).update(orderTotalPrice=463.8, freightPrice=6, orderPayment=407.80, sellerDiscount=50.0)
    _info(numbers)["itemInfoList"][1].update(jdPrice=59.9, itemTotal=2)
    _info(numbers)["couponDetailList"][0].update(couponPrice=20, couponType=30, skuId=100023456782)
    expected = msgspec.to_builtins(jd.translate(texts))
    assert msgspec.to_builtins(jd.translate(short)) == expected
    assert msgspec.to_builtins(jd.translate(numbers)) == expected


@pytest.mark.parametrize("unset", ["", "0001-01-01 00:00:00", "1970-01-01 00:00:00"])
def test_unset_dates_are_none(jd, unset: str) -> None:
    o = jd.translate(_with("01_single_wait_stockout.json", orderEndTime=unset, modified=unset))
    assert o.completed_at is None and o.updated_at is None and o.platform_version is None


@pytest.mark.parametrize(
    ("state", "paid", "receiver", "status", "holds"),
    [
        ("WAIT_SELLER_STOCK_OUT", True, False, "PAID_HOLD", ["NO_RECEIVER"]),
        ("LOCKED", True, False, "PAID_HOLD", ["LOCKED", "NO_RECEIVER"]),
        ("LOCKED", True, True, "PAID_HOLD", ["LOCKED"]),
        ("POP_ORDER_PAUSE", True, True, "PAID_HOLD", ["LOCKED"]),
        ("PAUSE", True, True, "PAID_HOLD", ["LOCKED"]),
        ("TRADE_CANCELED", True, False, "CLOSED_REFUNDED", []),  # closed after payment
        ("TRADE_CANCELED", False, False, "CANCELLED", []),
        ("WAIT_GOODS_RECEIVE_CONFIRM", True, False, "SHIPPED", []),
        ("FINISHED_L", True, True, "COMPLETED", []),
        ("WAIT_SELLER_DELIVERY", True, True, "READY_TO_SHIP", []),
        ("WAIT_SEND_CODE", False, True, "READY_TO_SHIP", []),
    ],
)
def test_status_and_holds(jd, state: str, paid: bool, receiver: bool, status: str, holds: list[str]) -> None:
    changes = {"orderState": state, "paymentConfirmTime": "2024-06-18 11:02:51" if paid else "0001-01-01 00:00:00"}
    payload = (
        _with("01_single_wait_stockout.json", **changes)
        if receiver
        else _without_receiver("01_single_wait_stockout.json", **changes)
    )
    o = jd.translate(payload)
    assert (o.status, o.hold_reasons) == (status, holds)
    if not receiver:
        assert o.receiver.pii_state == "absent" and o.receiver.name is None
        assert jd.unknown_fields(payload) == []


def test_unknown_coupon_type_is_kept_as_other(jd) -> None:
    payload = _payload("02_multi_line_coupons.json")
    _info(payload)["couponDetailList"][3]["couponType"] = "57"
    p = jd.translate(payload).promotions[3]
    assert (p.name, p.kind, p.funded_by, p.amount_fen) == ("couponType=57", "other", "unknown", 200)


def test_tax_is_a_buyer_fee_and_balance_is_payment(jd) -> None:
    o = jd.translate(_with("02_multi_line_coupons.json", taxFee="3.00", balanceUsed="10.00", orderPayment="400.80"))
    t = o.totals
    assert (t.discount_fen, t.buyer_fee_fen, t.paid_fen) == (6200, 300, 41080)
    assert [(f.name, f.amount_fen, f.payer) for f in o.fees] == [("税费", 300, "buyer")]
    assert money_gaps(o) == []


def test_a_discount_missing_from_the_coupons_is_intercepted(jd) -> None:
    """The discount comes from couponDetailList: a wrong freight or a missing coupon is not absorbed."""
    o = jd.translate(_with("02_multi_line_coupons.json", freightPrice="0.00"))
    assert o.totals.discount_fen == 6200 and list(amount_mismatch(o, CTX, {}))


def test_sku_coupon_for_no_line_is_intercepted(jd) -> None:
    payload = _payload("02_multi_line_coupons.json")
    _info(payload)["couponDetailList"][0]["skuId"] = "999"
    o = jd.translate(payload)
    assert sum(ln.discount_fen for ln in o.lines) == 4200 and list(amount_mismatch(o, CTX, {}))


# ------------------------------------------------------------------ errors name the path


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda o: o.__setitem__("orderTotalPrice", True), "orderTotalPrice"),
        (lambda o: o.__setitem__("orderPayment", ["407.80"]), "orderPayment"),
        (lambda o: o.__setitem__("freightPrice", "6.001"), "freightPrice"),
        (lambda o: o.__setitem__("orderPayment", None), "orderPayment"),
        (lambda o: o["itemInfoList"][1].__setitem__("jdPrice", "abc"), "itemInfoList[1].jdPrice"),
        (lambda o: o["itemInfoList"][2].__setitem__("itemTotal", "1.5"), "itemInfoList[2].itemTotal"),
        (lambda o: o["itemInfoList"][0].__setitem__("skuId", ""), "itemInfoList[0].skuId"),
        (lambda o: o["couponDetailList"][1].__setitem__("couponPrice", {"v": 1}), "couponDetailList[1].couponPrice"),
        # a 单品 coupon (type 30) must name its SKU
        (lambda o: o["couponDetailList"][0].__setitem__("skuId", ""), "couponDetailList[0].skuId"),
        (lambda o: o.__setitem__("consigneeInfo", "广东深圳"), "consigneeInfo"),
        (lambda o: o.__setitem__("modified", "yesterday"), "modified"),
        (lambda o: o.__setitem__("taxFee", "-1.00"), "taxFee"),
    ],
)
def test_wrong_types_raise_a_mapping_error_naming_the_path(jd, mutate, path: str) -> None:
    payload = _payload("02_multi_line_coupons.json")
    mutate(_info(payload))
    with pytest.raises(MappingError) as err:
        jd.translate(payload)
    assert err.value.path == f"{ROOT}.{path}" and err.value.code == "PAYLOAD_INVALID"


def test_unknown_order_state_raises_a_mapping_error_naming_the_value(jd) -> None:
    with pytest.raises(MappingError) as err:
        jd.translate(_with("01_single_wait_stockout.json", orderState="WAIT_BUYER_PAY"))
    assert err.value.path == f"{ROOT}.orderState"
    assert "WAIT_BUYER_PAY" in err.value.message_en and "not in table" in err.value.message_en


# ------------------------------------------------------------------ the hand-written twin


@pytest.mark.parametrize("name", SAMPLES)
def test_handwritten_twin_gives_the_same_order(jd, name: str) -> None:
    payload = _payload(name)
    assert twin_builtins("jd", payload) == msgspec.to_builtins(jd.translate(payload))


@pytest.mark.parametrize(
    "payload",
    [
        _without_receiver("01_single_wait_stockout.json", orderState="LOCKED"),
        _without_receiver("02_multi_line_coupons.json", orderState="TRADE_CANCELED"),
        _with("02_multi_line_coupons.json", taxFee="3.00", balanceUsed="10.00", orderPayment="400.80"),
        _with("03_partial_refund.json", logisticsId="1274", waybill="X1"),
    ],
    ids=["locked", "cancelled-after-payment", "tax-and-balance", "other-carrier"],
)
def test_handwritten_twin_agrees_on_edge_cases(jd, payload: dict[str, Any]) -> None:
    assert twin_builtins("jd", payload) == msgspec.to_builtins(jd.translate(payload))
