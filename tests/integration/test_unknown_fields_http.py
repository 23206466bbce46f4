"""Unknown fields over real HTTP on real SQLite: orders with a field no dictionary maps are
recorded per platform with a masked sample; a steady small share of the paid amount is suggested
as a channel fee; confirming drafts a dictionary version that goes the governed way (dry run,
a second person's approval, publish) and then maps the field; dismissing is audited."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.support.gateway import SAMPLES, RunningGateway

pytestmark = pytest.mark.integration

SAMPLE = msgspec.json.decode((SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes())


def _order(i: int, **extra: Any) -> bytes:
    payload = msgspec.json.decode(msgspec.json.encode(SAMPLE))
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["tid"] = trade["tid_str"] = f"39611874200155{i:05d}"
    for line in trade["orders"]["order"]:
        line["oid"] = line["oid_str"] = f"{trade['tid_str']}{line['oid_str'][-2:]}"
    for promo in trade["promotion_details"]["promotion_detail"]:
        promo["id"] = (
            trade["tid_str"] if str(promo["id"]) == SAMPLE_TID else f"{trade['tid_str']}{str(promo['id'])[-2:]}"
        )
    for key, value in extra.items():
        trade[key] = value(trade) if callable(value) else value
    return msgspec.json.encode(payload)


SAMPLE_TID = SAMPLE["trade_fullinfo_get_response"]["trade"]["tid_str"]


def _call(gw: RunningGateway, method: str, path: str, role: str = "it", **kw: Any):
    with gw.client(role) as c:
        return c.request(method, path, **kw)


def _fields(gw: RunningGateway, **params: str) -> dict[str, dict[str, Any]]:
    r = _call(gw, "GET", "/v1/mappings/unknown-fields", params=params)
    assert r.status_code == 200, r.text
    return {f["path"]: f for f in r.json()["items"]}


def test_a_new_fee_is_recorded_suggested_confirmed_and_then_mapped(gateway: RunningGateway) -> None:
    # 直播坑位费: 5% of what the buyer paid, order after order; and a text field with a phone-like value
    for i in range(6):
        body = _order(
            i, live_slot_fee=lambda t: f"{int(t['payment'].split('.')[0]) * 0.05:.2f}", buyer_alt="13900001111"
        )
        with gateway.client("platform") as c:
            r = c.post("/v1/orders/taobao", content=body)
        assert r.status_code == 202, r.text
        assert "live_slot_fee" in r.json().get("unknown_fields", [])
    # the repeat of an order is not a new sighting
    with gateway.client("platform") as c:
        assert c.post("/v1/orders/taobao", content=_order(0, live_slot_fee="15.88", buyer_alt="1")).status_code == 200

    fields = _fields(gateway, platform="taobao")
    fee = fields["live_slot_fee"]
    assert (fee["count"], fee["numeric"], fee["state"]) == (6, 6, "new")
    assert fee["first_seen"] <= fee["last_seen"] and fee["share_of_paid"] == pytest.approx(0.05, abs=0.001)
    assert fee["suggestion"]["target"] == "channel_fee" and "渠道费用" in fee["suggestion"]["reason_zh"]
    assert "0000" not in fields["buyer_alt"]["sample"]  # masked: the digits in the middle are gone
    assert _call(gateway, "GET", "/v1/mappings/unknown-fields", role="platform").status_code == 403

    # confirm → a draft by this person; a second person approves; publish
    r = _call(gateway, "POST", f"/v1/mappings/unknown-fields/{fee['id']}/confirm")
    assert r.status_code == 201, r.text
    draft = r.json()["draft"]
    assert r.json()["target"] == "channel_fee" and draft["state"] == "draft"
    assert _call(gateway, "POST", f"/v1/mappings/unknown-fields/{fee['id']}/confirm").status_code == 409
    assert _call(gateway, "POST", f"/v1/mappings/versions/{draft['id']}/dry-run").status_code == 200
    assert _call(gateway, "POST", f"/v1/mappings/versions/{draft['id']}/approve", "admin").status_code == 200
    assert _call(gateway, "POST", f"/v1/mappings/versions/{draft['id']}/publish").status_code == 200

    with gateway.client("platform") as c:
        r = c.post("/v1/orders/taobao", content=_order(99, live_slot_fee="12.34"))
    assert r.status_code == 202, r.text
    assert "live_slot_fee" not in r.json().get("unknown_fields", [])
    order = gateway.order(r.json()["id"])
    assert [(f["name"], f["kind"], f["amount_fen"], f["payer"]) for f in order["fees"]] == [
        ("live_slot_fee", "channel_fee", 1234, "seller")
    ]
    assert order["mapping_version"] == draft["mapping_version"] and draft["version"] == "2"

    # dismissing the other field; both decisions are audited with who made them
    alt = fields["buyer_alt"]
    assert _call(gateway, "POST", f"/v1/mappings/unknown-fields/{alt['id']}/dismiss").json()["state"] == "dismissed"
    assert _fields(gateway, state="dismissed").keys() == {"buyer_alt"}
    with gateway.client("auditor") as c:
        audit = c.get("/v1/audit", params={"limit": 1000}).json()["items"]
    actions = {e["action"]: e for e in audit if e["action"].startswith("unknown_field.")}
    assert set(actions) == {"unknown_field.confirmed", "unknown_field.dismissed"}
    assert actions["unknown_field.confirmed"]["data"]["draft_id"] == draft["id"]
    assert "13900001111" not in str(audit)


def test_no_suggestion_needs_a_named_target(gateway: RunningGateway) -> None:
    with gateway.client("platform") as c:
        assert c.post("/v1/orders/taobao", content=_order(1, odd_flag="x")).status_code == 202
    field = _fields(gateway)["odd_flag"]
    assert field["suggestion"]["target"] is None
    r = _call(gateway, "POST", f"/v1/mappings/unknown-fields/{field['id']}/confirm")
    assert r.status_code == 422 and r.json()["code"] == "NO_SUGGESTED_TARGET"
    bad = _call(gateway, "POST", f"/v1/mappings/unknown-fields/{field['id']}/confirm", json={"target": "x"})
    assert bad.status_code == 400
    ok = _call(gateway, "POST", f"/v1/mappings/unknown-fields/{field['id']}/confirm", json={"target": "ignore"})
    assert ok.status_code == 201 and ok.json()["target"] == "ignore"
    assert _call(gateway, "POST", "/v1/mappings/unknown-fields/999999/dismiss").status_code == 404
