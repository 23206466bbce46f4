"""The Pinduoduo, JD and WeChat Channels refund dictionaries against canonical.md §3 (states) and §5
(the ``03_partial_refund`` companion samples), and the pure helpers of ``gateway.refunds``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.errors import MappingError
from gateway.mapping.dictionary import CompiledDictionary, load_dictionary
from gateway.refunds import apply_refund, decode_refunds, older_version
from tests.support.refunds import sample_order

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "mappings" / "samples"
COMPANION = {
    "pinduoduo": "03_partial_refund.refund_information.json",
    "jd": "03_partial_refund.refundapply.json",
    "wechat_channels": "03_partial_refund.aftersale.json",
}


def _dictionary(platform: str) -> CompiledDictionary:
    return load_dictionary(REPO / "mappings" / "refunds" / f"{platform}.toml")


def _payload(platform: str) -> Any:
    return msgspec.json.decode((SAMPLES / platform / COMPANION[platform]).read_bytes())


def _one(platform: str, payload: Any | None = None):
    refunds, unknown = decode_refunds(_dictionary(platform), _payload(platform) if payload is None else payload)
    assert len(refunds) == 1 and unknown == []
    return refunds[0]


# --------------------------------------------------------------------------- §5 expected values


def test_pinduoduo_line_refund_refunded_qty_1_3990() -> None:
    refund = _one("pinduoduo")
    assert (refund.order_id, refund.refund_id, refund.sku_id) == (
        "240615-994012377645120",
        "17890012345",
        "3234567890123",
    )
    assert (refund.state, refund.qty, refund.amount_fen) == ("REFUNDED", 1, 3990)  # int fen, not yuan
    assert refund.platform_version == refund.updated_at == "2024-06-17T15:40:12+08:00"
    order, changed = apply_refund(sample_order("pinduoduo"), refund)
    (line,) = order.lines
    assert changed and (line.refund.state, line.refund.qty, line.refund.amount_fen) == ("REFUNDED", 1, 3990)
    assert line.refund.refund_ids == ["17890012345"] and not line.refund.needs_review
    assert order.totals.refunded_fen == 3990 and order.totals.paid_fen == 11970


def test_jd_refund_apply_has_no_sku_so_it_is_matched_by_amount_for_review() -> None:
    refund = _one("jd")
    assert (refund.order_id, refund.refund_id, refund.line_id, refund.sku_id) == (
        "295600011122",
        "880012345",
        None,
        None,
    )
    assert (refund.state, refund.amount_fen) == ("IN_PROGRESS", 3600)  # status 1 审核通过: not yet refunded
    assert refund.platform_version == "2024-06-15T09:00:12+08:00"  # the check time
    order, _ = apply_refund(sample_order("jd"), refund)
    a, b = order.lines
    assert b.refund.needs_review and b.refund.amount_fen == 3600 and b.refund.refund_ids == ["880012345"]
    assert a.refund.state == "NONE"
    assert order.totals.refunded_fen == 0
    # even once JD says it was refunded (6 拦截并退款), a guessed line is not counted
    done, _ = apply_refund(order, msgspec.structs.replace(refund, state="REFUNDED"))
    assert done.lines[1].refund.state == "REFUNDED" and done.lines[1].refund.needs_review
    assert done.totals.refunded_fen == 0


def test_wechat_channels_line_b_refunded_qty_1_2990() -> None:
    refund = _one("wechat_channels")
    assert refund.line_id == "10000323456790:2000032345679" and refund.sku_id == "2000032345679"
    assert (refund.state, refund.qty, refund.amount_fen) == ("REFUNDED", 1, 2990)
    assert refund.platform_version == "1718690000"
    order, _ = apply_refund(sample_order("wechat_channels"), refund)
    a, b = order.lines
    assert (b.refund.state, b.refund.qty, b.refund.amount_fen) == ("REFUNDED", 1, 2990)
    assert not b.refund.needs_review and a.refund.state == "NONE"
    assert order.totals.refunded_fen == 2990 and order.totals.paid_fen == 25880


# --------------------------------------------------------------------------- §3 state tables

PDD_STATES = {
    0: "NONE",
    2: "REQUESTED",
    3: "REQUESTED",
    4: "IN_PROGRESS",
    5: "IN_PROGRESS",
    7: "IN_PROGRESS",
    8: "IN_PROGRESS",
    6: "REJECTED",
    9: "REJECTED",
    10: "REFUNDED",
    11: "CLOSED",
    12: "CLOSED",
    13: "CLOSED",
}
JD_STATES = {
    0: "REQUESTED",
    1: "IN_PROGRESS",
    3: "IN_PROGRESS",
    5: "IN_PROGRESS",
    7: "IN_PROGRESS",
    10: "IN_PROGRESS",
    2: "REJECTED",
    4: "REJECTED",
    8: "REJECTED",
    6: "REFUNDED",
    9: "REFUNDED",
}
WX_STATES = {
    "MERCHANT_REFUND_SUCCESS": "REFUNDED",
    "MERCHANT_RETURN_SUCCESS": "REFUNDED",
    "USER_CANCELD": "CLOSED",
    "RETURN_CLOSED": "CLOSED",
    "MERCHANT_FAIL": "CLOSED",
    "MERCHANT_REFUND_RETRY_FAIL": "CLOSED",
    "MERCHANT_REJECT_REFUND": "REJECTED",
    "MERCHANT_REJECT_RETURN": "REJECTED",
    "MERCHANT_REJECT_RESHIP": "REJECTED",
    "MERCHANT_PROCESSING": "IN_PROGRESS",
    "USER_WAIT_RETURN": "IN_PROGRESS",
    "MERCHANT_WAIT_RECEIPT": "IN_PROGRESS",
    "PLATFORM_REFUNDING": "IN_PROGRESS",
    "PLATFORM_REFUND_FAIL": "IN_PROGRESS",
    "SOMETHING_NEW": "IN_PROGRESS",
}


def _jd_page(*records: dict[str, Any]) -> dict[str, Any]:
    page = _payload("jd")
    query = page["jingdong_pop_afs_soa_refundapply_queryPageList_responce"]["queryResult"]
    query["result"], query["totalCount"] = list(records), len(records)
    return page


def _jd_record(**changes: Any) -> dict[str, Any]:
    record = _payload("jd")["jingdong_pop_afs_soa_refundapply_queryPageList_responce"]["queryResult"]["result"][0]
    return record | changes


@pytest.mark.parametrize(("status", "state"), sorted(PDD_STATES.items()))
def test_pinduoduo_states(status: int, state: str) -> None:
    assert _one("pinduoduo", _payload("pinduoduo") | {"after_sales_status": status}).state == state


@pytest.mark.parametrize("status", [1, 14, 21, 32])
def test_pinduoduo_exchange_and_repair_are_not_refunds(status: int) -> None:
    with pytest.raises(MappingError) as err:
        _one("pinduoduo", _payload("pinduoduo") | {"after_sales_status": status})
    assert err.value.path == "after_sales_status" and "not in table" in err.value.message_en


@pytest.mark.parametrize(("status", "state"), sorted(JD_STATES.items()))
def test_jd_states(status: int, state: str) -> None:
    assert _one("jd", _jd_page(_jd_record(status=status))).state == state


@pytest.mark.parametrize(("status", "state"), sorted(WX_STATES.items()))
def test_wechat_channels_states(status: str, state: str) -> None:
    payload = _payload("wechat_channels")
    payload["after_sale_order"]["status"] = status
    assert _one("wechat_channels", payload).state == state


def test_wechat_channels_without_a_status_is_refused() -> None:
    payload = _payload("wechat_channels")
    del payload["after_sale_order"]["status"]
    with pytest.raises(MappingError) as err:
        _one("wechat_channels", payload)
    assert err.value.path == "after_sale_order.status"


# --------------------------------------------------------------------------- a list of refunds


def test_a_jd_page_gives_one_refund_per_record_and_errors_name_the_element() -> None:
    d = _dictionary("jd")
    refunds, unknown = decode_refunds(
        d, _jd_page(_jd_record(), _jd_record(id=880012346, orderId="295600011199", applyRefundSum="12.5", status=6))
    )
    assert [(r.refund_id, r.order_id, r.amount_fen, r.state) for r in refunds] == [
        ("880012345", "295600011122", 3600, "IN_PROGRESS"),
        ("880012346", "295600011199", 1250, "REFUNDED"),
    ]
    assert unknown == []
    _, unknown = decode_refunds(d, _jd_page(_jd_record(newField=1)))
    assert unknown == ["[].newField"]
    with pytest.raises(MappingError) as err:
        decode_refunds(d, _jd_page(_jd_record(), _jd_record(id=2, status="nope")))
    assert err.value.path == "jingdong_pop_afs_soa_refundapply_queryPageList_responce.queryResult.result[1].status"
    with pytest.raises(MappingError) as err:
        decode_refunds(d, _jd_page())
    assert "no refund" in err.value.message_en
    with pytest.raises(MappingError) as err:
        decode_refunds(d, {"jingdong_pop_afs_soa_refundapply_queryPageList_responce": {"code": "0"}})
    assert err.value.path == "jingdong_pop_afs_soa_refundapply_queryPageList_responce.queryResult"


def test_an_object_root_and_a_wrong_shape() -> None:
    d = _dictionary("wechat_channels")
    with pytest.raises(MappingError) as err:
        decode_refunds(d, {"errcode": 0})
    assert err.value.path == "after_sale_order"
    with pytest.raises(MappingError) as err:
        decode_refunds(d, {"after_sale_order": "x"})
    assert err.value.path == "after_sale_order"
    payload = copy.deepcopy(_payload("wechat_channels"))
    payload["after_sale_order"]["refund_info"]["amount"] = "29.9"  # fen must be whole
    with pytest.raises(MappingError) as err:
        decode_refunds(d, payload)
    assert err.value.path == "after_sale_order.refund_info.amount"


def test_older_version() -> None:
    assert older_version("1718502626999", "1718502627000")  # numbers, not text
    assert not older_version("1718502627000", "999")
    assert older_version("2024-06-17T15:40:11+08:00", "2024-06-17T15:40:12+08:00")
    assert not older_version("v1", "v1")
    assert not older_version(None, "v2") and not older_version("v1", None)
