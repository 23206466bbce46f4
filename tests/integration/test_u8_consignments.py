"""发货单 (consignments) in the U8 EAI simulator and read back by U8EaiAdapter.shipments; edits and
deletes of sale orders U8 refuses once a 发货单 refers to them (erp-protocols.md §1.2, §4, §5.6).
All over loopback HTTP to the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.u8 import U8EaiAdapter
from adapters.u8.eai_consignment import ShipmentTags
from gateway.errors import PermanentError, UnknownOutcomeError
from tests.integration.test_sandbox_u8 import saleorder
from tests.unit.test_u8_eai_xml import make_doc

pytestmark = pytest.mark.integration

IMPORT = "/U8EAI/import.asp"
LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
async def adapter(sandbox) -> AsyncIterator[U8EaiAdapter]:
    u8 = U8EaiAdapter(url=f"{sandbox.url}{IMPORT}", sender="101", timeout=10.0)
    yield u8
    await u8.aclose()


def consignment(
    *lines: dict[str, str], custcode: str = "010001", date: str = "2024-05-02", extra: str = "", code: str = ""
) -> str:
    """A 发货单 as a WMS writes it (template tags, T)."""
    entries = "".join("<entry>" + "".join(f"<{k}>{v}</{k}>" for k, v in line.items()) + "</entry>" for line in lines)
    return (
        f"<consignment><header><code>{code}</code><vouchertype>05</vouchertype><saletype>01</saletype>"
        f"<date>{date}</date><deptcode>0301</deptcode><custcode>{custcode}</custcode><maker>WMS</maker>"
        f"{extra}</header><body>{entries}</body></consignment>"
    )


def line(order: str, row: int | None, item: str, qty: str, warehouse: str = "01") -> dict[str, str]:
    out = {"warehouse_code": warehouse, "inventory_code": item, "quantity": qty, "cordercode": order}
    if row is not None:
        out["iorderrowno"] = str(row)
    return out


async def post(sandbox, *documents: str, proc: str = "add", roottag: str = "consignment") -> etree._Element:
    body = (
        f'<?xml version="1.0" encoding="utf-8"?><ufinterface sender="101" receiver="u8" roottag="{roottag}" '
        f'docid="" proc="{proc}" codeexchanged="N">{"".join(documents)}</ufinterface>'
    ).encode()
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        response = await client.post(IMPORT, content=body)
    assert response.status_code == 200
    return etree.fromstring(response.content)


async def ship(sandbox, *documents: str) -> list[dict[str, str]]:
    root = await post(sandbox, *documents)
    assert root.get("roottag") == "return"
    return [dict(item.attrib) for item in root.findall("item")]


async def written_order(adapter: U8EaiAdapter, code: str = "GW00000042", **header: Any):
    doc = make_doc(code=code)
    doc.header.update(code=code, **header)
    await adapter.submit(doc)
    return doc


# --------------------------------------------------------------------------- the simulator


async def test_add_numbers_the_consignment_and_the_key_is_the_new_cdlcode(sandbox, adapter):
    await written_order(adapter)
    [item] = await ship(sandbox, consignment(line("GW00000042", 1, "030101", "2")))
    assert (item["succeed"], item["dsc"], item["key"]) == ("0", "ok", "0000000001")
    [second] = await ship(sandbox, consignment(line("GW00000042", 1, "030101", "1")))
    assert second["key"] == "0000000002"
    root = await post(
        sandbox, '<consignment><field name="cordercode" operation="=" value="GW00000042"/></consignment>', proc="query"
    )
    assert root.get("roottag") == "consignment"
    codes = [c.findtext("header/code") for c in root.findall("consignment")]
    assert codes == ["0000000001", "0000000002"]
    assert [e.findtext("cordercode") for e in root.iterfind("consignment/body/entry")] == ["GW00000042"] * 2


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (consignment(line("GW00000042", 1, "030101", "2", warehouse="99")), "仓库编码[99]不存在"),
        (consignment(line("GW00000042", 1, "999999", "2")), "存货编码[999999]不存在"),
        (consignment(line("GW00000042", 1, "030101", "0")), "数量[0]不正确"),
        (consignment(line("GW99999999", 1, "030101", "1")), "销售订单[GW99999999]不存在"),
        (consignment(line("GW00000042", 5, "030101", "1")), "订单行号[5]"),
        (consignment(line("GW00000042", 2, "030101", "1")), "存货不一致"),
        (consignment(line("GW00000042", 1, "030101", "4")), "累计发货数量超过订单数量"),
        (consignment(line("GW00000042", 1, "030101", "1"), custcode="010002"), "客户"),
        (consignment(line("GW00000042", 1, "030101", "1")).replace("<maker>WMS</maker>", ""), "[maker]不能为空"),
        (consignment(line("GW00000042", 1, "030101", "1")).replace(">05<", ">09<"), "单据类型[09]"),
        (consignment({**line("GW00000042", 1, "030101", "1"), "cWhCode": "01"}), "数据库没有提供的字段(cwhcode)"),
    ],
)
async def test_template_rules_refuse_with_chinese_dsc_and_store_nothing(sandbox, adapter, document, expected):
    await written_order(adapter)
    [item] = await ship(sandbox, document)
    assert item["succeed"] != "0" and expected in item["dsc"]
    assert await adapter.shipments(["GW00000042"], since=LONG_AGO) == []


async def test_a_line_without_a_row_is_linked_to_the_row_of_its_inventory(sandbox, adapter):
    await written_order(adapter)
    await ship(sandbox, consignment(line("GW00000042", None, "050101", "1")))
    [shipment] = await adapter.shipments(["GW00000042"], since=LONG_AGO)
    assert [(ln.item_code, ln.qty, ln.row) for ln in shipment.lines] == [("050101", 1, 2)]


# --------------------------------------------------------------------------- shipments read-back


async def test_shipments_of_our_codes_with_carrier_waybill_lines_and_day(sandbox, adapter):
    await written_order(adapter, "GW00000001")
    await written_order(adapter, "GW00000002", custcode="010002")
    await written_order(adapter, "GW00000003")
    extra = "<shippingchoice>SF</shippingchoice><cebexpresscode>SF1234567890</cebexpresscode>"
    [first] = await ship(
        sandbox,
        consignment(line("GW00000001", 1, "030101", "2"), line("GW00000001", 2, "050101", "1"), extra=extra),
    )
    [other] = await ship(sandbox, consignment(line("GW00000002", 1, "030101", "3"), custcode="010002"))
    [not_ours] = await ship(sandbox, consignment(line("GW00000003", 1, "030101", "1")))

    found = await adapter.shipments(["GW00000001", "GW00000002"], since=LONG_AGO)
    by_no = {s.shipment_no: s for s in found}
    assert set(by_no) == {first["key"], other["key"]} and not_ours["key"] not in by_no
    one = by_no[first["key"]]
    assert (one.document_code, one.carrier, one.waybill_no) == ("GW00000001", "SF", "SF1234567890")
    assert [(ln.item_code, ln.qty, ln.row) for ln in one.lines] == [("030101", 2, 1), ("050101", 1, 2)]
    assert one.shipped_at == datetime(2024, 5, 1, 16, 0, tzinfo=UTC)  # 2024-05-02 00:00 in Shanghai
    two = by_no[other["key"]]
    assert (two.document_code, two.carrier, two.waybill_no) == ("GW00000002", None, None)


async def test_since_keeps_only_consignments_of_that_local_day_or_later(sandbox, adapter):
    await written_order(adapter)
    [old] = await ship(sandbox, consignment(line("GW00000042", 1, "030101", "1"), date="2024-05-01"))
    [new] = await ship(sandbox, consignment(line("GW00000042", 1, "030101", "1"), date="2024-05-03 10:00:00"))
    # 2024-05-02 18:00 UTC is 2024-05-03 02:00 in Shanghai: the 05-01 发货单 is before that day.
    since = datetime(2024, 5, 2, 18, 0, tzinfo=UTC)
    assert [s.shipment_no for s in await adapter.shipments(["GW00000042"], since=since)] == [new["key"]]
    assert old["key"] != new["key"]


async def test_many_codes_are_queried_in_batches(sandbox):
    tags = ShipmentTags(batch=2)
    u8 = U8EaiAdapter(url=f"{sandbox.url}{IMPORT}", sender="101", shipment_tags=tags)
    try:
        codes = [f"GW0000010{i}" for i in range(5)]
        for code in codes:
            await written_order(u8, code)
            await ship(sandbox, consignment(line(code, 1, "030101", "1")))
        before = len(sandbox.calls("u8"))
        found = await u8.shipments(codes, since=datetime.now(UTC) - timedelta(days=3650))
        assert sorted(s.document_code for s in found) == codes
        assert len(sandbox.calls("u8")) - before == 3  # 2 + 2 + 1 codes
    finally:
        await u8.aclose()


async def test_site_tag_names_come_from_the_options(sandbox):
    tags = ShipmentTags.from_options({"shipment_carrier": "define1", "shipment_waybill": "define10"})
    u8 = U8EaiAdapter(url=f"{sandbox.url}{IMPORT}", sender="101", shipment_tags=tags)
    try:
        await written_order(u8)
        extra = "<define1>YTO</define1><define10>YT9988776655</define10>"
        await ship(sandbox, consignment(line("GW00000042", 1, "030101", "1"), extra=extra))
        [shipment] = await u8.shipments(["GW00000042"], since=LONG_AGO)
        assert (shipment.carrier, shipment.waybill_no) == ("YTO", "YT9988776655")
    finally:
        await u8.aclose()


async def test_a_refused_consignment_query_is_unknown_not_empty(sandbox):
    u8 = U8EaiAdapter(url=f"{sandbox.url}{IMPORT}", sender="999")  # not registered: U8 refuses
    try:
        with pytest.raises(UnknownOutcomeError) as info:
            await u8.shipments(["GW00000042"], since=LONG_AGO)
        assert info.value.partner_message == "发送方未注册"
    finally:
        await u8.aclose()


# --------------------------------------------------------------------------- edits once shipped


async def test_edit_and_delete_of_a_shipped_order_are_refused_with_a_hint(sandbox, adapter):
    doc = await written_order(adapter)
    [item] = await ship(sandbox, consignment(line("GW00000042", 1, "030101", "1")))
    doc.entries[0]["quantity"] = 2
    with pytest.raises(PermanentError) as info:
        await adapter.update(doc)
    assert "发货单" in info.value.partner_message and "不能修改" in info.value.partner_message
    assert "发货单" in info.value.hint and "by hand" in info.value.hint
    with pytest.raises(PermanentError) as info:
        await adapter.cancel(doc)
    assert "不能删除" in info.value.partner_message and "by hand" in info.value.hint
    [stored] = sandbox.documents("u8")
    assert [ln["quantity"] for ln in stored["lines"]] == [3, 1]  # unchanged

    # Once the 发货单 is deleted in U8, the order can be changed again.
    [deleted] = await ship_delete(sandbox, item["key"])
    assert deleted["succeed"] == "0"
    receipt = await adapter.update(doc)
    assert receipt.document_no == "GW00000042"
    assert [ln["quantity"] for ln in sandbox.documents("u8")[0]["lines"]] == [2, 1]


async def ship_delete(sandbox, code: str) -> list[dict[str, str]]:
    root = await post(sandbox, f"<consignment><header><code>{code}</code></header></consignment>", proc="delete")
    return [dict(item.attrib) for item in root.findall("item")]


# --------------------------------------------------------------------------- raw EAI requests, as a WMS sends them


@pytest.fixture
def client(sandbox):
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        yield http


def envelope(*documents: str, proc: str = "add", roottag: str = "saleorder") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><ufinterface sender="101" receiver="u8" roottag="{roottag}" '
        f'docid="" proc="{proc}" codeexchanged="N">{"".join(documents)}</ufinterface>'
    ).encode()


def items(response: httpx.Response) -> list[dict[str, str]]:
    root = etree.fromstring(response.content)
    assert root.get("roottag") == "return"
    return [dict(item.attrib) for item in root.findall("item")]


def raw_consignment(order: str = "GW0007", *, row: str = "1", quantity: str = "1", code: str = "") -> str:
    """A 发货单 as a WMS writes it (template tags, T)."""
    return (
        f"<consignment><header><code>{code}</code><vouchertype>05</vouchertype><saletype>02</saletype>"
        f"<date>2024-05-02</date><deptcode>0301</deptcode><custcode>010001</custcode><maker>WMS</maker>"
        f"<cebexpresscode>SF0001</cebexpresscode></header><body><entry><warehouse_code>01</warehouse_code>"
        f"<inventory_code>030101</inventory_code><quantity>{quantity}</quantity><cordercode>{order}</cordercode>"
        f"<iorderrowno>{row}</iorderrowno></entry></body></consignment>"
    )


def test_edit_and_delete_are_refused_once_a_consignment_refers_to_the_order(client, sandbox):
    client.post(IMPORT, content=envelope(saleorder("GW0007")))
    [shipped] = items(client.post(IMPORT, content=envelope(raw_consignment(), roottag="consignment")))
    assert (shipped["succeed"], shipped["key"]) == ("0", "0000000001")
    edited = envelope(saleorder("GW0007", quantity="1", amounts=""), proc="edit")
    [item] = items(client.post(IMPORT, content=edited))
    assert item["succeed"] == "101" and item["dsc"] == "销售订单[GW0007]已被发货单[0000000001]参照，不能修改！"
    [item] = items(client.post(IMPORT, content=envelope('<saleorder code="GW0007"/>', proc="delete")))
    assert item["succeed"] == "101" and "不能删除" in item["dsc"]
    assert sandbox.documents("u8")[0]["lines"][0]["quantity"] == 2
    # the 发货单 itself cannot be edited (inferred), only deleted; then the order is free again
    [item] = items(
        client.post(IMPORT, content=envelope(raw_consignment(code="0000000001"), roottag="consignment", proc="edit"))
    )
    assert item["succeed"] != "0"
    gone = "<consignment><header><code>0000000001</code></header></consignment>"
    assert items(client.post(IMPORT, content=envelope(gone, roottag="consignment", proc="delete")))[0]["succeed"] == "0"
    [item] = items(client.post(IMPORT, content=envelope('<saleorder code="GW0007"/>', proc="delete")))
    assert item["succeed"] == "0" and sandbox.documents("u8") == []


def test_consignment_query_by_code_or_order_in_template_shape(client):
    client.post(IMPORT, content=envelope(saleorder("GW0008")))
    client.post(IMPORT, content=envelope(raw_consignment("GW0008"), roottag="consignment"))
    by_code = envelope('<consignment code="0000000001"/>', roottag="consignment", proc="query")
    field = '<consignment><field name="cordercode" operation="=" value="gw0008" logic=""/></consignment>'
    by_order = envelope(field, roottag="consignment", proc="query")
    for body in (by_code, by_order):
        root = etree.fromstring(client.post(IMPORT, content=body).content)
        assert (root.get("roottag"), root.get("proc")) == ("consignment", "query")
        [found] = root.findall("consignment")
        assert found.findtext("header/code") == "0000000001"
        assert found.findtext("header/cebexpresscode") == "SF0001"
        entry = found.find("body/entry")
        assert (entry.findtext("cordercode"), entry.findtext("iorderrowno"), entry.findtext("quantity")) == (
            "GW0008",
            "1",
            "1",
        )
    none = '<consignment><field name="cordercode" operation="=" value="GW9999"/></consignment>'
    assert (
        etree.fromstring(
            client.post(IMPORT, content=envelope(none, roottag="consignment", proc="query")).content
        ).findall("consignment")
        == []
    )
    refused = '<consignment><field name="dDate" operation="&gt;=" value="2024-01-01"/></consignment>'
    [item] = items(client.post(IMPORT, content=envelope(refused, roottag="consignment", proc="query")))
    assert item["succeed"] == "101" and "不支持的查询条件" in item["dsc"]
