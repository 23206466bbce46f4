"""U8OpenApiAdapter against the U8+ OpenAPI simulator over loopback HTTP, its trade ids in a real
database (erp-protocols.md §2, §5 "U8 OpenAPI"), and one Pinduoduo order delivered end to end by a
gateway whose shop is routed to a ``u8_openapi`` target."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from adapters.db.engine import create_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWorkFactory
from adapters.erp import AdapterContext
from adapters.u8.openapi import TRADEID, U8OpenApiAdapter, from_target
from adapters.u8.openapi_json import build_saleorder
from gateway.config import TargetConfig
from gateway.errors import ConfigError, PermanentError, RetryableError, UnknownOutcomeError
from tests.support.gateway import SAMPLES, RunningGateway, gateway_env, run_gateway
from tests.support.servers import serve_asgi
from tests.unit.test_u8_eai_xml import make_doc

pytestmark = pytest.mark.integration

SYSTEM = "u8openapi"
AUTH = {
    "app_key": "opa-demo-gateway",
    "app_secret": "demo-secret-not-for-production",
    "from_account": "gateway-demo",
    "to_account": "demo-u8",
}


@pytest.fixture
async def uow_factory(tmp_path) -> AsyncIterator[SqlUnitOfWorkFactory]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    db = create_engine(url)
    try:
        yield SqlUnitOfWorkFactory(db)
    finally:
        await db.dispose()


class Adapters:
    """Builds adapters the way the gateway does (``from_target``), each with its own HTTP client."""

    def __init__(self, url: str, uow_factory: SqlUnitOfWorkFactory) -> None:
        self.url, self.uow_factory = url, uow_factory
        self._clients: list[httpx.AsyncClient] = []

    def make(self, *, timeout: float = 10.0, **options: Any) -> U8OpenApiAdapter:
        client = httpx.AsyncClient()
        self._clients.append(client)
        target = TargetConfig(
            transport="u8_openapi",
            url=self.url,
            auth=AUTH,
            options={"poll_first_s": 0.05, **options},
            timeout_s=timeout,
        )
        return from_target(AdapterContext(name="u8-cloud", target=target, http=client, uow_factory=self.uow_factory))

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


@pytest.fixture
async def adapters(sandbox, uow_factory) -> AsyncIterator[Adapters]:
    made = Adapters(f"{sandbox.url}/u8openapi", uow_factory)
    yield made
    await made.close()


@pytest.fixture
def adapter(adapters) -> U8OpenApiAdapter:
    return adapters.make()


def store(sandbox) -> Any:
    """The simulator's state (read while no request runs; the knobs are plain attributes)."""
    return sandbox.state.store(SYSTEM)


async def stored_tradeid(uow_factory, code: str) -> str | None:
    async with uow_factory(write=False) as uow:
        return await uow.erp_handles.get("u8-cloud", code, TRADEID)


def adds(sandbox) -> list[dict[str, Any]]:
    return [c for c in sandbox.calls(SYSTEM) if c["path"].endswith("/api/saleorder/add")]


# --------------------------------------------------------------------------- submit


async def test_success_stores_the_order_its_amounts_and_the_tradeid_first(sandbox, adapter, uow_factory):
    doc = make_doc()
    receipt = await adapter.submit(doc)
    assert receipt.document_no == doc.code
    tradeid = await stored_tradeid(uow_factory, doc.code)
    assert tradeid and receipt.message == f"tradeid {tradeid}"
    assert store(sandbox).trade_ids == {tradeid}
    [stored] = sandbox.documents(SYSTEM)
    assert (stored["code"], stored["custcode"], stored["deptcode"]) == (doc.code, "010001", "0301")
    first, gift = stored["lines"]
    assert (first["inventorycode"], first["quantity"]) == ("030101", 3)
    assert Decimal(str(first["sum"])) == Decimal("100.00")
    assert Decimal(str(first["money"])) + Decimal(str(first["tax"])) == Decimal("100.00")
    assert Decimal(str(first["money"])) == Decimal("88.50")
    assert (gift["inventorycode"], gift["sum"]) == ("050101", 0)
    [call] = adds(sandbox)
    assert call["outcome"] == "ok"


async def test_unknown_inventory_is_permanent_with_the_relays_errmsg_and_nothing_stored(sandbox, adapter):
    doc = make_doc()
    doc.entries[0]["inventorycode"] = "999999"
    with pytest.raises(PermanentError) as info:
        await adapter.submit(doc)
    assert info.value.partner_message == "存货编码[999999]不存在"
    assert info.value.details["errcode"] not in ("", "0")
    assert info.value.hint.startswith("Add inventory code 999999")
    assert sandbox.documents(SYSTEM) == []


