"""The process killed mid-delivery, and a tampered audit log, seen from outside the process."""

from __future__ import annotations

import sqlite3
import time

import httpx

from tests.e2e.conftest import GatewayProcess
from tests.support.gateway import SAMPLES
from tests.support.servers import RunningSandbox

ORDER = (SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes()


def _key(gw: GatewayProcess, role: str) -> str:
    return gw.cli("keys", "create", "--role", role).stdout.strip()


def _wait(predicate, timeout: float = 30.0, what: str = "condition"):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _in_flight(sandbox: RunningSandbox):  # noqa: ANN202
    """True once a call has arrived at U8 (the call log only shows calls that have finished)."""
    return lambda: sandbox.capacity("u8").get("peak_open", 0) >= 1


def _submit(gw: GatewayProcess, key: str) -> str:
    r = httpx.post(f"{gw.url}/v1/orders/taobao", content=ORDER, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _order(gw: GatewayProcess, key: str, gid: str) -> dict:
    return httpx.get(f"{gw.url}/v1/orders/{gid}", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()


def test_killed_while_the_erp_call_hangs_then_delivered_once_after_restart(
    gateway_process: GatewayProcess, sandbox: RunningSandbox
) -> None:
    gw = gateway_process
    platform, wms = _key(gw, "platform"), _key(gw, "wms")
    sandbox.fault("u8", "timeout", rate=1.0, ms=20000)  # the ERP accepts the call and never answers
    gw.start()
    gid = _submit(gw, platform)
    _wait(_in_flight(sandbox), what="the delivery to reach U8")
    gw.kill()
    assert sandbox.documents("u8") == []
    sandbox.clear_faults()
    gw.start()
    order = _wait(lambda: (o := _order(gw, wms, gid))["state"] == "delivered" and o, what="delivery after restart")
    docs = sandbox.documents("u8")
    assert len(docs) == 1 and docs[0]["code"] == order["erp"]["document_no"]


def test_killed_after_the_erp_wrote_before_recording_then_found_by_lookup(
    gateway_process: GatewayProcess, sandbox: RunningSandbox
) -> None:
    gw = gateway_process
    platform, wms = _key(gw, "platform"), _key(gw, "wms")
    sandbox.fault("u8", "slow", rate=1.0, ms=1500)  # U8 writes the document after the gateway is gone
    gw.start()
    gid = _submit(gw, platform)
    _wait(_in_flight(sandbox), what="the delivery to reach U8")
    gw.kill()
    _wait(lambda: len(sandbox.documents("u8")) == 1, what="U8 to finish writing")
    sandbox.clear_faults()
    gw.start()
    order = _wait(lambda: (o := _order(gw, wms, gid))["state"] == "delivered" and o, what="delivery after restart")
    assert len(sandbox.documents("u8")) == 1
    assert order["timeline"][-1]["detail"].get("found_by_lookup") is True


def test_audit_verify_names_the_altered_entry(gateway_process: GatewayProcess, sandbox: RunningSandbox) -> None:
    gw = gateway_process
    platform = _key(gw, "platform")
    gw.start()
    _submit(gw, platform)
    gw.stop()
    ok = gw.cli("audit", "verify")
    assert ok.returncode == 0 and "intact" in ok.stdout
    db = gw.env["GATEWAY_DATABASE_URL"].split(":///", 1)[1]
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
        assert total >= 3
        # The order's entry (the dictionaries seeded at the first start come before it).
        seq = conn.execute("SELECT MIN(seq) FROM audit_log WHERE action = 'order.accepted'").fetchone()[0]
        try:
            conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = ?", (seq,))
            raise AssertionError("the audit log accepted an UPDATE")
        except sqlite3.DatabaseError:
            pass  # append-only at the database level; an attacker with file access drops the trigger
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET data = replace(data, 'taobao', 'tmall') WHERE seq = ?", (seq,))
    broken = gw.cli("audit", "verify", check=False)
    assert broken.returncode == 1
    assert f"sequence {seq}" in broken.stderr
