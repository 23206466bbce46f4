"""Newer versions of a Taobao order already in U8, end to end: the real gateway on SQLite, real HTTP
to it and from it to the U8 EAI sandbox. An edit changes the same document (proc="edit", one
document, same code), a cancelled version deletes it (proc="delete") and cancels the order, a
refused edit becomes a dead letter with U8's words that a replay sends again, and an order U8 has
shipped (a 发货单 refers to it) is neither edited nor cancelled. And on real SQLite and PostgreSQL
(its grouped unit of work): a version stored while the first delivery is on its way to U8 is
queued as an edit behind it, and the edits of one order queue in the order they came."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from lxml import etree
from sqlalchemy import text

from adapters.db.engine import create_engine
from adapters.db.uow import SqlUnitOfWorkFactory
from adapters.u8.eai import U8EaiAdapter
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.delivery import DeliveryDeps, deliver
from gateway.intake import accept_order
from gateway.runtime import load_runtime
from tests.integration.test_u8_consignments import consignment, line
from tests.support.gateway import SAMPLES, RunningGateway
from tests.support.servers import RunningSandbox

needs_u8_edits = pytest.mark.skipif(
    not (hasattr(U8EaiAdapter, "update") and hasattr(U8EaiAdapter, "cancel")),
    reason="U8EaiAdapter.update/cancel (proc=edit/delete) are not in adapters/u8/eai.py yet",
)

SAMPLE = json.loads((SAMPLES / "taobao" / "01_single_line_paid.json").read_text())


def version(minute: int, *, qty: int = 1, **trade: Any) -> bytes:
    """The sample as Taobao sends it later (``modified`` at 20:<minute>): ``qty`` pillows at 89.00
    plus 6.00 freight (the amounts agree, as AMOUNT_MISMATCH wants), ``trade`` fields changed."""
    body = json.loads(json.dumps(SAMPLE))
    t = body["trade_fullinfo_get_response"]["trade"]
    goods, paid = f"{89 * qty:.2f}", f"{89 * qty + 6:.2f}"
    t.update(trade, num=qty, total_fee=goods, payment=paid, modified=f"2024-06-18 20:{minute:02d}:00")
    t["orders"]["order"][0].update(num=qty, total_fee=goods, payment=paid)
    return json.dumps(body, ensure_ascii=False).encode()


MOVED = {"receiver_address": "文二西路***号**幢***室"}


def _post(gw: RunningGateway, body: bytes) -> dict[str, Any]:
    with gw.client() as c:
        r = c.post("/v1/orders/taobao", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 202), r.text
    return r.json()


def _timeline(gw: RunningGateway, gid: str, kind: str) -> list[dict[str, Any]]:
    return [t for t in gw.order(gid)["timeline"] if t["kind"] == kind]


def _procs(sandbox: RunningSandbox, code: str) -> list[str]:
    out = []
    for call in sandbox.calls("u8"):
        req = call["request"]
        if code in req and 'roottag="saleorder"' in req:  # sale-order writes, not the 发货单
            out += [p for p in ("add", "edit", "delete") if f'proc="{p}"' in req]
    return out


def _delivered(gw: RunningGateway) -> tuple[str, str]:
    gid = _post(gw, version(15))["id"]
    order = gw.wait_state(gid, "delivered")
    return gid, order["erp"]["document_no"]


@needs_u8_edits
def test_a_newer_version_edits_the_u8_document_and_a_cancelled_one_deletes_it(
    gateway: RunningGateway, sandbox: RunningSandbox
) -> None:
    gid, code = _delivered(gateway)
    (doc,) = sandbox.documents("u8")
    assert doc["code"] == code and [ln["quantity"] for ln in doc["lines"]] == [1]

    # The buyer moves and takes a second pillow before shipment: the same U8 document is edited.
    answer = _post(gateway, version(30, qty=2, **MOVED))
    assert answer["id"] == gid
    gateway.wait_for(lambda: _timeline(gateway, gid, "erp.updated"), what="the edit in U8")
    (edited,) = sandbox.documents("u8")
    assert edited["code"] == code and edited["define10"] == "3958201746231589372"
    assert [(ln["quantity"], ln["sum"]) for ln in edited["lines"]] == [(2, 178.0)]
    assert _procs(sandbox, code) == ["add", "edit"]
    order = gateway.order(gid)
    assert order["state"] == "delivered" and order["erp"]["document_no"] == code
    (queued,) = _timeline(gateway, gid, "erp.update_queued")
    assert sorted(queued["detail"]["changed"]) == ["address", "amounts", "lines"]
    assert "文二西路" not in json.dumps(order["timeline"], ensure_ascii=False)  # what changed, never the address

    # The same version again: a repeat (200), nothing sent.
    with gateway.client() as c:
        assert c.post("/v1/orders/taobao", content=version(30, qty=2, **MOVED)).status_code == 200

    # Closed by Taobao before shipment: the U8 document is deleted, the order cancelled.
    _post(gateway, version(45, qty=2, status="TRADE_CLOSED_BY_TAOBAO", **MOVED))
    order = gateway.wait_state(gid, "cancelled")
    assert sandbox.documents("u8") == []
    assert _procs(sandbox, code) == ["add", "edit", "delete"]
    assert [t["kind"] for t in order["timeline"]][-1] == "erp.cancelled"
    with gateway.client("auditor") as c:
        actions = [e["action"] for e in c.get("/v1/audit", params={"limit": 1000}).json()["items"]]
    for action in ("delivery.succeeded", "erp.update_queued", "erp.updated", "erp.cancel_queued", "erp.cancelled"):
        assert action in actions


@needs_u8_edits
def test_an_edit_u8_refuses_is_a_dead_letter_and_the_replay_sends_it(
    gateway: RunningGateway, sandbox: RunningSandbox
) -> None:
    gid, code = _delivered(gateway)
    sandbox.fault("u8", "reject", rate=1.0)  # U8 refuses every write (a closed period, say)
    _post(gateway, version(30, qty=2))
    with gateway.client("it") as c:
        (letter,) = gateway.wait_for(lambda: c.get("/v1/dead-letters").json()["items"], what="the dead letter")
    assert letter["partner_message"] and letter["order_id"] == gid
    order = gateway.order(gid)  # U8 still holds the document as first delivered
    assert order["state"] == "delivered" and order["erp"]["document_no"] == code
    (dead,) = _timeline(gateway, gid, "erp.dead_letter")
    assert dead["detail"]["kind"] == "update"
    assert [ln["quantity"] for ln in sandbox.documents("u8")[0]["lines"]] == [1]

    sandbox.clear_faults()
    with gateway.client("it") as c:
        assert c.post(f"/v1/dead-letters/{letter['id']}/replay").status_code == 202
    gateway.wait_for(lambda: _timeline(gateway, gid, "erp.updated"), what="the replayed edit")
    gateway.wait_state(gid, "delivered")
    (edited,) = sandbox.documents("u8")
    assert edited["code"] == code and [ln["quantity"] for ln in edited["lines"]] == [2]


def _ship_in_u8(sandbox: RunningSandbox, code: str, item: str) -> str:
    """A WMS books a 发货单 in U8 against the sale order ``code``; its key."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><ufinterface sender="101" receiver="u8" roottag="consignment" '
        'docid="" proc="add" codeexchanged="N">'
        + consignment(line(code, 1, item, "1"), date="2024-06-19")
        + "</ufinterface>"
    ).encode()
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        reply = client.post("/U8EAI/import.asp", content=body)
    (answer,) = etree.fromstring(reply.content).findall("item")
    assert answer.get("succeed") == "0", answer.get("dsc")
    return answer.get("key", "")


