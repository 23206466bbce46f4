"""Shipment read-back over loopback: orders delivered by the real gateway (SQLite) to the U8 EAI, U8+
OpenAPI, K3 WebAPI and K3 SOAP sandboxes, a shipment booked in the ERP as a WMS would, then
`gateway erp readback --once` records it once (an ``erp.shipped`` timeline entry with the waybill,
an ``order.shipped_by_erp`` audit entry) and a second run records nothing. Two pollers at once,
each with its own engine as two processes would have, on SQLite and PostgreSQL, record each
shipment exactly once. And the periodic runs: the embedded worker, two workers sharing the Redis
lock, and the polling command as a process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from redis.asyncio import Redis
from typer.testing import CliRunner

from adapters.db.engine import create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory
from adapters.erp import AdapterContext, make_adapter
from adapters.redis.locks import RedisPollLock
from adapters.u8 import U8EaiAdapter
from gateway.bootstrap import build_container, build_worker_container
from gateway.cli import app as cli
from gateway.clock import SystemClock
from gateway.config import ReadbackConfig, TargetConfig, load_config
from gateway.document import document_code
from gateway.ports import ErpShipment, ErpShipmentLine
from gateway.readback import ReadbackScheduler, poll_target, record_shipment
from gateway.settings import Settings
from tests.integration.test_u8_consignments import consignment, line, ship, written_order
from tests.integration.test_u8_openapi import ship as ship_u8_openapi
from tests.support.gateway import REPO, SAMPLES, RunningGateway, gateway_env, run_gateway
from tests.support.servers import RunningSandbox
from tests.support.storage import make_order

pytestmark = pytest.mark.integration

IMPORT = "/U8EAI/import.asp"
CHINA = ZoneInfo("Asia/Shanghai")


def _today() -> str:
    """The ERP's local day: a shipment is dated after its order reached the gateway."""
    return datetime.now(CHINA).date().isoformat()


def _deliver(gw: RunningGateway, platform: str, sample: str) -> tuple[str, dict[str, Any]]:
    with gw.client() as c:
        r = c.post(f"/v1/orders/{platform}", content=(SAMPLES / platform / sample).read_bytes())
    assert r.status_code in (200, 202), r.text
    gid = r.json()["id"]
    return gid, gw.wait_state(gid, "delivered")


def _readback(target: str) -> str:
    result = CliRunner().invoke(cli, ["erp", "readback", "--target", target, "--once"])
    assert result.exit_code == 0, result.output
    return result.output


def _shipped(gw: RunningGateway, gid: str) -> list[dict[str, Any]]:
    return [t["detail"] for t in gw.order(gid)["timeline"] if t["kind"] == "erp.shipped"]


def _audited(gw: RunningGateway, gid: str) -> list[dict[str, Any]]:
    with gw.client("auditor") as c:
        items = c.get("/v1/audit", params={"limit": 1000}).json()["items"]
    return [e for e in items if e["action"] == "order.shipped_by_erp" and e["subject_id"] == gid]