async def test_reject_fault_is_permanent_and_writes_nothing(sandbox, adapter):
    sandbox.fault(SYSTEM, "reject")
    with pytest.raises(PermanentError) as info:
        await adapter.submit(make_doc())
    assert "结账" in info.value.partner_message and "period" in info.value.hint
    assert sandbox.documents(SYSTEM) == []


async def test_drop_after_commit_then_the_retry_gets_the_original_result_and_one_order(sandbox, adapter, uow_factory):
    doc = make_doc()
    sandbox.fault(SYSTEM, "drop_after_commit")
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(doc)
    assert isinstance(info.value.__cause__, httpx.TransportError)
    sandbox.clear_faults()
    found = await adapter.lookup(doc)
    assert found is not None and found.document_no == doc.code

    again = await adapter.submit(doc)  # same tradeid and biz_id: the relay's original result (O1)
    assert again.document_no == doc.code
    assert len(sandbox.documents(SYSTEM)) == 1
    assert len(adds(sandbox)) == 2 and store(sandbox).trade_ids == {await stored_tradeid(uow_factory, doc.code)}


async def test_http500_is_unknown_then_the_retry_with_the_same_tradeid_writes_one_order(sandbox, adapter):
    doc = make_doc()
    sandbox.fault(SYSTEM, "http500")
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(doc)
    assert info.value.details["http_status"] == 500
    sandbox.clear_faults()
    assert (await adapter.submit(doc)).document_no == doc.code
    assert [d["code"] for d in sandbox.documents(SYSTEM)] == [doc.code]
    assert len(store(sandbox).trade_ids) == 1  # both adds carried the one trade id


async def test_a_garbage_reply_is_unknown_and_the_retry_writes_no_second_order(sandbox, adapter):
    doc = make_doc()
    store(sandbox).garbled_replies = 1  # the reply is cut-off JSON, sent after the order was written
    with pytest.raises(UnknownOutcomeError, match="unrecognised reply"):
        await adapter.submit(doc)
    assert len(sandbox.documents(SYSTEM)) == 1
    assert (await adapter.submit(doc)).document_no == doc.code
    assert len(sandbox.documents(SYSTEM)) == 1


async def written_elsewhere(adapter: U8OpenApiAdapter, doc) -> None:  # noqa: ANN001
    """The order sent by another client of the relay: its own tradeid, no biz_id."""
    tradeid = await adapter.session.tradeid(doc.code)
    reply = await adapter.session.call(
        "POST", "/api/saleorder/add", code=doc.code, params={"tradeid": tradeid, "sync": "1"}, body=build_saleorder(doc)
    )
    assert reply["errcode"] == "0"


async def test_a_code_u8_holds_from_elsewhere_is_found_when_it_is_ours(sandbox, adapter):
    doc = make_doc()
    await written_elsewhere(adapter, doc)
    receipt = await adapter.submit(doc)  # U8 says 已经存在; the list shows the same customer
    assert receipt.document_no == doc.code and "already in U8" in receipt.message
    assert len(sandbox.documents(SYSTEM)) == 1


async def test_a_code_u8_holds_for_another_customer_is_permanent(sandbox, adapter):
    theirs = make_doc()
    theirs.header["custcode"] = "010002"
    await written_elsewhere(adapter, theirs)
    with pytest.raises(PermanentError, match="different sale order"):
        await adapter.submit(make_doc())


# --------------------------------------------------------------------------- token and tradeid


async def test_a_token_the_relay_no_longer_knows_is_refreshed_and_the_call_sent_once_more(sandbox, adapter):
    await adapter.submit(make_doc())
    store(sandbox).revoke_tokens()
    receipt = await adapter.submit(make_doc(code="GW00000043", header={**make_doc().header, "code": "GW00000043"}))
    assert receipt.document_no == "GW00000043"
    assert adapter.session.tokens_fetched == 2
    refused = [c for c in sandbox.calls(SYSTEM) if '"errcode":"30001"' in c["response"]]
    assert len(refused) == 1  # the tradeid call with the revoked token; then all went through
    assert len(sandbox.documents(SYSTEM)) == 2


