"""U8EaiAdapter against the U8 EAI simulator over loopback HTTP (erp-protocols.md §1, §5).

The last section uses ``httpx.MockTransport`` for answers the simulator never gives (502/503,
an empty 200, a write timeout) so every row of the adapter's classification is pinned.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from adapters.u8 import U8EaiAdapter
from gateway.errors import PermanentError, RetryableError, UnknownOutcomeError
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
    await control(
        sandbox, "POST", "/_sandbox/faults", json={"system": "u8", "mode": mode, "rate": 1, **extra}
    )


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


# ------------------------------------------------------------- answers the simulator never gives


def mock_adapter(handler) -> U8EaiAdapter:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return U8EaiAdapter(url="http://u8.invalid/U8EAI/import.asp", sender="101", client=client)


def answer(status: int, body: bytes = b""):
    return lambda request: httpx.Response(status, content=body)


def fail(exc: type[httpx.TransportError]):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    return handler


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (answer(502), RetryableError),
        (answer(503), RetryableError),
        (answer(404, b"<html/>"), RetryableError),
        (fail(httpx.ConnectTimeout), RetryableError),
        (fail(httpx.PoolTimeout), RetryableError),
        (answer(504), UnknownOutcomeError),
        (answer(200), UnknownOutcomeError),
        (answer(200, b"<html><body>IIS</body></html>"), UnknownOutcomeError),
        (answer(200, b'<!DOCTYPE x [<!ENTITY e "e">]><ufinterface roottag="return"/>'), UnknownOutcomeError),
        (fail(httpx.WriteTimeout), UnknownOutcomeError),
        (fail(httpx.ReadError), UnknownOutcomeError),
        (fail(httpx.RemoteProtocolError), UnknownOutcomeError),
        (
            answer(
                200, b'<ufinterface roottag="return"><item key="" succeed="0" dsc="" u8key=""/></ufinterface>'
            ),
            PermanentError,
        ),
    ],
)
async def test_classification(handler, expected):
    u8 = mock_adapter(handler)
    with pytest.raises(expected):
        await u8.submit(make_doc())
    await u8.aclose()


async def test_nothing_written_reply_points_at_the_dictionary():
    body = b'<ufinterface roottag="return"><item key="" succeed="0" dsc="" u8key=""/></ufinterface>'
    with pytest.raises(PermanentError) as info:
        await mock_adapter(answer(200, body)).submit(make_doc())
    assert "outbound dictionary" in info.value.hint


async def test_duplicate_not_found_by_query_is_permanent():
    def handler(request: httpx.Request) -> httpx.Response:
        if b'proc="query"' in request.content:
            return httpx.Response(200, content=b'<ufinterface roottag="saleorder" proc="query"/>')
        dsc = "销售订单号[GW00000042]已经存在，不可重复！"
        return httpx.Response(
            200,
            content=f'<ufinterface roottag="return"><item succeed="101" dsc="{dsc}"/></ufinterface>'.encode(),
        )

    with pytest.raises(PermanentError) as info:
        await mock_adapter(handler).submit(make_doc())
    assert "已经存在" in info.value.partner_message


async def test_unrenderable_document_is_permanent_and_sends_nothing():
    sent: list[httpx.Request] = []
    doc = make_doc()
    doc.entries[0]["cInvCode"] = "030101"
    with pytest.raises(PermanentError, match="cInvCode"):
        await mock_adapter(lambda request: sent.append(request) or httpx.Response(200)).submit(doc)
    assert sent == []
