"""Replaying dead letters over HTTP against the sandbox U8: with the dictionary version the order
was first mapped with, or with the one published now; never a second ERP document; refused when
the order mapped again would break a rule, and when replayed twice."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import REPO, SAMPLES, RunningGateway, gateway_env, run_gateway
from tests.support.servers import RunningSandbox

pytestmark = pytest.mark.integration

SAMPLE = (SAMPLES / "taobao" / "01_single_line_paid.json").read_bytes()


def _config(tmp_path: Path, sandbox: RunningSandbox, mappings: Path) -> Path:
    text = (REPO / "gateway" / "demo_config.toml").read_text(encoding="utf-8")
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f'mappings_dir = "{mappings}"\n' + text, encoding="utf-8")
    return cfg


def _publish_edited_dictionary(gw: RunningGateway, mappings: Path, old: str, new: str, version: str) -> None:
    """IT publishes a new version of the Taobao dictionary: proposed and published by ``it``,
    dry-run, and approved by a second person (``admin``)."""
    text = (mappings / "platforms" / "taobao.toml").read_text(encoding="utf-8")
    assert old in text
    text = text.replace(old, new).replace('version = "1"', f'version = "{version}"', 1)
    with gw.client("it") as it, gw.client("admin") as admin:
        r = it.post("/v1/mappings/versions", content=text.encode())
        assert r.status_code == 201, r.text
        path = f"/v1/mappings/versions/{r.json()['id']}"
        assert it.post(f"{path}/dry-run").status_code == 200
        assert admin.post(f"{path}/approve").status_code == 200
        assert it.post(f"{path}/publish").status_code == 200


def _dead_order(gw: RunningGateway, sandbox: RunningSandbox) -> tuple[str, dict[str, Any]]:
    """One order rejected by U8 (a business rejection: straight to a dead letter)."""
    sandbox.fault("u8", "reject", rate=1.0)
    with gw.client() as c:
        r = c.post("/v1/orders/taobao", content=SAMPLE)
    assert r.status_code == 202, r.text
    gw.wait_state(r.json()["id"], "dead")
    sandbox.clear_faults()
    with gw.client("it") as c:
        (letter,) = c.get("/v1/dead-letters").json()["items"]
    return r.json()["id"], letter


MEMO = ('seller_memo = { path = "seller_memo", transform = "raw_text" }', 'seller_memo = { default = "按新字典" }')
BAD_SKU = (
    'merchant_sku = { path = ["outer_sku_id", "outer_iid"], transform = "text" }',
    'merchant_sku = { default = "NO-SUCH-SKU" }',
)


def _dead_then_republished(
    sandbox: RunningSandbox, tmp_path: Path, mappings: Path, monkeypatch, edit: tuple[str, str], version: str
) -> tuple[dict[str, str], str, dict[str, Any], dict[str, Any]]:
    """An order dead-lettered under the first dictionary; then IT publishes ``version`` with
    ``edit`` and the gateway is restarted (it keeps the published version). Returns its
    environment, the order id, the dead letter and the order as it was."""
    env = gateway_env(tmp_path, sandbox.url, GATEWAY_CONFIG=str(_config(tmp_path, sandbox, mappings)))
    with run_gateway(env, monkeypatch) as gw:
        gid, letter = _dead_order(gw, sandbox)
        first = gw.order(gid)
        _publish_edited_dictionary(gw, mappings, *edit, version)
    return env, gid, letter, first


@pytest.fixture
def mappings(tmp_path: Path) -> Path:
    copy = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", copy, ignore=shutil.ignore_patterns("samples", "__pycache__"))
    return copy


def test_replay_with_the_first_dictionary_keeps_the_order_and_sends_one_document(
    sandbox: RunningSandbox, tmp_path: Path, mappings: Path, monkeypatch
) -> None:
    # IT publishes a new dictionary version; the gateway restarts with it.
    env, gid, letter, first = _dead_then_republished(sandbox, tmp_path, mappings, monkeypatch, MEMO, "2")
    with run_gateway(env, monkeypatch) as gw:
        with gw.client("it") as c:
            r = c.post(f"/v1/dead-letters/{letter['id']}/replay")  # no body: the first dictionary
            assert r.status_code == 202, r.text
            assert r.json()["dictionary"] == "first"
            assert r.json()["mapping_version"] == first["mapping_version"]
            again = c.post(f"/v1/dead-letters/{letter['id']}/replay")
            assert again.status_code == 409 and again.json()["code"] == "REPLAY_REFUSED"
        order = gw.wait_state(gid, "delivered")
        assert order["mapping_version"] == first["mapping_version"]
        assert order["seller_memo"] == first["seller_memo"]
        docs = sandbox.documents("u8")
        assert len(docs) == 1 and docs[0]["code"] == order["erp"]["document_no"]
        replayed = [t for t in order["timeline"] if t["kind"] == "erp.replayed"]
        assert replayed and replayed[0]["detail"]["dictionary"] == "first"


def test_replay_with_the_current_dictionary_maps_the_raw_payload_again(
    sandbox: RunningSandbox, tmp_path: Path, mappings: Path, monkeypatch
) -> None:
    env, gid, letter, first = _dead_then_republished(sandbox, tmp_path, mappings, monkeypatch, MEMO, "2")
    with run_gateway(env, monkeypatch) as gw:
        with gw.client("it") as c:
            bad = c.post(f"/v1/dead-letters/{letter['id']}/replay", content=b'{"dictionary": "newest"}')
            assert bad.status_code == 400 and bad.json()["code"] == "PAYLOAD_INVALID"
            r = c.post(f"/v1/dead-letters/{letter['id']}/replay", json={"dictionary": "current"})
            assert r.status_code == 202, r.text
            body = r.json()
        assert body["dictionary"] == "current" and body["changed"] == ["seller_memo"]
        assert body["previous_mapping_version"] == first["mapping_version"]
        assert body["mapping_version"].startswith("2+") and body["mapping_version"] != first["mapping_version"]
        order = gw.wait_state(gid, "delivered")
        assert order["mapping_version"] == body["mapping_version"]
        assert order["seller_memo"] == "按新字典"
        assert order["source"] == first["source"]  # still the payload that arrived
        assert len(sandbox.documents("u8")) == 1
        remapped = [t for t in order["timeline"] if t["kind"] == "order.remapped"]
        assert remapped and remapped[0]["detail"]["changed"] == ["seller_memo"]
        with gw.client("auditor") as c:
            entries = c.get("/v1/audit", params={"limit": 1000}).json()["items"]
        (audit,) = [e for e in entries if e["action"] == "dead_letter.replayed"]
        assert audit["data"]["dictionary"] == "current" and audit["data"]["changed"] == ["seller_memo"]


def test_replay_refused_when_the_current_dictionary_breaks_a_rule(
    sandbox: RunningSandbox, tmp_path: Path, mappings: Path, monkeypatch
) -> None:
    # A dictionary mistake: every SKU read from a field that does not exist in the value tables.
    env, gid, letter, first = _dead_then_republished(sandbox, tmp_path, mappings, monkeypatch, BAD_SKU, "3")
    with run_gateway(env, monkeypatch) as gw:
        with gw.client("it") as c:
            r = c.post(f"/v1/dead-letters/{letter['id']}/replay", json={"dictionary": "current"})
            assert r.status_code == 409, r.text
            assert r.json()["code"] == "REPLAY_REFUSED" and "UNKNOWN_SKU" in r.json()["message_en"]
            (still,) = c.get("/v1/dead-letters").json()["items"]
            assert still["replayed_at"] is None
        order = gw.order(gid)
        assert order["state"] == "dead" and order["mapping_version"] == first["mapping_version"]
        assert order["lines"] == first["lines"]
        assert sandbox.documents("u8") == []
