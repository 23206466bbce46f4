"""K3SoapAdapter (zeep) against the K3 SOAP simulator over loopback HTTP (erp-protocols.md §3.5),
against a tiny loopback app serving hostile and broken replies, and one order end to end through
the gateway. zeep loads the WSDL the sandbox serves at ``?wsdl``, downloaded by each test."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from zeep.exceptions import DTDForbidden, EntitiesForbidden
from zeep.exceptions import XMLSyntaxError as ZeepXMLSyntaxError
from zeep.loader import parse_xml

from adapters.erp import AdapterContext
from adapters.k3.soap import K3SoapAdapter, from_target
from adapters.k3.soap_transport import zeep_settings
from gateway.config import TargetConfig
from gateway.errors import ConfigError, PermanentError, RetryableError, UnknownOutcomeError
from gateway.ports import ErpDocument
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.integration

PATH = "/k3soap/ERPService"
SAMPLES = Path("/work/shared/reference/samples")
PASSWD_LINE = Path("/etc/passwd").read_text().splitlines()[0]  # "root:x:0:0:..." — must never surface


def make_doc(code: str = "GW00000001", **header: Any) -> ErpDocument:
    head = {
        "Date": "2026-03-01T10:00:00",
        "CustNumber": "01.004",
        "CustName": "京东示例店",
        "DeptNumber": "03.01",
        "EmpNumber": "0001",
        "Explanation": "jd 3031234567",
        **header,
    }
    entries = [
        {"Number": "1.01.001", "Name": "HOME-PILLOW-GRY-4874", "Qty": 3, "UnitNumber": "PCS", "sum_fen": 10000}
        | {"quoted_fen": 4000, "taxrate": 13, "irowno": 1},
        {"Number": "3.01.001", "Qty": 1, "Note": "赠品", "sum_fen": 0, "quoted_fen": None, "taxrate": 13, "irowno": 2},
    ]
    return ErpDocument(
        target="k3soap", kind="saleorder", code=code, order_id="01J", platform_order_id="3031234567",
        header=head, entries=entries,
    )  # fmt: skip


@pytest.fixture
def served_wsdl(sandbox, tmp_path) -> Path:
    """The WSDL as the sandbox serves it, saved where the adapter loads it from."""
    response = httpx.get(sandbox.url + PATH + "?wsdl", timeout=10)
    response.raise_for_status()
    path = tmp_path / "ERPService.wsdl"
    path.write_bytes(response.content)
    return path


def adapter_for(sandbox, wsdl: Path, **kw: Any) -> K3SoapAdapter:
    return K3SoapAdapter(url=sandbox.url + PATH, wsdl=wsdl, timeout=kw.pop("timeout", 10.0), **kw)


@pytest.fixture
async def adapter(sandbox, served_wsdl) -> AsyncIterator[K3SoapAdapter]:
    k3 = adapter_for(sandbox, served_wsdl)
    yield k3
    await k3.aclose()


async def control(sandbox, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        response = await client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()


async def fault(sandbox, mode: str, **extra: Any) -> None:
    body = {"system": "k3soap", "mode": mode, "rate": 1, **extra}
    await control(sandbox, "POST", "/_sandbox/faults", json=body)


async def documents(sandbox) -> list[dict[str, Any]]:
    return (await control(sandbox, "GET", "/_sandbox/k3soap/documents"))["documents"]


# --------------------------------------------------------------------------- against the simulator


async def test_success_writes_one_bill_with_amounts_to_the_fen(sandbox, adapter):
    receipt = await adapter.submit(make_doc())
    assert receipt.document_no == "GW00000001"
    [bill] = await documents(sandbox)
    assert (bill["BillNO"], bill["CustNumber"], bill["DeptNumber"], bill["EmpNumber"]) == (
        "GW00000001", "01.004", "03.01", "0001",
    )  # fmt: skip
    first, gift = bill["Entrys"]
    assert (first["Number"], first["Qty"], first["UnitNumber"]) == ("1.01.001", "3", "PCS")
    assert Decimal(first["Amount"]) == Decimal("100.00") and Decimal(first["StdPrice"]) == Decimal("40")
    assert abs(Decimal(first["Price"]) * 3 - Decimal("100")) < Decimal("0.000001")
    assert (gift["Number"], Decimal(gift["Amount"]), gift["Note"]) == ("3.01.001", 0, "赠品")


async def test_the_bundled_wsdl_equals_the_served_one_apart_from_the_address(sandbox, served_wsdl):
    from adapters.k3.soap import BUNDLED_WSDL
    from adapters.sandbox.k3soap_schema import wsdl_with_address

    assert wsdl_with_address(BUNDLED_WSDL.read_bytes(), sandbox.url + PATH) == served_wsdl.read_bytes()


async def test_a_business_rejection_is_permanent_with_the_services_words(sandbox, adapter):
    doc = make_doc()
    doc.entries[0]["Number"] = "8.88.888"
    with pytest.raises(PermanentError) as info:
        await adapter.submit(doc)
    assert info.value.partner_message == "第1行物料代码[8.88.888]不存在！"
    assert info.value.hint.startswith("Add the item's number to the SKU value table")
    await fault(sandbox, "reject")
    with pytest.raises(PermanentError) as info:
        await adapter.submit(make_doc())
    assert "结账" in info.value.partner_message and "period" in info.value.hint
    assert await documents(sandbox) == []


async def test_drop_after_commit_then_lookup_finds_exactly_one_bill(sandbox, adapter):
    await fault(sandbox, "drop_after_commit")
    with pytest.raises(UnknownOutcomeError):
        await adapter.submit(make_doc())
    await control(sandbox, "DELETE", "/_sandbox/faults")
    receipt = await adapter.lookup(make_doc())
    assert receipt is not None and receipt.document_no == "GW00000001"
    again = await adapter.submit(make_doc())  # a retry that skipped the look-up is still one bill
    assert again.message == "already in K3: written by an earlier attempt"
    assert [d["BillNO"] for d in await documents(sandbox)] == ["GW00000001"]
    assert await adapter.lookup(make_doc("GW00000002")) is None


async def test_without_a_lookup_operation_the_readd_answers_already_exists(sandbox, served_wsdl):
    k3 = adapter_for(sandbox, served_wsdl, operations={"lookup": ""})
    try:
        await fault(sandbox, "drop_after_commit")
        with pytest.raises(UnknownOutcomeError):
            await k3.submit(make_doc())
        await control(sandbox, "DELETE", "/_sandbox/faults")
        receipt = await k3.lookup(make_doc())
        assert receipt is not None and "duplicate" in receipt.message
        # A bill the first attempt never wrote: the look-up's re-add writes it, once.
        written = await k3.lookup(make_doc("GW00000002"))
        assert written is not None and written.document_no == "GW00000002"
        assert sorted(d["BillNO"] for d in await documents(sandbox)) == ["GW00000001", "GW00000002"]
        calls = [c["request"] for c in await _calls(sandbox)]
        assert not any("getSEorder" in body for body in calls)
    finally:
        await k3.aclose()


async def test_a_site_naming_its_operations_differently_is_served_by_options(sandbox, served_wsdl, tmp_path):
    # The site's WSDL calls the look-up querySEorder (same SOAPAction and message as ours).
    site = tmp_path / "site.wsdl"
    site.write_bytes(
        served_wsdl.read_bytes().replace(b'<wsdl:operation name="getSEorder">', b'<wsdl:operation name="querySEorder">')
    )
    with pytest.raises(ValueError, match="no operation 'getSEorder'"):
        adapter_for(sandbox, site)
    k3 = adapter_for(sandbox, site, operations={"lookup": "querySEorder"})
    try:
        await k3.submit(make_doc())
        assert (await k3.lookup(make_doc())).message == "found in K3 by the look-up"
        assert await k3.lookup(make_doc("GW00000002")) is None
    finally:
        await k3.aclose()


async def _calls(sandbox) -> list[dict[str, Any]]:
    return (await control(sandbox, "GET", "/_sandbox/calls", params={"system": "k3soap"}))["calls"]


async def test_http500_is_unknown_and_a_read_timeout_is_unknown(sandbox, served_wsdl, adapter):
    await fault(sandbox, "http500")
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(make_doc())
    assert info.value.details["http_status"] == 500
    await control(sandbox, "DELETE", "/_sandbox/faults")
    await fault(sandbox, "timeout", ms=3000)
    quick = adapter_for(sandbox, served_wsdl, timeout=0.5)
    try:
        with pytest.raises(UnknownOutcomeError):
            await quick.submit(make_doc())
    finally:
        await quick.aclose()
    assert await documents(sandbox) == []


async def test_nothing_listening_is_retryable(served_wsdl):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    k3 = K3SoapAdapter(url=f"http://127.0.0.1:{port}{PATH}", wsdl=served_wsdl, timeout=2)
    try:
        with pytest.raises(RetryableError):
            await k3.submit(make_doc())
    finally:
        await k3.aclose()


async def test_a_wsdl_that_does_not_fit_the_service_gets_a_client_fault_which_is_permanent(
    sandbox, served_wsdl, tmp_path
):
    # A site's WSDL with another data contract namespace: WCF cannot deserialize the members.
    served = served_wsdl.read_bytes()
    other = tmp_path / "other.wsdl"
    other.write_bytes(served.replace(b"2004/07/ERPServer.Models", b"2004/07/Other.Models"))
    k3 = adapter_for(sandbox, other)
    try:
        with pytest.raises(PermanentError) as info:
            await k3.submit(make_doc())
    finally:
        await k3.aclose()
    assert info.value.details["faultcode"] == "Client" and "BillNO" in info.value.partner_message
    assert await documents(sandbox) == []


async def test_update_and_cancel(sandbox, adapter):
    await adapter.submit(make_doc())
    changed = make_doc()
    changed.entries[0]["Qty"] = 5
    assert (await adapter.update(changed)).document_no == "GW00000001"
    [bill] = await documents(sandbox)
    assert bill["Entrys"][0]["Qty"] == "5"
    with pytest.raises(PermanentError) as info:
        await adapter.update(make_doc("GW00000009"))
    assert "不存在" in info.value.partner_message
    assert (await adapter.cancel(make_doc())).document_no == "GW00000001"
    assert (await documents(sandbox))[0]["closed"] is True
    assert (await adapter.cancel(make_doc("GW00000009"))).message == "not in K3"


async def test_shipments_are_read_back_per_outstock_bill(sandbox, adapter, served_wsdl):
    await adapter.submit(make_doc())
    await adapter.submit(make_doc("GW00000002"))
    spec = {"order": "GW00000001", "lines": [{"item": "1.01.001", "qty": 2}], "date": "2026-03-02T09:30:00"}
    first = await control(
        sandbox, "POST", "/_sandbox/k3soap/shipments", json=spec | {"carrier": "SF", "waybill": "SF1"}
    )
    await control(
        sandbox, "POST", "/_sandbox/k3soap/shipments", json={"order": "GW00000001", "date": "2026-03-03T08:00:00"}
    )
    since = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)  # 09:30 in China: the first bill counts
    out = await adapter.shipments(["GW00000001", "GW00000002"], since=since)
    assert [(s.document_code, s.shipment_no) for s in out] == [
        ("GW00000001", first["BillNO"]),
        ("GW00000001", "XOUT000002"),
    ]
    shipped = out[0]
    assert (shipped.carrier, shipped.waybill_no) == ("SF", "SF1")
    assert shipped.shipped_at == datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    assert [(line.item_code, line.qty, line.row) for line in shipped.lines] == [("1.01.001", 2, 1)]
    assert [(line.item_code, line.qty) for line in out[1].lines] == [("1.01.001", 3), ("3.01.001", 1)]
    assert await adapter.shipments(["GW00000001"], since=datetime(2026, 3, 4, tzinfo=UTC)) == []
    [bill, _] = await documents(sandbox)
    assert bill["outstocks"] == [first["BillNO"], "XOUT000002"]
    k3 = adapter_for(sandbox, served_wsdl, operations={"shipments": ""})
    try:
        with pytest.raises(PermanentError, match="no shipment read-back"):
            await k3.shipments(["GW00000001"], since=since)
    finally:
        await k3.aclose()


async def test_recording_a_shipment_checks_the_order_and_its_items(sandbox, adapter):
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        missing = await client.post("/_sandbox/k3soap/shipments", json={"order": "GW00000404"})
        assert missing.status_code == 400 and "不存在" in missing.json()["error"]
        await adapter.submit(make_doc())
        other = await client.post(
            "/_sandbox/k3soap/shipments", json={"order": "GW00000001", "lines": [{"item": "2.01.001", "qty": 1}]}
        )
        assert other.status_code == 400 and "不在订单" in other.json()["error"]


async def test_a_document_zeep_cannot_render_is_permanent_and_never_sent(sandbox, adapter):
    doc = make_doc()
    doc.entries[0]["Colour"] = "red"
    with pytest.raises(PermanentError, match=r"order\.Entrys\.FormSEOrderEntry has no member Colour"):
        await adapter.submit(doc)
    missing = make_doc()
    del missing.header["Date"]  # minOccurs="1", not nillable in the WSDL: zeep refuses to render it
    with pytest.raises(PermanentError, match="cannot be rendered"):
        await adapter.submit(missing)
    assert [c for c in await _calls(sandbox) if c["method"] == "POST"] == []


# --------------------------------------------------------------------------- hostile and broken replies

ENVELOPE = (
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
    '<addSEorderResponse xmlns="http://tempuri.org/"><addSEorderResult '
    'xmlns:a="http://schemas.datacontract.org/2004/07/ERPServer.Models">{members}</addSEorderResult>'
    "</addSEorderResponse></s:Body></s:Envelope>"
)
XXE = '<?xml version="1.0"?><!DOCTYPE s:Envelope [<!ENTITY passwd SYSTEM "file:///etc/passwd">]>' + ENVELOPE.format(
    members="<a:BillNO>GW00000001</a:BillNO><a:Message>&passwd;</a:Message><a:Status>1</a:Status>"
)
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
    + ENVELOPE.format(members="<a:Message>&lol9;</a:Message><a:Status>0</a:Status>")
)


def _fault_xml(code: str) -> str:
    return (
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
        f"<faultcode>{code}</faultcode><faultstring>出错了</faultstring></s:Fault></s:Body></s:Envelope>"
    )


REPLIES: dict[str, tuple[int, str, str]] = {
    "/garbage": (200, "text/xml; charset=utf-8", "我不是 XML <<<"),
    "/empty": (200, "text/xml; charset=utf-8", ""),
    "/xxe": (200, "text/xml; charset=utf-8", XXE),
    "/xxe500": (500, "text/xml; charset=utf-8", XXE),
    "/bomb": (200, "text/xml; charset=utf-8", BOMB),
    "/nostatus": (200, "text/xml; charset=utf-8", ENVELOPE.format(members="<a:Message>ok</a:Message>")),
    "/html500": (500, "text/html", "<html><body>500</body></html>"),
    "/xml500": (500, "text/xml", "<html><body>500</body></html>"),
    "/client": (500, "text/xml; charset=utf-8", _fault_xml("s:Client")),
    "/server": (500, "text/xml; charset=utf-8", _fault_xml("s:Server")),
    "/unavailable": (503, "text/html", "Service Unavailable"),
}


async def hostile_app(scope, receive, send) -> None:
    """A raw ASGI app answering each path with one canned reply (and the lifespan protocol)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    status, content_type, body = REPLIES[scope["path"]]
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type.encode())]})
    await send({"type": "http.response.body", "body": body.encode("utf-8")})


