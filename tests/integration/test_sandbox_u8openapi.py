"""The simulated U8+ OpenAPI relay (reference/erp-protocols.md §2, §5 "U8 OpenAPI") over real HTTP on
loopback: tokens with an expiry, trade ids, one order per tradeid or biz_id, the EAI archive rules
behind it, errors as HTTP 200 ``errcode`` objects, the asynchronous result, and the read APIs."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

ROOT = "/u8openapi"
APP = {"from_account": "gateway-demo", "app_key": "opa-demo-gateway"}
SECRET = "demo-secret-not-for-production"


def saleorder(code: str = "GW0001", *, inventory: str = "030101", quantity: Any = 2, custcode: str = "010001") -> dict:
    return {
        "saleorder": {
            "code": code,
            "date": "2026-12-01 10:00:00",
            "typecode": "01",
            "custcode": custcode,
            "deptcode": "0301",
            "currency": "人民币",
            "maker": "gateway",
            "entry": [
                {
                    "inventorycode": inventory,
                    "quantity": quantity,
                    "taxunitprice": "113",
                    "money": "200.00",
                    "tax": "26.00",
                    "sum": "226.00",
                    "taxrate": 13,
                },
            ],
        }
    }


class Relay:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.token = self.get(f"{ROOT}/system/token", app_secret=SECRET)["token"]["id"]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.client.get(path, params={**APP, **params})
        assert response.status_code == 200
        return response.json()

    def auth(self, **params: Any) -> dict[str, Any]:
        return {**APP, "to_account": "demo-u8", "token": self.token, **params}

    def tradeid(self) -> str:
        return self.get(f"{ROOT}/system/tradeid", token=self.token)["trade"]["id"]

    def add(self, body: dict, *, sync: bool = True, **params: Any) -> httpx.Response:
        query = self.auth(**params)
        query.setdefault("tradeid", self.tradeid())
        if sync:
            query["sync"] = "1"
        return self.client.post(f"{ROOT}/api/saleorder/add", params=query, json=body)


@pytest.fixture
def relay(sandbox) -> Relay:
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield Relay(client)


def test_token_reply_has_the_sdk_fields_and_wrong_secrets_are_refused(relay):
    reply = relay.get(f"{ROOT}/system/token", app_secret=SECRET)
    assert reply["errcode"] == "0"
    assert set(reply["token"]) == {"id", "appKey", "expiresIn"} and reply["token"]["expiresIn"] == 7_200_000
    wrong = relay.get(f"{ROOT}/system/token", app_secret="guess")
    assert wrong["errcode"] != "0" and "app_secret" in wrong["errmsg"]


def test_calls_need_a_live_token(sandbox, relay):
    bad = relay.client.post(
        f"{ROOT}/api/saleorder/add", params={**relay.auth(token="nope"), "tradeid": "x"}, json=saleorder()
    )
    assert bad.status_code == 200 and bad.json()["errcode"] != "0" and "token" in bad.json()["errmsg"]
    sandbox.state.store("u8openapi").token_lifetime_ms = 100
    short = relay.get(f"{ROOT}/system/token", app_secret=SECRET)["token"]
    assert short["expiresIn"] == 100
    time.sleep(0.2)
    expired = relay.get(f"{ROOT}/system/tradeid", token=short["id"])
    assert expired["errcode"] != "0" and "过期" in expired["errmsg"]
    assert sandbox.documents("u8openapi") == []


def test_sync_add_writes_one_order_and_repeats_return_the_original_result(sandbox, relay):
    trade = relay.tradeid()
    first = relay.add(saleorder(), tradeid=trade, biz_id="GW0001").json()
    assert (first["errcode"], first["id"], first["tradeid"]) == ("0", "GW0001", trade)
    again = relay.add(saleorder(), tradeid=trade, biz_id="GW0001").json()
    assert again == first
    by_biz_id = relay.add(saleorder(), biz_id="GW0001").json()  # a fresh tradeid, the same biz_id
    assert by_biz_id == first
    [doc] = sandbox.documents("u8openapi")
    assert (doc["code"], doc["custcode"]) == ("GW0001", "010001")
    assert [(line["inventorycode"], line["quantity"]) for line in doc["lines"]] == [("030101", 2)]


def test_an_unissued_tradeid_is_refused(sandbox, relay):
    reply = relay.add(saleorder(), tradeid="0" * 32).json()
    assert reply["errcode"] != "0" and "tradeid" in reply["errmsg"]
    assert sandbox.documents("u8openapi") == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (saleorder(inventory="999999"), "存货编码[999999]不存在"),
        (saleorder(custcode="019999"), "客户编码[019999]不存在"),
        (saleorder(quantity=0), "必须大于0"),
        ({"saleorder": {**saleorder()["saleorder"], "cWhCode": "01"}}, "数据库没有提供的字段(cWhCode)"),
        ({"order": {}}, "saleorder"),
    ],
)
def test_business_errors_are_http_200_errcode_objects_and_write_nothing(sandbox, relay, body, words):
    response = relay.add(body)
    assert response.status_code == 200
    reply = response.json()
    assert reply["errcode"] not in ("", "0") and words in reply["errmsg"]
    assert sandbox.documents("u8openapi") == []


def test_a_rejected_tradeid_can_be_used_again_once_the_data_is_fixed(sandbox, relay):
    trade = relay.tradeid()
    assert relay.add(saleorder(inventory="999999"), tradeid=trade).json()["errcode"] != "0"
    assert relay.add(saleorder(), tradeid=trade).json()["errcode"] == "0"
    assert len(sandbox.documents("u8openapi")) == 1


def test_async_add_answers_a_url_pending_once_then_final(sandbox, relay):
    reply = relay.add(saleorder(), sync=False).json()
    assert reply["errcode"] == "0" and "id" not in reply
    url = httpx.URL(reply["url"])
    assert url.path == f"{ROOT}/result"
    first = relay.client.get(url.path, params=dict(url.params)).json()
    assert first["status"] == "processing" and "id" not in first
    final = relay.client.get(url.path, params=dict(url.params)).json()
    assert (final["errcode"], final["id"], final["status"]) == ("0", "GW0001", "done")
    rejected = relay.add(saleorder("GW0002", inventory="999999"), sync=False).json()
    url = httpx.URL(rejected["url"])
    relay.client.get(url.path, params=dict(url.params))
    final = relay.client.get(url.path, params=dict(url.params)).json()
    assert final["errcode"] != "0" and "999999" in final["errmsg"]
    assert [d["code"] for d in sandbox.documents("u8openapi")] == ["GW0001"]


def test_a_code_taken_through_another_trade_is_refused(sandbox, relay):
    assert relay.add(saleorder()).json()["errcode"] == "0"
    reply = relay.add(saleorder()).json()  # new tradeid, no biz_id: U8's own uniqueness of code
    assert reply["errcode"] != "0" and "已经存在" in reply["errmsg"]
    assert len(sandbox.documents("u8openapi")) == 1


def test_reject_fault_writes_nothing_and_drop_after_commit_writes(sandbox, relay):
    sandbox.fault("u8openapi", "reject")
    reply = relay.add(saleorder()).json()
    assert reply["errcode"] != "0" and "结账" in reply["errmsg"]
    assert sandbox.documents("u8openapi") == []
    sandbox.clear_faults()
    sandbox.fault("u8openapi", "drop_after_commit")
    with pytest.raises(httpx.TransportError):
        relay.add(saleorder())
    assert len(sandbox.documents("u8openapi")) == 1


def test_read_apis_list_orders_and_consignments(sandbox, relay):
    relay.add(saleorder("GW0001"))
    relay.add(saleorder("GW0002"))
    listed = relay.get(
        f"{ROOT}/api/saleorderlist/batch_get",
        **relay.auth(date_begin="2026-12-01", date_end="2026-12-01", page_index=1, rows_per_page=1),
    )
    assert listed["row_count"] == 2 and listed["page_count"] == 2
    assert [row["code"] for row in listed["saleorderlist"]] == ["GW0001"]
    none = relay.get(f"{ROOT}/api/saleorderlist/batch_get", **relay.auth(date_begin="2026-12-02"))
    assert none["saleorderlist"] == []

    shipped = {
        "consignment": {
            "date": "2026-12-02",
            "cebexpresscode": "SF1234567890",
            "entry": [{"inventorycode": "030101", "quantity": 2, "cordercode": "GW0001"}],
        }
    }
    added = relay.client.post(f"{ROOT}/api/consignment/add", params=relay.auth(), json=shipped).json()
    assert added["errcode"] == "0"
    rows = relay.get(f"{ROOT}/api/consignmentlist/batch_get", **relay.auth(date_begin="2026-12-01"))
    assert [row["code"] for row in rows["consignmentlist"]] == [added["id"]]
    one = relay.get(f"{ROOT}/api/consignment/get", **relay.auth(id=added["id"]))["consignment"]
    assert one["entry"][0]["cordercode"] == "GW0001" and one["cebexpresscode"] == "SF1234567890"
    refused = relay.client.post(
        f"{ROOT}/api/saleorder/delete", params=relay.auth(), json={"saleorder": {"code": "GW0001"}}
    ).json()
    assert refused["errcode"] != "0" and "已发货" in refused["errmsg"]
    deleted = relay.client.post(
        f"{ROOT}/api/saleorder/delete", params=relay.auth(), json={"saleorder": {"code": "GW0002"}}
    ).json()
    assert deleted["errcode"] == "0"
    assert [d["code"] for d in sandbox.documents("u8openapi")] == ["GW0001"]
