"""Dictionaries as governed data, over real HTTP on a real SQLite file: seeded versions, drafts that
must compile, dry runs over the recorded orders, approval by a second person, publishing that
switches every gateway on the database, rollback, and the audit trail of all of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.commands import create_key
from gateway.publication import POLL_INTERVAL_S
from gateway.settings import load_settings
from tests.support.gateway import REPO, SAMPLES, RunningGateway, gateway_env, run_gateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

TAOBAO = (REPO / "mappings" / "platforms" / "taobao.toml").read_text(encoding="utf-8")
SAMPLE = (SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes()  # paid 317.60 of 377.60
PAID = '"totals.paid_fen" = { path = "payment", transform = "yuan", required = true }'
SWITCH_WITHIN_S = POLL_INTERVAL_S + 1.0  # docs/dictionaries.md: "within about a second"


def edited(old: str, new: str, version: str, base: str = TAOBAO) -> str:
    assert old in base
    return base.replace(old, new).replace('version = "1"', f'version = "{version}"', 1)


# The paid amount read from total_fee (377.60) instead of payment (317.60): a change of paid_fen.
PAID_FROM_TOTAL = edited(PAID, PAID.replace('"payment"', '"total_fee"'), "2")
MEMO = edited('seller_memo = { path = "seller_memo", transform = "raw_text" }', 'seller_memo = { default = "v3" }', "3")


def _it2(gw: RunningGateway) -> str:
    """A second IT person's key (the fixture's keys are one per role)."""
    return asyncio.run(create_key(load_settings(), role="it", label="second IT"))


def _call(gw: RunningGateway, method: str, path: str, role: str = "it", key: str | None = None, **kw: Any):
    with gw.client(role) as c:
        if key is not None:
            c.headers["Authorization"] = f"Bearer {key}"
        return c.request(method, path, **kw)


def _propose(gw: RunningGateway, text: str, role: str = "it", **kw: Any) -> dict[str, Any]:
    r = _call(gw, "POST", "/v1/mappings/versions", role, json={"text": text, "note": "test change"}, **kw)
    assert r.status_code == 201, r.text
    return r.json()


def _ok(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return r.json()


def _publish_new(gw: RunningGateway, text: str) -> dict[str, Any]:
    """Propose (it), dry-run, approve (admin) and publish (it): the whole way, by two people."""
    v = _propose(gw, text)
    _ok(_call(gw, "POST", f"/v1/mappings/versions/{v['id']}/dry-run"))
    _ok(_call(gw, "POST", f"/v1/mappings/versions/{v['id']}/approve", "admin"))
    return _ok(_call(gw, "POST", f"/v1/mappings/versions/{v['id']}/publish"))


def _submit(gw: RunningGateway, body: bytes = SAMPLE) -> dict[str, Any]:
    with gw.client("platform") as c:
        r = c.post("/v1/orders/taobao", content=body)
    assert r.status_code == 202, r.text
    return r.json()


def _audit(gw: RunningGateway) -> list[dict[str, Any]]:
    with gw.client("auditor") as c:
        return c.get("/v1/audit", params={"limit": 1000}).json()["items"]


def _published(gw: RunningGateway, name: str = "taobao") -> dict[str, Any]:
    items = _ok(_call(gw, "GET", "/v1/mappings/dictionaries"))["items"]
    return next(i for i in items if i["name"] == name)


def _in_use(gw: RunningGateway, platform: str = "taobao") -> str:
    """The dictionary version a gateway maps with now (the single-payload dry run stores nothing)."""
    return _ok(_call(gw, "POST", f"/v1/mappings/{platform}/dry-run", content=SAMPLE))["mapping_version"]


# ----------------------------------------------------------------------------------------- tests


def test_bundled_dictionaries_are_seeded_once(sandbox: RunningSandbox, tmp_path: Path, monkeypatch) -> None:
    env = gateway_env(tmp_path, sandbox.url)
    with run_gateway(env, monkeypatch) as gw:
        first = _ok(_call(gw, "GET", "/v1/mappings/dictionaries"))
        versions = [v for v in _ok(_call(gw, "GET", "/v1/mappings/versions"))["items"] if v["kind"] != "ruleset"]
        seeded = [e for e in _audit(gw) if e["action"] == "dictionary.seeded"]
    names = {i["name"] for i in first["items"] if i["kind"] != "ruleset"}  # rule sets: test_ruleset_governance
    assert {"taobao", "taobao-refund", "u8_saleorder"} <= names
    taobao = next(i for i in first["items"] if i["name"] == "taobao")
    assert taobao["published"]["published_by"] == "seed" and taobao["published"]["state"] == "published"
    assert taobao["in_use_here"] == taobao["published"]["mapping_version"] and taobao["pending"] == []
    assert {e["actor"] for e in seeded} == {"seed"} and len(seeded) == len(names) == len(versions)
    with run_gateway(env, monkeypatch) as gw:  # a restart on the same database: nothing new
        assert [
            v for v in _ok(_call(gw, "GET", "/v1/mappings/versions"))["items"] if v["kind"] != "ruleset"
        ] == versions
        assert [e for e in _audit(gw) if e["action"].startswith("dictionary.")] == seeded


def test_a_draft_that_changes_paid_fen_shows_the_recorded_order_in_its_dry_run(gateway: RunningGateway) -> None:
    order = _submit(gateway)
    v = _propose(gateway, PAID_FROM_TOTAL)
    assert v["state"] == "draft" and v["mapping_version"].startswith("2+") and v["proposed_by"].endswith(")")
    summary = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/dry-run", params={"limit": 50}))
    assert summary["against"]["version"] == order["mapping_version"]
    assert summary["corpus"]["recorded"] == 1 and summary["corpus"]["samples"] >= 3
    (mine,) = [o for o in summary["orders"] if o["ref"] == order["id"]]
    assert mine["source"] == "order" and mine["order_id"] == order["order_id"]
    assert {"path": "totals.paid_fen", "before": 31760, "after": 37760} in mine["changes"]
    # ...and the rules would now reject it: paid no longer matches its lines
    assert mine["status"] == "newly_failing" and mine["before"] == {"ok": True, "verdict": "accept"}
    assert mine["after"] == {"ok": False, "verdict": "reject", "rules": ["AMOUNT_MISMATCH"]}
    assert {"path": "(verdict)", "before": "accept", "after": "reject: AMOUNT_MISMATCH"} in mine["changes"]
    assert summary["orders"][0]["status"] == "newly_failing" and summary["counts"]["newly_failing"] >= 1
    # stored with the draft
    again = _ok(_call(gateway, "GET", f"/v1/mappings/versions/{v['id']}/dry-run"))
    assert again == summary
    shown = _ok(_call(gateway, "GET", f"/v1/mappings/versions/{v['id']}"))
    assert shown["dry_run_done"] is True and shown["text"] == PAID_FROM_TOTAL


def test_dry_run_masks_buyer_data_and_names_orders_that_newly_fail(gateway: RunningGateway) -> None:
    payload = msgspec.json.decode(SAMPLE)
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade.update(receiver_name="王小明", receiver_mobile="13812345678", buyer_nick="王小明的店")
    order = _submit(gateway, msgspec.json.encode(payload))
    names_from_nick = edited(
        '"receiver.name" = { path = "receiver_name", transform = "raw_text" }',
        '"receiver.name" = { path = "buyer_nick", transform = "raw_text" }',
        "4",
    )
    v = _propose(gateway, names_from_nick)
    r = _call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/dry-run")
    summary = _ok(r)
    (mine,) = [o for o in summary["orders"] if o["ref"] == order["id"]]
    (change,) = [c for c in mine["changes"] if c["path"] == "receiver.name"]
    assert change == {"path": "receiver.name", "before": "王**", "after": "王****"}
    assert "王小明" not in r.text and "13812345678" not in r.text
    # A dictionary that requires a field the payloads lack: every order newly fails, with the reason.
    broken = edited(PAID, PAID.replace('"payment"', '"no_such_field"'), "5")
    v = _propose(gateway, broken)
    summary = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/dry-run"))
    (mine,) = [o for o in summary["orders"] if o["ref"] == order["id"]]
    assert mine["status"] == "newly_failing" and mine["before"]["ok"] and not mine["after"]["ok"]
    assert "no_such_field" in mine["after"]["error"]
    assert summary["counts"]["newly_failing"] == summary["counts"]["checked"]


def test_one_person_alone_cannot_publish(gateway: RunningGateway) -> None:
    v = _propose(gateway, MEMO)
    vid = v["id"]
    second = _it2(gateway)
    r = _call(gateway, "POST", f"/v1/mappings/versions/{vid}/approve", key=second)
    assert r.status_code == 409 and r.json()["code"] == "DRY_RUN_REQUIRED", r.text
    _ok(_call(gateway, "POST", f"/v1/mappings/versions/{vid}/dry-run"))
    r = _call(gateway, "POST", f"/v1/mappings/versions/{vid}/approve")  # the proposer
    assert r.status_code == 403 and r.json()["code"] == "APPROVER_IS_PROPOSER", r.text
    assert r.json()["message_zh"] and r.json()["message_en"] and r.json()["hint"]
    r = _call(gateway, "POST", f"/v1/mappings/versions/{vid}/publish")
    assert r.status_code == 409 and r.json()["code"] == "VERSION_STATE_CONFLICT"
    assert r.json()["state"] == "draft" and r.json()["allowed"] == ["approved"]
    approved = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{vid}/approve", key=second, json={"note": "ok"}))
    assert approved["state"] == "approved" and approved["approved_by"].startswith("second IT (key ")
    published = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{vid}/publish"))  # the proposer may publish
    assert published["state"] == "published" and published["previous"]["state"] == "published"
    assert _in_use(gateway) == v["mapping_version"]  # this process switched at once
    entries = [e for e in _audit(gateway) if e["subject_type"] == "dictionary_version" and e["subject_id"] == str(vid)]
    actions = [e["action"] for e in entries]
    assert actions == ["dictionary.proposed", "dictionary.dry_run", "dictionary.approved", "dictionary.published"]
    proposer, approver = v["proposed_by"], approved["approved_by"]
    assert proposer != approver
    assert entries[0]["actor"] == proposer and entries[2]["actor"] == approver
    assert entries[2]["data"]["proposed_by"] == proposer and entries[2]["data"]["note"] == "ok"
    assert (entries[3]["data"]["proposed_by"], entries[3]["data"]["approved_by"]) == (proposer, approver)
    assert entries[3]["data"]["previous"]["version"].startswith("1+")
    with gateway.client("auditor") as c:
        assert c.get("/v1/audit/verify").json()["ok"] is True


def test_publish_switches_another_gateway_and_orders_keep_their_version(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch
) -> None:
    env = gateway_env(tmp_path, sandbox.url)
    with run_gateway(env, monkeypatch) as a, run_gateway(env, monkeypatch) as b:
        before = _submit(b)
        assert _in_use(b) == before["mapping_version"]
        published = _publish_new(a, MEMO)
        started = time.monotonic()
        b.wait_for(lambda: _in_use(b) == published["mapping_version"], timeout=10, what="gateway b to switch")
        assert time.monotonic() - started < SWITCH_WITHIN_S
        after = _submit(b, SAMPLE.replace(b"3961187420015523311", b"3961187420015523399"))
        assert after["mapping_version"] == published["mapping_version"]
        assert b.order(after["id"])["seller_memo"] == "v3"
        kept = a.order(before["id"])  # accepted under version 1: still version 1, as it was mapped
        assert kept["mapping_version"] == before["mapping_version"] and kept["seller_memo"] != "v3"
        assert before["mapping_version"] != published["mapping_version"]
        a.wait_state(before["id"], "delivered")
        assert a.order(before["id"])["mapping_version"] == before["mapping_version"]


def test_rollback_by_one_person(gateway: RunningGateway) -> None:
    first = _published(gateway)["published"]
    published = _publish_new(gateway, MEMO)
    assert _in_use(gateway) == published["mapping_version"]
    r = _call(gateway, "POST", f"/v1/mappings/versions/{published['id']}/rollback")
    assert r.status_code == 409 and r.json()["code"] == "VERSION_STATE_CONFLICT"  # it is published
    back = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{first['id']}/rollback", json={"note": "memo lost"}))
    assert back["state"] == "published" and back["previous"]["id"] == published["id"]
    assert _in_use(gateway) == first["mapping_version"]
    versions = {v["id"]: v for v in _ok(_call(gateway, "GET", "/v1/mappings/versions?name=taobao"))["items"]}
    assert versions[published["id"]]["state"] == "superseded" and versions[first["id"]]["state"] == "published"
    # publishing a superseded version again is a rollback, not a publish
    r = _call(gateway, "POST", f"/v1/mappings/versions/{published['id']}/publish")
    assert r.status_code == 409 and "roll back" in r.json()["message_en"]
    (entry,) = [e for e in _audit(gateway) if e["action"] == "dictionary.rolled_back"]
    assert entry["subject_id"] == str(first["id"]) and entry["data"]["note"] == "memo lost"
    assert entry["data"]["previous"]["id"] == published["id"] and entry["actor"] != "seed"
    diff = _ok(_call(gateway, "GET", f"/v1/mappings/versions/{first['id']}/diff/{published['id']}"))
    assert '-seller_memo = { path = "seller_memo", transform = "raw_text" }' in diff["text_diff"]
    assert diff["samples"]["counts"]["changed"] >= 1


def test_drafts_must_compile_and_fit(gateway: RunningGateway) -> None:
    broken = TAOBAO.replace('transform = "yuan", required = true }', 'transform = "no_such_transform" }', 1)
    for path in ("/v1/mappings/versions", "/v1/mappings/validate"):
        r = _call(gateway, "POST", path, content=broken.encode(), headers={"Content-Type": "application/toml"})
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "DICTIONARY_INVALID" and "no_such_transform" in r.json()["message_en"]
        assert r.json()["message_zh"]
        r = _call(gateway, "POST", path, content=b"[dictionary\nname=")
        assert r.status_code == 422 and "TOML" in r.json()["message_en"]
    ok = _ok(_call(gateway, "POST", "/v1/mappings/validate", content=MEMO.encode()))
    assert ok["name"] == "taobao" and ok["mapping_version"].startswith("3+")
    r = _call(gateway, "POST", "/v1/mappings/versions", content=TAOBAO.encode())  # the published text again
    assert r.status_code == 409 and r.json()["code"] == "DICTIONARY_UNCHANGED"
    other = TAOBAO.replace('name = "taobao"', 'name = "taobao-2"', 1)  # a second order dictionary for taobao
    r = _call(gateway, "POST", "/v1/mappings/versions", content=other.encode())
    assert r.status_code == 422 and "already has" in r.json()["message_en"]
    assert _ok(_call(gateway, "GET", "/v1/mappings/versions", params={"state": "draft"}))["items"] == []


def test_roles(gateway: RunningGateway) -> None:
    for role in ("platform", "wms", "erp", "auditor"):
        r = _call(gateway, "GET", "/v1/mappings/versions", role)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", role
        r = _call(gateway, "POST", "/v1/mappings/versions", role, content=MEMO.encode())
        assert r.status_code == 403
    assert _call(gateway, "GET", "/v1/mappings/versions", "").status_code == 401
    v = _propose(gateway, MEMO, role="admin")
    assert _call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/reject", "platform").status_code == 403
    rejected = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/reject", "admin", json={"note": "no"}))
    assert rejected["state"] == "rejected" and rejected["rejected_by"] == v["proposed_by"]
    # the platform's single-payload dry run is still theirs (CONTRACT §2)
    assert _call(gateway, "POST", "/v1/mappings/taobao/dry-run", "platform", content=SAMPLE).status_code == 200
