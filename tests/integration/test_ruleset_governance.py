"""The rule catalog as governed data, over real HTTP on a real SQLite file: the bundled rule set
seeded, drafts that must compile, a dry run that re-judges the recorded orders and intercepts,
approval by a second person, a publish that switches every gateway on the database, rollback,
``GET /v1/rules``, and the rules version every order and intercept keeps."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from gateway.commands import create_key
from gateway.demo import rule_breaking_order
from gateway.publication import POLL_INTERVAL_S
from gateway.settings import load_settings
from tests.support.gateway import REPO, SAMPLES, RunningGateway, gateway_env, run_gateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

DEFAULT = (REPO / "mappings" / "rules" / "default.toml").read_text(encoding="utf-8")
SAMPLE = (SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes()
THREE_COUPONS = rule_breaking_order(SAMPLES)  # COUPON_STACK_LIMIT (max 2) rejects it
SWITCH_WITHIN_S = POLL_INTERVAL_S + 1.0  # docs/rules.md: "within about a second"


def ruleset(old: str, new: str, version: str, base: str = DEFAULT) -> str:
    assert base.count(old) == 1, old
    text = base.replace(old, new)
    header = re.search(r'\[ruleset\][^\[]*?version = "(\d+)"', text)
    assert header is not None
    start, end = header.span(1)
    return text[:start] + version + text[end:]


MAX_3 = ruleset("params = { max_coupons = 2 }", "params = { max_coupons = 3 }", "2")


def _with_tid(body: bytes, tid: int) -> bytes:
    payload = msgspec.json.decode(body)
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["tid"], trade["tid_str"] = tid, str(tid)
    return msgspec.json.encode(payload)


def _call(gw: RunningGateway, method: str, path: str, role: str = "it", key: str | None = None, **kw: Any):
    with gw.client(role) as c:
        if key is not None:
            c.headers["Authorization"] = f"Bearer {key}"
        return c.request(method, path, **kw)


def _ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()


def _propose(gw: RunningGateway, text: str, role: str = "it") -> dict[str, Any]:
    return _ok(_call(gw, "POST", "/v1/mappings/versions", role, json={"text": text, "note": "coupons"}), 201)


def _publish_new(gw: RunningGateway, text: str) -> dict[str, Any]:
    """Propose (it), dry-run, approve (admin) and publish (it)."""
    v = _propose(gw, text)
    _ok(_call(gw, "POST", f"/v1/mappings/versions/{v['id']}/dry-run"))
    _ok(_call(gw, "POST", f"/v1/mappings/versions/{v['id']}/approve", "admin"))
    return _ok(_call(gw, "POST", f"/v1/mappings/versions/{v['id']}/publish"))


def _post_order(gw: RunningGateway, body: bytes) -> Any:
    with gw.client("platform") as c:
        return c.post("/v1/orders/taobao", content=body)


def _rules(gw: RunningGateway, role: str = "it") -> dict[str, Any]:
    return _ok(_call(gw, "GET", "/v1/rules", role))


def _rule(catalog: dict[str, Any], code: str) -> dict[str, Any]:
    return next(r for r in catalog["rules"] if r["code"] == code)


def _audit(gw: RunningGateway) -> list[dict[str, Any]]:
    with gw.client("auditor") as c:
        return c.get("/v1/audit", params={"limit": 1000}).json()["items"]


def _intercept(gw: RunningGateway, intercept_id: str) -> dict[str, Any]:
    with gw.client("auditor") as c:
        items = c.get("/v1/intercepts", params={"limit": 1000}).json()["items"]
    return next(i for i in items if i["id"] == intercept_id)


# ----------------------------------------------------------------------------------------- tests


def test_the_bundled_rule_set_is_seeded_and_listed(gateway: RunningGateway) -> None:
    (seeded,) = _ok(_call(gateway, "GET", "/v1/mappings/versions", params={"kind": "ruleset"}))["items"]
    assert (seeded["name"], seeded["kind"], seeded["state"]) == ("default", "ruleset", "published")
    assert seeded["published_by"] == "seed" and seeded["platform"] is None
    catalog = _rules(gateway)
    assert catalog["ruleset"] == "default" and catalog["configured"] is True
    assert catalog["published"]["id"] == seeded["id"]
    # no parameter overrides in the demo configuration: orders record the stored version itself
    assert catalog["rules_version"] == seeded["mapping_version"] == catalog["in_use_here"]
    assert catalog["config_overrides"] == {}
    coupons = _rule(catalog, "COUPON_STACK_LIMIT")
    assert coupons["severity"] == "reject" and coupons["params"] == {"max_coupons": 2} and coupons["enabled"]
    assert "优惠券" in coupons["message_zh"] and "coupons" in coupons["message_en"]
    assert coupons["platforms"] == [] and coupons["shops"] == []
    assert {r["code"] for r in catalog["rules"]} >= {"UNKNOWN_SHOP", "UNKNOWN_SKU", "AMOUNT_MISMATCH", "PAID_HOLD"}
    assert _rules(gateway, "auditor") == catalog
    listed = _ok(_call(gateway, "GET", "/v1/mappings/dictionaries"))["items"]
    (default,) = [i for i in listed if i["name"] == "default"]
    assert default["kind"] == "ruleset" and default["in_use_here"] == catalog["rules_version"]
    order = _ok(_post_order(gateway, SAMPLE), 202)
    assert order["rules_version"] == catalog["rules_version"]
    (entry,) = [e for e in _audit(gateway) if e["action"] == "ruleset.seeded"]
    assert entry["subject_type"] == "ruleset_version" and entry["subject_id"] == str(seeded["id"])
    assert entry["actor"] == "seed" and entry["data"]["file"] == "rules/default.toml"


def test_a_draft_raising_the_coupon_limit_turns_the_recorded_intercept_into_an_accept(
    gateway: RunningGateway,
) -> None:
    first = _rules(gateway)["rules_version"]
    accepted = _ok(_post_order(gateway, SAMPLE), 202)
    r = _post_order(gateway, THREE_COUPONS)
    assert r.status_code == 422 and r.json()["code"] == "ORDER_INTERCEPTED", r.text
    intercept_id = r.json()["intercept_id"]
    assert _intercept(gateway, intercept_id)["rules_version"] == first

    v = _propose(gateway, MAX_3)
    assert v["kind"] == "ruleset" and v["name"] == "default" and v["state"] == "draft"
    assert v["mapping_version"].startswith("2+") and v["mapping_version"] != first
    summary = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/dry-run", params={"limit": 50}))
    assert summary["kind"] == "ruleset" and summary["against"]["version"] == first
    assert summary["corpus"]["recorded"] == 2 and summary["corpus"]["samples"] >= 5
    (mine,) = [o for o in summary["orders"] if o["ref"] == intercept_id]
    assert mine["source"] == "intercept" and mine["status"] == "newly_passing"
    assert mine["recorded"] == {"state": "intercepted", "rules_version": first}
    assert mine["before"]["verdict"] == "reject" and mine["before"]["rules"] == ["COUPON_STACK_LIMIT"]
    assert mine["after"] == {"ok": True, "verdict": "accept"}
    assert mine["rules_removed"] == ["COUPON_STACK_LIMIT"] and mine["rules_added"] == []
    assert {"path": "(verdict)", "before": "reject: COUPON_STACK_LIMIT", "after": "accept"} in mine["changes"]
    assert {"path": "rules.COUPON_STACK_LIMIT", "before": "reject", "after": None} in mine["changes"]
    assert summary["counts"]["newly_passing"] == 1 and summary["counts"]["newly_failing"] == 0
    assert summary["verdicts"] == {"reject → accept": 1}
    assert summary["rules"] == {"COUPON_STACK_LIMIT": {"added": 0, "removed": 1, "severity_changed": 0}}
    assert accepted["id"] not in {o["ref"] for o in summary["orders"]}  # its verdict does not change
    assert _ok(_call(gateway, "GET", f"/v1/mappings/versions/{v['id']}/dry-run")) == summary

    # the proposer cannot approve; another person can; then it is published
    r = _call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/approve")
    assert r.status_code == 403 and r.json()["code"] == "APPROVER_IS_PROPOSER", r.text
    second = asyncio.run(create_key(load_settings(), role="it", label="second IT"))
    approved = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/approve", key=second))
    published = _ok(_call(gateway, "POST", f"/v1/mappings/versions/{v['id']}/publish"))
    assert approved["state"] == "approved" and published["state"] == "published"
    assert published["previous"]["version"] == first
    catalog = _rules(gateway)
    assert catalog["rules_version"] == catalog["in_use_here"] == v["mapping_version"]
    assert _rule(catalog, "COUPON_STACK_LIMIT")["params"] == {"max_coupons": 3}

    # the same three coupons now pass, under the new version; what was recorded keeps its version
    again = _ok(_post_order(gateway, THREE_COUPONS), 202)
    assert again["status"] == "accepted" and again["rules_version"] == v["mapping_version"]
    assert gateway.order(accepted["id"])["rules_version"] == first
    assert _intercept(gateway, intercept_id)["rules_version"] == first
    entries = [e for e in _audit(gateway) if e["subject_type"] == "ruleset_version" and e["subject_id"] == str(v["id"])]
    actions = [e["action"] for e in entries]
    assert actions == ["ruleset.proposed", "ruleset.dry_run", "ruleset.approved", "ruleset.published"]
    assert entries[2]["actor"] == approved["approved_by"] != v["proposed_by"] == entries[0]["actor"]
    assert entries[1]["data"]["counts"]["newly_passing"] == 1
    assert entries[3]["data"]["previous"]["version"] == first
    with gateway.client("auditor") as c:
        assert c.get("/v1/audit/verify").json()["ok"] is True


def test_publish_switches_another_gateway_and_rollback_switches_back(
    sandbox: RunningSandbox, tmp_path: Path, monkeypatch
) -> None:
    env = gateway_env(tmp_path, sandbox.url)
    with run_gateway(env, monkeypatch) as a, run_gateway(env, monkeypatch) as b:
        first = _rules(b)["in_use_here"]
        before = _ok(_post_order(b, SAMPLE), 202)
        published = _publish_new(a, MAX_3)
        started = time.monotonic()
        b.wait_for(lambda: _rules(b)["in_use_here"] == published["mapping_version"], timeout=10, what="b to switch")
        assert time.monotonic() - started < SWITCH_WITHIN_S
        passed = _ok(_post_order(b, _with_tid(THREE_COUPONS, 4000000000000000001)), 202)
        assert passed["rules_version"] == published["mapping_version"]
        assert b.order(before["id"])["rules_version"] == first  # kept: judged by version 1

        # one person rolls back: both gateways judge by version 1 again
        (seeded,) = _ok(_call(a, "GET", "/v1/mappings/versions", params={"kind": "ruleset", "state": "superseded"}))[
            "items"
        ]
        r = _call(b, "POST", f"/v1/mappings/versions/{published['id']}/rollback")
        assert r.status_code == 409 and r.json()["code"] == "VERSION_STATE_CONFLICT"  # it is the published one
        back = _ok(_call(b, "POST", f"/v1/mappings/versions/{seeded['id']}/rollback", json={"note": "too lax"}))
        assert back["state"] == "published" and back["previous"]["id"] == published["id"]
        assert _rules(b)["in_use_here"] == first
        a.wait_for(lambda: _rules(a)["in_use_here"] == first, timeout=10, what="a to switch back")
        r = _post_order(a, _with_tid(THREE_COUPONS, 4000000000000000002))
        assert r.status_code == 422 and r.json()["violations"][0]["rule"] == "COUPON_STACK_LIMIT"
        assert a.order(passed["id"])["rules_version"] == published["mapping_version"]
        (entry,) = [e for e in _audit(a) if e["action"] == "ruleset.rolled_back"]
        assert entry["subject_id"] == str(seeded["id"]) and entry["data"]["note"] == "too lax"
        assert entry["data"]["previous"]["id"] == published["id"]
        diff = _ok(_call(a, "GET", f"/v1/mappings/versions/{seeded['id']}/diff/{published['id']}"))
        assert "+params = { max_coupons = 3 }" in diff["text_diff"] and "counts" in diff["samples"]


def test_rule_set_drafts_must_compile(gateway: RunningGateway) -> None:
    unknown_code = DEFAULT + '\n[rules.NO_SUCH_RULE]\nseverity = "reject"\nmessage_zh = "无"\nmessage_en = "none"\n'
    bad_severity = ruleset(
        'severity = "hold"\nmessage_zh = "订单已付款', 'severity = "block"\nmessage_zh = "订单已付款', "2"
    )
    unknown_platform = ruleset(
        "params = { max_coupons = 2 }", 'params = { max_coupons = 2 }\nplatforms = ["ebay"]', "2"
    )
    unpaired = ruleset("超过上限 {max_coupons} 张", "超过上限 {max_coupons 张", "2")
    for text, needle in (
        (unknown_code, "NO_SUCH_RULE"),
        (bad_severity, "severity"),
        (unknown_platform, "ebay"),
        (unpaired, "COUPON_STACK_LIMIT"),
    ):
        for path in ("/v1/mappings/versions", "/v1/mappings/validate"):
            r = _call(gateway, "POST", path, content=text.encode(), headers={"Content-Type": "application/toml"})
            assert r.status_code == 422, r.text
            body = r.json()
            assert body["code"] == "RULESET_INVALID" and needle in body["message_en"] and body["message_zh"]
    ok = _ok(_call(gateway, "POST", "/v1/mappings/validate", content=MAX_3.encode()))
    assert ok["kind"] == "ruleset" and ok["name"] == "default" and ok["mapping_version"].startswith("2+")
    r = _call(gateway, "POST", "/v1/mappings/versions", content=DEFAULT.encode())  # the published text again
    assert r.status_code == 409 and r.json()["code"] == "DICTIONARY_UNCHANGED"
    taken = ruleset('name = "default"', 'name = "taobao"', "2")  # the name of a dictionary
    r = _call(gateway, "POST", "/v1/mappings/versions", content=taken.encode())
    assert r.status_code == 422 and r.json()["code"] == "RULESET_INVALID" and "taobao" in r.json()["message_en"]
    assert _ok(_call(gateway, "GET", "/v1/mappings/versions", params={"state": "draft"}))["items"] == []


def test_roles(gateway: RunningGateway) -> None:
    for role in ("platform", "wms", "erp"):
        r = _call(gateway, "GET", "/v1/rules", role)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", role
    for role in ("platform", "wms", "erp", "auditor"):
        r = _call(gateway, "POST", "/v1/mappings/versions", role, content=MAX_3.encode())
        assert r.status_code == 403, role
    assert _call(gateway, "GET", "/v1/rules", "").status_code == 401
    assert _call(gateway, "GET", "/v1/rules", "admin").status_code == 200
    r = _call(gateway, "GET", "/v1/rules", params={"name": "nothing"})
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


def test_rule_sets_from_the_shell(tmp_path: Path, monkeypatch) -> None:
    from gateway.cli import app

    monkeypatch.setenv("GATEWAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def gateway(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["mappings", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert re.search(r"default\s+│\s+1\+\w+\s+│\s+published", gateway("versions", "default"))
    assert re.search(r"ok\s+\S+default\.toml\s+rule set default 1\+", gateway("validate"))
    (tmp_path / "rules.toml").write_text(MAX_3, encoding="utf-8")
    out = gateway("draft", str(tmp_path / "rules.toml"), "--by", "ann")
    draft = re.search(r"draft #(\d+) default 2\+", out).group(1)
    out = gateway("dry-run", draft, "--by", "ann")
    assert re.search(r"dry run 2\+\w+ against 1\+\w+: \d+ orders \(0 recorded, \d+ samples\)", out), out
    assert "APPROVER_IS_PROPOSER" in gateway("approve", draft, "--by", "ann", code=1)
    assert "approved" in gateway("approve", draft, "--by", "bob")
    assert re.search(rf"published #{draft} default 2\+\w+ \(was #\d+ 1\+", gateway("publish", draft, "--by", "ann"))
    assert "rolled back to" in gateway("rollback", "default", "1", "--by", "cat")
    bad = tmp_path / "bad.toml"
    bad.write_text(MAX_3.replace('severity = "reject"', 'severity = "block"', 1), encoding="utf-8")
    assert "RULESET_INVALID" in gateway("draft", str(bad), code=1)
    assert "FAIL" in gateway("validate", str(bad), code=1)