@pytest.fixture(scope="module")
def hostile_url() -> Iterator[str]:
    with serve_asgi(hostile_app) as url:
        yield url


def _surface(exc: Exception) -> str:
    """Everything an error carries that could reach a log, an API answer or a dead letter."""
    parts = [str(exc), repr(exc.__dict__), str(exc.__cause__), repr(getattr(exc.__cause__, "__dict__", ""))]
    return " ".join(parts)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/garbage", UnknownOutcomeError),
        ("/empty", UnknownOutcomeError),
        ("/xxe", UnknownOutcomeError),
        ("/xxe500", UnknownOutcomeError),
        ("/bomb", UnknownOutcomeError),
        ("/nostatus", UnknownOutcomeError),
        ("/html500", UnknownOutcomeError),
        ("/xml500", UnknownOutcomeError),
        ("/client", PermanentError),
        ("/server", UnknownOutcomeError),
        ("/unavailable", RetryableError),
    ],
)
async def test_broken_and_hostile_replies_are_sorted_and_never_read(hostile_url, served_wsdl, path, expected):
    k3 = K3SoapAdapter(url=hostile_url + path, wsdl=served_wsdl, timeout=5)
    try:
        with pytest.raises(expected) as info:
            await k3.submit(make_doc())
    finally:
        await k3.aclose()
    surface = _surface(info.value)
    assert PASSWD_LINE not in surface and "lollollol" not in surface
    if path.startswith("/xxe") or path == "/bomb":
        assert info.value.hint and "DTD or entities" in info.value.hint
    if path in ("/client", "/server"):
        assert info.value.partner_message == "出错了"


