"""Stop the line over HTTP with the sandbox: U8 answers HTTP 500, the backlog passes a small
threshold and the line stops — no new U8 calls while stopped, an audit entry, ``stop_the_line`` = 1,
intake still accepting — until IT resumes it; then every order ends as exactly one document."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from tests.support.gateway import SAMPLES, gateway_env, run_gateway

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = (SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes()

RETRY = """[targets.u8-demo.retry]
first_delay_s = 0.1
cap_s = 0.3
unknown_outcome_delay_s = 0.1
max_attempts = 1000
"""
STOP_LINE = """
[targets.u8-demo.circuit]
failure_threshold = 1000

[targets.u8-demo.stop_line]
max_backlog = 3
max_oldest_s = 0.5
resume_below = 1
auto_resume = false
check_interval_s = 0.2
defer_s = 0.3
"""


def _body(n: int) -> bytes:
    payload = msgspec.json.decode(SAMPLE)
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["tid"] = 7_100_000_000_000_000_000 + n
    trade["tid_str"] = str(trade["tid"])
    return msgspec.json.encode(payload)


def _line(gw) -> dict:  # noqa: ANN001
    with gw.client("auditor") as c:
        r = c.get("/v1/targets")
        r.raise_for_status()
    [item] = [t for t in r.json()["items"] if t["target"] == "u8-demo"]
    return item


def _gauge(gw) -> float:  # noqa: ANN001
    text = httpx.get(f"{gw.url}/metrics", timeout=5).text
    m = re.search(r'^stop_the_line\{target="u8-demo"\} (\S+)$', text, re.M)
    assert m, "stop_the_line{target} is missing"
    return float(m.group(1))


def test_a_backlog_past_the_threshold_stops_the_line_until_it_resumes_it(sandbox, tmp_path, monkeypatch) -> None:
    config = tmp_path / "gateway.toml"
    demo = (REPO / "gateway" / "demo_config.toml").read_text(encoding="utf-8")
    demo = re.sub(r"\[targets\.u8-demo\.retry\]\n(?:[^\[\n].*\n)*", RETRY, demo)
    config.write_text(demo + STOP_LINE, encoding="utf-8")
    sandbox.fault("u8", "http500", rate=1.0)
    env = gateway_env(tmp_path, sandbox.url, GATEWAY_CONFIG=str(config))
    with run_gateway(env, monkeypatch) as gw:
        assert _line(gw)["stop_line"]["state"] == "running" and _gauge(gw) == 0
        with gw.client("platform") as c:
            ids = [c.post("/v1/orders/taobao", content=_body(n)).json()["id"] for n in range(5)]
        gw.wait_for(lambda: _line(gw)["stop_line"]["state"] == "stopped", 10, "the line to stop")
        line = _line(gw)
        assert line["stop_line"]["by"] == "auto" and line["backlog"] == 5
        assert _gauge(gw) == 1
        with gw.client("auditor") as c:
            entries = c.get("/v1/audit", params={"limit": 1000}).json()["items"]
        [stopped] = [e for e in entries if e["action"] == "target.stopped"]
        assert stopped["subject_id"] == "u8-demo" and stopped["data"]["backlog"] == 5

        time.sleep(0.5)  # calls already in flight when the line stopped finish
        sandbox.clear_faults("u8")  # the ERP is back, but the line stays stopped (auto_resume off)
        before = len(sandbox.calls("u8"))
        with gw.client("platform") as c:  # intake still accepts while stopped
            r = c.post("/v1/orders/taobao", content=_body(99))
            assert r.status_code == 202
            ids.append(r.json()["id"])
        time.sleep(2.0)
        assert len(sandbox.calls("u8")) == before, "U8 was called while the line was stopped"
        assert all(gw.order(i)["state"] != "delivered" for i in ids)

        with gw.client("auditor") as c:  # auditors look, only IT commands
            assert c.post("/v1/targets/u8-demo/resume").status_code == 403
        with gw.client("it") as c:
            assert c.post("/v1/targets/nope/resume").status_code == 404
            r = c.post("/v1/targets/u8-demo/resume")
            assert r.status_code == 200 and r.json()["state"] == "running"
        for gid in ids:
            gw.wait_state(gid, "delivered", timeout=20)
        assert _gauge(gw) == 0 and _line(gw)["stop_line"]["state"] == "running"
        with gw.client("auditor") as c:
            entries = c.get("/v1/audit", params={"limit": 1000}).json()["items"]
        resumed = [e for e in entries if e["action"] == "target.resumed"]
        assert len(resumed) == 1 and resumed[0]["actor"] == "it"
    codes = [d["code"] for d in sandbox.documents("u8")]
    assert len(codes) == len(set(codes)) == len(ids)
