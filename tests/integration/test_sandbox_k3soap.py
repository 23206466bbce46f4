"""The K3 SOAP simulator over loopback HTTP, spoken to in raw SOAP 1.1 (erp-protocols.md §3.5, §5):
the WSDL it serves, WCF's checks on the envelope and body, the business rules, the faults."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lxml import etree

from adapters.sandbox.k3soap_schema import SOAP_BINDING_NS, bundled_wsdl
from adapters.xmlsafe import parse

pytestmark = pytest.mark.integration

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
TEMPURI = "http://tempuri.org/"
MODELS = "http://schemas.datacontract.org/2004/07/ERPServer.Models"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
PATH = "/k3soap/ERPService"


def order(bill_no: str = "GW00000001", **overrides: Any) -> dict[str, Any]:
    members: dict[str, Any] = {
        "BillNO": bill_no,
        "CustNumber": "01.004",
        "Date": "2026-03-01T10:00:00",
        "DeptNumber": "03.01",
        "EmpNumber": "0001",
        "Entrys": [{"Number": "1.01.001", "Price": "33.5", "Qty": "3", "UnitNumber": "PCS"}],
    }
    members.update(overrides)
    return {k: v for k, v in members.items() if v is not ...}


def envelope(op: str, params: dict[str, Any]) -> bytes:
    """A request as a WCF client writes it: wrapper and its parameters in the service namespace,
    the data contract's members (in the given order) in the models namespace."""
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"s": SOAP_ENV})
    body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
    wrapper = etree.SubElement(body, f"{{{TEMPURI}}}{op}", nsmap={None: TEMPURI})
    for name, value in params.items():
        el = etree.SubElement(wrapper, f"{{{TEMPURI}}}{name}", nsmap={"a": MODELS, "i": XSI})
        _fill(el, value)
    return etree.tostring(env, xml_declaration=True, encoding="utf-8")


def _fill(el: etree._Element, value: Any) -> None:
    if isinstance(value, dict):
        for name, member in value.items():
            child = etree.SubElement(el, f"{{{MODELS}}}{name}")
            if name == "Entrys":
                for entry in member:
                    _fill(etree.SubElement(child, f"{{{MODELS}}}FormSEOrderEntry"), entry)
            elif member is None:
                child.set(f"{{{XSI}}}nil", "true")
            else:
                child.text = str(member)
    else:
        el.text = str(value)


def call(sandbox, op: str, body: bytes, *, action: str | None = None, content_type: str = "text/xml; charset=utf-8"):
    headers = {"Content-Type": content_type, "SOAPAction": f'"{action or TEMPURI + "IERPService/" + op}"'}
    return httpx.post(sandbox.url + PATH, content=body, headers=headers, timeout=10)


def result(response: httpx.Response, op: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    root = parse(response.content)
    el = root.find(f"{{{SOAP_ENV}}}Body/{{{TEMPURI}}}{op}Response/{{{TEMPURI}}}{op}Result")
    assert el is not None, response.text
    return {etree.QName(c).localname: (None if c.get(f"{{{XSI}}}nil") == "true" else c) for c in el}


def fault(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 500
    root = parse(response.content)
    el = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert el is not None, response.text
    return el.findtext("faultcode"), el.findtext("faultstring")


def add(sandbox, members: dict[str, Any]) -> dict[str, Any]:
    return result(call(sandbox, "addSEorder", envelope("addSEorder", {"order": members})), "addSEorder")


# --------------------------------------------------------------------------- the WSDL


def test_wsdl_is_the_bundled_file_at_the_sandbox_address(sandbox):
    response = httpx.get(sandbox.url + PATH + "?wsdl", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    served = parse(response.content)
    [address] = served.iter(f"{{{SOAP_BINDING_NS}}}address")
    assert address.get("location") == sandbox.url + PATH
    bundled = parse(bundled_wsdl())
    for el in (served, bundled):
        for a in el.iter(f"{{{SOAP_BINDING_NS}}}address"):
            a.set("location", "X")
    assert etree.tostring(served, method="c14n") == etree.tostring(bundled, method="c14n")
    # WCF answers ?WSDL in any case, and a plain GET with its help page.
    assert httpx.get(sandbox.url + PATH + "?WSDL", timeout=10).content == response.content
    assert "ERPService" in httpx.get(sandbox.url + PATH, timeout=10).text


# --------------------------------------------------------------------------- business outcomes


def test_add_stores_the_order_and_a_second_add_is_refused_as_a_duplicate(sandbox):
    first = add(sandbox, order())
    assert (first["Status"].text, first["BillNO"].text) == ("0", "GW00000001")
    again = add(sandbox, order(Entrys=[{"Number": "1.01.002", "Qty": "1"}]))
    assert again["Status"].text != "0" and "单据编号[GW00000001]已存在" in again["Message"].text
    [doc] = sandbox.documents("k3soap")
    assert (doc["BillNO"], doc["CustNumber"], doc["DeptNumber"]) == ("GW00000001", "01.004", "03.01")
    assert doc["closed"] is False
    assert doc["Entrys"] == [{"Number": "1.01.001", "Price": "33.5", "Qty": "3", "UnitNumber": "PCS"}]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"CustNumber": "09.999"}, "购货单位代码[09.999]不存在"),
        ({"DeptNumber": "99"}, "部门代码[99]不存在"),
        ({"EmpNumber": "9999"}, "业务员代码[9999]不存在"),
        ({"Entrys": [{"Number": "8.88.888", "Qty": "1"}]}, "第1行物料代码[8.88.888]不存在"),
        ({"Entrys": [{"Number": "1.01.001", "Qty": "0"}]}, "第1行数量必须大于0"),
        ({"Entrys": [{"Number": "1.01.001", "Qty": "2", "UnitNumber": "BOX"}]}, "第1行计量单位[BOX]不存在"),
        ({"Entrys": []}, "订单分录不能为空"),
        ({"BillNO": " "}, "单据编号不能为空"),
    ],
)
def test_business_rules_refuse_with_status_and_write_nothing(sandbox, overrides, message):
    answer = add(sandbox, order(**overrides))
    assert answer["Status"].text == "1" and message in answer["Message"].text
    assert sandbox.documents("k3soap") == []


