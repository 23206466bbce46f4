"""U8EaiAdapter against the U8 EAI simulator over loopback HTTP (erp-protocols.md §1, §5).

Answers the simulator never gives (502/503, an empty 200, a write timeout) are pinned on httpx's
mock transport in tests/unit/test_u8_eai_classification.py.
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
