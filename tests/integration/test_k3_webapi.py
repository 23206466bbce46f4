"""K3WebApiAdapter against the K3 WISE WebAPI simulator over loopback HTTP (erp-protocols.md §3, §5):
Save with our own FBillNo, look-up before a retry, error classes, tokens refreshed transparently,
update / cancel, shipments read back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Response, get, post

from adapters.erp import AdapterContext
from adapters.k3.tokens import TokenBroker
from adapters.k3.webapi import K3WebApiAdapter, from_target
from gateway.config import TargetConfig
from gateway.errors import ConfigError, PermanentError, RetryableError, UnknownOutcomeError
from gateway.ports import ErpDocument
from tests.support.gateway import gateway_env, run_gateway
from tests.support.servers import serve_asgi

pytestmark = pytest.mark.integration

CODE = "K3-DEMO-AUTH-7F3A9C"  # seed.toml → account set AIS20260101
ACCOUNT_SET = "AIS20260101"


def make_doc(code: str = "GW00000042", **changes: Any) -> ErpDocument:
    """An SO as ``mappings/erp/k3_so.toml`` builds it (with the ``irowno`` gateway.document adds)."""
    fields: dict[str, Any] = {
        "target": "k3",
        "kind": "saleorder",
        "code": code,
        "order_id": "01HZX3Q5V7ORDER",
        "platform_order_id": "DY-1",
        "header": {
            "Fdate": "2026-12-07 10:00:00",
            "FCustID": {"FNumber": "01.003", "FName": "抖音示例店"},
            "FDeptID": {"FNumber": "03.01"},
            "FEmpID": {"FNumber": "0001"},
            "FCurrencyID": {"FNumber": "RMB"},
            "FExchangeRate": "1",
            "FExplanation": "douyin DY-1",
        },
        "entries": [
            {
                "FItemID": {"FNumber": "1.02.001", "FName": "MUG-CER-W"},
                "FUnitID": {"FNumber": "PCS"},
                "Fauxqty": 3,
                "Fnote": None,
                "sum_fen": 10000,
                "quoted_fen": 3990,
                "taxrate": 13,
                "irowno": 1,
            },
            {
                "FItemID": {"FNumber": "1.02.004", "FName": "GIFT-SLEEVE-R"},
                "FUnitID": {"FNumber": "PCS"},
                "Fauxqty": 1,
                "Fnote": "赠品",
                "sum_fen": 0,
                "quoted_fen": None,
                "taxrate": 13,
                "irowno": 2,
            },
        ],
    }
    fields.update(changes)
    return ErpDocument(**fields)


async def control(sandbox, method: str, path: str, **kwargs: Any) -> Any:
    """The sandbox control plane, asynchronously so the test's loop never blocks."""
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as client:
        response = await client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()


async def fault(sandbox, mode: str, **extra: Any) -> None:
    await control(sandbox, "POST", "/_sandbox/faults", json={"system": "k3", "mode": mode, "rate": 1, **extra})


async def documents(sandbox) -> list[dict[str, Any]]:
    return (await control(sandbox, "GET", "/_sandbox/k3/documents"))["documents"]


async def logins(sandbox) -> int:
    return (await control(sandbox, "GET", "/_sandbox/k3/sessions"))["logins"].get(ACCOUNT_SET, 0)


def make_adapter(root: str, client: httpx.AsyncClient, *, redis=None, **options: Any) -> K3WebApiAdapter:
    timeout = httpx.Timeout(5.0, connect=2.0)
    broker = TokenBroker(
        root=root, authority_code=CODE, account_set=ACCOUNT_SET, client=client, timeout=timeout, redis=redis
    )
    return K3WebApiAdapter(root=root, broker=broker, client=client, timeout=5.0, connect_timeout=2.0, **options)


@pytest.fixture
async def adapter(sandbox) -> AsyncIterator[K3WebApiAdapter]:
    async with httpx.AsyncClient() as client:
        yield make_adapter(sandbox.url, client, waybill_field="FHeadSelfB0436")


# --------------------------------------------------------------------------- Save and look-up


