"""Unknown fields: counted per platform with masked samples; numeric ones get a suggested target
from their relation to the order; confirming drafts a dictionary change that compiles and maps."""

from __future__ import annotations

import copy
from pathlib import Path

import msgspec
import pytest

from gateway.errors import ConfigError
from gateway.mapping.dictionary import compile_dictionary, load_dictionary
from gateway.unknown_fields import UnknownFieldTracker, draft_change, mask_sample, suggest

REPO = Path(__file__).resolve().parents[2]
DICT_PATH = REPO / "mappings" / "platforms" / "taobao.toml"
SAMPLE = REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json"


@pytest.fixture(scope="module")
def taobao():
    return load_dictionary(DICT_PATH)


def _orders(n: int, extra: dict[str, object]):
    base = msgspec.json.decode(SAMPLE.read_bytes())
    out = []
    for i in range(n):
        p = copy.deepcopy(base)
        trade = p["trade_fullinfo_get_response"]["trade"]
        paid = 300 + 37 * i  # yuan, varying from order to order
        trade["payment"] = f"{paid}.00"
        for key, value in extra.items():
            trade[key] = value(paid) if callable(value) else value
        out.append(p)
    return out


def _observe(taobao, payloads):
    tracker = UnknownFieldTracker()
    for i, p in enumerate(payloads):
        tracker.observe(taobao, p, taobao.unknown_fields(p), f"2026-11-23T10:00:{i:02d}+08:00")
    return {st.path: st for st in tracker.drain()}


def test_a_steady_small_share_of_paid_is_suggested_as_a_channel_fee(taobao):
    stats = _observe(taobao, _orders(8, {"live_slot_fee": lambda paid: f"{paid * 0.05:.2f}"}))
    st = stats["live_slot_fee"]
    assert (st.count, st.numeric, st.platform) == (8, 8, "taobao")
    assert st.first_seen == "2026-11-23T10:00:00+08:00" and st.last_seen == "2026-11-23T10:00:07+08:00"
    s = suggest(st)
    assert s.target == "channel_fee" and "5.0%" in s.reason_en and "渠道费用" in s.reason_zh


def test_too_few_sightings_erratic_values_duplicates_and_zeros(taobao):
    assert suggest(_observe(taobao, _orders(3, {"x_fee": "1.00"}))["x_fee"]).target is None
    erratic = _observe(taobao, _orders(8, {"x_fee": lambda paid: str((paid * 7919) % 250)}))["x_fee"]
    assert suggest(erratic).target is None
    dup = _observe(taobao, _orders(6, {"payment_copy": lambda paid: f"{paid}.00"}))["payment_copy"]
    s = suggest(dup)
    assert s.target == "ignore" and "totals.paid_fen" in s.reason_en
    assert suggest(_observe(taobao, _orders(6, {"z_fee": "0.00"}))["z_fee"]).target == "ignore"


def test_samples_are_masked_and_text_fields_are_counted_without_numbers(taobao):
    stats = _observe(taobao, _orders(2, {"buyer_wechat": "wxid_abcdefgh", "buyer_cell": "13812345678"}))
    assert stats["buyer_wechat"].sample == "w********h" and stats["buyer_wechat"].numeric == 0
    assert "12345" not in stats["buyer_cell"].sample
    assert mask_sample({"a": 1, "b": 2}) == "{a, b}" and mask_sample([1, 2, 3]) == "[3 items]"
    assert mask_sample("王") == "王*"


def test_list_fields_are_recorded_with_their_path(taobao):
    payloads = _orders(2, {})
    for p in payloads:
        p["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]["new_line_flag"] = 1
    st = _observe(taobao, payloads)["orders.order[].new_line_flag"]
    assert st.count == 2 and st.numeric == 0


def test_confirming_a_fee_drafts_a_dictionary_that_maps_it(taobao):
    text = DICT_PATH.read_text(encoding="utf-8")
    new = draft_change(text, taobao, "live_slot_fee", "channel_fee")
    d = compile_dictionary(new)
    payload = _orders(1, {"live_slot_fee": "15.35"})[0]
    order = d.translate(payload)
    (fee,) = order.fees
    assert (fee.name, fee.kind, fee.amount_fen, fee.payer) == ("live_slot_fee", "channel_fee", 1535, "seller")
    assert d.unknown_fields(payload) == []
    # No fee field in the payload: no fee line.
    assert d.translate(_orders(1, {})[0]).fees == []


def test_confirming_ignore_adds_the_path_to_the_header_ignore_list(taobao):
    text = DICT_PATH.read_text(encoding="utf-8")
    new = draft_change(text, taobao, "shop_flag", "ignore")
    d = compile_dictionary(new)
    payload = _orders(1, {"shop_flag": "x"})[0]
    assert "shop_flag" in d.spec.dictionary.ignore and d.unknown_fields(payload) == []
    assert d.translate(payload) == taobao.translate(payload)


def test_refused_changes(taobao):
    text = DICT_PATH.read_text(encoding="utf-8")
    with pytest.raises(ConfigError):
        draft_change(text, taobao, "x", "whatever")
    with pytest.raises(ConfigError):
        draft_change(text, taobao, "orders.order[].x", "channel_fee")


def test_a_drafted_change_declares_the_next_version(taobao):
    text = DICT_PATH.read_text(encoding="utf-8")
    assert compile_dictionary(draft_change(text, taobao, "x_fee", "channel_fee")).spec.dictionary.version == "2"
    dotted = text.replace('version = "1"', 'version = "1.4"', 1)
    assert compile_dictionary(draft_change(dotted, taobao, "x_fee", "ignore")).spec.dictionary.version == "1.5"
