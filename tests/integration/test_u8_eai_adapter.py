"""U8EaiAdapter against the U8 EAI simulator over loopback HTTP (erp-protocols.md §1, §5), and
against a scripted loopback server for the reply shapes of §1.5 the simulator never gives (an
empty 200, the ``<u8apireturn>`` variant, unknown roots, ``succeed="0"`` with nothing written, a
query answering other orders). Each scripted reply is served by a real uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.erp import AdapterContext
from adapters.u8 import U8EaiAdapter
from adapters.u8.eai import from_target
from gateway.config import TargetConfig
from gateway.errors import ConfigError, PermanentError, RetryableError, UnknownOutcomeError
from tests.support.servers import serve_asgi
from tests.unit.test_u8_eai_xml import make_doc

pytestmark = pytest.mark.integration


@pytest.fixture
async def adapter(sandbox) -> AsyncIterator[U8EaiAdapter]:
    u8 = U8EaiAdapter(url=f"{sandbox.url}/U8EAI/import.asp", sender="101", timeout=10.0)
    yield u8
    await u8.aclose()


async def control(sandbox, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """The sandbox control plane (``/_sandbox/…``), asynchronously so the test loop never blocks."""
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        response = await client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()


async def fault(sandbox, mode: str, **extra: Any) -> None:
    await control(sandbox, "POST", "/_sandbox/faults", json={"system": "u8", "mode": mode, "rate": 1, **extra})


async def documents(sandbox) -> list[dict[str, Any]]:
    return (await control(sandbox, "GET", "/_sandbox/u8/documents"))["documents"]


# --------------------------------------------------------------------------- against the simulator


async def test_success_stores_the_order_with_its_lines_and_amounts(sandbox, adapter):
    doc = make_doc()
    receipt = await adapter.submit(doc)
    assert receipt.document_no == doc.code
    [stored] = await documents(sandbox)
    assert receipt.erp_key == stored["u8key"]
    assert (stored["code"], stored["custcode"], stored["deptcode"]) == (doc.code, "010001", "0301")
    first, gift = stored["lines"]
    assert (first["inventorycode"], first["quantity"], first["irowno"]) == ("030101", 3, 1)
    assert Decimal(str(first["sum"])) == Decimal("100.00")
    assert Decimal(str(first["money"])) == Decimal("88.50") and Decimal(str(first["tax"])) == Decimal("11.50")
    assert Decimal(str(first["taxunitprice"])) == Decimal("33.3333333333")
    assert (gift["inventorycode"], gift["sum"], gift["money"]) == ("050101", 0, 0)


async def test_lookup_finds_nothing_for_an_unknown_code(sandbox, adapter):
    assert await adapter.lookup(make_doc(code="GW99999999", header={})) is None


async def test_unknown_inventory_is_permanent_with_u8s_words(sandbox, adapter):
    doc = make_doc()
    doc.entries[0]["inventorycode"] = "999999"
    with pytest.raises(PermanentError) as info:
        await adapter.submit(doc)
    assert info.value.partner_message == "存货编码[999999]不存在"
    assert info.value.hint.startswith("Add inventory code 999999 to the SKU value table")
    assert await documents(sandbox) == []


async def test_unknown_customer_hint_names_the_customer(sandbox, adapter):
    doc = make_doc()
    doc.header["custcode"] = "019999"
    with pytest.raises(PermanentError) as info:
        await adapter.submit(doc)
    assert "019999" in info.value.partner_message and "customer 019999" in info.value.hint


async def test_rejection_fault_is_permanent(sandbox, adapter):
    await fault(sandbox, "reject")
    with pytest.raises(PermanentError) as info:
        await adapter.submit(make_doc())
    assert "结账" in info.value.partner_message
    assert "period" in info.value.hint


async def test_drop_after_commit_is_unknown_then_found_and_not_written_twice(sandbox, adapter):
    doc = make_doc()
    await fault(sandbox, "drop_after_commit")
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(doc)
    assert isinstance(info.value.__cause__, httpx.TransportError)
    await control(sandbox, "DELETE", "/_sandbox/faults")

    [stored] = await documents(sandbox)
    found = await adapter.lookup(doc)
    assert found is not None
    assert (found.document_no, found.erp_key) == (doc.code, stored["u8key"])

    again = await adapter.submit(doc)  # U8 answers "已经存在": the earlier attempt wrote it
    assert (again.document_no, again.erp_key) == (doc.code, stored["u8key"])
    assert "already" in again.message
    assert len(await documents(sandbox)) == 1


async def test_code_taken_by_a_different_order_is_permanent(sandbox, adapter):
    await adapter.submit(make_doc())
    other = make_doc()
    other.header["custcode"] = "010002"
    with pytest.raises(PermanentError, match="different sale order"):
        await adapter.submit(other)


async def test_http500_is_unknown_outcome(sandbox, adapter):
    await fault(sandbox, "http500")
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(make_doc())
    assert info.value.details["http_status"] == 500


async def test_timeout_fault_with_short_client_timeout_is_unknown_outcome(sandbox):
    await fault(sandbox, "timeout", ms=5000)
    u8 = U8EaiAdapter(url=f"{sandbox.url}/U8EAI/import.asp", sender="101", timeout=0.3)
    await submit_and_lookup_raise(u8, UnknownOutcomeError, httpx.ReadTimeout)


async def test_sandbox_down_is_retryable():
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    u8 = U8EaiAdapter(url=f"http://127.0.0.1:{port}/U8EAI/import.asp", sender="101", connect_timeout=1)
    await submit_and_lookup_raise(u8, RetryableError, httpx.ConnectError)


async def submit_and_lookup_raise(u8: U8EaiAdapter, error: type[Exception], cause: type[Exception]) -> None:
    try:
        with pytest.raises(error) as info:
            await u8.submit(make_doc())
        assert isinstance(info.value.__cause__, cause)
        with pytest.raises(error) as info:
            await u8.lookup(make_doc())
        assert isinstance(info.value.__cause__, cause)
    finally:
        await u8.aclose()


# --------------------------------------------------------------------------- edit and delete


async def test_update_edits_the_same_code_in_place(sandbox, adapter):
    doc = make_doc()
    first = await adapter.submit(doc)
    doc.entries[0].update(quantity=5, sum_fen=15000)
    doc.header["memo"] = "changed"
    receipt = await adapter.update(doc)
    assert (receipt.document_no, receipt.erp_key) == (doc.code, first.erp_key)
    [stored] = await documents(sandbox)
    assert stored["memo"] == "changed" and stored["lines"][0]["quantity"] == 5
    assert Decimal(str(stored["lines"][0]["sum"])) == Decimal("150.00")
    edit = sandbox.calls("u8")[-1]["request"]
    assert 'proc="edit"' in edit and f"<code>{doc.code}</code>" in edit


async def test_update_of_an_order_u8_does_not_hold_is_permanent_with_a_hint(sandbox, adapter):
    with pytest.raises(PermanentError) as info:
        await adapter.update(make_doc())
    assert info.value.partner_message == "销售订单号[GW00000042]不存在"
    assert "no longer in U8" in info.value.hint


async def test_cancel_deletes_and_a_code_no_longer_there_is_success(sandbox, adapter):
    doc = make_doc()
    await adapter.submit(doc)
    receipt = await adapter.cancel(doc)
    assert receipt.message == "deleted in U8"
    assert await documents(sandbox) == []
    again = await adapter.cancel(doc)  # U8 refuses ("不存在"); the query shows it is gone
    assert (again.document_no, again.message) == (doc.code, "not in U8 any more")


async def test_a_value_wider_than_its_column_is_permanent_and_nothing_is_sent(sandbox, adapter):
    doc = make_doc()
    doc.header["define1"] = "淘宝" * 6  # 24 bytes in GBK, cDefine1 is varchar(20)
    with pytest.raises(PermanentError) as info:
        await adapter.submit(doc)
    assert info.value.details["field"] == "header.define1"
    assert info.value.details["column"] == "cDefine1"
    assert "淘宝" not in str(info.value)  # the value itself never enters the message
    assert sandbox.calls("u8") == []


# --------------------------------------------------------------------------- scripted replies


class Scripted:
    """A loopback U8 that answers each POST with the next scripted ``(status, body)``."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        self.requests: list[bytes] = []
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.requests.append(body)
        status, reply = self.replies.pop(0) if self.replies else (599, b"")
        headers = [(b"content-type", b"text/xml; charset=utf-8")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": reply})

    def adapter(self) -> U8EaiAdapter:
        return U8EaiAdapter(url=f"{self.url}/U8EAI/import.asp", sender="101", timeout=5.0)


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[Scripted]:
    app = Scripted()
    with serve_asgi(app) as url:
        app.url = url
        yield app


@pytest.fixture
def scripted(scripted_server: Scripted) -> Scripted:
    scripted_server.replies.clear()
    scripted_server.requests.clear()
    return scripted_server


def ret(*items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><ufinterface roottag="return">' + "".join(items) + "</ufinterface>"
    ).encode()


ORDER_QUERY_OTHER = (
    b'<ufinterface roottag="saleorder" proc="query"><saleorder><header><code>GW00000007</code>'
    b"<custcode>010001</custcode></header><body><entry><inventorycode>030101</inventorycode></entry></body>"
    b"</saleorder></ufinterface>"
)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(500, "<html><body>500 - 内部服务器错误。</body></html>".encode(), id="http500"),
        pytest.param(200, b"", id="empty-body"),
        pytest.param(200, b"\r\n  ", id="blank-body"),
        pytest.param(200, b'<u8apireturn issuccess="true"/>', id="u8apireturn-true"),
        pytest.param(
            200, '<u8apireturn issuccess="false"><error>保存失败</error></u8apireturn>'.encode(), id="u8apireturn-false"
        ),
        pytest.param(200, b'<ReturnModel><u8apireturn issuccess="true"/></ReturnModel>', id="u8apireturn-nested"),
        pytest.param(200, b'<ufinterface roottag="saleorder"><saleorder/></ufinterface>', id="not-a-return"),
        pytest.param(200, b"<result>ok</result>", id="unknown-root"),
        pytest.param(
            200, ret('<item key="GW00000042" succeed="0" dsc="ok"/>', '<item succeed="0" dsc="ok"/>'), id="two-items"
        ),
        pytest.param(200, "正常".encode(), id="liveness-text"),
    ],
)
async def test_replies_that_prove_nothing_are_unknown_not_failure(scripted, status, body):
    scripted.replies.append((status, body))
    u8 = scripted.adapter()
    try:
        with pytest.raises(UnknownOutcomeError):
            await u8.submit(make_doc())
    finally:
        await u8.aclose()
    assert len(scripted.requests) == 1 and b'proc="add"' in scripted.requests[0]