async def test_success_saves_the_so_under_our_bill_number_with_amounts_to_the_fen(sandbox, adapter):
    doc = make_doc()
    receipt = await adapter.submit(doc)
    [stored] = await documents(sandbox)
    assert (receipt.document_no, receipt.erp_key) == (doc.code, str(stored["FInterID"]))
    assert stored["FBillNo"] == doc.code and stored["FCustID"]["FNumber"] == "01.003"
    mug, gift = stored["lines"]
    assert (mug["FItemID"]["FNumber"], mug["Fauxqty"], mug["FAllAmount"], mug["Famount"]) == (
        "1.02.001",
        "3",
        "100.00",
        "88.50",
    )
    assert mug["FAuxTaxPrice"] == "33.3333333333" and mug["FCess"] == "13"
    assert "irowno" not in mug and "sum_fen" not in mug and "Fnote" not in mug  # no null sent
    assert (gift["FAllAmount"], gift["Fnote"]) == ("0.00", "赠品")
    assert await logins(sandbox) == 1


async def test_lookup_finds_nothing_for_an_unknown_code(sandbox, adapter):
    assert await adapter.lookup(make_doc("GW99999999")) is None


async def test_business_rejection_is_permanent_with_k3s_words_and_writes_nothing(sandbox, adapter):
    doc = make_doc()
    doc.entries[0]["FItemID"] = {"FNumber": "9.99.999"}
    with pytest.raises(PermanentError) as info:
        await adapter.submit(doc)
    assert "9.99.999" in info.value.partner_message
    assert info.value.hint.startswith("Add the material's FNumber")
    assert await documents(sandbox) == []


async def test_reject_fault_is_permanent(sandbox, adapter):
    await fault(sandbox, "reject")
    with pytest.raises(PermanentError) as info:
        await adapter.submit(make_doc())
    assert "结账" in info.value.partner_message and "period" in info.value.hint
    assert await documents(sandbox) == []


async def test_drop_after_commit_is_unknown_then_looked_up_and_written_once(sandbox, adapter):
    doc = make_doc()
    await fault(sandbox, "drop_after_commit")
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(doc)
    assert isinstance(info.value.__cause__, httpx.TransportError)
    await control(sandbox, "DELETE", "/_sandbox/faults")

    [stored] = await documents(sandbox)
    found = await adapter.lookup(doc)  # what the core does before the next attempt
    assert found is not None and (found.document_no, found.erp_key) == (doc.code, str(stored["FInterID"]))

    again = await adapter.submit(doc)  # even without the look-up: K3 refuses the duplicate FBillNo
    assert (again.document_no, again.erp_key) == (doc.code, str(stored["FInterID"]))
    assert "already" in again.message
    assert [d["FBillNo"] for d in await documents(sandbox)] == [doc.code]


async def test_bill_number_held_by_a_different_order_is_permanent(sandbox, adapter):
    await adapter.submit(make_doc())
    other = make_doc()
    other.header["FCustID"] = {"FNumber": "01.001"}
    with pytest.raises(PermanentError, match="different SO"):
        await adapter.submit(other)
    assert len(await documents(sandbox)) == 1


async def test_http500_is_unknown_and_nothing_is_found(sandbox, adapter):
    await fault(sandbox, "http500")
    with pytest.raises(UnknownOutcomeError) as info:
        await adapter.submit(make_doc())
    assert info.value.details["http_status"] == 500
    await control(sandbox, "DELETE", "/_sandbox/faults")
    assert await adapter.lookup(make_doc()) is None


async def test_read_timeout_is_unknown(sandbox):
    await fault(sandbox, "timeout", ms=3000)
    async with httpx.AsyncClient() as client:
        k3 = make_adapter(sandbox.url, client)
        k3._timeout = httpx.Timeout(0.5, connect=2.0)
        with pytest.raises(UnknownOutcomeError) as info:
            await k3.submit(make_doc())
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


async def test_closed_port_is_retryable(sandbox):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with httpx.AsyncClient() as client:
        with pytest.raises(RetryableError):
            await make_adapter(f"http://127.0.0.1:{port}", client).submit(make_doc())


# --------------------------------------------------------------------------- replies K3 never should give


def _garbage_k3() -> Litestar:
    """A K3 front that logs in properly but answers Save with an HTML page and GetList with an
    unknown JSON shape (what a proxy or a half-deployed K3API can do)."""

    @get("/K3API/Token/Create", sync_to_thread=False)
    def token() -> dict[str, Any]:
        return {"StatusCode": 200, "Message": "", "Data": {"Token": "T0KEN", "Validity": 3600}}

    @post("/K3API/SO/Save", status_code=200, sync_to_thread=False)
    def save(request: Request[Any, Any, Any]) -> Response[str]:
        return Response("<html><body>Service Unavailable</body></html>", media_type="text/html")

    @post("/K3API/SO/GetList", status_code=200, sync_to_thread=False)
    def get_list() -> dict[str, Any]:
        return {"result": "ok"}

    return Litestar([token, save, get_list], openapi_config=None)


