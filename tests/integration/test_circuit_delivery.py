"""The circuit wired into delivery, seen over HTTP: with the sandbox U8 answering HTTP 500 to
everything, the circuit opens after ``failure_threshold`` failures and the ERP then sees only
probes, one per ``open_seconds``; ``/health/ready`` and ``circuit_state`` show it; when the ERP
recovers every order is delivered once."""

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
OPEN_S = 1.0

RETRY = """[targets.u8-demo.retry]
first_delay_s = 0.1
unknown_outcome_delay_s = 0.1
max_attempts = 1000
"""
CIRCUIT = f"""
[targets.u8-demo.circuit]
failure_threshold = 3
open_seconds = {OPEN_S}
"""


def _body(n: int) -> bytes:
    payload = msgspec.json.decode(SAMPLE)
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["tid"] = 7_000_000_000_000_000_000 + n
    trade["tid_str"] = str(trade["tid"])
    return msgspec.json.encode(payload)


def _circuit(gw) -> str:  # noqa: ANN001
    return httpx.get(f"{gw.url}/health/ready", timeout=5).json()["checks"]["erp_targets"]["u8-demo"]["circuit"]


def test_an_erp_answering_500_opens_the_circuit_and_then_sees_only_probes(sandbox, tmp_path, monkeypatch) -> None:
    config = tmp_path / "gateway.toml"
    demo = (REPO / "gateway" / "demo_config.toml").read_text(encoding="utf-8")
    demo = re.sub(r"\[targets\.u8-demo\.retry\]\n(?:[^\[\n].*\n)*", RETRY, demo)  # ours instead
    config.write_text(demo + CIRCUIT, encoding="utf-8")
    sandbox.fault("u8", "http500", rate=1.0)
    env = gateway_env(tmp_path, sandbox.url, GATEWAY_CONFIG=str(config))
    with run_gateway(env, monkeypatch) as gw:
        with gw.client("platform") as c:
            ids = [c.post("/v1/orders/taobao", content=_body(n)).json()["id"] for n in range(5)]
        gw.wait_for(lambda: _circuit(gw) == "open", 10, "the circuit to open")
        failures = len(sandbox.calls("u8"))
        assert 3 <= failures <= 5  # the threshold, plus calls already in flight when it opened
        assert "circuit_state" in httpx.get(f"{gw.url}/metrics").text

        before = len(sandbox.calls("u8"))
        window = 3.2
        time.sleep(window)
        probes = len(sandbox.calls("u8")) - before
        # Without the circuit five orders retrying every 0.1 s would make ~150 calls here.
        assert probes <= int(window / OPEN_S) + 1, f"{probes} calls while open"
        assert all(gw.order(i)["state"] != "dead" for i in ids)

        sandbox.clear_faults("u8")
        for gid in ids:
            gw.wait_state(gid, "delivered", timeout=20)
        assert _circuit(gw) == "closed"
    codes = [d["code"] for d in sandbox.documents("u8")]
    assert len(codes) == len(set(codes)) and len(codes) >= 5