def test_zeeps_own_parser_refuses_dtds_and_entities_with_the_adapters_settings():
    # The second lock: were the xmlsafe screen gone, zeep itself would refuse these replies.
    with pytest.raises((DTDForbidden, EntitiesForbidden)):
        parse_xml(XXE.encode(), None, settings=zeep_settings())
    # libxml2's amplification limit stops the bomb even before zeep looks at the DTD.
    with pytest.raises((DTDForbidden, EntitiesForbidden, ZeepXMLSyntaxError)):
        parse_xml(BOMB.encode(), None, settings=zeep_settings())


# --------------------------------------------------------------------------- configuration


async def test_from_target_reads_wsdl_binding_and_operation_names(sandbox, served_wsdl):
    async with httpx.AsyncClient() as http:
        target = TargetConfig(
            transport="k3_soap", url=sandbox.url + PATH, options={"wsdl": str(served_wsdl)}, dictionary="k3soap_seorder"
        )
        k3 = from_target(AdapterContext(name="k3soap", target=target, http=http))
        assert (await k3.submit(make_doc())).document_no == "GW00000001"
        wrong = TargetConfig(
            transport="k3_soap", url=sandbox.url + PATH, options={"operations": {"lookup": "queryOrder"}}
        )
        with pytest.raises(ConfigError, match="no operation 'queryOrder'"):
            from_target(AdapterContext(name="k3soap", target=wrong, http=http))
        assert http.headers.get("user-agent", "").startswith("python-httpx")  # the shared client is untouched


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def k3soap_config(sandbox, tmp_path, monkeypatch) -> Path:
    """GATEWAY_CONFIG: the JD shop routed to a k3_soap target at the sandbox (read by ``gateway``)."""
    cfg = tmp_path / "k3soap.toml"
    cfg.write_text(
        f"""
name = "k3soap-test"
[shops.demo-jd]
platform = "jd"
default = true
target = "k3soap"
[targets.k3soap]
transport = "k3_soap"
url = "{sandbox.url}{PATH}"
dictionary = "k3soap_seorder"
values = ["values/demo-k3.toml"]
code_prefix = "JD"
[targets.k3soap.params]
department = "03.01"
employee = "0001"
maker = "gateway"
unit = "PCS"
tax_rate = 13
"""
    )
    monkeypatch.setenv("GATEWAY_CONFIG", str(cfg))
    return cfg


