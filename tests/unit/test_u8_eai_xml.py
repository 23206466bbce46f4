"""U8 EAI request XML against the §1.3 field table, and every reply shape of §1.5."""

from __future__ import annotations

from decimal import Decimal

import pytest
from lxml import etree

from adapters.u8.eai_xml import (
    QueryRefusedError,
    ReplyItem,
    ReplyShapeError,
    build_query,
    build_request,
    parse_query_reply,
    parse_reply,
)
from gateway.ports import ErpDocument

# Every tag the §1.3 table names for a sale order (plus irowno, E5/E6).
HEADER_TAGS = set(
    "code date typecode custcode deptcode personcode currency currencyrate taxrate maker businesstype "
    "memo cusname dpredatebt dpremodatebt disflag".split()
) | {f"define{i}" for i in range(1, 17)}
ENTRY_TAGS = set(
    "inventorycode quantity num quotedprice unitprice taxunitprice money tax sum natunitprice natmoney "
    "nattax natsum natdiscount taxrate discountrate discountrate2 dpredate dpremodate preparedate "
    "irowno bgift".split()
)


def make_doc(**changes) -> ErpDocument:
    fields = {
        "target": "u8",
        "kind": "saleorder",
        "code": "GW00000042",
        "order_id": "01HZX3Q5V7ORDER",
        "platform_order_id": "TB-1",
        "header": {
            "code": "GW00000042",
            "date": "2024-05-01",
            "typecode": "01",
            "custcode": "010001",
            "deptcode": "0301",
            "personcode": "0001",
            "currency": "人民币",
            "currencyrate": 1,
            "taxrate": 13,
            "maker": "gateway",
            "businesstype": "普通销售",
            "memo": None,
            "define10": "",
        },
        "entries": [
            {"inventorycode": "030101", "quantity": 3, "sum_fen": 10000, "taxrate": Decimal("13")},
            {"inventorycode": "050101", "quantity": 1, "sum_fen": 0, "quoted_fen": 1990, "bgift": True},
        ],
    }
    fields.update(changes)
    return ErpDocument(**fields)


def parsed(doc: ErpDocument) -> etree._Element:
    return etree.fromstring(build_request(doc, sender="101"))


# --------------------------------------------------------------------------- requests


def test_envelope_attributes_and_declaration():
    data = build_request(make_doc(), sender="101")
    assert data.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
    root = etree.fromstring(data)
    assert root.tag == "ufinterface"
    assert dict(root.attrib) == {
        "sender": "101",
        "receiver": "u8",
        "roottag": "saleorder",
        "docid": "01HZX3Q5V7ORDER",
        "proc": "add",
        "codeexchanged": "N",
        "exportneedexch": "N",
        "version": "2.0",
    }
    assert [child.tag for child in root] == [root.get("roottag")]  # roottag equals the child
    assert [child.tag for child in root[0]] == ["header", "body"]


def test_header_tags_are_section_1_3_names_with_required_ones():
    header = parsed(make_doc()).find("saleorder/header")
    tags = [child.tag for child in header]
    assert set(tags) <= HEADER_TAGS
    assert {"code", "date", "custcode", "deptcode", "currency", "maker"} <= set(tags)
    assert tags[0] == "code" and header.findtext("code") == "GW00000042"
    assert header.findtext("currency") == "人民币"
    assert "memo" not in tags and "define10" not in tags  # None and "" are omitted


def test_entries_carry_section_1_3_tags_and_consistent_amounts():
    entries = parsed(make_doc()).findall("saleorder/body/entry")
    assert len(entries) == 2
    for entry in entries:
        tags = {child.tag for child in entry}
        assert tags <= ENTRY_TAGS
        assert {"inventorycode", "quantity"} <= tags
        assert not tags & {"sum_fen", "quoted_fen"}
    first, gift = entries
    assert first.findtext("irowno") == "1" and gift.findtext("irowno") == "2"
    assert first.findtext("sum") == "100.00"
    assert first.findtext("money") == "88.50" and first.findtext("tax") == "11.50"
    assert first.findtext("taxunitprice") == "33.3333333333"
    assert first.findtext("taxrate") == "13"
    assert abs(Decimal(first.findtext("taxunitprice")) * 3 - Decimal("100")) <= Decimal("0.01")
    assert gift.findtext("sum") == "0.00" and gift.findtext("quotedprice") == "19.9"
    assert gift.findtext("taxrate") == "13"  # falls back to the header rate
    assert gift.findtext("bgift") == "1"


