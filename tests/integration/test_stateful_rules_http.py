"""The rules that read the database, through intake over real HTTP on SQLite with the sandbox U8:
order versions and their changes on the timeline, repeated address changes, freight jumps,
cross-channel duplicates, oversell against stock reported by POST /v1/stock, and the actions'
choices in the U8 document."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from tests.support.gateway import SAMPLES, RunningGateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

TB = msgspec.json.decode((SAMPLES / "taobao" / "01_single_line_paid.json").read_bytes())
PDD = msgspec.json.decode((SAMPLES / "pinduoduo" / "01_single_paid.json").read_bytes())


def taobao(tid: int = 0, modified: str = "2024-06-18 20:15:42", **trade: Any) -> dict[str, Any]:
    payload = copy.deepcopy(TB)
    t = payload["trade_fullinfo_get_response"]["trade"]
    if tid:
        t["tid"], t["tid_str"] = tid, str(tid)
        for i, o in enumerate(t["orders"]["order"]):
            o["oid"], o["oid_str"] = tid * 10 + i, str(tid * 10 + i)
    t["modified"] = modified
    t.update(trade)
    return payload


def post(gw: RunningGateway, platform: str, payload: dict[str, Any]) -> httpx.Response:
    with gw.client("platform") as c:
        return c.post(f"/v1/orders/{platform}", content=msgspec.json.encode(payload))


def rules(r: httpx.Response) -> list[str]:
    return sorted({v["rule"] for v in r.json().get("violations", [])})


def hold_rules(gw: RunningGateway, order_id: str) -> list[str]:
    with gw.client("it") as it:
        items = [i for i in it.get("/v1/review").json()["items"] if i["id"] == order_id]
    return items[0]["rules"] if items else []


@pytest.fixture
def undelivered(gateway: RunningGateway) -> RunningGateway:
    """The gateway with its U8 target stopped by hand: orders stay ``accepted``, as they do while
    a backlog waits, so a newer version can still hold them."""
    with gateway.client("it") as it:
        assert it.post("/v1/targets/u8-demo/stop", json={"reason": "test"}).status_code == 200
    return gateway


def test_versions_record_what_changed_and_a_second_address_change_is_held(undelivered: RunningGateway) -> None:
    gateway = undelivered
    first = post(gateway, "taobao", taobao(modified="2024-06-18 20:15:42"))
    assert first.status_code == 202 and first.json()["status"] == "accepted", first.text
    oid = first.json()["id"]
    moved = taobao(modified="2024-06-18 21:00:00", receiver_address="文一西路***号**幢***室 1 单元")
    second = post(gateway, "taobao", moved)
    assert second.status_code == 202 and second.json()["status"] == "accepted", second.text
    memo = taobao(modified="2024-06-18 21:30:00", receiver_address="文一西路***号**幢***室 1 单元", seller_memo="加急")
    assert post(gateway, "taobao", memo).json()["status"] == "accepted"  # not an address change
    again = taobao(modified="2024-06-18 22:00:00", receiver_address="文二路***号")
    third = post(gateway, "taobao", again)
    assert third.status_code == 202 and third.json()["status"] == "held", third.text
    assert hold_rules(gateway, oid) == ["ADDRESS_CHANGE_REPEATED"]
    assert post(gateway, "taobao", taobao(modified="2024-06-18 20:15:42")).status_code == 200  # an old version

    order = gateway.order(oid)
    updates = [e for e in order["timeline"] if e["kind"] == "order.updated"]
    assert [u["detail"]["changes"] for u in updates] == [
        {"address": ["detail"]},
        {"memo": True},
        {"address": ["detail"], "memo": True},
    ]
    assert [u["detail"].get("address_changed_at") for u in updates] == [
        "2024-06-18T21:00:00+08:00",
        None,
        "2024-06-18T22:00:00+08:00",
    ]
    with gateway.client("auditor") as c:
        entries = c.get("/v1/audit", params={"limit": 1000}).json()["items"]
    text = msgspec.json.encode(entries).decode()
    assert "文一西路" not in text and "文二路" not in text  # changes are named, never shown
    assert [e["data"]["changes"] for e in entries if e["action"] == "order.updated"][-1] == {
        "address": ["detail"],
        "memo": True,
    }


def test_an_address_change_to_a_far_region_is_held_for_its_freight(undelivered: RunningGateway) -> None:
    gateway = undelivered
    r = post(gateway, "taobao", taobao(tid=3958201746000000001))
    assert r.json()["status"] == "accepted"
    far = taobao(
        tid=3958201746000000001,
        modified="2024-06-18 21:00:00",
        receiver_state="新疆维吾尔自治区",
        receiver_city="乌鲁木齐市",
        receiver_district="天山区",
    )
    held = post(gateway, "taobao", far)
    assert held.status_code == 202 and held.json()["status"] == "held", held.text
    assert hold_rules(gateway, r.json()["id"]) == ["ADDRESS_FREIGHT_DIFF"]
    with gateway.client("it") as it:
        (item,) = [i for i in it.get("/v1/review").json()["items"] if i["id"] == r.json()["id"]]
    (v,) = item["violations"]
    assert v["message_en"].startswith("The address change moves freight by 2700 fen (浙江省 800 fen → 新疆")


def _plain_taobao(tid: int) -> dict[str, Any]:
    return taobao(
        tid=tid, receiver_name="王小明", receiver_mobile="13900001111", receiver_address="文一西路 100 号 3 幢"
    )


def _plain_pdd(order_sn: str) -> dict[str, Any]:
    payload = copy.deepcopy(PDD)
    o = payload["order_info_get_response"]["order_info"]
    o.update(
        order_sn=order_sn,
        province="浙江省",
        city="杭州市",
        town="西湖区",
        receiver_name="王小明",
        receiver_phone="139-0000-1111",
        receiver_address="文一西路100号3幢",
        address="浙江省杭州市西湖区文一西路100号3幢",
    )
    o["item_list"][0]["outer_id"] = "HOME-PILLOW-GRY-4874"
    return payload


def test_the_same_receiver_and_goods_on_another_platform_is_held(gateway: RunningGateway) -> None:
    first = post(gateway, "taobao", _plain_taobao(3958201746000000002))
    assert first.status_code == 202 and first.json()["status"] == "accepted", first.text
    # The same platform again (another Taobao order for the same receiver and goods) is not
    # cross-channel; nor is a masked receiver (the samples), which cannot be compared.
    same = post(gateway, "taobao", _plain_taobao(3958201746000000003))
    assert same.json()["status"] == "accepted", same.text
    assert post(gateway, "pinduoduo", PDD).json()["status"] == "accepted"
    dup = post(gateway, "pinduoduo", _plain_pdd("240618-000000000000001"))
    assert dup.status_code == 202 and dup.json()["status"] == "held", dup.text
    assert hold_rules(gateway, dup.json()["id"]) == ["CROSS_CHANNEL_DUPLICATE"]
    with gateway.client("it") as it:
        (item,) = [i for i in it.get("/v1/review").json()["items"] if i["id"] == dup.json()["id"]]
    assert "taobao order 3958201746000000002 has the same receiver phone" in item["violations"][0]["message_en"]
    with gateway.client("auditor") as c:
        text = c.get("/v1/audit", params={"limit": 1000}).text
    assert "13900001111" not in text and "王小明" not in text


def _stock(gw: RunningGateway, *items: dict[str, Any], role: str = "wms") -> httpx.Response:
    with gw.client(role) as c:
        return c.post("/v1/stock", json={"items": list(items)})


def test_oversell_holds_the_order_that_would_take_stock_nobody_has(gateway: RunningGateway) -> None:
    now = datetime.now(UTC).isoformat()
    sku = "HOME-PILLOW-GRY-4874"  # 1 per order; 浙江 → WH-SH
    r = _stock(gateway, {"sku": sku, "warehouse": "WH-SH", "on_hand": 3, "reserved": 1, "as_of": now})
    assert r.status_code == 202, r.text
    assert post(gateway, "taobao", taobao(tid=3958201746000000011)).json()["status"] == "accepted"
    assert post(gateway, "taobao", taobao(tid=3958201746000000012)).json()["status"] == "accepted"
    third = post(gateway, "taobao", taobao(tid=3958201746000000013))
    assert third.json()["status"] == "held", third.text
    assert hold_rules(gateway, third.json()["id"]) == ["OVERSELL"]
    with gateway.client("wms") as c:
        (level,) = c.get("/v1/stock", params={"sku": sku}).json()["items"]
    assert (level["on_hand"], level["reserved"], level["pending"], level["available"]) == (3, 1, 2, 0)
    # A person approves the held order: it takes the stock anyway, so the level shows it.
    with gateway.client("it") as it:
        r = it.post(f"/v1/review/{third.json()['id']}/approve", json={"reason": "补货已在路上 restock arriving"})
        assert r.status_code == 200, r.text
    with gateway.client("wms") as c:
        (level,) = c.get("/v1/stock", params={"sku": sku}).json()["items"]
    assert (level["pending"], level["available"]) == (3, -1)
    # A new count (the WMS now knows the two orders) starts the gateway's share afresh.
    later = datetime.now(UTC).isoformat()
    assert (
        _stock(gateway, {"sku": sku, "warehouse": "WH-SH", "on_hand": 10, "reserved": 2, "as_of": later}).status_code
        == 202
    )
    assert post(gateway, "taobao", taobao(tid=3958201746000000014)).json()["status"] == "accepted"


def test_the_actions_choices_reach_the_u8_document(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    payload = taobao(tid=3958201746000000021)
    line = payload["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]
    line["outer_sku_id"] = "LOVE-2026"
    r = post(gateway, "taobao", payload)
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    order = gateway.wait_state(r.json()["id"], "delivered")
    assert order["fulfilment"] == {
        "tags": ["VIP-LOVE"],
        "carrier": "SF",
        "warehouse": "WH-SH",
        "actions": ["love-2026-vip", "vip-love-by-sf", "warehouse-by-region"],
    }
    docs = [d for d in sandbox.documents("u8") if d["code"] == order["erp"]["document_no"]]
    assert len(docs) == 1
    doc = docs[0]
    assert (doc["define2"], doc["define3"], doc["define11"]) == ("SF", "WH-SH", "VIP-LOVE")
    assert [ln["inventorycode"] for ln in docs[0]["lines"]] == ["090101"]