async def test_garbage_and_unknown_reply_shapes_are_unknown_outcomes():
    with serve_asgi(_garbage_k3()) as url:
        async with httpx.AsyncClient() as client:
            k3 = make_adapter(url, client)
            with pytest.raises(UnknownOutcomeError, match="unrecognised reply"):
                await k3.submit(make_doc())
            with pytest.raises(UnknownOutcomeError, match="unrecognised reply"):
                await k3.lookup(make_doc())


# --------------------------------------------------------------------------- tokens


async def test_an_expired_token_is_refreshed_transparently(sandbox, adapter):
    await adapter.submit(make_doc("GW00000001"))
    await control(sandbox, "POST", "/_sandbox/k3/sessions", json={"expire": True})
    await adapter.submit(make_doc("GW00000002"))
    assert len(await documents(sandbox)) == 2
    assert await logins(sandbox) == 2
    saves = [c for c in sandbox.calls("k3") if c["path"].endswith("/SO/Save")]
    assert [c["outcome"] for c in saves] == ["ok", "rejected", "ok"]  # refused once, then sent again


async def test_a_token_ended_by_another_login_is_replaced_once(sandbox, adapter):
    await adapter.submit(make_doc("GW00000001"))
    async with httpx.AsyncClient() as other:  # someone else logs in to the same account set
        (await other.get(f"{sandbox.url}/K3API/Token/Create", params={"authorityCode": CODE})).raise_for_status()
    await adapter.submit(make_doc("GW00000002"))
    assert await logins(sandbox) == 3 and len(await documents(sandbox)) == 2


async def test_validity_is_honoured_before_k3_refuses(sandbox, adapter):
    await control(sandbox, "POST", "/_sandbox/k3/sessions", json={"validity_s": 1.2})
    await adapter.submit(make_doc("GW00000001"))
    await asyncio.sleep(1.0)  # past Validity less the margin (a quarter of 1.2 s), before 1.2 s
    await adapter.submit(make_doc("GW00000002"))
    assert await logins(sandbox) == 2
    assert all(c["status"] == 200 and c["outcome"] == "ok" for c in sandbox.calls("k3"))  # never refused


async def test_an_unknown_authority_code_is_permanent(sandbox):
    async with httpx.AsyncClient() as client:
        broker = TokenBroker(
            root=sandbox.url, authority_code="WRONG", account_set=None, client=client, timeout=httpx.Timeout(5.0)
        )
        k3 = K3WebApiAdapter(root=sandbox.url, broker=broker, client=client)
        with pytest.raises(PermanentError) as info:
            await k3.submit(make_doc())
    assert "authority" in info.value.hint and "WRONG" not in str(info.value.to_body())


# --------------------------------------------------------------------------- update, cancel, shipments


async def test_update_then_cancel_and_cancel_again(sandbox, adapter):
    doc = make_doc()
    await adapter.submit(doc)
    doc.entries[0]["Fauxqty"] = 4
    await adapter.update(doc)
    assert (await documents(sandbox))[0]["lines"][0]["Fauxqty"] == "4"
    assert (await adapter.cancel(doc)).message == "deleted in K3"
    assert await documents(sandbox) == []
    assert (await adapter.cancel(doc)).message == "not in K3"
    with pytest.raises(PermanentError):
        await adapter.update(doc)  # SO/Update needs an existing FBillNo


async def test_cancel_of_a_shipped_so_is_refused(sandbox, adapter):
    doc = make_doc()
    await adapter.submit(doc)
    await control(sandbox, "POST", "/_sandbox/k3/shipments", json={"order": doc.code})
    with pytest.raises(PermanentError) as info:
        await adapter.cancel(doc)
    assert "下游" in info.value.partner_message


async def test_shipments_are_read_back_per_bill_with_lines_and_waybill(sandbox, adapter):
    first, second, other = make_doc("GW00000001"), make_doc("GW00000002"), make_doc("GW00000003")
    for doc in (first, second, other):
        await adapter.submit(doc)
    spec = {
        "object": "Sales_Delivery",
        "order": first.code,
        "date": "2026-12-07 18:30:00",
        "lines": [{"item": "1.02.001", "qty": 2}],
        "header": {"FHeadSelfB0436": "SF1234567890"},
    }
    out = await control(sandbox, "POST", "/_sandbox/k3/shipments", json=spec)
    await control(sandbox, "POST", "/_sandbox/k3/shipments", json={"order": other.code})
    await control(sandbox, "POST", "/_sandbox/k3/shipments", json={"object": "Delivery_Notice", "order": second.code})

    since = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    [shipment] = await adapter.shipments([first.code, second.code], since=since)
    assert shipment.document_code == first.code and shipment.shipment_no == f"Sales_Delivery:{out['FBillNo']}"
    assert shipment.waybill_no == "SF1234567890"
    assert shipment.shipped_at == datetime(2026, 12, 7, 10, 30, tzinfo=UTC)  # 18:30 in China
    assert [(line.item_code, line.qty, line.row) for line in shipment.lines] == [("1.02.001", 2, 1)]
    assert await adapter.shipments([first.code], since=since + timedelta(days=1)) == []
    async with httpx.AsyncClient() as client:
        notices = make_adapter(sandbox.url, client, shipment_objects=("Delivery_Notice",))
        [notice] = await notices.shipments([first.code, second.code], since=since)
    assert notice.document_code == second.code and notice.shipment_no.startswith("Delivery_Notice:SEOUT")