async def test_rejection_with_chinese_dsc_is_permanent_with_a_hint(scripted):
    scripted.replies.append((200, ret('<item key="GW00000042" succeed="101" dsc="部门编码(9999)在部门档案中不存在"/>')))
    u8 = scripted.adapter()
    try:
        with pytest.raises(PermanentError) as info:
            await u8.submit(make_doc())
    finally:
        await u8.aclose()
    assert info.value.partner_message == "部门编码(9999)在部门档案中不存在"
    assert "department 9999" in info.value.hint and info.value.details["succeed"] == "101"


async def test_success_with_nothing_written_is_permanent_pointing_at_tag_names(scripted):
    scripted.replies.append((200, ret('<item key="" succeed="0" dsc="" u8key=""/>')))
    u8 = scripted.adapter()
    try:
        with pytest.raises(PermanentError) as info:
            await u8.submit(make_doc())
    finally:
        await u8.aclose()
    assert "wrote nothing" in str(info.value) and "lower-case" in info.value.hint


async def test_success_with_a_key_and_u8key(scripted):
    scripted.replies.append((200, ret('<item key="GW00000042" succeed="0" dsc="ok" u8key="1000000077"/>')))
    u8 = scripted.adapter()
    try:
        receipt = await u8.submit(make_doc())
    finally:
        await u8.aclose()
    assert (receipt.document_no, receipt.erp_key) == ("GW00000042", "1000000077")