@needs_u8_edits
def test_an_order_shipped_in_u8_is_neither_edited_nor_cancelled(
    gateway: RunningGateway, sandbox: RunningSandbox
) -> None:
    """The platform does not know yet; U8 does (a 发货单 refers to the order): U8 refuses the edit
    and the delete, each becomes a dead letter with U8's words and what to do, and the order stays
    delivered with its document as it was."""
    gid, code = _delivered(gateway)
    (doc,) = sandbox.documents("u8")
    _ship_in_u8(sandbox, code, doc["lines"][0]["inventorycode"])

    _post(gateway, version(30, qty=2))
    with gateway.client("it") as c:
        (edit,) = gateway.wait_for(lambda: c.get("/v1/dead-letters").json()["items"], what="the refused edit")
    assert "发货单" in edit["partner_message"] and "by hand" in edit["hint"]
    assert gateway.order(gid)["state"] == "delivered"

    _post(gateway, version(45, qty=2, status="TRADE_CLOSED_BY_TAOBAO"))
    with gateway.client("it") as c:

        def two_letters() -> list[dict[str, Any]] | None:
            items = c.get("/v1/dead-letters").json()["items"]
            return items if len(items) == 2 else None

        letters = gateway.wait_for(two_letters, what="the refused cancellation")
    (cancel,) = [x for x in letters if x["id"] != edit["id"]]
    assert "发货单" in cancel["partner_message"] and "by hand" in cancel["hint"]
    order = gateway.order(gid)
    assert order["state"] == "delivered" and order["erp"]["document_no"] == code
    assert [t["detail"]["kind"] for t in order["timeline"] if t["kind"] == "erp.dead_letter"] == ["update", "cancel"]
    (still,) = sandbox.documents("u8")
    assert still["code"] == code and [ln["quantity"] for ln in still["lines"]] == [1]
    assert _procs(sandbox, code) == ["add", "edit", "delete"]


