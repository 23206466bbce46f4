"""``gateway retention purge`` and ``POST /v1/admin/retention/purge`` against a running gateway on
SQLite: raw payloads past the period go; orders, intercepts and the audit chain stay and verify;
what needs a purged payload answers 410 ``PAYLOAD_PURGED``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from adapters.db.tables import sqlite_time
from gateway.cli import app
from gateway.demo import rule_breaking_order
from tests.support.gateway import SAMPLES, RunningGateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

TB = SAMPLES / "taobao"


def _db(gw: RunningGateway) -> str:
    return gw.database_url.split(":///", 1)[1]


def _payload_count(gw: RunningGateway) -> int:
    with sqlite3.connect(_db(gw)) as conn:
        return conn.execute("SELECT COUNT(*) FROM raw_payloads").fetchone()[0]


def _age_every_payload(gw: RunningGateway, days: int) -> None:
    with sqlite3.connect(_db(gw), timeout=30) as conn:
        conn.execute(
            "UPDATE raw_payloads SET received_at = ?", (sqlite_time(datetime.now(UTC) - timedelta(days=days)),)
        )


def _cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_purge_keeps_orders_intercepts_and_the_chain(
    gateway: RunningGateway, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dead-lettered order (its replay with today's dictionary needs the payload), an intercepted one.
    sandbox.fault("u8", "reject", rate=1.0)
    with gateway.client() as c:
        dead = c.post("/v1/orders/taobao", content=(TB / "01_single_line_paid.json").read_bytes())
        intercepted = c.post("/v1/orders/taobao", content=rule_breaking_order(SAMPLES))
    assert dead.status_code == 202 and intercepted.status_code == 422
    gateway.wait_state(dead.json()["id"], "dead")
    sandbox.clear_faults()
    _age_every_payload(gateway, 200)
    with gateway.client() as c:  # and one received today
        fresh = c.post("/v1/orders/taobao", content=(TB / "02_multi_line_coupons.json").read_bytes())
    assert fresh.status_code == 202 and _payload_count(gateway) == 3

    out = _cli("retention", "purge", "--dry-run")
    assert "would purge 2 raw payloads" in out and "(180 days)" in out and "nothing deleted" in out
    assert _payload_count(gateway) == 3
    with gateway.client("it") as it, gateway.client("admin") as admin:
        assert it.post("/v1/admin/retention/purge").status_code == 403
        bad = admin.post("/v1/admin/retention/purge", json={"dry_run": "maybe"})
        assert bad.status_code == 400 and bad.json()["code"] == "PAYLOAD_INVALID"
        dry = admin.post("/v1/admin/retention/purge", json={"dry_run": True}).json()
    assert (dry["dry_run"], dry["payloads"], dry["payload_days"], dry["audit_seq"]) == (True, 2, 180, None)

    out = _cli("retention", "purge", "--by", "alice")
    assert "purged 2 raw payloads" in out and "audit chain are kept" in out
    assert _payload_count(gateway) == 1

    with gateway.client("auditor") as auditor:
        for gid in (dead.json()["id"], fresh.json()["id"]):
            assert auditor.get(f"/v1/orders/{gid}").status_code == 200
        (shown,) = auditor.get("/v1/intercepts").json()["items"]
        assert shown["id"] == intercepted.json()["intercept_id"] and shown["snapshot"]["lines"]
        entries = auditor.get("/v1/audit", params={"limit": 1000}).json()["items"]
        assert auditor.get("/v1/audit/verify").json() == {"ok": True, "checked": len(entries)}
    purge = entries[-1]
    assert (purge["action"], purge["actor"], purge["subject_type"]) == ("retention.purged", "alice (cli)", "retention")
    assert purge["data"]["payloads"] == 2 and purge["data"]["completed"] is True and purge["data"]["cutoff"]
    assert "intact" in _cli("audit", "verify")

    with gateway.client("it") as it:
        (letter,) = it.get("/v1/dead-letters").json()["items"]
        r = it.post(f"/v1/dead-letters/{letter['id']}/replay", json={"dictionary": "current"})
        assert r.status_code == 410, r.text
        assert r.json()["code"] == "PAYLOAD_PURGED" and "dictionary=first" in r.json()["hint"]
        assert r.json()["message_zh"] and r.json()["payload_sha256"]
        assert it.post(f"/v1/dead-letters/{letter['id']}/replay").status_code == 202  # as first mapped
    gateway.wait_state(dead.json()["id"], "delivered")

    with gateway.client("admin") as admin:
        again = admin.post("/v1/admin/retention/purge")
    assert again.status_code == 200 and again.json()["payloads"] == 0 and again.json()["audit_seq"]
    monkeypatch.setenv("GATEWAY_RETENTION_PAYLOAD_DAYS", "0")
    assert "retention is off" in _cli("retention", "purge")
    monkeypatch.setenv("GATEWAY_RETENTION_PAYLOAD_DAYS", "soon")
    assert "GATEWAY_RETENTION_PAYLOAD_DAYS" in _cli("retention", "purge", code=2)
    assert _payload_count(gateway) == 1