async def test_a_query_reply_listing_other_orders_finds_nothing(scripted):
    scripted.replies.append((200, ORDER_QUERY_OTHER))
    u8 = scripted.adapter()
    try:
        assert await u8.lookup(make_doc()) is None
    finally:
        await u8.aclose()
    query = etree.fromstring(scripted.requests[0])
    assert query.get("proc") == "query" and query.find("saleorder/field").get("value") == "GW00000042"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(ret('<item succeed="1" dsc="查询失败"/>'), id="refused"),
        pytest.param(b'<u8apireturn issuccess="true"/>', id="u8apireturn"),
        pytest.param(b'<ufinterface roottag="consignment"><consignment/></ufinterface>', id="other-roottag"),
        pytest.param(b"", id="empty"),
    ],
)
async def test_a_refused_or_odd_query_is_unknown_never_not_found(scripted, body):
    scripted.replies.append((200, body))
    u8 = scripted.adapter()
    try:
        with pytest.raises(UnknownOutcomeError):
            await u8.lookup(make_doc())
    finally:
        await u8.aclose()


async def test_a_refused_delete_of_an_order_still_there_is_permanent(scripted):
    held = ORDER_QUERY_OTHER.replace(b"GW00000007", b"GW00000042")
    scripted.replies += [(200, ret('<item succeed="101" dsc="销售订单[GW00000042]已审核，不能删除！"/>')), (200, held)]
    u8 = scripted.adapter()
    try:
        with pytest.raises(PermanentError) as info:
            await u8.cancel(make_doc())
    finally:
        await u8.aclose()
    assert "审核" in info.value.partner_message and "弃审" in info.value.hint
    assert [b'proc="delete"' in r for r in scripted.requests] == [True, False]


# --------------------------------------------------------------------------- from_target


def target(**options: Any) -> TargetConfig:
    return TargetConfig(transport="u8_eai", url="http://127.0.0.1:9/U8EAI/import.asp", sender="101", options=options)


async def test_from_target_reads_the_shipment_options_and_refuses_unknown_ones():
    async with httpx.AsyncClient() as http:
        u8 = from_target(
            AdapterContext(name="u8", target=target(shipment_waybill="define10", shipment_batch=5), http=http)
        )
        assert (u8._tags.waybill, u8._tags.batch, u8._tags.carrier) == ("define10", 5, "shippingchoice")
        with pytest.raises(ConfigError, match="shipment_wayblil"):
            from_target(AdapterContext(name="u8", target=target(shipment_wayblil="x"), http=http))
        with pytest.raises(ConfigError, match="shipment_batch"):
            from_target(AdapterContext(name="u8", target=target(shipment_batch=0), http=http))
