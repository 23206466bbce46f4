"""The simulated Yonyou U8 EAI (reference/erp-protocols.md §1, §5) and the sandbox control plane
(CONTRACT §4), over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from lxml import etree

pytestmark = pytest.mark.integration

IMPORT = "/U8EAI/import.asp"
UNBALANCED_TAX = "<taxunitprice>113</taxunitprice><money>200</money><tax>26</tax><sum>230</sum>"
UNBALANCED_PRICE = "<taxunitprice>100</taxunitprice><money>200</money><tax>26</tax><sum>226</sum>"
_LAUGHS = b"".join(b'<!ENTITY lol%d "%s">' % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10))
BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">' + _LAUGHS + b"]>"
    b'<ufinterface sender="101" roottag="saleorder" proc="add"><x>&lol9;</x></ufinterface>'
)


def saleorder(
    code: str = "GW0001",
    *,
    inventory: str = "030101",
    quantity: str = "2",
    custcode: str = "010001",
    header_extra: str = "",
    entry_extra: str = "",
    amounts: str = "<taxunitprice>113</taxunitprice><unitprice>100</unitprice>"
    "<money>200</money><tax>26</tax><sum>226</sum><taxrate>13</taxrate>",
) -> str:
    return (
        f"<saleorder><header><code>{code}</code><date>2024-05-01</date><typecode>02</typecode>"
        f"<custcode>{custcode}</custcode><deptcode>0301</deptcode><currency>人民币</currency>"
        f"<currencyrate>1</currencyrate><taxrate>13</taxrate><maker>gateway</maker>"
        f"<memo>淘宝订单</memo><define10>TB-{code}</define10>{header_extra}</header>"
        f"<body><entry><inventorycode>{inventory}</inventorycode><quantity>{quantity}</quantity>"
        f"{amounts}{entry_extra}</entry></body></saleorder>"
    )


def envelope(*documents: str, proc: str = "add", sender: str = "101", roottag: str = "saleorder") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ufinterface sender="{sender}" receiver="u8" roottag="{roottag}" docid="" proc="{proc}" '
        f'codeexchanged="N" exportneedexch="N">{"".join(documents)}</ufinterface>'
    ).encode()


def items(response: httpx.Response) -> list[dict[str, str]]:
    root = etree.fromstring(response.content)
    assert root.tag == "ufinterface" and root.get("roottag") == "return"
    return [dict(item.attrib) for item in root.findall("item")]


def query(client: httpx.Client, code: str) -> list[etree._Element]:
    response = client.post(IMPORT, content=envelope(f'<saleorder code="{code}"/>', proc="query"))
    return etree.fromstring(response.content).findall("saleorder")


@pytest.fixture
def client(sandbox):
    # Java clients claim a form content-type although the body is raw XML (§1.1).
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=sandbox.url, timeout=10, headers=headers) as http:
        yield http


def test_liveness_page_says_normal(client):
    response = client.get(IMPORT)
    assert response.status_code == 200
    assert response.text == "正常"
    assert client.get("/u8eai/import.asp").text == "正常"


def test_valid_saleorder_is_stored_with_its_lines(client, sandbox):
    response = client.post(IMPORT, content=envelope(saleorder("GW0001")))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.startswith('<?xml version="1.0" encoding="utf-8"?>')
    [item] = items(response)
    assert item["succeed"] == "0" and item["dsc"] == "ok" and item["key"] == "GW0001"
    assert item["u8key"].isdigit()

    [doc] = sandbox.documents("u8")
    assert doc["code"] == "GW0001" and doc["custcode"] == "010001" and doc["deptcode"] == "0301"
    assert doc["typecode"] == "02" and doc["maker"] == "gateway" and doc["memo"] == "淘宝订单"
    assert doc["define10"] == "TB-GW0001" and doc["u8key"] == item["u8key"] and doc["created_at"]
    [line] = doc["lines"]
    assert line["inventorycode"] == "030101" and line["quantity"] == 2 and line["irowno"] == 1
    assert (line["money"], line["tax"], line["sum"], line["taxunitprice"]) == (200, 26, 226, 113)
    [call] = sandbox.calls("u8")
    assert call["outcome"] == "ok" and call["status"] == 200 and "GW0001" in call["request"]


def test_encoding_declaration_is_honoured(client, sandbox):
    body = envelope(saleorder("GB0001")).decode().replace('encoding="utf-8"', 'encoding="GB2312"')
    [item] = items(client.post(IMPORT, content=body.encode("gb2312")))
    assert item["succeed"] == "0"
    assert sandbox.documents("u8")[0]["memo"] == "淘宝订单"


def test_unknown_inventory_is_rejected_and_nothing_stored(client, sandbox):
    [item] = items(client.post(IMPORT, content=envelope(saleorder("GW0002", inventory="999999"))))
    assert item["succeed"] == "101"
    assert "999999" in item["dsc"] and "存货编码" in item["dsc"]
    assert sandbox.documents("u8") == []
    assert sandbox.calls("u8")[-1]["outcome"] == "rejected"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (saleorder(custcode="999001"), "客户编码[999001]不存在"),
        (saleorder(header_extra="<cWhCode>01</cWhCode>"), "数据库没有提供的字段(cwhcode)"),
        (saleorder(entry_extra="<cInvName>x</cInvName>"), "数据库没有提供的字段(cinvname)"),
        (saleorder(quantity="0"), "必须大于0"),
        (saleorder(quantity="two"), "不是有效的数字"),
        (saleorder(amounts=UNBALANCED_TAX), "金额不平"),
        (saleorder(amounts=UNBALANCED_PRICE), "金额不平"),
        (saleorder("X" * 31), "单据号超长"),
        (saleorder().replace("<deptcode>0301</deptcode>", ""), "表头字段[deptcode]不能为空"),
        (saleorder().replace("<typecode>02</typecode>", "<typecode>99</typecode>"), "销售类型[99]不存在"),
    ],
)
def test_template_rules_reject_with_chinese_dsc(client, sandbox, document, expected):
    [item] = items(client.post(IMPORT, content=envelope(document)))
    assert item["succeed"] == "101"
    assert expected in item["dsc"]
    assert sandbox.documents("u8") == []


def test_duplicate_code_is_refused_not_deduplicated(client, sandbox):
    assert items(client.post(IMPORT, content=envelope(saleorder("GW0003"))))[0]["succeed"] == "0"
    [item] = items(client.post(IMPORT, content=envelope(saleorder("GW0003"))))
    assert item["succeed"] == "101" and "已经存在" in item["dsc"] and item["key"] == "GW0003"
    assert len(sandbox.documents("u8")) == 1


def test_empty_code_is_auto_numbered(client, sandbox):
    first = items(client.post(IMPORT, content=envelope(saleorder(""))))[0]
    second = items(client.post(IMPORT, content=envelope(saleorder(""))))[0]
    assert (first["key"], second["key"]) == ("0000000001", "0000000002")
    assert [d["code"] for d in sandbox.documents("u8")] == ["0000000001", "0000000002"]


def test_batch_with_one_bad_document_partially_succeeds(client, sandbox):
    response = client.post(IMPORT, content=envelope(saleorder("GW0004"), saleorder("GW0005", inventory="X1")))
    good, bad = items(response)
    assert (good["key"], good["succeed"]) == ("GW0004", "0")
    assert (bad["key"], bad["succeed"]) == ("GW0005", "101") and "X1" in bad["dsc"]
    assert [d["code"] for d in sandbox.documents("u8")] == ["GW0004"]


def test_unknown_sender_and_mismatched_roottag_are_refused(client, sandbox):
    [item] = items(client.post(IMPORT, content=envelope(saleorder(), sender="999")))
    assert item["succeed"] == "1" and item["dsc"] == "发送方未注册"
    [item] = items(client.post(IMPORT, content=envelope(saleorder(), roottag="consignment")))
    assert item["succeed"] != "0"
    assert sandbox.documents("u8") == []


def test_query_finds_by_code_attribute_or_field(client):
    client.post(IMPORT, content=envelope(saleorder("GW0006")))
    by_attr = client.post(IMPORT, content=envelope('<saleorder code="GW0006"/>', proc="Query"))
    field = '<saleorder><field name="cSOCode" operation="=" value="GW0006"/></saleorder>'
    by_field = client.post(IMPORT, content=envelope(field, proc="query"))
    for response in (by_attr, by_field):
        root = etree.fromstring(response.content)
        assert root.get("roottag") == "saleorder" and root.get("proc") == "query"
        [order] = root.findall("saleorder")
        assert order.findtext("header/code") == "GW0006"
        assert order.findtext("body/entry/inventorycode") == "030101"
    assert query(client, "NOPE") == []


def test_edit_replaces_and_delete_removes(client, sandbox):
    client.post(IMPORT, content=envelope(saleorder("GW0007")))
    edited = envelope(saleorder("GW0007", inventory="040101"), proc="edit")
    [item] = items(client.post(IMPORT, content=edited))
    assert item["succeed"] == "0"
    assert sandbox.documents("u8")[0]["lines"][0]["inventorycode"] == "040101"
    [item] = items(client.post(IMPORT, content=envelope('<saleorder code="GW0007"/>', proc="delete")))
    assert item["succeed"] == "0"
    assert sandbox.documents("u8") == []


def test_a_value_wider_than_its_database_column_is_refused(client, sandbox):
    [item] = items(client.post(IMPORT, content=envelope(saleorder(header_extra="<define1>" + "x" * 21 + "</define1>"))))
    assert item["succeed"] == "101" and item["dsc"] == "将截断字符串或二进制数据。"
    assert sandbox.documents("u8") == []


@pytest.mark.parametrize(
    "body",
    [
        b"<ufinterface sender='101'><saleorder>",
        b"not xml at all",
        b'<?xml version="1.0"?><!DOCTYPE ufinterface [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<ufinterface sender="101" roottag="saleorder" proc="add"><saleorder><header>'
        b"<memo>&xxe;</memo></header></saleorder></ufinterface>",
        BILLION_LAUGHS,
    ],
    ids=["truncated", "not-xml", "xxe", "billion-laughs"],
)
def test_unreadable_or_unsafe_xml_is_http_500(client, sandbox, body):
    started = time.monotonic()
    response = client.post(IMPORT, content=body)
    assert response.status_code == 500
    assert "root:" not in response.text and "lollol" not in response.text
    assert time.monotonic() - started < 5
    assert sandbox.documents("u8") == []
    assert sandbox.calls("u8")[-1]["outcome"] == "error"


def test_oversized_body_is_http_500(client, sandbox):
    padding = b"<!--" + b"x" * (5 * 1024 * 1024) + b"-->"
    body = envelope(saleorder("GW0008")).replace(b"</ufinterface>", padding + b"</ufinterface>")
    response = client.post(IMPORT, content=body)
    assert response.status_code == 500
    assert sandbox.documents("u8") == []
    assert sandbox.calls("u8")[-1]["outcome"] == "error"


# -- faults --------------------------------------------------------------------------------------


def test_fault_http500_writes_nothing(client, sandbox):
    sandbox.fault("u8", "http500")
    response = client.post(IMPORT, content=envelope(saleorder("GW0010")))
    assert response.status_code == 500 and "<html>" in response.text
    assert sandbox.documents("u8") == []
    assert sandbox.calls("u8")[-1]["outcome"] == "fault:http500"
    assert client.get(IMPORT).text == "正常"  # reads are spared


def test_fault_timeout_client_gives_up_and_nothing_is_written(client, sandbox):
    sandbox.fault("u8", "timeout", ms=5000)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.post(IMPORT, content=envelope(saleorder("GW0011")), timeout=0.5)
    assert time.monotonic() - started < 3
    deadline = time.monotonic() + 5
    while not sandbox.calls("u8") and time.monotonic() < deadline:  # the server notices the hang-up
        time.sleep(0.05)
    [call] = sandbox.calls("u8")
    assert call["outcome"] == "fault:timeout" and call["status"] == 504
    assert sandbox.documents("u8") == []


def test_fault_timeout_answers_504_when_the_client_waits(client, sandbox):
    sandbox.fault("u8", "timeout", ms=200)
    started = time.monotonic()
    response = client.post(IMPORT, content=envelope(saleorder("GW0012")))
    assert response.status_code == 504 and time.monotonic() - started >= 0.2
    assert sandbox.documents("u8") == []


def test_fault_slow_delays_then_processes(client, sandbox):
    sandbox.fault("u8", "slow", ms=300)
    started = time.monotonic()
    [item] = items(client.post(IMPORT, content=envelope(saleorder("GW0013"))))
    assert time.monotonic() - started >= 0.3
    assert item["succeed"] == "0"
    assert [d["code"] for d in sandbox.documents("u8")] == ["GW0013"]
    assert sandbox.calls("u8")[-1]["outcome"] == "fault:slow"


def test_fault_reject_is_a_business_refusal(client, sandbox):
    sandbox.fault("u8", "reject")
    response = client.post(IMPORT, content=envelope(saleorder("GW0014")))
    [item] = items(response)
    assert response.status_code == 200 and item["succeed"] == "101" and item["key"] == "GW0014"
    assert any("\u4e00" <= ch <= "\u9fff" for ch in item["dsc"])
    assert sandbox.documents("u8") == []
    assert sandbox.calls("u8")[-1]["outcome"] == "fault:reject"


def test_fault_drop_after_commit_loses_the_reply_but_writes_once(client, sandbox):
    sandbox.fault("u8", "drop_after_commit")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(IMPORT, content=envelope(saleorder("GW0015")))
    assert [d["code"] for d in sandbox.documents("u8")] == ["GW0015"]
    assert sandbox.calls("u8")[-1]["outcome"] == "fault:drop_after_commit"

    sandbox.clear_faults("u8")
    # What an adapter does next: look it up, and a blind retry is refused as a duplicate.
    assert [o.findtext("header/code") for o in query(client, "GW0015")] == ["GW0015"]
    [item] = items(client.post(IMPORT, content=envelope(saleorder("GW0015"))))
    assert item["succeed"] == "101" and "已经存在" in item["dsc"]
    assert len(sandbox.documents("u8")) == 1


def test_fault_rate_is_deterministic_with_a_seed(client, sandbox):
    def pattern() -> list[int]:
        sandbox.reset()
        sandbox.fault("u8", "http500", rate=0.5, seed=7)
        return [client.post(IMPORT, content=envelope(saleorder(f"R{i}"))).status_code for i in range(12)]

    first = pattern()
    assert first == pattern()
    assert 500 in first and 200 in first


def test_faults_list_and_clear(sandbox):
    sandbox.fault("u8", "slow", ms=10)
    sandbox.fault("u8", "reject", rate=0.25)
    with httpx.Client(base_url=sandbox.url) as http:
        listed = http.get("/_sandbox/faults").json()["faults"]
        assert {(f["mode"], f["rate"]) for f in listed} == {("slow", 1.0), ("reject", 0.25)}
        assert http.delete("/_sandbox/faults").json() == {"faults": []}


@pytest.mark.parametrize(
    "body",
    [
        {"system": "u8", "mode": "explode", "rate": 1},
        {"system": "u8", "mode": "slow", "rate": 1.5},
        {"system": "nowhere", "mode": "slow", "rate": 1},
        {"mode": "slow"},
        {"system": "u8", "mode": "slow", "ms": -1},
        "not json",
    ],
)
def test_bad_fault_body_is_400(sandbox, body):
    with httpx.Client(base_url=sandbox.url) as http:
        kwargs = {"content": body} if isinstance(body, str) else {"json": body}
        response = http.post("/_sandbox/faults", **kwargs)
        assert response.status_code == 400 and response.json()["error"]
        assert http.get("/_sandbox/faults").json() == {"faults": []}


# -- capacity and reset --------------------------------------------------------------------------


async def test_capacity_limits_concurrent_service(sandbox):
    sandbox.capacity("u8", concurrency=2, service_ms=100)
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as http:
        started = time.monotonic()
        responses = await asyncio.gather(*(http.post(IMPORT, content=envelope(saleorder(f"CAP{i}"))) for i in range(8)))
        elapsed = time.monotonic() - started
    assert all(items(r)[0]["succeed"] == "0" for r in responses)
    view = sandbox.capacity("u8")
    assert view["concurrency"] == 2 and view["served"] == 8
    assert view["peak_in_flight"] <= 2
    assert view["peak_open"] > 2  # the client did send more at once: the sandbox queued them
    assert elapsed >= 0.4 - 0.05  # 8 calls, 2 at a time, 100 ms each
    assert len(sandbox.documents("u8")) == 8


def test_bad_capacity_body_is_400(sandbox):
    with httpx.Client(base_url=sandbox.url) as http:
        assert http.post("/_sandbox/capacity", json={"system": "u8", "concurrency": 0}).status_code == 400


def test_reset_returns_to_seeds(client, sandbox):
    client.post(IMPORT, content=envelope(saleorder("GW0020")))
    sandbox.fault("u8", "http500")
    sandbox.capacity("u8", concurrency=1, service_ms=0)
    sandbox.reset()
    assert sandbox.documents("u8") == [] and sandbox.calls() == [] and sandbox.capacity() == {}
    with httpx.Client(base_url=sandbox.url) as http:
        assert http.get("/_sandbox/faults").json() == {"faults": []}
        assert http.get("/_sandbox/nowhere/documents").status_code == 404
    [item] = items(client.post(IMPORT, content=envelope(saleorder(""))))
    assert item["succeed"] == "0" and item["key"] == "0000000001"