async def test_a_short_lived_token_is_renewed_before_it_expires(sandbox, adapter):
    store(sandbox).token_lifetime_ms = 400
    await adapter.submit(make_doc())
    await asyncio.sleep(0.5)
    await adapter.submit(make_doc(code="GW00000043", header={**make_doc().header, "code": "GW00000043"}))
    assert adapter.session.tokens_fetched == 2
    assert not [c for c in sandbox.calls(SYSTEM) if "过期" in c["response"]]


async def test_the_tradeid_survives_a_new_adapter_on_the_same_database(sandbox, adapters, uow_factory):
    doc = make_doc()
    first = adapters.make()
    sandbox.fault(SYSTEM, "drop_after_commit")
    with pytest.raises(UnknownOutcomeError):
        await first.submit(doc)
    sandbox.clear_faults()
    tradeid = await stored_tradeid(uow_factory, doc.code)

    restarted = adapters.make()  # a new process: new token, new HTTP client, the same database
    receipt = await restarted.submit(doc)
    assert receipt.message == f"tradeid {tradeid}"
    assert restarted.session.tokens_fetched == 1
    assert store(sandbox).trade_ids == {tradeid}
    assert len(sandbox.documents(SYSTEM)) == 1


async def test_two_workers_racing_on_one_document_write_one_order(sandbox, adapters, uow_factory):
    doc = make_doc()
    one, two = adapters.make(), adapters.make()
    receipts = await asyncio.gather(one.submit(doc), two.submit(doc))
    assert {r.document_no for r in receipts} == {doc.code}
    assert len(sandbox.documents(SYSTEM)) == 1
    tradeid = await stored_tradeid(uow_factory, doc.code)
    assert {r.message for r in receipts} == {f"tradeid {tradeid}"}


# --------------------------------------------------------------------------- asynchronous mode


async def test_async_add_is_polled_pending_then_final(sandbox, adapters):
    adapter = adapters.make(sync=False)
    receipt = await adapter.submit(make_doc())
    assert receipt.document_no == "GW00000042"
    polls = [c for c in sandbox.calls(SYSTEM) if c["path"].endswith("/result")]
    assert ['"processing"' in c["response"] for c in polls] == [True, False]


async def test_async_rejection_is_permanent(sandbox, adapters):
    doc = make_doc()
    doc.header["custcode"] = "019999"
    with pytest.raises(PermanentError) as info:
        await adapters.make(sync=False).submit(doc)
    assert "019999" in info.value.partner_message


async def test_a_result_still_pending_at_the_deadline_is_unknown(sandbox, adapters):
    store(sandbox).pending_polls = 10_000
    adapter = adapters.make(sync=False, timeout=0.6)
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(make_doc())
    assert info.value.details["pending"] is True
    store(sandbox).pending_polls = 0
    assert (await adapters.make(sync=False).submit(make_doc())).document_no == "GW00000042"
    assert len(sandbox.documents(SYSTEM)) == 1


# --------------------------------------------------------------------------- transport


async def test_timeout_fault_with_a_short_timeout_is_unknown(sandbox, adapters):
    sandbox.fault(SYSTEM, "timeout", ms=5000)
    with pytest.raises(UnknownOutcomeError) as info:
        await adapters.make(timeout=0.3).submit(make_doc())
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_relay_down_is_retryable(uow_factory):
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    made = Adapters(f"http://127.0.0.1:{port}/u8openapi", uow_factory)
    try:
        with pytest.raises(RetryableError):
            await made.make().submit(make_doc())
    finally:
        await made.close()
    assert await stored_tradeid(uow_factory, "GW00000042") is None


async def test_wrong_credentials_are_retryable_and_say_where_to_look(sandbox, uow_factory):
    client = httpx.AsyncClient()
    wrong = "wrong-secret-4711"
    target = TargetConfig(transport="u8_openapi", url=f"{sandbox.url}/u8openapi", auth={**AUTH, "app_secret": wrong})
    adapter = from_target(AdapterContext(name="u8-cloud", target=target, http=client, uow_factory=uow_factory))
    try:
        with pytest.raises(RetryableError) as info:
            await adapter.submit(make_doc())
    finally:
        await client.aclose()
    error = info.value
    assert "app_secret" in error.hint and error.partner_message == "app_key或app_secret错误"
    told = [error.message_en, error.message_zh, error.hint, error.partner_message, repr(error.details)]
    assert not [text for text in told if wrong in text]  # the secret is never repeated
    assert sandbox.documents(SYSTEM) == []


