"""``gateway audit anchor``, ``gateway audit verify --anchor FILE`` and ``GET /v1/audit/verify``
with an anchor, against a running gateway on SQLite: a chain rewritten so that it verifies on its
own is caught by the anchor an auditor kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from gateway.audit import AuditEntry, decode_anchor, entry_hash
from gateway.cli import app
from tests.support.gateway import SAMPLES, RunningGateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

TB = SAMPLES / "taobao"


def _cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def _rewrite_from(db: str, seq: int) -> None:
    """An attacker with the database file changes entry ``seq`` and re-hashes the rest and the head."""
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        rows = conn.execute(
            "SELECT seq, at, actor, action, subject_type, subject_id, data, prev_hash FROM audit_log WHERE seq >= ?"
            " ORDER BY seq",
            (seq,),
        ).fetchall()
        prev = conn.execute("SELECT prev_hash FROM audit_log WHERE seq = ?", (seq,)).fetchone()[0]
        for s, at, actor, action, subject_type, subject_id, data, _ in rows:
            fields = {
                "seq": s,
                "at": at,
                "actor": "mallory" if s == seq else actor,
                "action": action,
                "subject_type": subject_type,
                "subject_id": subject_id,
                "data": json.loads(data),
                "prev_hash": prev,
            }
            entry = AuditEntry(**fields, hash=entry_hash(**fields))
            conn.execute(
                "UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (entry.actor, entry.prev_hash, entry.hash, s),
            )
            prev = entry.hash
        conn.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


def test_anchor_export_and_verify(gateway: RunningGateway, sandbox: RunningSandbox, tmp_path: Path) -> None:
    with gateway.client() as c:
        first = c.post("/v1/orders/taobao", content=(TB / "01_single_line_paid.json").read_bytes())
    gateway.wait_state(first.json()["id"], "delivered")

    out = tmp_path / "anchor.json"
    printed = _cli("audit", "anchor", "--out", str(out))
    text = out.read_text(encoding="utf-8")
    assert text in printed and text.endswith("}\n") and text.count("\n") == 1
    anchor = decode_anchor(text)
    assert list(msgspec.json.decode(text)) == ["at", "hash", "seq"]  # sorted keys, stable form
    with gateway.client("auditor") as auditor:
        entries = auditor.get("/v1/audit", params={"limit": 1000}).json()["items"]
    assert (anchor.seq, anchor.hash, anchor.at) == (entries[-1]["seq"], entries[-1]["hash"], entries[-1]["at"])

    with gateway.client() as c:  # the chain grows after the anchor
        second = c.post("/v1/orders/taobao", content=(TB / "02_multi_line_coupons.json").read_bytes())
    gateway.wait_state(second.json()["id"], "delivered")
    out_ok = _cli("audit", "verify", "--anchor", str(out))
    assert "audit chain intact" in out_ok and f"anchor matches: entry {anchor.seq}" in out_ok
    params = {"anchor_seq": anchor.seq, "anchor_hash": anchor.hash}
    with gateway.client("auditor") as auditor:
        body = auditor.get("/v1/audit/verify", params=params).json()
        assert body["ok"] is True and body["checked"] > anchor.seq
        assert body["anchor"] == {"seq": anchor.seq, "hash": anchor.hash, "matches": True}
        assert set(auditor.get("/v1/audit/verify").json()) == {"ok", "checked"}  # as before, without one
        for bad in ({"anchor_seq": anchor.seq}, {"anchor_hash": anchor.hash}, {**params, "anchor_hash": "xyz"}):
            r = auditor.get("/v1/audit/verify", params=bad)
            assert r.status_code == 400 and r.json()["code"] == "PAYLOAD_INVALID", bad

    _rewrite_from(gateway.database_url.split(":///", 1)[1], anchor.seq - 2)
    assert "audit chain intact" in _cli("audit", "verify")  # consistent on its own …
    broken = _cli("audit", "verify", "--anchor", str(out), code=1)  # … but not the chain anchored
    assert f"BROKEN at sequence {anchor.seq}" in broken and "not the one anchored" in broken
    with gateway.client("auditor") as auditor:
        body = auditor.get("/v1/audit/verify", params=params).json()
    assert (body["ok"], body["broken_at"], body["anchor"]["matches"]) == (False, anchor.seq, False)

    bad = tmp_path / "bad.json"
    bad.write_text('{"seq": 1}', encoding="utf-8")
    assert "cannot read the anchor" in _cli("audit", "verify", "--anchor", str(bad), code=2)
