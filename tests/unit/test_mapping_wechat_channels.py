"""The WeChat Channels dictionary against reference/canonical.md §5, value by value, its edge cases
(reference/platforms.md §5), and its hand-written twin in bench/."""

from __future__ import annotations

import copy
import json
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

WX = sample_folder("wechat_channels")
SAMPLES = sample_names("wechat_channels")
ROOT = "order"


@pytest.fixture(scope="module")
def wechat():
    return platform_dictionary("wechat_channels")


def _payload(name: str) -> dict[str, Any]:
    return read_sample("wechat_channels", name)


def _map(d, name: str, mutate: Callable[[dict[str, Any]], Any] | None = None) -> CanonicalOrder:
    payload = _payload(name)
    if mutate is not None:
        mutate(payload["order"])
    return d.translate(payload)


def _address(order: dict[str, Any]) -> dict[str, Any]:
    return order["order_detail"]["delivery_info"]["address_info"]


# ----------------------------------------------------------------------- canonical.md §5


def test_01_single_paid(wechat) -> None:
    o = _map(wechat, "01_single_paid.json")
    assert (o.platform, o.order_id, o.shop_id, o.shop_name) == ("wechat_channels", "3719012345678901234", None, None)
    assert o.status == "READY_TO_SHIP" and o.platform_status == "20" and o.hold_reasons == []
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen, t.refunded_fen) == (6800, 0, 0, 6800, 0)
    assert (t.seller_discount_fen, t.platform_discount_fen) == (0, None)
    (line,) = o.lines
    assert line.line_id == "10000123456789:2000012345678"
    assert (line.product_id, line.sku_id, line.merchant_sku) == ("10000123456789", "2000012345678", "COF-YN-454")
    assert line.title == "云南小粒咖啡豆 454g" and [(s.name, s.value) for s in line.spec] == [("烘焙度", "中深烘")]
    assert money(line) == (1, 6800, 6800, 0, 6800)
    assert line.discount_source == "platform" and line.is_gift is False
    assert (line.refund.state, line.refund.qty, line.refund.amount_fen) == ("NONE", None, None)
    assert o.created_at == "2024-06-18T16:40:00+08:00" and o.paid_at == "2024-06-18T16:40:28+08:00"
    assert o.updated_at == o.platform_version == "2024-06-18T16:40:30+08:00"
    assert (o.shipped_at, o.completed_at) == (None, None)
    assert o.buyer.platform_uid == "oSAMPLE_OPENID_0001" and o.buyer.message is None and o.seller_memo is None
    r = o.receiver
    assert (r.name, r.phone, r.detail, r.pii_state) == ("黄**", "138****1234", "东风西路***号", "masked")
    assert (r.province, r.city, r.district, r.street, r.postal_code) == ("云南省", "昆明市", "五华区", None, "650031")
    assert r.region_codes is None  # the platform sends no region ids
    assert r.division_codes == {"province": "530000", "city": "530100", "district": "530102"}
    assert o.promotions == [] and o.shipments == []


def test_02_multi_line_coupons(wechat) -> None:
    o = _map(wechat, "02_multi_line_coupons.json")
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen) == (14880, 1000, 0, 13880)
    assert (t.seller_discount_fen, t.platform_discount_fen) == (1000, None)
    assert [ln.line_id for ln in o.lines] == ["10000223456789:2000022345678", "10000223456790:2000022345679"]
    # merchant coupon 1000 split 598 / 402 by the platform (estimate_price / real_price)
    assert [money(ln) for ln in o.lines] == [(1, 8900, 8900, 598, 8302), (2, 2990, 5980, 402, 5578)]
    got = [(p.promo_id, p.name, p.kind, p.funded_by, p.amount_fen, p.scope, p.line_id) for p in o.promotions]
    assert got == [("301234567890", None, "coupon", "seller", 1000, "order", None)]
    assert o.buyer.message == "四件套和枕头一起发"
    assert [(s.name, s.value) for s in o.lines[0].spec] == [("颜色", "燕麦色"), ("尺寸", "1.8m床")]
    r = o.receiver
    assert (r.province, r.city, r.district, r.detail) == ("福建省", "厦门市", "思明区", "莲前西路***号***室")