def test_missing_credentials_are_a_config_error():
    target = TargetConfig(transport="u8_openapi", url="http://127.0.0.1:1/u8openapi", auth={"app_key": "k"})
    with pytest.raises(ConfigError, match="app_secret, from_account, to_account"):
        from_target(AdapterContext(name="u8-cloud", target=target, http=httpx.AsyncClient()))


# --------------------------------------------------------------------------- look-up, edit, delete, shipments


async def test_lookup_is_none_without_a_stored_tradeid_and_finds_a_written_order(sandbox, adapter):
    doc = make_doc()
    assert await adapter.lookup(doc) is None
    assert sandbox.calls(SYSTEM) == []  # never sent: nothing to ask
    await adapter.submit(doc)
    found = await adapter.lookup(doc)
    assert found is not None and found.document_no == doc.code


async def test_update_cancel_and_shipments(sandbox, adapter):
    doc = make_doc()
    await adapter.submit(doc)
    doc.entries[0]["quantity"] = 5
    await adapter.update(doc)
    assert sandbox.documents(SYSTEM)[0]["lines"][0]["quantity"] == 5

    other = make_doc(code="GW00000043", header={**doc.header, "code": "GW00000043"})
    await adapter.submit(other)
    assert "deleted" in (await adapter.cancel(other)).message
    assert "already deleted" in (await adapter.cancel(other)).message

    since = datetime.now(UTC)
    shipment = await ship(sandbox, adapter, doc.code, "030101", 5, waybill="SF1234567890")
    [found] = await adapter.shipments([doc.code, "GW00000099"], since=since)
    assert (found.document_code, found.shipment_no, found.waybill_no) == (doc.code, shipment, "SF1234567890")
    assert [(line.item_code, line.qty) for line in found.lines] == [("030101", 5)]
    assert await adapter.shipments(["GW00000099"], since=since) == []
    with pytest.raises(PermanentError, match="delete") as info:
        await adapter.cancel(doc)
    assert "已发货" in info.value.partner_message


async def ship(sandbox, adapter: U8OpenApiAdapter, code: str, item: str, qty: int, *, waybill: str) -> str:
    """Record a 发货单 in the simulated U8 (the inferred consignment/add), as its users would."""
    body = {
        "consignment": {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "cebexpresscode": waybill,
            "entry": [{"inventorycode": item, "quantity": qty, "cordercode": code}],
        }
    }
    reply = await adapter.session.call(
        "POST", "/api/consignment/add", code=code, body=httpx.Request("POST", "/", json=body).content
    )
    assert reply["errcode"] == "0"
    return reply["id"]


# --------------------------------------------------------------------------- end to end

PDD_SAMPLE = SAMPLES / "pinduoduo" / "01_single_paid.json"  # = reference/samples/pinduoduo
GATEWAY_CONFIG = """
name = "u8-openapi-e2e"

[shops.demo-pinduoduo]
platform = "pinduoduo"
default = true
target = "u8-cloud"

[targets.u8-cloud]
transport = "u8_openapi"
url = "${GATEWAY_SANDBOX_URL}/u8openapi"
values = ["values/demo-u8.toml", "values/demo-logistics.toml"]
timeout_s = 5

[targets.u8-cloud.auth]
app_key = "${U8_OPENAPI_APP_KEY}"
app_secret = "${U8_OPENAPI_APP_SECRET}"
from_account = "${U8_OPENAPI_FROM_ACCOUNT}"
to_account = "${U8_OPENAPI_TO_ACCOUNT}"

[targets.u8-cloud.options]
poll_first_s = 0.1

[targets.u8-cloud.params]
department = "0301"
sales_type = "01"
person = "0001"
maker = "gateway"
currency = "人民币"
tax_rate = 13

[targets.u8-cloud.retry]
first_delay_s = 0.2
cap_s = 1.0
unknown_outcome_delay_s = 0.2
"""


@pytest.fixture
def openapi_gateway(sandbox, tmp_path, monkeypatch) -> Iterator[RunningGateway]:
    """The gateway with its Pinduoduo shop routed to a ``u8_openapi`` target at the sandbox;
    the credentials come from the environment, as in production."""
    config = tmp_path / "gateway.toml"
    config.write_text(GATEWAY_CONFIG, encoding="utf-8")
    env = {f"U8_OPENAPI_{key.upper()}": value for key, value in AUTH.items()}
    with run_gateway(gateway_env(tmp_path, sandbox.url, GATEWAY_CONFIG=str(config), **env), monkeypatch) as gw:
        yield gw


