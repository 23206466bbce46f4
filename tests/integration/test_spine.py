"""A Taobao order reaches U8 end to end: real SQLite, real HTTP to the gateway and to the sandbox."""

from __future__ import annotations

import json

import msgspec
import pytest

from gateway.demo import rule_breaking_order
from tests.support.gateway import SAMPLES, RunningGateway, gateway_env, run_gateway
from tests.support.servers import RunningSandbox

TB = SAMPLES / "taobao"


def _post(gw: RunningGateway, body: bytes, platform: str = "taobao", role: str = "platform", **headers: str):
    with gw.client(role) as c:
        return c.post(f"/v1/orders/{platform}", content=body, headers={"Content-Type": "application/json", **headers})


def test_every_taobao_sample_becomes_one_u8_document(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    ids = []
    for f in sorted(TB.glob("0?_*[!n].json")):
        if "." in f.stem:
            continue
        r = _post(gateway, f.read_bytes())
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "accepted" and body["platform"] == "taobao"
        assert body["mapping_version"].startswith("1+") and body["rules_version"].startswith("1+")
        ids.append(body["id"])
    assert len(ids) == 3
    orders = [gateway.wait_state(i, "delivered") for i in ids]
    docs = sandbox.documents("u8")
    assert sorted(d["code"] for d in docs) == sorted(o["erp"]["document_no"] for o in orders)
    by_tid = {d["define10"]: d for d in docs}
    multi = by_tid["3961187420015523311"]
    assert multi["custcode"] == "010001" and multi["deptcode"] == "0301"
    assert [(ln["inventorycode"], ln["quantity"]) for ln in multi["lines"]] == [
        ("040101", 2),
        ("040102", 1),
        ("040103", 3),
    ]
    # tax-inclusive line amounts are what the buyer paid per line (canonical.md §5), to the fen
    assert [ln["sum"] for ln in multi["lines"]] == [211.38, 53.2, 53.02]
    for ln in multi["lines"]:
        assert round(ln["money"] + ln["tax"], 2) == ln["sum"]
    order = gateway.order(ids[1])
    assert order["totals"]["paid_fen"] == 31760
    assert [t["kind"] for t in order["timeline"]][:1] == ["order.accepted"]
    assert order["timeline"][-1]["kind"] == "erp.delivered"


def test_the_same_order_twice_is_200_and_one_document(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    body = (TB / "01_single_line_paid.json").read_bytes()
    first = _post(gateway, body)
    assert first.status_code == 202
    second = _post(gateway, body)
    assert second.status_code == 200
    assert second.json() == first.json()
    # the same order at the same platform version but re-serialised: still a repeat
    again = _post(gateway, json.dumps(json.loads(body), ensure_ascii=False, indent=1).encode())
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    gateway.wait_state(first.json()["id"], "delivered")
    assert len(sandbox.documents("u8")) == 1
    adds = [c for c in sandbox.calls("u8") if 'proc="add"' in c["request"]]
    assert len(adds) == 1


def test_rule_breaking_order_is_intercepted_with_audit(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    r = _post(gateway, rule_breaking_order(SAMPLES))
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "ORDER_INTERCEPTED" and body["intercept_id"]
    assert body["message_zh"] and body["message_en"]
    (v,) = body["violations"]
    assert v["rule"] == "COUPON_STACK_LIMIT" and v["severity"] == "reject" and v["path"] == "promotions"
    assert "3" in v["message_en"] and "2" in v["message_en"] and "优惠券" in v["message_zh"]
    with gateway.client("auditor") as c:
        items = c.get("/v1/intercepts", params={"rule": "COUPON_STACK_LIMIT"}).json()["items"]
        assert [i["id"] for i in items] == [body["intercept_id"]]
        assert items[0]["snapshot"]["receiver"]["name"] != "李*" or "*" in items[0]["snapshot"]["receiver"]["name"]
        audit = c.get("/v1/audit").json()["items"]
        intercepted = [e for e in audit if e["action"] == "order.intercepted"]
        assert intercepted and intercepted[0]["subject_id"] == body["intercept_id"]
        assert c.get("/v1/audit/verify").json() == {"ok": True, "checked": len(audit)}
        csv = c.get("/v1/intercepts.csv")
        assert csv.content.startswith("\ufeff".encode()) and "COUPON_STACK_LIMIT" in csv.text
    assert sandbox.documents("u8") == []


def test_paid_hold_is_stored_held_and_never_delivered(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    payload = msgspec.json.decode((TB / "01_single_line_paid.json").read_bytes())
    payload["trade_fullinfo_get_response"]["trade"]["status"] = "PAID_FORBID_CONSIGN"
    r = _post(gateway, msgspec.json.encode(payload))
    assert r.status_code == 202 and r.json()["status"] == "held"
    order = gateway.order(r.json()["id"])
    assert order["state"] == "held" and order["hold_reasons"] == ["GROUP_BUY_PENDING"]
    # a newer platform version that may ship releases it to delivery
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["status"], trade["modified"] = "WAIT_SELLER_SEND_GOODS", "2024-06-18 21:00:00"
    r2 = _post(gateway, msgspec.json.encode(payload))
    assert r2.status_code == 202 and r2.json()["status"] == "accepted"
    gateway.wait_state(r.json()["id"], "delivered")
    assert len(sandbox.documents("u8")) == 1


def test_u8_rejection_becomes_a_dead_letter_with_u8_message(sandbox: RunningSandbox, tmp_path, monkeypatch) -> None:
    # The value table knows the SKU, but maps it to an inventory code U8 does not have.
    values = tmp_path / "values.toml"
    values.write_text('[customers]\ndemo-taobao = "010001"\n[inventory]\n"HOME-PILLOW-GRY-4874" = "999999"\n')
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(
        f"""
[shops.demo-taobao]
platform = "taobao"
default = true
target = "u8"
[targets.u8]
transport = "u8_eai"
url = "{sandbox.url}/U8EAI/import.asp"
sender = "101"
values = ["{values}"]
[targets.u8.params]
department = "0301"
sales_type = "01"
maker = "gateway"
"""
    )
    with run_gateway(gateway_env(tmp_path, sandbox.url, GATEWAY_CONFIG=str(cfg)), monkeypatch) as gw:
        r = _post(gw, (TB / "01_single_line_paid.json").read_bytes())
        assert r.status_code == 202
        order = gw.wait_state(r.json()["id"], "dead")
        assert order["erp"]["status"] == "failed"
        with gw.client("it") as c:
            (letter,) = c.get("/v1/dead-letters").json()["items"]
        assert letter["order_id"] == r.json()["id"]
        assert letter["reason_code"] == "ERP_REJECTED"
        assert "999999" in letter["partner_message"] and "不存在" in letter["partner_message"]
        assert letter["hint"]
        assert sandbox.documents("u8") == []


def test_drop_after_commit_still_exactly_one_document(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    sandbox.fault("u8", "drop_after_commit", rate=1.0)
    r = _post(gateway, (TB / "02_multi_line_coupons.json").read_bytes())
    assert r.status_code == 202
    gateway.wait_for(lambda: len(sandbox.documents("u8")) == 1, what="the document written before the drop")
    sandbox.clear_faults()
    order = gateway.wait_state(r.json()["id"], "delivered")
    docs = sandbox.documents("u8")
    assert len(docs) == 1 and docs[0]["code"] == order["erp"]["document_no"]
    kinds = [t["kind"] for t in order["timeline"]]
    assert "erp.unknown_outcome" in kinds
    assert order["timeline"][-1]["detail"].get("found_by_lookup") is True


def test_keys_and_roles(gateway: RunningGateway) -> None:
    body = (TB / "01_single_line_paid.json").read_bytes()
    with gateway.client(role="") as c:
        r = c.post("/v1/orders/taobao", content=body)
        assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
        r = c.post("/v1/orders/taobao", content=body, headers={"Authorization": "Bearer gwk_platform_wrong"})
        assert r.status_code == 401
    with gateway.client("auditor") as c:
        r = c.post("/v1/orders/taobao", content=body)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN"
        assert r.json()["message_zh"] and r.json()["message_en"]
    with gateway.client("platform") as c:
        assert c.get("/v1/intercepts").status_code == 403
        assert c.get("/v1/audit/verify").status_code == 403
    with gateway.client("admin") as c:
        assert c.get("/v1/audit/verify").status_code == 200


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe{not utf8", "UTF-8"),
        (b"{this is not json", "JSON"),
        (b"", "empty"),
        (b'{"something_else": {}}', "trade_fullinfo_get_response"),
        (
            b'{"trade_fullinfo_get_response": {"trade": '
            b'{"tid": 1, "status": "WAIT_SELLER_SEND_GOODS", "payment": "1"}}}',
            "trade_fullinfo_get_response.trade.total_fee: required value is missing",
        ),
    ],
)
def test_bad_bodies_get_400_with_the_reason(gateway: RunningGateway, body: bytes, reason: str) -> None:
    r = _post(gateway, body)
    assert r.status_code == 400
    err = r.json()
    assert err["code"] == "PAYLOAD_INVALID"
    assert reason in err["message_en"]
    assert err["message_zh"]


def test_wrong_type_names_the_field(gateway: RunningGateway) -> None:
    payload = msgspec.json.decode((TB / "02_multi_line_coupons.json").read_bytes())
    payload["trade_fullinfo_get_response"]["trade"]["orders"]["order"][1]["price"] = "59.9O"
    r = _post(gateway, msgspec.json.encode(payload))
    assert r.status_code == 400
    assert r.json()["path"] == "trade_fullinfo_get_response.trade.orders.order[1].price"


def test_huge_body_is_413_and_nothing_stored(gateway: RunningGateway) -> None:
    big = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    r = _post(gateway, big)
    assert r.status_code == 413
    assert r.json()["code"] == "PAYLOAD_TOO_LARGE"
    with gateway.client("wms") as c:
        assert c.get("/v1/orders").json()["items"] == []


def test_unknown_platform_and_shop(gateway: RunningGateway) -> None:
    body = (TB / "01_single_line_paid.json").read_bytes()
    r = _post(gateway, body, platform="amazon")
    assert r.status_code == 404 and r.json()["code"] == "UNKNOWN_PLATFORM"
    r = _post(gateway, body, **{"X-Shop-Id": "no-such-shop"})
    assert r.status_code == 409 and r.json()["code"] == "UNKNOWN_SHOP"


def test_operations_endpoints(gateway: RunningGateway) -> None:
    with gateway.client(role="") as c:
        assert c.get("/health/live").json() == {"status": "ok"}
        ready = c.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["database"]["ok"] is True
        assert "intake_total" in c.get("/metrics").text
        schema = c.get("/schema").json()
        assert "/v1/orders/{platform}" in schema["paths"]
        assert "<form" in c.get("/").text
