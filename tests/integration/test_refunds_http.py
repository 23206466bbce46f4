"""POST /v1/refunds/{platform} over real HTTP on SQLite, with the Taobao sample 03 and its refund:
applied, repeated, waiting for its order, stale, and refused."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tests.support.gateway import SAMPLES, RunningGateway

pytestmark = pytest.mark.integration

TB = SAMPLES / "taobao"
ORDER = (TB / "03_partial_refund.json").read_bytes()
REFUND = (TB / "03_partial_refund.refund_get.json").read_bytes()
LINE_2 = "3963300018847521109"


def _post(gw: RunningGateway, what: str, body: bytes, platform: str = "taobao", role: str = "platform"):
    with gw.client(role) as c:
        return c.post(f"/v1/{what}/{platform}", content=body, headers={"Content-Type": "application/json"})


def _refund(**changes: Any) -> bytes:
    payload = msgspec.json.decode(REFUND)
    payload["refund_get_response"]["refund"].update(changes)
    return msgspec.json.encode(payload)


def _line_refund(order: dict[str, Any]) -> tuple[Any, ...]:
    line = next(ln for ln in order["lines"] if ln["line_id"] == LINE_2)
    return line["refund"]["state"], line["refund"]["amount_fen"], order["totals"]["refunded_fen"]


def test_a_refund_is_applied_once_audited_and_a_stale_copy_changes_nothing(gateway: RunningGateway) -> None:
    placed = _post(gateway, "orders", ORDER)
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["id"]

    r = _post(gateway, "refunds", REFUND)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["order"], body["platform"], body["order_id"]) == (order_id, "taobao", "3963300018845521109")
    assert body["changed"] is True and body["pending"] is False
    (item,) = body["refunds"]
    assert (item["refund_id"], item["line_id"], item["state"], item["amount_fen"], item["qty"]) == (
        "152345678901234567",
        LINE_2,
        "REFUNDED",
        6000,
        2,
    )
    assert item["outcome"] == "applied" and item["needs_review"] is False

    again = _post(gateway, "refunds", REFUND)
    assert again.status_code == 200
    assert again.json() | {"refunds": None} == body | {"changed": False, "refunds": None}
    assert again.json()["refunds"][0] == item | {"outcome": "unchanged"}

    order = gateway.order(order_id)
    assert _line_refund(order) == ("REFUNDED", 6000, 6000)
    assert order["totals"]["paid_fen"] == 11300
    (entry,) = [t for t in order["timeline"] if t["kind"] == "order.refund"]
    assert entry["detail"]["refunds"][0]["refund_id"] == "152345678901234567"
    assert entry["detail"]["refunded_fen"] == 6000 and entry["detail"]["cause"] == "refund"
    with gateway.client("auditor") as c:
        audit = c.get("/v1/audit").json()["items"]
        assert c.get("/v1/audit/verify").json() == {"ok": True, "checked": len(audit)}
    (refund_audit,) = [e for e in audit if e["action"] == "order.refund"]
    assert refund_audit["subject_id"] == order_id and refund_audit["actor"] == "platform"
    text = msgspec.json.encode(refund_audit).decode()
    assert "不想要了" not in text and "x**q" not in text  # the buyer's words and nick stay out

    # a newer version closes the refund; the older one sent again afterwards is stale
    closed = _post(gateway, "refunds", _refund(status="CLOSED", refund_version=1718502627001))
    assert closed.status_code == 202 and closed.json()["refunds"][0]["state"] == "CLOSED"
    stale = _post(gateway, "refunds", REFUND)
    assert stale.status_code == 200 and stale.json()["changed"] is False
    (item,) = stale.json()["refunds"]
    assert (item["outcome"], item["state"], item["received_version"]) == ("stale", "CLOSED", "1718502627000")
    # a closed refund gave nothing back: nothing stands on the line, nothing is counted
    assert _line_refund(gateway.order(order_id)) == ("CLOSED", None, 0)


def test_a_refund_before_its_order_waits_and_is_applied_when_the_order_arrives(gateway: RunningGateway) -> None:
    r = _post(gateway, "refunds", REFUND)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["pending"] is True and body["order"] is None and body["changed"] is True
    assert body["refunds"][0]["outcome"] == "pending" and body["refunds"][0]["line_id"] is None
    assert _post(gateway, "refunds", REFUND).status_code == 200  # still waiting: a repeat

    placed = _post(gateway, "orders", ORDER)
    assert placed.status_code == 202, placed.text
    order = gateway.order(placed.json()["id"])
    assert _line_refund(order) == ("REFUNDED", 6000, 6000)
    (entry,) = [t for t in order["timeline"] if t["kind"] == "order.refund"]
    assert entry["detail"]["cause"] == "order"
    with gateway.client("auditor") as c:
        actions = [e["action"] for e in c.get("/v1/audit").json()["items"]]
    assert actions.index("refund.pending") < actions.index("order.accepted") < actions.index("order.refund")

    after = _post(gateway, "refunds", REFUND)
    assert after.status_code == 200
    assert after.json()["order"] == placed.json()["id"] and after.json()["pending"] is False
    assert after.json()["refunds"][0]["line_id"] == LINE_2


def test_refusals(gateway: RunningGateway) -> None:
    def error(r, status: int, code: str) -> dict[str, Any]:
        assert r.status_code == status, r.text
        body = r.json()
        assert body["code"] == code and body["message_zh"] and body["message_en"]
        return body

    error(_post(gateway, "refunds", b"{not json"), 400, "PAYLOAD_INVALID")
    body = error(_post(gateway, "refunds", b'{"trade_fullinfo_get_response": {}}'), 400, "PAYLOAD_INVALID")
    assert body["path"] == "refund_get_response"
    body = error(_post(gateway, "refunds", _refund(refund_fee="6O.00")), 400, "PAYLOAD_INVALID")
    assert body["path"] == "refund_get_response.refund.refund_fee"
    error(_post(gateway, "refunds", REFUND, role="wms"), 403, "FORBIDDEN")
    error(_post(gateway, "refunds", REFUND, role=""), 401, "UNAUTHORIZED")
    error(_post(gateway, "refunds", REFUND, platform="amazon"), 404, "UNKNOWN_PLATFORM")
    body = error(_post(gateway, "refunds", b"{}", platform="douyin"), 400, "REFUNDS_IN_ORDER")
    assert "/v1/orders/douyin" in body["message_en"]
    error(_post(gateway, "refunds", b" " * (4 * 1024 * 1024 + 1)), 413, "PAYLOAD_TOO_LARGE")

    assert _post(gateway, "orders", ORDER).status_code == 202
    unmatched = _refund(refund_id="77", oid=1, outer_id="NO-SUCH-SKU", refund_fee="0.01")
    body = error(_post(gateway, "refunds", unmatched), 409, "REFUND_UNMATCHED")
    assert body["refund_id"] == "77"
    with gateway.client("auditor") as c:
        assert not [e for e in c.get("/v1/audit").json()["items"] if e["action"].startswith("refund")]


JD = SAMPLES / "jd"
JD_LINE_B = "295600011122:100034567892"


def _jd_refund(**changes: Any) -> bytes:
    payload = msgspec.json.decode((JD / "03_partial_refund.refundapply.json").read_bytes())
    payload["jingdong_pop_afs_soa_refundapply_queryPageList_responce"]["queryResult"]["result"][0].update(changes)
    return msgspec.json.encode(payload)


def test_a_person_confirms_the_line_of_a_refund_the_platform_did_not_name(gateway: RunningGateway) -> None:
    """JD's refund-apply names no SKU: matched by amount and flagged; confirmed by IT, it counts
    once refunded, and the confirmation survives the platform's next version of the refund."""
    order_id = _post(gateway, "orders", (JD / "03_partial_refund.json").read_bytes(), "jd").json()["id"]
    assert _post(gateway, "refunds", _jd_refund(), "jd").status_code == 202
    done = _post(gateway, "refunds", _jd_refund(status=6, checkTime="2024-06-16 10:00:00"), "jd")
    assert done.status_code == 202, done.text
    order = gateway.order(order_id)
    line = next(ln for ln in order["lines"] if ln["line_id"] == JD_LINE_B)
    assert line["refund"]["needs_review"] and order["totals"]["refunded_fen"] == 0

    path = f"/v1/orders/{order_id}/refunds/880012345/confirm"
    with gateway.client("platform") as c:
        assert c.post(path).status_code == 403
    with gateway.client("it") as c:
        bad = c.post(path, json={"line_id": "nope"})
        assert bad.status_code == 400 and JD_LINE_B in bad.json()["message_en"]
        assert c.post(f"/v1/orders/{order_id}/refunds/1/confirm").status_code == 404
        r = c.post(path)
    assert r.status_code == 200, r.text
    assert r.json() | {"order": None} == {
        "order": None,
        "refund_id": "880012345",
        "line_id": JD_LINE_B,
        "needs_review": False,
        "refunded_fen": 3600,
    }
    # the platform sends the refund again, later: still confirmed, still counted
    again = _post(gateway, "refunds", _jd_refund(status=6, checkTime="2024-06-17 10:00:00"), "jd")
    assert again.status_code == 202 and again.json()["refunds"][0]["needs_review"] is False
    order = gateway.order(order_id)
    assert order["totals"]["refunded_fen"] == 3600
    with gateway.client("auditor") as c:
        audit = c.get("/v1/audit", params={"limit": 1000}).json()["items"]
    (entry,) = [e for e in audit if e["action"] == "refund.line_confirmed"]
    assert entry["data"]["line_id"] == JD_LINE_B and "(key " in entry["actor"]  # the IT person's key