def post_order(gw: RunningGateway, body: bytes) -> dict[str, Any]:
    with gw.client("platform") as c:
        response = c.post("/v1/orders/pinduoduo", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    return response.json()


def test_a_pinduoduo_order_is_delivered_once_through_u8_openapi(openapi_gateway, sandbox):
    accepted = post_order(openapi_gateway, PDD_SAMPLE.read_bytes())
    order = openapi_gateway.wait_state(accepted["id"], "delivered")
    [doc] = sandbox.documents(SYSTEM)
    assert doc["code"] == order["erp"]["document_no"]
    assert doc["custcode"] == "010002"  # demo-pinduoduo in the value table
    assert doc["lines"] and all(line["quantity"] > 0 for line in doc["lines"])
    assert len(adds(sandbox)) == 1
    assert sandbox.documents("u8") == []  # the EAI route was not used


def test_a_reply_dropped_after_commit_still_leaves_one_order(openapi_gateway, sandbox):
    sandbox.fault(SYSTEM, "drop_after_commit")
    accepted = post_order(openapi_gateway, PDD_SAMPLE.read_bytes())
    openapi_gateway.wait_for(lambda: adds(sandbox), what="the first add")
    sandbox.clear_faults()
    order = openapi_gateway.wait_state(accepted["id"], "delivered")
    [doc] = sandbox.documents(SYSTEM)
    assert doc["code"] == order["erp"]["document_no"]
    timeline = {entry["kind"]: entry["detail"] for entry in order["timeline"]}
    assert timeline["erp.unknown_outcome"]["error"] == "ERP_OUTCOME_UNKNOWN"
    assert timeline["erp.delivered"]["found_by_lookup"] is True  # saleorderlist found it: no second add
    assert len(adds(sandbox)) == 1


# --------------------------------------------------------------------------- answers the simulator never gives


def relay_app(result_url: str, result: dict[str, Any]):  # noqa: ANN201
    """A tiny relay on loopback: token and trade id as §2 shows them, an add answered with
    ``result_url`` (``{base}`` stands for this server), and ``result`` for every poll of it."""

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        if path.endswith("/system/token"):
            body = {"errcode": "0", "token": {"id": "t", "appKey": "k", "expiresIn": 60_000}}
        elif path.endswith("/system/tradeid"):
            body = {"errcode": "0", "errmsg": "成功", "trade": {"id": "40d8c9b4d35611e4ab8e0017fa000443"}}
        elif path.endswith("/api/saleorder/add"):
            host, port = scope["server"]
            url = result_url.format(base=f"http://{host}:{port}")
            body = {"errcode": "0", "tradeid": "40d8c9b4d35611e4ab8e0017fa000443", "url": url}
        else:
            body = result
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})

    return app


@pytest.mark.parametrize(
    ("result_url", "result", "reason"),
    [
        ("{base}/result?requestid=1", {"errcode": "30001", "errmsg": "token无效"}, "refused to show"),
        ("http://203.0.113.9/result?requestid=1", {"errcode": "0", "id": "GW00000042"}, "another host"),
        ("{base}/result?requestid=1", {"errcode": "0", "status": "done"}, "without an order id"),
    ],
)
async def test_async_results_that_prove_nothing_are_unknown(uow_factory, result_url, result, reason):
    with serve_asgi(relay_app(result_url, result)) as url:
        made = Adapters(url, uow_factory)
        try:
            with pytest.raises(UnknownOutcomeError, match=reason):
                await made.make(sync=False).submit(make_doc())
        finally:
            await made.close()


async def test_a_lookup_reads_at_most_max_pages_of_the_day_then_is_unknown(sandbox, adapters):
    """The look-up reads the order's day page by page; past ``options.max_pages`` it is an unknown
    outcome that names the option, and with enough pages it finds the order."""
    docs = [make_doc(code=code, header={**make_doc().header, "code": code}) for code in ("GW00000101", "GW00000102")]
    writer = adapters.make()
    for doc in docs:
        await writer.submit(doc)
    short = adapters.make(rows_per_page=1, max_pages=1)  # one order of the day is read, not two
    outcomes = []
    for doc in docs:
        try:
            outcomes.append((await short.lookup(doc)) is not None)
        except UnknownOutcomeError as exc:
            assert "max_pages" in exc.message_en
            outcomes.append("unknown")
    assert sorted(map(str, outcomes)) == ["True", "unknown"]
    enough = adapters.make(rows_per_page=1, max_pages=5)
    assert all([await enough.lookup(doc) for doc in docs])