def test_a_jd_order_becomes_one_k3_bill_through_the_gateway(k3soap_config, gateway, sandbox):
    body = (SAMPLES / "jd" / "01_single_wait_stockout.json").read_bytes()
    with gateway.client("platform") as client:
        response = client.post("/v1/orders/jd", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    order = gateway.wait_state(response.json()["id"], "delivered", "dead")
    assert order["state"] == "delivered", json.dumps(order["timeline"], ensure_ascii=False)[:2000]
    [bill] = sandbox.documents("k3soap")
    assert order["erp"]["document_no"] == bill["BillNO"] and bill["BillNO"].startswith("JD")
    assert bill["CustNumber"] == "01.004" and bill["Explanation"].startswith("jd ")
    assert [e["Number"] for e in bill["Entrys"]] == ["5.02.003"]  # KB-MECH-87-BR
    assert sandbox.documents("u8") == []


def test_drop_after_commit_through_the_gateway_is_found_by_the_lookup(k3soap_config, gateway, sandbox):
    sandbox.fault("k3soap", "drop_after_commit", rate=1.0)
    body = (SAMPLES / "jd" / "02_multi_line_coupons.json").read_bytes()
    with gateway.client("platform") as client:
        response = client.post("/v1/orders/jd", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    gateway.wait_for(lambda: len(sandbox.documents("k3soap")) == 1, what="the bill written before the drop")
    sandbox.clear_faults()
    order = gateway.wait_state(response.json()["id"], "delivered")
    [bill] = sandbox.documents("k3soap")
    assert bill["BillNO"] == order["erp"]["document_no"]
    assert "erp.unknown_outcome" in [t["kind"] for t in order["timeline"]]
    assert order["timeline"][-1]["detail"].get("found_by_lookup") is True
    assert any("getSEorder" in c["request"] for c in sandbox.calls("k3soap"))