def test_03_partial_refund_and_shipment(wechat) -> None:
    o = _map(wechat, "03_partial_refund.json")
    assert o.status == "SHIPPED" and o.platform_status == "30"
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen, t.refunded_fen) == (25880, 0, 0, 25880, 2990)
    quilt, pillows = o.lines
    assert money(quilt) == (1, 19900, 19900, 0, 19900) and money(pillows) == (2, 2990, 5980, 0, 5980)
    assert quilt.refund.state == "NONE"
    # finish_aftersale_sku_cnt=1 of 2: REFUNDED, qty 1, the unit's paid share
    assert (pillows.refund.state, pillows.refund.qty, pillows.refund.amount_fen) == ("REFUNDED", 1, 2990)
    (ship,) = o.shipments
    assert (ship.carrier_platform_code, ship.carrier, ship.carrier_name) == ("SF", "SF", "顺丰速运")
    assert ship.waybill_no == "SF1400000000002" and ship.shipped_at == "2024-06-17T07:20:00+08:00"
    assert [(s.line_id, s.qty) for s in ship.lines] == [(quilt.line_id, 1), (pillows.line_id, 2)]
    assert o.shipped_at == "2024-06-17T07:20:00+08:00"
    assert o.seller_memo == "枕头退1只"


@pytest.mark.parametrize("name", SAMPLES)
def test_money_reconciles_to_the_fen(wechat, name: str) -> None:
    o = _map(wechat, name)
    t = o.totals
    assert sum(ln.paid_fen for ln in o.lines) == t.goods_fen - t.discount_fen
    assert t.paid_fen == t.goods_fen - t.discount_fen + t.freight_fen
    assert sum(ln.line_total_fen for ln in o.lines) == t.goods_fen
    assert list(amount_mismatch(o, RuleContext(shop_id="s", target="t", tables={}), {})) == []
    assert msgspec.json.decode(msgspec.json.encode(o), type=CanonicalOrder) == o


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_have_no_unknown_fields(wechat, name: str) -> None:
    assert wechat.unknown_fields(_payload(name)) == []


def test_new_fields_are_reported_not_fatal(wechat) -> None:
    payload = _payload("02_multi_line_coupons.json")
    payload["order"]["order_detail"]["price_info"]["deduction_price"] = 100
    payload["order"]["order_detail"]["product_infos"][1]["change_price"] = 5500
    assert wechat.unknown_fields(payload) == [
        "order_detail.price_info.deduction_price",
        "order_detail.product_infos[].change_price",
    ]
    wechat.translate(payload)


# -------------------------------------------------------------------------- edge cases


def _gift(order: dict[str, Any]) -> None:
    gift = copy.deepcopy(order["order_detail"]["product_infos"][0])
    gift.update(
        product_id="10000123456790",
        sku_id="2000012345679",
        title="赠品 咖啡滤纸",
        sku_code="GIFT-FILTER",
        out_sku_id="GIFT-FILTER",
        sale_price=0,
        real_price=0,
        estimate_price=0,
        is_free_gift=True,
        sku_attrs=[],
    )
    order["order_detail"]["product_infos"].append(gift)


def _under_review(order: dict[str, Any]) -> None:
    delivery = order["order_detail"]["delivery_info"]
    delivery["address_under_review"] = dict(delivery["address_info"], detail_info="南屏街***号")


def _no_address(order: dict[str, Any]) -> None:
    order["order_detail"]["delivery_info"].pop("address_info")


def _plain(order: dict[str, Any]) -> None:
    _address(order).update(user_name="黄小明", tel_number="13812341234", detail_info="东风西路1号")


def _house_number(order: dict[str, Any]) -> None:
    _address(order)["house_number"] = "3栋2单元"


def _in_aftersale(order: dict[str, Any]) -> None:
    order["order_detail"]["product_infos"][1].update(on_aftersale_sku_cnt=1, finish_aftersale_sku_cnt=0)


def _finder(order: dict[str, Any]) -> None:
    price = order["order_detail"]["price_info"]
    price.update(finder_discounted_price=300, order_price=13580, discounted_price=1300)
    order["order_detail"]["product_infos"][0].update(real_price=8002, estimate_price=8002, finder_discounted_price=300)


def _unset_times(order: dict[str, Any]) -> None:
    order["create_time"] = 0
    order["order_detail"]["pay_info"]["pay_time"] = ""


def _big_ids(raw: bytes) -> bytes:
    raw = raw.replace(b'"order_id": "3719012345678901234"', b'"order_id": 3719012345678901234')
    return raw.replace(b'"product_id": "10000123456789"', b'"product_id": 10000123456789')


EDGES: list[tuple[str, str, Callable[[dict[str, Any]], Any]]] = [
    ("gift line", "01_single_paid.json", _gift),
    ("address under review", "01_single_paid.json", _under_review),
    ("under review after shipping", "03_partial_refund.json", _under_review),
    ("group buy forming", "01_single_paid.json", lambda o: o.update(status=13)),
    ("gift order waiting", "01_single_paid.json", lambda o: (o.update(status=12), _no_address(o))),
    ("pay later", "01_single_paid.json", lambda o: o["order_detail"]["pay_info"].update(payment_method=2)),
    ("no address", "01_single_paid.json", _no_address),
    ("plain", "01_single_paid.json", _plain),
    ("house number", "01_single_paid.json", _house_number),
    ("in after-sale", "03_partial_refund.json", _in_aftersale),
    ("finder discount", "02_multi_line_coupons.json", _finder),
    ("unset times", "01_single_paid.json", _unset_times),
]


