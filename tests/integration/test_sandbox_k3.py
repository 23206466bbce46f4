"""The simulated Kingdee K3 WISE WebAPI (reference/erp-protocols.md §3, §5 "K3 WISE WebAPI") over real
HTTP on loopback: tokens and sessions, SO rules, lists, shipments, pipeline faults."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

CODE = "K3-DEMO-AUTH-7F3A9C"  # seed.toml [k3.authority_codes] → AIS20260101
OTHER_SET_CODE = "K3-DEMO-AUTH-2B81D4"  # → AIS20260102


def so(bill_no: str | None = "GW0001", *, cust: str = "01.003", item: str = "1.02.001", qty: Any = "2") -> dict:
    header: dict[str, Any] = {"Fdate": "2026-12-07 10:00:00", "FCustID": {"FNumber": cust, "FName": "抖音示例店"}}
    if bill_no is not None:
        header["FBillNo"] = bill_no
    line = {"FItemID": {"FNumber": item, "FName": "MUG-CER-W"}, "FUnitID": {"FNumber": "PCS"}, "Fauxqty": qty}
    return {"Data": {"Page1": [header], "Page2": [line]}}


@pytest.fixture
def k3(sandbox):
    with httpx.Client(base_url=sandbox.url, timeout=10) as client:
        yield client


def login(k3: httpx.Client, code: str = CODE) -> str:
    reply = k3.get("/K3API/Token/Create", params={"authorityCode": code}).json()
    assert reply["StatusCode"] == 200, reply
    assert reply["Data"]["Validity"] > 0
    return reply["Data"]["Token"]


def api(k3: httpx.Client, path: str, token: str | None, body: Any = None) -> dict[str, Any]:
    params = {"token": token} if token is not None else {}
    response = k3.post(f"/K3API/{path}", params=params, json=body if body is not None else {})
    assert response.status_code == 200  # K3 answers business outcomes inside the envelope
    return response.json()


def documents(sandbox) -> list[dict[str, Any]]:
    return sandbox.documents("k3")


# --------------------------------------------------------------------------- tokens


def test_token_create_refuses_an_unknown_authority_code(k3):
    reply = k3.get("/K3API/Token/Create", params={"authorityCode": "NOPE"}).json()
    assert reply["StatusCode"] != 200 and reply["Data"] is None
    assert k3.get("/K3API/Token/Create").json()["StatusCode"] != 200


def test_every_route_needs_a_live_token(sandbox, k3):
    assert api(k3, "SO/Save", None, so())["StatusCode"] == 401
    assert api(k3, "SO/GetList", "0123456789ABCDEF", {})["StatusCode"] == 401
    assert k3.get("/K3API/SO/GetTemplate").json()["StatusCode"] == 401
    assert documents(sandbox) == []


def test_a_new_login_ends_the_previous_token_of_the_same_account_set_only(k3):
    first = login(k3)
    other_set = login(k3, OTHER_SET_CODE)
    second = login(k3)
    refused = api(k3, "SO/GetList", first, {"Data": {}})
    assert refused["StatusCode"] == 401 and "token" in refused["Message"]
    assert api(k3, "SO/GetList", second, {"Data": {}})["StatusCode"] == 200
    assert api(k3, "SO/GetList", other_set, {"Data": {}})["StatusCode"] == 200
    sessions = k3.get("/_sandbox/k3/sessions").json()
    assert sessions["logins"] == {"AIS20260101": 2, "AIS20260102": 1}


def test_an_expired_token_is_refused_as_expired(k3):
    token = login(k3)
    ended = k3.post("/_sandbox/k3/sessions", json={"expire": True, "account_set": "AIS20260101"}).json()
    assert ended["ended"] == 1
    refused = api(k3, "SO/GetList", token, {"Data": {}})
    assert refused["StatusCode"] == 401 and "过期" in refused["Message"]


def test_validity_of_new_tokens_can_be_shortened(k3):
    k3.post("/_sandbox/k3/sessions", json={"validity_s": 2.5}).raise_for_status()
    reply = k3.get("/K3API/Token/Create", params={"authorityCode": CODE}).json()
    assert reply["Data"]["Validity"] == 2.5
    assert k3.post("/_sandbox/k3/sessions", json={"validity_s": -1}).status_code == 400


# --------------------------------------------------------------------------- SO/Save and friends


def test_save_stores_the_bill_with_its_number_and_case_insensitive_keys(sandbox, k3):
    token = login(k3)
    body = so()
    body["data"] = body.pop("Data")  # keys are matched case-insensitively
    body["data"]["Page2"][0]["FAUXQTY"] = body["data"]["Page2"][0].pop("Fauxqty")
    reply = api(k3, "SO/Save", token, body)
    assert reply["StatusCode"] == 200, reply
    assert reply["Data"]["BillNo"] == "GW0001"
    [stored] = documents(sandbox)
    assert stored["FBillNo"] == "GW0001" and stored["FCustID"]["FNumber"] == "01.003"
    assert stored["lines"][0]["FItemID"]["FNumber"] == "1.02.001"


def test_save_without_a_bill_number_is_numbered_by_k3_and_is_not_idempotent(sandbox, k3):
    token = login(k3)
    first = api(k3, "SO/Save", token, so(None))["Data"]["BillNo"]
    second = api(k3, "SO/Save", token, so(None))["Data"]["BillNo"]
    assert first != second and first.startswith("SEORD")
    assert len(documents(sandbox)) == 2  # no idempotency without our own FBillNo (§5)


def test_a_duplicate_bill_number_is_refused_and_writes_nothing(sandbox, k3):
    token = login(k3)
    assert api(k3, "SO/Save", token, so())["StatusCode"] == 200
    again = api(k3, "SO/Save", token, so(item="1.02.002"))
    assert again["StatusCode"] != 200 and "已存在" in again["Message"]
    [stored] = documents(sandbox)
    assert stored["lines"][0]["FItemID"]["FNumber"] == "1.02.001"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (so(cust="09.999"), "09.999"),
        (so(item="9.99.999"), "9.99.999"),
        (so(qty="0"), "必须大于0"),
        (so(qty="two"), "不是有效的数字"),
        ({"Data": {"Page1": [{"Fdate": "2026-12-07", "FCustID": {"FNumber": "01.003"}}], "Page2": []}}, "Page2"),
        (
            {"Data": {"Page1": [{"Fdate": "2026-12-07", "FCustID": "01.003"}], "Page2": so()["Data"]["Page2"]}},
            "FNumber",
        ),
        ({"Data": {"Page1": [{"FCustID": {"FNumber": "01.003"}}], "Page2": so()["Data"]["Page2"]}}, "Fdate"),
    ],
)
def test_save_validates_base_data_and_lines(sandbox, k3, body, words):
    token = login(k3)
    reply = api(k3, "SO/Save", token, body)
    assert reply["StatusCode"] != 200 and words in reply["Message"]
    assert documents(sandbox) == []


def test_unreadable_json_is_refused(k3):
    token = login(k3)
    reply = k3.post("/K3API/SO/Save", params={"token": token}, content=b"{not json").json()
    assert reply["StatusCode"] != 200


def test_update_needs_an_existing_bill_and_audit_blocks_update_and_delete(sandbox, k3):
    token = login(k3)
    missing = api(k3, "SO/Update", token, {"FBillNo": "GW0404", **so("GW0404")})
    assert missing["StatusCode"] != 200 and "不存在" in missing["Message"]
    api(k3, "SO/Save", token, so())
    changed = api(k3, "SO/Update", token, {"FBillNo": "GW0001", **so("GW0001", qty="5")})
    assert changed["StatusCode"] == 200
    assert documents(sandbox)[0]["lines"][0]["Fauxqty"] == "5"
    detail = api(k3, "SO/GetDetail", token, {"Data": {"FBillNo": "GW0001"}, "GetProperty": False})
    assert detail["Data"]["Page1"][0]["FBillNo"] == "GW0001" and len(detail["Data"]["Page2"]) == 1
    audit = {"Data": {"FBillNo": "GW0001", "FChecker": "administrator", "FCheckDirection": "2", "FDealComment": ""}}
    assert api(k3, "SO/CheckBill", token, audit)["StatusCode"] == 200
    assert "已审核" in api(k3, "SO/Update", token, {"FBillNo": "GW0001", **so("GW0001")})["Message"]
    assert "已审核" in api(k3, "SO/Delete", token, {"Data": {"FBillNo": "GW0001"}})["Message"]
    audit["Data"]["FCheckDirection"] = "4"
    api(k3, "SO/CheckBill", token, audit)
    assert api(k3, "SO/Delete", token, {"Data": {"FBillNo": "GW0001"}})["StatusCode"] == 200
    assert documents(sandbox) == []


# --------------------------------------------------------------------------- GetList


def test_get_list_filters_pages_and_selects_fields(k3):
    token = login(k3)
    for n in range(1, 6):
        api(k3, "SO/Save", token, so(f"GW000{n}"))
    api(k3, "SO/Save", token, so("O'BRIEN"))
    one = api(k3, "SO/GetList", token, {"Data": {"Fields": "FBillNo,FCustID", "Filter": "[FBillNo] = 'GW0003'"}})
    assert one["Data"]["ROWCOUNT"] == 1
    assert one["Data"]["DATA"] == [{"FBillNo": "GW0003", "FCustID": {"FNumber": "01.003", "FName": "抖音示例店"}}]
    quoted = api(k3, "SO/GetList", token, {"Data": {"Filter": "[FBILLNO] = 'O''BRIEN'"}})
    assert [r["FBillNo"] for r in quoted["Data"]["DATA"]] == ["O'BRIEN"]
    like = {"PageSize": "2", "PageIndex": "2", "Filter": "[FBillNo] like 'GW%'", "Fields": "FBillNo"}
    page = api(k3, "SO/GetList", token, {"Data": like})["Data"]
    assert (
        page["ROWCOUNT"] == 5
        and page["PAGEINDEX"] == 2
        and [r["FBillNo"] for r in page["DATA"]] == ["GW0003", "GW0004"]
    )
    top = api(k3, "SO/GetList", token, {"Data": {"Top": "3", "Filter": "[FBillNo] like 'gw%'"}})["Data"]
    assert top["ROWCOUNT"] == 3


@pytest.mark.parametrize(
    "query",
    [
        {"Filter": "[FBillNo] = 'O'BRIEN'"},  # an unescaped quote: SQL syntax error
        {"Filter": "[FNoSuchColumn] = 'x'"},
        {"Fields": "FBillNo,FNoSuchColumn"},
        {"PageSize": "5000"},
        {"PageIndex": "0"},
    ],
)
def test_get_list_refuses_what_sql_server_would(k3, query):
    token = login(k3)
    api(k3, "SO/Save", token, so())
    reply = api(k3, "SO/GetList", token, {"Data": query})
    assert reply["StatusCode"] != 200 and reply["Message"]


# --------------------------------------------------------------------------- shipments


def test_shipments_recorded_against_an_so_are_listed_by_their_source_bill(sandbox, k3):
    token = login(k3)
    api(k3, "SO/Save", token, so("GW0001"))
    api(k3, "SO/Save", token, so("GW0002", item="1.02.002"))
    notice = k3.post("/_sandbox/k3/shipments", json={"object": "Delivery_Notice", "order": "GW0001"}).json()
    out = k3.post(
        "/_sandbox/k3/shipments",
        json={
            "object": "Sales_Delivery",
            "order": "GW0001",
            "lines": [{"item": "1.02.001", "qty": 1}],
            "date": "2026-12-07 15:00:00",
            "header": {"FHeadSelfB0436": "SF1234567890"},
        },
    ).json()
    assert notice["FBillNo"].startswith("SEOUT") and out["FBillNo"].startswith("XOUT")
    bad = k3.post("/_sandbox/k3/shipments", json={"order": "GW0001", "lines": [{"item": "1.02.002", "qty": 1}]})
    assert bad.status_code == 400
    rows = api(
        k3,
        "Sales_Delivery/GetList",
        token,
        {"Data": {"Filter": "[FOrderBillNo] in ('GW0001','GW0002') and [Fdate] >= '2026-12-07 00:00:00'"}},
    )
    [row] = rows["Data"]["DATA"]
    assert (row["FBillNo"], row["FOrderBillNo"], row["Fauxqty"]) == (out["FBillNo"], "GW0001", "1")
    assert row["FHeadSelfB0436"] == "SF1234567890"
    later = api(k3, "Sales_Delivery/GetList", token, {"Data": {"Filter": "[Fdate] >= '2026-12-08 00:00:00'"}})
    assert later["Data"]["ROWCOUNT"] == 0
    notices = api(k3, "Delivery_Notice/GetList", token, {"Data": {"Filter": "[FSourceBillNo] = 'GW0001'"}})
    assert notices["Data"]["ROWCOUNT"] == 1
    assert "下游" in api(k3, "SO/Delete", token, {"Data": {"FBillNo": "GW0001"}})["Message"]
    assert documents(sandbox)[0]["shipments"][0]["object"] == "Delivery_Notice"


# --------------------------------------------------------------------------- pipeline faults


def test_reject_fault_is_a_business_refusal_that_writes_nothing(sandbox, k3):
    token = login(k3)  # Token/Create is a GET: faults spare it
    sandbox.fault("k3", "reject")
    reply = api(k3, "SO/Save", token, so())
    assert reply["StatusCode"] != 200 and "结账" in reply["Message"]
    assert documents(sandbox) == []
    assert sandbox.calls("k3")[-1]["outcome"] == "fault:reject"


def test_drop_after_commit_writes_the_bill_and_hangs_up(sandbox, k3):
    token = login(k3)
    sandbox.fault("k3", "drop_after_commit")
    with pytest.raises(httpx.TransportError):
        k3.post("/K3API/SO/Save", params={"token": token}, json=so())
    assert [d["FBillNo"] for d in documents(sandbox)] == ["GW0001"]


def test_http500_fault_writes_nothing(sandbox, k3):
    token = login(k3)
    sandbox.fault("k3", "http500")
    assert k3.post("/K3API/SO/Save", params={"token": token}, json=so()).status_code == 500
    assert documents(sandbox) == []
