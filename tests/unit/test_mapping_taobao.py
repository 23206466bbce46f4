"""The Taobao dictionary against canonical.md §5, value by value, and the engine's error behaviour; and the
hand-written twin in bench/ giving the same orders."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.errors import ConfigError, MappingError
from gateway.mapping.dictionary import compile_dictionary
from schemas.order import CanonicalOrder
from tests.unit.mapping_support import platform_dictionary, read_sample, sample_folder, sample_names, twin_builtins

TB = sample_folder("taobao")


@pytest.fixture(scope="module")
def taobao():
    return platform_dictionary("taobao")


def _payload(name: str) -> dict[str, Any]:
    return read_sample("taobao", name)


def _map(d, name: str) -> CanonicalOrder:
    return d.translate(_payload(name))


def test_single_line_paid(taobao) -> None:
    o = _map(taobao, "01_single_line_paid.json")
    assert o.platform == "taobao" and o.order_id == "3958201746231589372"
    assert o.status == "READY_TO_SHIP" and o.platform_status == "WAIT_SELLER_SEND_GOODS" and o.hold_reasons == []
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen, t.refunded_fen) == (8900, 0, 600, 9500, 0)
    (line,) = o.lines
    # single-line rule: the line's `payment` includes freight, so line paid = 8900, and oid == tid
    assert line.line_id == o.order_id == "3958201746231589372"
    assert (line.qty, line.unit_price_fen, line.line_total_fen, line.discount_fen, line.paid_fen) == (
        1,
        8900,
        8900,
        0,
        8900,
    )
    assert line.merchant_sku == "HOME-PILLOW-GRY-4874" and line.sku_id == "5123456789012"
    assert [(s.name, s.value) for s in line.spec] == [("颜色分类", "灰色"), ("尺寸", "48x74cm")]
    assert o.paid_at == "2024-06-18T20:15:41+08:00" and o.created_at == "2024-06-18T20:15:03+08:00"
    assert o.platform_version == "2024-06-18T20:15:42+08:00"
    r = o.receiver
    assert (r.name, r.phone, r.pii_state) == ("王**", "138****1234", "masked")
    assert (r.province, r.city, r.district, r.street, r.postal_code) == (
        "浙江省",
        "杭州市",
        "西湖区",
        "文新街道",
        "310012",
    )
    assert r.country is None and o.buyer.message is None and o.buyer.platform_uid == "AAHs0mEFAKEOpenUid01"


def test_multi_line_coupons(taobao) -> None:
    o = _map(taobao, "02_multi_line_coupons.json")
    t = o.totals
    assert (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen) == (37760, 6000, 0, 31760)
    got = [(ln.qty, ln.unit_price_fen, ln.discount_fen, ln.paid_fen) for ln in o.lines]
    assert got == [(2, 12900, 4662, 21138), (1, 5990, 670, 5320), (3, 1990, 668, 5302)]
    assert all(ln.discount_source == "platform" for ln in o.lines)
    assert len(o.promotions) == 3
    line_level = [p for p in o.promotions if p.scope == "line"]
    assert len(line_level) == 1 and line_level[0].line_id == o.lines[0].line_id == "3961187420016523311"
    assert line_level[0].amount_fen == 2000 and line_level[0].kind == "item_discount"
    kinds = sorted((p.kind, p.amount_fen) for p in o.promotions if p.scope == "order")
    assert kinds == [("coupon", 1000), ("full_reduction", 3000)]
    assert o.buyer.message == "请尽快发货，谢谢" and o.seller_memo == "赠品已备注"
    assert o.lines[0].line_total_fen - o.lines[0].discount_fen == o.lines[0].paid_fen


def test_partial_refund_and_shipment(taobao) -> None:
    o = _map(taobao, "03_partial_refund.json")
    assert o.status == "SHIPPED"
    t = o.totals
    assert (t.goods_fen, t.freight_fen, t.paid_fen) == (10500, 800, 11300)
    first, second = o.lines
    assert second.refund.state == "REFUNDED" and second.refund.refund_ids == ["152345678901234567"]
    # the refunded line's `payment` stays "60.00"; the amount comes from refund.get (refunds endpoint)
    assert second.paid_fen == 6000 and first.refund.state == "NONE"
    (ship,) = o.shipments
    assert (ship.carrier_name, ship.waybill_no) == ("中通快递", "78512345678901")
    assert ship.carrier == "ZTO"  # value table carriers.taobao
    assert [(s.line_id, s.qty) for s in ship.lines] == [(first.line_id, 1)]
    assert ship.shipped_at == "2024-06-16T14:05:12+08:00" and o.shipped_at == "2024-06-16T14:05:12+08:00"


def test_samples_have_no_unknown_fields_and_new_ones_are_reported(taobao) -> None:
    payload = _payload("02_multi_line_coupons.json")
    assert taobao.unknown_fields(payload) == []
    payload["trade_fullinfo_get_response"]["trade"]["live_slot_fee"] = "3.00"
    payload["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]["new_flag"] = 1
    assert taobao.unknown_fields(payload) == ["live_slot_fee", "orders.order[].new_flag"]
    taobao.translate(payload)  # unknown fields are reported, not fatal


def test_ids_beyond_2_53_stay_exact_without_the_string_form(taobao) -> None:
    raw = (TB / "01_single_line_paid.json").read_bytes().replace(b'"tid_str": "3958201746231589372",', b"")
    raw = raw.replace(b'"oid_str": "3958201746231589372",', b"")
    o = taobao.translate(msgspec.json.decode(raw))
    assert o.order_id == "3958201746231589372" and o.lines[0].line_id == "3958201746231589372"


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda t: t["orders"]["order"][0].__setitem__("price", "abc"), "trade.orders.order[0].price"),
        (lambda t: t.__setitem__("status", "NO_SUCH_STATUS"), "trade.status"),
        (lambda t: t.__setitem__("payment", None), "trade.payment"),
        (lambda t: t["orders"].__setitem__("order", {"not": "a list"}), "trade.orders.order"),
        (lambda t: t["orders"]["order"].__setitem__(0, "text"), "trade.orders.order[0]"),
        (lambda t: t.__setitem__("pay_time", "yesterday"), "trade.pay_time"),
        (lambda t: t.__setitem__("total_fee", "89.001"), "trade.total_fee"),
        (lambda t: t.__setitem__("tid_str", 3.9582017462315894e18) or t.pop("tid"), "trade.tid_str"),
    ],
)
def test_bad_values_raise_a_mapping_error_naming_the_path(taobao, mutate, path: str) -> None:
    payload = _payload("01_single_line_paid.json")
    mutate(payload["trade_fullinfo_get_response"]["trade"])
    with pytest.raises(MappingError) as err:
        taobao.translate(payload)
    assert err.value.path == f"trade_fullinfo_get_response.{path}"
    assert err.value.code == "PAYLOAD_INVALID"


def test_whitespace_and_full_width_are_normalised(taobao) -> None:
    payload = _payload("01_single_line_paid.json")
    line = payload["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]
    line["outer_sku_id"] = "\u00a0ＨＯＭＥ-PILLOW-GRY-4874\u200b "
    line["price"] = " 89.00 "
    o = taobao.translate(payload)
    assert o.lines[0].merchant_sku == "HOME-PILLOW-GRY-4874" and o.lines[0].unit_price_fen == 8900


DICT = """
[dictionary]
name = "t"
[fields]
platform = {{ default = "taobao" }}
order_id = {{ path = "id", transform = "id", required = true }}
status = {{ default = "READY_TO_SHIP" }}
"totals.goods_fen" = {{ default = 0 }}
"totals.paid_fen" = {{ {paid} }}
[children.lines]
path = "lines"
[children.lines.fields]
line_id = {{ path = "id", transform = "id" }}
qty = {{ default = 1 }}
unit_price_fen = {{ default = 0 }}
line_total_fen = {{ default = 0 }}
paid_fen = {{ default = 0 }}
"""


@pytest.mark.parametrize(
    ("paid", "message"),
    [
        ("expr = \"__import__('os')\"", "unknown function"),
        ('expr = "order_id.upper()"', "unknown function"),
        ('expr = "[x for x in lines]"', "not allowed"),
        ('expr = "nope + 1"', "unknown name"),
        ('path = "x", transform = "eval"', "unknown transform"),
        ('expr = "totals.paid_fen"', "cycle"),
    ],
)
def test_dictionary_mistakes_are_config_errors(paid: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_dictionary(DICT.format(paid=paid))
    assert message in err.value.message_en


def test_missing_required_target_field_is_caught_at_compile_time() -> None:
    text = DICT.format(paid="default = 0").replace('"totals.goods_fen" = { default = 0 }\n', "")
    with pytest.raises(ConfigError) as err:
        compile_dictionary(text)
    assert "goods_fen" in err.value.message_en


def test_carrier_value_table_unknown_name_is_kept_without_a_code(taobao) -> None:
    """The carriers table has a "*" entry: an unknown carrier is no reason to refuse an order."""
    payload = _payload("03_partial_refund.json")
    for line in payload["trade_fullinfo_get_response"]["trade"]["orders"]["order"]:
        if line.get("logistics_company"):
            line["logistics_company"] = "某某物流"
    (ship,) = taobao.translate(payload).shipments
    assert (ship.carrier, ship.carrier_name) == (None, "某某物流")


def test_value_tables_are_read_with_the_dictionary_and_can_be_overridden(taobao) -> None:
    assert taobao.lookups["carriers.taobao"]["中通快递"] == "ZTO"
    payload = _payload("03_partial_refund.json")
    (ship,) = taobao.translate(payload, {"carriers.taobao": {"中通快递": "ZTO-X"}}).shipments
    assert ship.carrier == "ZTO-X"


@pytest.mark.parametrize(
    ("sample", "names", "codes"),
    [
        ("01_single_line_paid.json", ("浙江省", "杭州市", "西湖区"), ("330000", "330100", "330106")),
        ("02_multi_line_coupons.json", ("上海市", "上海市", "浦东新区"), ("310000", "310100", "310115")),
        ("03_partial_refund.json", ("广东省", "广州市", "天河区"), ("440000", "440100", "440106")),
    ],
)
def test_regions_are_normalised_with_gbt2260_codes(taobao, sample, names, codes) -> None:
    r = _map(taobao, sample).receiver
    assert (r.province, r.city, r.district) == names
    assert r.division_codes == dict(zip(("province", "city", "district"), codes, strict=True))


def test_short_region_names_are_completed(taobao) -> None:
    payload = _payload("01_single_line_paid.json")
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade.update(receiver_state="广东", receiver_city="", receiver_district="东莞市", receiver_town="虎门镇")
    r = taobao.translate(payload).receiver
    assert (r.province, r.city, r.district, r.street) == ("广东省", "东莞市", None, "虎门镇")
    assert r.division_codes == {"province": "440000", "city": "441900"}


# ------------------------------------------------------------------ the hand-written twin


@pytest.mark.parametrize("name", sample_names("taobao"))
def test_handwritten_twin_gives_the_same_order(taobao, name: str) -> None:
    payload = _payload(name)
    assert twin_builtins("taobao", payload) == msgspec.to_builtins(taobao.translate(payload))


# ------------------------------------------------------------------ presale (step trades)


@pytest.mark.parametrize(
    ("stage_code", "paid", "presale"),
    [
        (None, None, None),
        (
            "FRONT_NOPAID_FINAL_NOPAID",
            None,
            {
                "stage": "deposit_unpaid",
                "deposit_fen": None,
                "balance_fen": None,
                "paid_fen": None,
                "balance_paid": False,
            },
        ),
        (
            "FRONT_PAID_FINAL_NOPAID",
            "20.00",
            {
                "stage": "deposit_paid",
                "deposit_fen": 2000,
                "balance_fen": None,
                "paid_fen": 2000,
                "balance_paid": False,
            },
        ),
        (
            "FRONT_PAID_FINAL_PAID",
            "95.00",
            {"stage": "balance_paid", "deposit_fen": None, "balance_fen": None, "paid_fen": 9500, "balance_paid": True},
        ),
    ],
)
def test_step_trades_give_the_presale(taobao, stage_code: str | None, paid: str | None, presale: Any) -> None:
    payload = _payload("01_single_line_paid.json")
    trade = payload["trade_fullinfo_get_response"]["trade"]
    if stage_code is not None:
        trade.update(type="step", step_trade_status=stage_code, step_paid_fee=paid)
    order = taobao.translate(payload)
    assert msgspec.to_builtins(order.presale) == presale
    assert taobao.unknown_fields(payload) == []
    assert twin_builtins("taobao", payload) == msgspec.to_builtins(order)


def test_an_unknown_step_stage_is_a_mapping_error_naming_it(taobao) -> None:
    payload = _payload("01_single_line_paid.json")
    payload["trade_fullinfo_get_response"]["trade"]["step_trade_status"] = "FRONT_PAID_FINAL_LATER"
    with pytest.raises(MappingError) as err:
        taobao.translate(payload)
    assert err.value.path == "trade_fullinfo_get_response.trade.step_trade_status"