@needs_u8_edits
def test_a_change_after_taobao_shipped_is_held_not_sent(gateway: RunningGateway, sandbox: RunningSandbox) -> None:
    gid, code = _delivered(gateway)
    _post(gateway, version(30, status="WAIT_BUYER_CONFIRM_GOODS", **MOVED))
    (held,) = gateway.wait_for(lambda: _timeline(gateway, gid, "erp.edit_held"), what="the held edit")
    with gateway.client("auditor") as c:
        r = c.get("/v1/intercepts", params={"rule": "EDIT_AFTER_SHIPMENT"})
        assert r.status_code == 200, r.text
        (intercept,) = r.json()["items"]
    assert intercept["id"] == held["detail"]["intercept_id"] and intercept["verdict"] == "hold"
    assert "已发货" in intercept["violations"][0]["message_zh"]
    assert gateway.order(gid)["state"] == "delivered"
    assert _procs(sandbox, code) == ["add"]  # no edit was sent


# --------------------------------------------------------------------------- the core on real storage


@pytest.fixture(scope="module")
def runtime() -> Any:
    return load_runtime(load_config(None, env={}))


async def _rows(db: Any, gid: str) -> list[tuple[str, str]]:
    """The order's outbox rows as stored: (kind, state), oldest first."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT kind, state FROM outbox WHERE order_id = :o ORDER BY id"), {"o": gid})
        return [(r.kind, r.state) for r in rows]


async def test_a_version_stored_while_the_first_delivery_is_in_flight_is_queued_behind_it(
    database_url: str, sandbox: RunningSandbox, runtime: Any
) -> None:
    db = create_engine(database_url)
    u8 = U8EaiAdapter(url=f"{sandbox.url}/U8EAI/import.asp", sender="101", timeout=10.0)
    try:
        factory = SqlUnitOfWorkFactory(db)
        clock = SystemClock()
        deps = DeliveryDeps(uow_factory=factory, runtime=runtime, adapters={"u8-demo": u8}, clock=clock)

        async def post(body: bytes) -> Any:
            result = await accept_order(
                "taobao", body, shop_header=None, uow_factory=factory, runtime=runtime, clock=clock, max_bytes=1 << 20
            )
            assert result.status_code == 202, result.body
            return result

        gid = (await post(version(15))).order_id
        async with factory() as uow:
            (lease,) = await uow.outbox.claim(owner="t", now=clock.now(), lease_seconds=30, limit=10)
            await uow.commit()
        sandbox.fault("u8", "slow", ms=1500)  # U8 takes its time: the newer version arrives meanwhile
        delivery = asyncio.create_task(deliver(lease, deps))
        await asyncio.sleep(0.5)
        during = await post(version(30, qty=2, **MOVED))
        assert during.state == "accepted" and not delivery.done()  # not in U8 yet: intake queues nothing
        assert await delivery == "delivered"
        sandbox.clear_faults()
        (doc,) = sandbox.documents("u8")
        assert [ln["quantity"] for ln in doc["lines"]] == [1]  # U8 holds the version before
        assert await _rows(db, gid) == [("deliver", "done"), ("update", "pending")]

        # Closed before shipment: the cancellation queues behind the edit.
        await post(version(45, qty=2, status="TRADE_CLOSED_BY_TAOBAO", **MOVED))
        assert await _rows(db, gid) == [("deliver", "done"), ("update", "pending"), ("cancel", "pending")]
        async with factory(write=False) as uow:
            order = await uow.orders.get(gid)
            kinds = [t.kind for t in await uow.orders.timeline(gid)]
        assert order is not None and order.state == "delivered"
        assert kinds.count("erp.update_queued") == 1 and kinds.count("erp.cancel_queued") == 1
        async with factory() as uow:  # only the first row is claimable: an order's rows go one at a time
            claimed = await uow.outbox.claim(owner="t", now=clock.now(), lease_seconds=30, limit=10)
            await uow.commit()
        assert [c.kind for c in claimed] == ["update"]
    finally:
        await u8.aclose()
        await db.dispose()