def _edge_payloads() -> list[tuple[str, dict[str, Any]]]:
    out = edge_payloads("wechat_channels", EDGES, lambda payload: payload["order"])
    out.append(("big ids", msgspec.json.decode(_big_ids((WX / "01_single_paid.json").read_bytes()))))
    return out


@pytest.mark.parametrize(("label", "payload"), _edge_payloads(), ids=lambda v: v if isinstance(v, str) else "")
def test_handwritten_twin_gives_the_same_order(wechat, label: str, payload: dict[str, Any]) -> None:
    assert twin_builtins("wechat_channels", payload) == msgspec.to_builtins(wechat.translate(payload))


def test_ids_above_2_53_stay_exact(wechat) -> None:
    o = wechat.translate(msgspec.json.decode(_big_ids((WX / "01_single_paid.json").read_bytes())))
    assert 3719012345678901234 > 2**53
    assert o.order_id == "3719012345678901234"
    assert o.lines[0].line_id == "10000123456789:2000012345678"


@pytest.mark.parametrize("unset", [0, "0", "", None])
def test_unset_times_are_null(wechat, unset) -> None:
    def mutate(o):
        o["create_time"] = unset
        o["order_detail"]["pay_info"]["pay_time"] = unset
        o["order_detail"]["delivery_info"]["delivery_product_info"][0]["delivery_time"] = unset

    o = _map(wechat, "03_partial_refund.json", mutate)
    assert (o.created_at, o.paid_at, o.shipped_at, o.shipments[0].shipped_at) == (None, None, None, None)


def test_a_gift_line(wechat) -> None:
    o = _map(wechat, "01_single_paid.json", _gift)
    assert [ln.is_gift for ln in o.lines] == [False, True]
    assert money(o.lines[1]) == (1, 0, 0, 0, 0)
    assert (o.totals.goods_fen, o.totals.paid_fen) == (6800, 6800)


def test_address_under_review_holds_an_order_not_yet_shipped(wechat) -> None:
    o = _map(wechat, "01_single_paid.json", _under_review)
    assert o.status == "PAID_HOLD" and o.hold_reasons == ["ADDRESS_CHANGE_PENDING"]
    assert o.platform_status == "20/address_under_review"
    assert o.receiver.detail == "东风西路***号"  # the current address stands until the change is approved


def test_address_under_review_after_shipping_holds_nothing(wechat) -> None:
    o = _map(wechat, "03_partial_refund.json", _under_review)
    assert o.status == "SHIPPED" and o.hold_reasons == []
    assert o.platform_status == "30/address_under_review"


@pytest.mark.parametrize(
    ("code", "status", "holds"),
    [
        (10, "PENDING_PAYMENT", []),
        (12, "PAID_HOLD", ["NO_RECEIVER"]),
        (13, "PAID_HOLD", ["GROUP_BUY_PENDING"]),
        (20, "READY_TO_SHIP", []),
        (21, "PARTIALLY_SHIPPED", []),
        (30, "SHIPPED", []),
        (100, "COMPLETED", []),
        (200, "CLOSED_REFUNDED", []),
        (250, "CANCELLED", []),
        ("20", "READY_TO_SHIP", []),
    ],
)
def test_status_map(wechat, code, status, holds) -> None:
    o = _map(wechat, "01_single_paid.json", lambda o: o.update(status=code))
    assert (o.status, o.hold_reasons) == (status, holds)


def test_every_status_code_of_canonical_md_is_in_the_table(wechat) -> None:
    assert set(wechat.spec.tables["status"]) == {"10", "12", "13", "20", "21", "30", "100", "200", "250"}


def test_a_gift_order_waiting_for_its_recipient(wechat) -> None:
    o = _map(wechat, "01_single_paid.json", lambda o: (o.update(status=12), _no_address(o)))
    assert o.status == "PAID_HOLD" and o.hold_reasons == ["NO_RECEIVER"]
    assert o.receiver.pii_state == "absent"


def test_pay_later_has_no_paid_at(wechat) -> None:
    assert _map(wechat, "01_single_paid.json", EDGES[5][2]).paid_at is None


@pytest.mark.parametrize(
    ("mutate", "pii", "name", "phone"),
    [
        (None, "masked", "黄**", "138****1234"),
        (_no_address, "absent", None, None),
        (_plain, "plain", "黄小明", "13812341234"),
    ],
    ids=["masked", "absent", "plain"],
)
def test_pii_state(wechat, mutate, pii, name, phone) -> None:
    r = _map(wechat, "01_single_paid.json", mutate).receiver
    assert (r.pii_state, r.name, r.phone) == (pii, name, phone)