def test_header_code_is_the_document_code_even_when_absent():
    doc = make_doc()
    doc.header.pop("code")
    assert parsed(doc).findtext("saleorder/header/code") == "GW00000042"


def test_buyer_text_is_escaped_not_injected():
    doc = make_doc()
    doc.header["memo"] = '</memo><maker>x</maker> & "quotes"'
    header = parsed(doc).find("saleorder/header")
    assert header.findtext("memo") == '</memo><maker>x</maker> & "quotes"'
    assert header.findtext("maker") == "gateway"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.header.pop("custcode"), "custcode"),
        (lambda d: d.header.update(maker=""), "maker"),
        (lambda d: d.header.update(code="OTHER"), "code"),
        (lambda d: d.entries[0].pop("inventorycode"), "inventorycode"),
        (lambda d: d.entries[0].pop("quantity"), "quantity"),
        (lambda d: d.header.update(cWhCode="01"), "cWhCode"),
        (lambda d: d.entries[0].update(money="1"), "money"),
        (lambda d: d.header.update(currencyrate=1.0), "currencyrate"),
        (lambda d: d.entries.clear(), "entry"),
    ],
)
def test_refuses_documents_u8_would_reject_or_ignore(change, message):
    doc = make_doc()
    change(doc)
    with pytest.raises(ValueError, match=message):
        build_request(doc, sender="101")


def test_sum_fen_without_any_tax_rate_is_refused():
    doc = make_doc(entries=[{"inventorycode": "030101", "quantity": 1, "sum_fen": 100}])
    doc.header.pop("taxrate")
    with pytest.raises(ValueError, match="taxrate"):
        build_request(doc, sender="101")


def test_query_shape_of_section_1_8():
    root = etree.fromstring(build_query("GW00000042", sender="101"))
    assert root.get("proc") == "query" and root.get("roottag") == "saleorder"
    assert root.get("sender") == "101"
    saleorder = root.find("saleorder")
    assert saleorder.get("code") == "GW00000042"
    field = saleorder.find("field")
    assert dict(field.attrib) == {"name": "cSOCode", "operation": "=", "value": "GW00000042", "logic": ""}


# --------------------------------------------------------------------------- replies


def test_success_reply():
    data = b'<ufinterface roottag="return"><item key="GW1" succeed="0" dsc="ok" u8key="1000001"/>'
    data += b"</ufinterface>"
    assert parse_reply(data) == [ReplyItem(key="GW1", succeed="0", dsc="ok", u8key="1000001")]


def test_batch_reply_with_one_failure_and_declaration():
    data = (
        '<?xml version="1.0" encoding="utf-8"?>\n<ufinterface roottag="return" request-roottag="storeqc">'
        '<item key="" succeed="0" dsc="ok" u8key=""/>'
        '<item key="" succeed="101" dsc=" 库存启用的第一个月已经月结,不可以增加删除期初! " u8key=""/>'
        "</ufinterface>"
    ).encode()
    items = parse_reply(data)
    assert [i.succeed for i in items] == ["0", "101"]
    assert items[1].dsc == "库存启用的第一个月已经月结,不可以增加删除期初!"


def test_duplicate_reply_with_missing_u8key_and_gb2312():
    data = (
        '<?xml version="1.0" encoding="gb2312"?><ufinterface roottag="return">'
        '<item key="p16102" succeed="101" dsc="客户编码已经存在，不可重复！"></item></ufinterface>'
    ).encode("gb2312")
    expected = ReplyItem(key="p16102", succeed="101", dsc="客户编码已经存在，不可重复！", u8key="")
    assert parse_reply(data) == [expected]


