"""Buyer data is masked by default everywhere (order reads, intercept snapshots and their CSV, the
audit log) and shown in clear only through ``POST /v1/orders/{id}/unmask`` (auditor, admin), which
writes a ``pii.unmasked`` audit entry naming who and which order, never the values."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from adapters.db.tables import sqlite_time
from gateway.demo import rule_breaking_order
from tests.support.gateway import SAMPLES, RunningGateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

# In clear, as a platform sends them while an order waits to ship (tests/support/logscan.py
# checks that none of them reaches a log line).
NAME, PHONE, ADDRESS, NICK = "李秀英", "13700001111", "文一西路100号5幢301室", "tb_buyer_nick"
MESSAGE = "到了请打13812345678"
CLEAR = (NAME, PHONE, ADDRESS, NICK, "13812345678")


def _with_clear_buyer(body: bytes, tid_offset: int = 0) -> bytes:
    payload = msgspec.json.decode(body)
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade.update(
        receiver_name=NAME, receiver_mobile=PHONE, receiver_address=ADDRESS, buyer_nick=NICK, buyer_message=MESSAGE
    )
    if tid_offset:
        trade["tid"] += tid_offset
        trade["tid_str"] = str(trade["tid"])
    return msgspec.json.encode(payload)


def _no_clear(text: str) -> None:
    found = [value for value in CLEAR if value in text]
    assert found == [], f"clear buyer data {found} in {text[:500]}"


def test_masked_everywhere_and_unmasked_on_the_record(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    with gateway.client() as c:
        accepted = c.post(
            "/v1/orders/taobao", content=_with_clear_buyer((SAMPLES / "taobao/01_single_line_paid.json").read_bytes())
        )
        rejected = c.post("/v1/orders/taobao", content=_with_clear_buyer(rule_breaking_order(SAMPLES)))
    assert accepted.status_code == 202 and rejected.status_code == 422
    gid = accepted.json()["id"]
    gateway.wait_state(gid, "delivered")

    with gateway.client("auditor") as auditor, gateway.client("it") as it:
        for client in (auditor, it):
            order = client.get(f"/v1/orders/{gid}")
            _no_clear(order.text)
            receiver = order.json()["receiver"]
            assert (receiver["name"], receiver["phone"], receiver["city"]) == ("李**", "137****1111", "杭州市")
            assert receiver["detail"].startswith("***(")
            _no_clear(client.get("/v1/orders", params={"platform": "taobao"}).text)
        intercepts = auditor.get("/v1/intercepts")
        assert intercepts.json()["items"][0]["snapshot"]["receiver"]["name"] == "李**"
        _no_clear(intercepts.text)
        _no_clear(auditor.get("/v1/intercepts.csv").text)
        _no_clear(auditor.get("/v1/audit", params={"limit": 1000}).text)
    with gateway.client("wms") as wms:  # who ships the parcel needs the address (by design)
        assert wms.get(f"/v1/orders/{gid}").json()["receiver"]["name"] == NAME

    for role in ("it", "wms", "erp", "platform"):
        with gateway.client(role) as c:
            assert c.post(f"/v1/orders/{gid}/unmask").status_code == 403
    with gateway.client("auditor") as auditor:
        missing = auditor.post("/v1/orders/01NOSUCHORDER/unmask")
        assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
        r = auditor.post(f"/v1/orders/{gid}/unmask")
    assert r.status_code == 200, r.text
    clear = r.json()
    assert clear["id"] == gid and clear["platform"] == "taobao" and clear["order_id"] == "3958201746231589372"
    assert (clear["receiver"]["name"], clear["receiver"]["phone"], clear["receiver"]["detail"]) == (
        NAME,
        PHONE,
        ADDRESS,
    )
    assert clear["buyer"]["nick"] == NICK and clear["buyer"]["message"] == MESSAGE
    assert clear["pii_state"] == "plain"
    assert clear["fields"] == ["receiver.name", "receiver.phone", "receiver.detail", "buyer.nick", "buyer.message"]

    with gateway.client("auditor") as auditor:
        audit = auditor.get("/v1/audit", params={"limit": 1000})
    _no_clear(audit.text)
    (entry,) = [e for e in audit.json()["items"] if e["action"] == "pii.unmasked"]
    assert entry["seq"] == clear["audit_seq"] and entry["subject_type"] == "order" and entry["subject_id"] == gid
    assert entry["actor"].startswith("test (key ") and entry["data"]["role"] == "auditor"
    assert entry["data"]["fields"] == clear["fields"] and entry["data"]["order_id"] == clear["order_id"]

    # The clear values are the stored order's: they outlive the raw payload's retention.
    db = gateway.database_url.split(":///", 1)[1]
    with sqlite3.connect(db, timeout=30) as conn:
        old = sqlite_time(datetime.now(UTC) - timedelta(days=365))
        conn.execute("UPDATE raw_payloads SET received_at = ?", (old,))
    with gateway.client("admin") as admin:
        assert admin.post("/v1/admin/retention/purge").json()["payloads"] == 2
        again = admin.post(f"/v1/orders/{gid}/unmask")
        assert again.status_code == 200 and again.json()["receiver"]["name"] == NAME
        assert admin.get("/v1/audit/verify").json()["ok"] is True