# --------------------------------------------------------------------------- configuration


async def test_from_target_needs_the_authority_code_and_known_shipment_objects(sandbox):
    async with httpx.AsyncClient() as client:
        target = TargetConfig(
            transport="k3_webapi",
            url=sandbox.url,
            account_set=ACCOUNT_SET,
            dictionary="k3_so",
            auth={"authority_code": CODE},
        )
        k3 = from_target(AdapterContext(name="k3", target=target, http=client))
        assert (await k3.submit(make_doc())).document_no == "GW00000042"
        with pytest.raises(ConfigError, match="authority_code"):
            from_target(AdapterContext(name="k3", target=TargetConfig(transport="k3_webapi", url="x"), http=client))
        bad = TargetConfig(
            transport="k3_webapi", url="x", auth={"authority_code": CODE}, options={"shipment_objects": ["SO"]}
        )
        with pytest.raises(ConfigError, match="shipment_objects"):
            from_target(AdapterContext(name="k3", target=bad, http=client))


# --------------------------------------------------------------------------- through the gateway

DOUYIN = Path(__file__).resolve().parents[2] / "mappings" / "samples" / "douyin"


def k3_gateway_config(tmp_path: Path, sandbox_url: str) -> Path:
    """A configuration routing the Douyin shop to the sandbox's K3 WebAPI, the code from the environment."""
    cfg = tmp_path / "gateway-k3.toml"
    cfg.write_text(
        f"""
[shops.demo-douyin]
platform = "douyin"
default = true
target = "k3-demo"

[targets.k3-demo]
transport = "k3_webapi"
url = "{sandbox_url}"
account_set = "{ACCOUNT_SET}"
dictionary = "k3_so"
values = ["values/demo-k3.toml"]
code_prefix = "DY"
code_width = 12
timeout_s = 10

[targets.k3-demo.auth]
authority_code = "${{K3_AUTHORITY_CODE}}"

[targets.k3-demo.params]
department = "03.01"
employee = "0001"
unit = "PCS"
tax_rate = 13
"""
    )
    return cfg


@pytest.mark.parametrize("drop", [False, True], ids=["plain", "drop_after_commit"])
def test_a_douyin_order_becomes_one_so_in_k3(sandbox, tmp_path, monkeypatch, drop):
    env = gateway_env(tmp_path, sandbox.url, GATEWAY_CONFIG=str(k3_gateway_config(tmp_path, sandbox.url)))
    monkeypatch.setenv("K3_AUTHORITY_CODE", CODE)
    if drop:
        sandbox.fault("k3", "drop_after_commit")
    with run_gateway(env, monkeypatch) as gw:
        with gw.client("platform") as c:
            r = c.post("/v1/orders/douyin", content=(DOUYIN / "02_multi_line_coupons.json").read_bytes())
        assert r.status_code == 202, r.text
        if drop:
            gw.wait_for(lambda: len(sandbox.documents("k3")) == 1, what="the SO written before the drop")
            sandbox.clear_faults()
        order = gw.wait_state(r.json()["id"], "delivered")
    [so] = sandbox.documents("k3")
    assert so["FBillNo"] == order["erp"]["document_no"] and so["FBillNo"].startswith("DY")
    assert so["FCustID"]["FNumber"] == "01.003" and so["FDeptID"]["FNumber"] == "03.01"
    assert sorted(line["FItemID"]["FNumber"] for line in so["lines"]) == ["2.02.001", "2.02.002"]
    paid = sum(line["paid_fen"] for line in order["lines"])
    assert sum(Decimal(line["FAllAmount"]) for line in so["lines"]) * 100 == paid
    if drop:
        assert order["timeline"][-1]["detail"].get("found_by_lookup") is True