def test_a_u8_consignment_becomes_one_shipped_event(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    gid, order = _deliver(gateway, "taobao", "01_single_line_paid.json")
    code = order["erp"]["document_no"]
    (doc,) = sandbox.documents("u8")
    item, qty = doc["lines"][0]["inventorycode"], doc["lines"][0]["quantity"]
    extra = "<shippingchoice>SF</shippingchoice><cebexpresscode>SF1234567890</cebexpresscode>"
    body = (
        '<?xml version="1.0" encoding="utf-8"?><ufinterface sender="101" receiver="u8" roottag="consignment" '
        'docid="" proc="add" codeexchanged="N">'
        + consignment(line(code, 1, item, str(qty)), date=_today(), extra=extra)
        + "</ufinterface>"
    ).encode()
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        reply = client.post(IMPORT, content=body)
    assert 'succeed="0"' in reply.text, reply.text
    number = reply.text.split('key="')[1].split('"')[0]

    out = _readback("u8-demo")
    assert "u8-demo: 1 delivered orders asked, 1 shipments seen, 1 recorded" in out

    [detail] = _shipped(gateway, gid)
    assert detail["waybill_no"] == "SF1234567890" and detail["carrier"] == "SF"
    assert detail["shipment_no"] == number and detail["document_code"] == code
    assert detail["event_id"] == f"erp:u8-demo:{number}:{code}"
    assert detail["lines"] == [{"item_code": item, "qty": qty, "row": 1}] and detail["completes_order"] is True
    [entry] = _audited(gateway, gid)
    assert entry["actor"] == "gateway" and entry["data"]["event_id"] == detail["event_id"]
    assert "receiver" not in json.dumps(detail) and "buyer" not in json.dumps(detail)

    # Again: the order shipped in full is not asked about; nothing new either way.
    assert "u8-demo: 0 delivered orders asked, 0 shipments seen, 0 recorded" in _readback("u8-demo")
    assert len(_shipped(gateway, gid)) == 1 and len(_audited(gateway, gid)) == 1


def test_a_k3_outbound_bill_becomes_one_shipped_event(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    gid, order = _deliver(gateway, "douyin", "01_single_paid.json")
    code = order["erp"]["document_no"]
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        r = client.post("/_sandbox/k3/shipments", json={"order": code, "header": {"FHeadSelfB0436": "YT0000000001"}})
    assert r.status_code == 200, r.text
    bill = r.json()["FBillNo"]

    assert "k3-demo: 1 delivered orders asked, 1 shipments seen, 1 recorded" in _readback("k3-demo")
    [detail] = _shipped(gateway, gid)
    assert detail["shipment_no"] == f"Sales_Delivery:{bill}" and detail["waybill_no"] == "YT0000000001"
    assert detail["event_id"] == f"erp:k3-demo:Sales_Delivery:{bill}:{code}"
    assert len(_audited(gateway, gid)) == 1

    again = _readback("k3-demo")
    assert "0 new shipments recorded" in again
    assert len(_shipped(gateway, gid)) == 1 and len(_audited(gateway, gid)) == 1


def test_a_k3_soap_outstock_becomes_one_shipped_event(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    gid, order = _deliver(gateway, "jd", "01_single_wait_stockout.json")
    spec = {"order": order["erp"]["document_no"], "carrier": "JD", "waybill": "JDVA0000000001"}
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        r = client.post("/_sandbox/k3soap/shipments", json=spec)
    assert r.status_code == 200, r.text

    assert "k3soap-demo: 1 delivered orders asked, 1 shipments seen, 1 recorded" in _readback("k3soap-demo")
    [detail] = _shipped(gateway, gid)
    assert (detail["shipment_no"], detail["carrier"], detail["waybill_no"]) == (
        r.json()["BillNO"],
        "JD",
        spec["waybill"],
    )
    assert "0 new shipments recorded" in _readback("k3soap-demo")
    assert len(_shipped(gateway, gid)) == 1 and len(_audited(gateway, gid)) == 1


async def test_a_u8_openapi_consignment_becomes_one_shipped_event(
    gateway: RunningGateway, sandbox: RunningSandbox
) -> None:
    gid, order = _deliver(gateway, "pinduoduo", "01_single_paid.json")
    code = order["erp"]["document_no"]
    (doc,) = sandbox.documents("u8openapi")
    assert doc["code"] == code
    item, qty = doc["lines"][0]["inventorycode"], int(doc["lines"][0]["quantity"])
    db = create_engine(gateway.database_url)
    try:
        async with httpx.AsyncClient() as http:
            ctx = AdapterContext(
                name="u8-cloud-demo",
                target=load_config(None).targets["u8-cloud-demo"],
                http=http,
                uow_factory=SqlUnitOfWorkFactory(db),
            )
            adapter = make_adapter(ctx)
            number = await ship_u8_openapi(sandbox, adapter, code, item, qty, waybill="YD0000000001")
    finally:
        await db.dispose()

    out = await asyncio.to_thread(_readback, "u8-cloud-demo")
    assert "u8-cloud-demo: 1 delivered orders asked, 1 shipments seen, 1 recorded" in out
    [detail] = _shipped(gateway, gid)
    assert (detail["shipment_no"], detail["waybill_no"]) == (number, "YD0000000001")
    assert "0 new shipments recorded" in await asyncio.to_thread(_readback, "u8-cloud-demo")
    assert len(_shipped(gateway, gid)) == 1 and len(_audited(gateway, gid)) == 1


def test_the_polling_command_reads_back_at_once_and_stops_on_sigterm(
    gateway: RunningGateway, sandbox: RunningSandbox
) -> None:
    """`gateway erp readback` as a service: its first round at start, then every interval until SIGTERM."""
    gid, order = _deliver(gateway, "douyin", "01_single_paid.json")
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        r = client.post("/_sandbox/k3/shipments", json={"order": order["erp"]["document_no"]})
        assert r.status_code == 200, r.text
    env = {
        **os.environ,
        "GATEWAY_DATABASE_URL": gateway.database_url,
        "GATEWAY_SANDBOX_URL": sandbox.url,
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    env.pop("GATEWAY_CONFIG", None)
    command = [str(Path(sys.executable).parent / "gateway"), "erp", "readback", "--target", "k3-demo"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        [detail] = gateway.wait_for(lambda: _shipped(gateway, gid), 30, "the polling command's first round")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    assert "stopped" in err.decode()
    assert detail["shipment_no"] == f"Sales_Delivery:{r.json()['FBillNo']}"


# --------------------------------------------------------------------------- two pollers at once


class MeetingAdapter:
    """The real U8 EAI adapter, but each poller's reply waits until the other one's is in too: both
    then record the same shipments at the same time."""

    def __init__(self, adapter: U8EaiAdapter, barrier: asyncio.Barrier) -> None:
        self._adapter = adapter
        self._barrier = barrier

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        found = await self._adapter.shipments(codes, since=since)
        await asyncio.wait_for(self._barrier.wait(), timeout=20)
        return found


async def _delivered_orders(uow_factory: SqlUnitOfWorkFactory, count: int) -> list[Any]:
    canonical = {"lines": [{"merchant_sku": "HOME-PILLOW-GRY-4874", "qty": 3}, {"merchant_sku": "PEN", "qty": 1}]}
    stored = []
    async with uow_factory() as uow:
        for n in range(1, count + 1):
            order = await uow.orders.add(make_order(n, canonical=canonical))
            await uow.orders.set_erp(order.id, target="u8", document_no=f"GW{order.seq:08d}", status="delivered")
            await uow.orders.set_state(order.id, "delivered")
            stored.append(order)
        await uow.commit()
    return stored


async def test_two_pollers_at_once_record_each_shipment_once(database_url: str, sandbox: RunningSandbox) -> None:
    readback = ReadbackConfig(enabled=True, batch=2)
    target = TargetConfig(transport="u8_eai", url=f"{sandbox.url}{IMPORT}", sender="101", readback=readback)
    dbs = [create_engine(database_url) for _ in range(2)]
    factories = [SqlUnitOfWorkFactory(db) for db in dbs]
    u8 = U8EaiAdapter(url=f"{sandbox.url}{IMPORT}", sender="101", timeout=10.0)
    try:
        orders = await _delivered_orders(factories[0], 3)
        codes = [document_code("GW", o.seq, 10) for o in orders]
        for code in codes:
            await written_order(u8, code)
        day = _today()
        # One 发货单 ships orders 1 and 2, another the rest of order 1, a third part of order 3.
        await ship(sandbox, consignment(line(codes[0], 1, "030101", "3"), line(codes[1], 1, "030101", "1"), date=day))
        await ship(sandbox, consignment(line(codes[0], 2, "050101", "1"), date=day))
        await ship(sandbox, consignment(line(codes[2], 1, "030101", "2"), date=day))

        meeting = MeetingAdapter(u8, asyncio.Barrier(2))
        clock = SystemClock()
        reports = await asyncio.gather(*(poll_target("u8", target, meeting, f, clock) for f in factories))
        assert [r.orders for r in reports] == [3, 3] and [r.shipments for r in reports] == [4, 4]
        assert sum(r.recorded for r in reports) == 4

        async with factories[1](write=False) as uow:
            rows = [r for o in orders for r in await uow.erp_shipments.for_order(o.id)]
            shipped = {o.id: [t for t in await uow.orders.timeline(o.id) if t.kind == "erp.shipped"] for o in orders}
            audit = [e for e in await uow.audit.list(after_seq=0, limit=1000) if e.action == "order.shipped_by_erp"]
            chain = await uow.audit.verify()
        assert len(rows) == 4 and len({r.event_id for r in rows}) == 4
        assert [len(shipped[o.id]) for o in orders] == [2, 1, 1]
        assert len(audit) == 4 and chain.ok
        assert [r.completes_order for r in rows if r.order_id == orders[0].id] == [False, True]

        # The same shipment recorded by both at the very same moment: one insert wins, the other
        # writes nothing (on PostgreSQL it waits for the winner's commit, then does nothing).
        extra = ErpShipment(
            document_code=codes[2], shipment_no="9999999999", lines=[ErpShipmentLine(item_code="030101", qty=1)]
        )
        now = clock.now()
        won = await asyncio.gather(*(record_shipment("u8", orders[2], extra, f, now=now) for f in factories))
        assert sorted(won) == [False, True]
        async with factories[0](write=False) as uow:
            assert len(await uow.erp_shipments.for_order(orders[2].id)) == 2
            assert len([t for t in await uow.orders.timeline(orders[2].id) if t.kind == "erp.shipped"]) == 2

        # A later round of either poller: nothing new (order 3 still asked about: 3 of 4 units shipped).
        again = await poll_target("u8", target, u8, factories[1], clock)
        assert (again.orders, again.recorded) == (2, 0)
    finally:
        await u8.aclose()
        for db in dbs:
            await db.dispose()


# --------------------------------------------------------------------------- running it periodically


def test_the_embedded_worker_reads_shipments_back_by_itself(sandbox: RunningSandbox, tmp_path, monkeypatch) -> None:
    """``gateway serve`` without Redis: the scheduler runs in the process, each target's interval."""
    demo = (REPO / "gateway" / "demo_config.toml").read_text(encoding="utf-8")
    config = tmp_path / "gateway.toml"
    config.write_text(re.sub(r"(?m)^interval_s = 30$", "interval_s = 1", demo), encoding="utf-8")
    with run_gateway(gateway_env(tmp_path, sandbox.url, GATEWAY_CONFIG=str(config)), monkeypatch) as gw:
        gid, order = _deliver(gw, "douyin", "01_single_paid.json")
        with httpx.Client(base_url=sandbox.url, timeout=10) as client:
            r = client.post("/_sandbox/k3/shipments", json={"order": order["erp"]["document_no"]})
            assert r.status_code == 200, r.text
        [detail] = gw.wait_for(lambda: _shipped(gw, gid), 20, "the shipment read back")
        assert detail["shipment_no"] == f"Sales_Delivery:{r.json()['FBillNo']}"
        time.sleep(2.5)  # two more rounds: nothing new
        assert len(_shipped(gw, gid)) == 1 and len(_audited(gw, gid)) == 1


async def test_with_redis_one_worker_polls_a_target_per_interval(
    sandbox: RunningSandbox, redis: Redis, tmp_path
) -> None:
    """Two workers' schedulers share a Redis lock: one round per interval between them, not two."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    db = create_engine(url)
    u8 = U8EaiAdapter(url=f"{sandbox.url}{IMPORT}", sender="101", timeout=10.0)
    readback = ReadbackConfig(enabled=True, interval_s=1)
    targets = {"u8": TargetConfig(transport="u8_eai", url=f"{sandbox.url}{IMPORT}", sender="101", readback=readback)}
    try:
        uow_factory = SqlUnitOfWorkFactory(db)
        [order] = await _delivered_orders(uow_factory, 1)
        code = document_code("GW", order.seq, 10)
        await written_order(u8, code)
        await ship(sandbox, consignment(line(code, 1, "030101", "1"), date=_today()))
        workers = [
            ReadbackScheduler(
                targets, {"u8": u8}, uow_factory, SystemClock(), lock=RedisPollLock(redis), immediately=True
            )
            for _ in range(2)
        ]
        for w in workers:
            w.start()
        await asyncio.sleep(3.4)  # rounds at about 0, 1, 2 and 3 s
        for w in workers:
            await w.stop()
        rounds = [w.rounds["u8"] for w in workers]
        assert 2 <= sum(rounds) <= 5, rounds  # one per interval between them; each alone would have run 4
        assert await redis.get("gateway:lock:readback:u8") is not None
        async with uow_factory(write=False) as uow:
            assert len(await uow.erp_shipments.for_order(order.id)) == 1
    finally:
        await u8.aclose()
        await db.dispose()


async def test_gateway_worker_wires_the_scheduler_with_the_redis_lock(redis_url: str, tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    worker = await build_worker_container(Settings(database_url=url, redis_url=redis_url))
    try:
        assert worker.readback is not None and isinstance(worker.readback.lock, RedisPollLock)
        assert sorted(worker.readback.targets) == ["k3-demo", "k3soap-demo", "u8-cloud-demo", "u8-demo"]
    finally:
        await worker.aclose()
    embedded = await build_container(Settings(database_url=url), migrate=False)
    try:
        assert embedded.worker is not None and embedded.readback is not None and embedded.readback.lock is None
    finally:
        await embedded.aclose()