def test_voucher_return_roottag():
    data = (
        '<ufinterface roottag="voucheraddreturn" docid="" proc="add" sender="u8" receiver="001" '
        'request-roottag="voucher"><item accounting_period="12" voucher_type="记" voucher_id="" '
        'entry_id="2" succeed="1" dsc="项目非法" u8accounting_period="" u8voucher_id=""/></ufinterface>'
    ).encode()
    assert parse_reply(data) == [ReplyItem(key="", succeed="1", dsc="项目非法", u8key="")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'<u8apireturn issuccess="true"/>', ReplyItem(key="", succeed="0", dsc="ok", u8key="")),
        (
            '<u8apireturn issuccess="false"><error> 存货编码[x]不存在 </error></u8apireturn>'.encode(),
            ReplyItem(key="", succeed="1", dsc="存货编码[x]不存在", u8key=""),
        ),
        (
            b'<ReturnModel><u8apireturn issuccess="TRUE"></u8apireturn></ReturnModel>',
            ReplyItem(key="", succeed="0", dsc="ok", u8key=""),
        ),
    ],
)
def test_u8apireturn_variant(data, expected):
    assert parse_reply(data) == [expected]


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ufinterface roottag="return"><item key="&xxe;" succeed="0" dsc="ok" u8key=""/></ufinterface>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ufinterface roottag="return"><item key="&lol3;" succeed="0" dsc="ok" u8key=""/></ufinterface>"""


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"  \r\n", id="blank"),
        pytest.param(b"<html><body><h1>500 - Internal server error.</h1></body></html>", id="html"),
        pytest.param(b"<html><body><p>unclosed</body></html>", id="broken-html"),
        pytest.param("正常".encode(), id="liveness-text"),
        pytest.param(b'<ufinterface roottag="saleorder"><saleorder/></ufinterface>', id="not-a-return"),
        pytest.param(b'<ufinterface roottag="return"></ufinterface>', id="no-items"),
        pytest.param(b'<ufinterface roottag="return"><item dsc="ok"/></ufinterface>', id="no-succeed"),
        pytest.param(b"<result><ok/></result>", id="unknown-root"),
        pytest.param(b'<u8apireturn issuccess="maybe"/>', id="bad-issuccess"),
        pytest.param(XXE, id="xxe"),
        pytest.param(LAUGHS, id="billion-laughs"),
    ],
)
def test_unknown_or_unsafe_replies_are_refused(data):
    with pytest.raises(ReplyShapeError):
        parse_reply(data)


XXE_IN_TEXT = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<u8apireturn issuccess="false"><error>&xxe;</error></u8apireturn>"""
LAUGHS_IN_TEXT = LAUGHS.replace(
    b'<ufinterface roottag="return"><item key="&lol3;" succeed="0" dsc="ok" u8key=""/></ufinterface>',
    b'<u8apireturn issuccess="false"><error>&lol3;</error></u8apireturn>',
)


@pytest.mark.parametrize("data", [XXE_IN_TEXT, LAUGHS_IN_TEXT])
def test_entities_are_refused_by_xmlsafe_not_expanded(data):
    # Entities in text parse (unexpanded) and then the DOCTYPE makes xmlsafe refuse the whole reply.
    from adapters.xmlsafe import UnsafeXmlError

    with pytest.raises(ReplyShapeError) as info:
        parse_reply(data)
    assert isinstance(info.value.__cause__, UnsafeXmlError)


# --------------------------------------------------------------------------- query replies


def test_query_reply_in_template_shape():
    data = (
        b'<?xml version="1.0" encoding="utf-8"?><ufinterface roottag="saleorder" proc="query">'
        b"<saleorder><header><code>GW00000042</code><custcode>010001</custcode></header>"
        b"<body><entry><inventorycode>030101</inventorycode><quantity>3</quantity></entry>"
        b"<entry><inventorycode>050101</inventorycode><quantity>1</quantity></entry></body></saleorder>"
        b"</ufinterface>"
    )
    [order] = parse_query_reply(data)
    assert order["code"] == "GW00000042" and order["custcode"] == "010001"
    assert [line["inventorycode"] for line in order["lines"]] == ["030101", "050101"]


def test_query_reply_without_records_is_empty():
    assert parse_query_reply(b'<ufinterface roottag="saleorder" proc="query"/>') == []
    empty_return = b'<ufinterface roottag="return"><item succeed="0" dsc="ok"/></ufinterface>'
    assert parse_query_reply(empty_return) == []


def test_refused_query_keeps_u8_words():
    data = '<ufinterface roottag="return"><item succeed="101" dsc="发送方未注册"/></ufinterface>'.encode()
    with pytest.raises(QueryRefusedError) as info:
        parse_query_reply(data)
    assert info.value.dsc == "发送方未注册"


@pytest.mark.parametrize("data", [b"", b"<html/>", XXE])
def test_query_reply_refuses_unknown_shapes(data):
    with pytest.raises(ReplyShapeError):
        parse_query_reply(data)