def test_absent_address_has_no_region(wechat) -> None:
    r = _map(wechat, "01_single_paid.json", _no_address).receiver
    assert (r.province, r.city, r.district, r.detail, r.postal_code, r.division_codes) == (None,) * 6


def test_virtual_number_when_no_masked_number(wechat) -> None:
    def mutate(o):
        _address(o)["tel_number"] = ""
        _address(o)["tel_number_ext_info"] = {
            "real_tel_number": "138****1234",
            "virtual_tel_number": "17000001234-5678",
        }

    assert _map(wechat, "01_single_paid.json", mutate).receiver.phone == "17000001234-5678"


def test_house_number_joins_the_detail(wechat) -> None:
    assert _map(wechat, "01_single_paid.json", _house_number).receiver.detail == "东风西路***号 3栋2单元"


def test_units_in_after_sale_are_in_progress(wechat) -> None:
    o = _map(wechat, "03_partial_refund.json", _in_aftersale)
    refund = o.lines[1].refund
    assert (refund.state, refund.qty, refund.amount_fen) == ("IN_PROGRESS", 1, None)
    assert o.totals.refunded_fen == 0


def test_a_talent_discount_is_a_promotion(wechat) -> None:
    o = _map(wechat, "02_multi_line_coupons.json", _finder)
    got = [(p.promo_id, p.name, p.kind, p.funded_by, p.amount_fen) for p in o.promotions]
    assert got == [("301234567890", None, "coupon", "seller", 1000), (None, "达人优惠", "other", "talent", 300)]
    t = o.totals
    assert (t.discount_fen, t.seller_discount_fen, t.paid_fen) == (1300, 1000, 13580)
    assert sum(ln.paid_fen for ln in o.lines) == t.goods_fen - t.discount_fen


def test_carrier_unknown_to_the_value_table_is_kept_without_a_code(wechat) -> None:
    def mutate(o):
        o["order_detail"]["delivery_info"]["delivery_product_info"][0]["delivery_id"] = "XYZ"

    (ship,) = _map(wechat, "03_partial_refund.json", mutate).shipments
    assert (ship.carrier_platform_code, ship.carrier) == ("XYZ", None)


def _product(i: int, key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda o: o["order_detail"]["product_infos"][i].__setitem__(key, value)


def _price(key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda o: o["order_detail"]["price_info"].__setitem__(key, value)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (_product(1, "sale_price", "abc"), "order_detail.product_infos[1].sale_price"),
        (_product(1, "real_price", 55.78), "order_detail.product_infos[1].real_price"),
        (_product(0, "sku_cnt", True), "order_detail.product_infos[0].sku_cnt"),
        (_product(0, "sku_cnt", -1), "order_detail.product_infos[0].sku_cnt"),
        (_product(1, "sku_id", None), "order_detail.product_infos[1].sku_id"),
        (_product(1, "is_free_gift", "maybe"), "order_detail.product_infos[1].is_free_gift"),
        (_price("order_price", "138.80"), "order_detail.price_info.order_price"),
        (_price("product_price", None), "order_detail.price_info.product_price"),
        (lambda o: o.__setitem__("update_time", "today"), "update_time"),
        (lambda o: o["order_detail"].__setitem__("product_infos", {"a": 1}), "order_detail.product_infos"),
    ],
)
def test_bad_values_raise_a_mapping_error_naming_the_path(wechat, mutate, path: str) -> None:
    with pytest.raises(MappingError) as err:
        _map(wechat, "02_multi_line_coupons.json", mutate)
    assert err.value.path == f"{ROOT}.{path}"
    assert err.value.code == "PAYLOAD_INVALID"


def test_unknown_status_code_names_the_value(wechat) -> None:
    with pytest.raises(MappingError) as err:
        _map(wechat, "01_single_paid.json", lambda o: o.update(status=15))
    assert err.value.path == f"{ROOT}.status"
    assert "15" in err.value.message_en and "status" in err.value.message_en


def test_address_as_a_json_string_is_refused_naming_it(wechat) -> None:
    """platforms.md §5 documents address_info as an object: a string is an error naming the field."""

    def mutate(o):
        delivery = o["order_detail"]["delivery_info"]
        delivery["address_info"] = json.dumps(delivery["address_info"], ensure_ascii=False)

    with pytest.raises(MappingError) as err:
        _map(wechat, "01_single_paid.json", mutate)
    assert err.value.path == f"{ROOT}.order_detail.delivery_info.address_info"