def test_get_update_and_cancel(sandbox):
    missing = result(call(sandbox, "getSEorder", envelope("getSEorder", {"billNO": "GW00000001"})), "getSEorder")
    assert missing["Status"].text == "0" and missing["Order"] is None
    refused = result(call(sandbox, "updateSEorder", envelope("updateSEorder", {"order": order()})), "updateSEorder")
    assert refused["Status"].text == "1" and "不存在" in refused["Message"].text
    add(sandbox, order())
    changed = order(Entrys=[{"Number": "1.01.001", "Qty": "5"}])
    updated = result(call(sandbox, "updateSEorder", envelope("updateSEorder", {"order": changed})), "updateSEorder")
    assert updated["Status"].text == "0"
    found = result(call(sandbox, "getSEorder", envelope("getSEorder", {"billNO": "GW00000001"})), "getSEorder")
    assert found["Order"].findtext(f"{{{MODELS}}}BillNO") == "GW00000001"
    assert found["Order"].findtext(f"{{{MODELS}}}Entrys/{{{MODELS}}}FormSEOrderEntry/{{{MODELS}}}Qty") == "5"
    closed = result(call(sandbox, "cancelOrder", envelope("cancelOrder", {"orderNo": "GW00000001"})), "cancelOrder")
    assert closed["Status"].text == "0"
    assert sandbox.documents("k3soap")[0]["closed"] is True
    gone = result(call(sandbox, "cancelOrder", envelope("cancelOrder", {"orderNo": "GW09999999"})), "cancelOrder")
    assert gone["Status"].text == "1" and "不存在" in gone["Message"].text


# --------------------------------------------------------------------------- what WCF refuses


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<not xml", "not well-formed"),
        (b"<Envelope/>", "not a SOAP 1.1 envelope"),
        (envelope("addSEorder", {"order": order(CustNumber=...)}), "'CustNumber' is missing"),
        (envelope("addSEorder", {"order": order(Entrys=[{"Number": "1.01.001"}])}), "'Qty' is missing"),
        (envelope("addSEorder", {"order": order(Colour="red")}), "element 'Colour'"),
        (envelope("addSEorder", {"order": {"CustNumber": "01.004", **order()}}), "'BillNO' is missing"),
        (envelope("addSEorder", {"order": order(Entrys=[{"Number": "1.01.001", "Qty": "three"}])}), "xsd:decimal"),
        (envelope("addSEorder", {"order": order(Date="yesterday")}), "xsd:dateTime"),
        (envelope("addSEorder", {"order": order(Date=None)}), "may not be nil"),
        (envelope("getSEorder", {"billNO": "GW1"}), "Expecting element 'addSEorder'"),
    ],
)
def test_malformed_messages_get_a_client_fault_and_write_nothing(sandbox, body, words):
    code, text = fault(call(sandbox, "addSEorder", body))
    assert code == "s:Client" and words in text
    assert sandbox.documents("k3soap") == []


def test_members_in_the_wrong_namespace_are_refused(sandbox):
    body = envelope("addSEorder", {"order": order()}).replace(MODELS.encode(), b"http://example.com/other")
    code, text = fault(call(sandbox, "addSEorder", body))
    assert code == "s:Client" and "BillNO" in text


def test_an_unknown_soap_action_and_an_entity_declaration_are_faults(sandbox):
    code, text = fault(call(sandbox, "addSEorder", envelope("addSEorder", {"order": order()}), action="urn:nothing"))
    assert code == "s:Client" and "ContractFilter mismatch" in text
    hostile = b'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + envelope(
        "addSEorder", {"order": order(CustName="&x;")}
    ).split(b"?>", 1)[1].replace(b"&amp;x;", b"&x;")
    code, text = fault(call(sandbox, "addSEorder", hostile))
    assert code == "s:Client" and "root:" not in text
    assert sandbox.documents("k3soap") == []


def test_a_content_type_other_than_text_xml_is_415(sandbox):
    response = call(sandbox, "addSEorder", envelope("addSEorder", {"order": order()}), content_type="application/json")
    assert response.status_code == 415 and "text/xml" in response.text


# --------------------------------------------------------------------------- the pipeline's faults


def test_reject_fault_is_a_business_refusal_that_writes_nothing(sandbox):
    sandbox.fault("k3soap", "reject")
    answer = add(sandbox, order())
    assert answer["Status"].text == "1" and "结账" in answer["Message"].text
    assert sandbox.documents("k3soap") == []
    assert sandbox.calls("k3soap")[-1]["outcome"] == "fault:reject"


def test_drop_after_commit_writes_the_order_and_hangs_up(sandbox):
    sandbox.fault("k3soap", "drop_after_commit")
    with pytest.raises(httpx.RemoteProtocolError):
        call(sandbox, "addSEorder", envelope("addSEorder", {"order": order()}))
    assert [d["BillNO"] for d in sandbox.documents("k3soap")] == ["GW00000001"]


def test_http500_fault_answers_the_iis_page_and_writes_nothing(sandbox):
    sandbox.fault("k3soap", "http500")
    response = call(sandbox, "addSEorder", envelope("addSEorder", {"order": order()}))
    assert response.status_code == 500 and response.headers["content-type"].startswith("text/html")
    assert sandbox.documents("k3soap") == []
