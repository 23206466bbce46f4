"""All five platforms end to end: every recorded sample over real HTTP becomes one document in the
sandbox ERP its shop is routed to (all four transports), and the dry run answers canonical.md's
values without storing anything."""

from __future__ import annotations

import msgspec
import pytest

from gateway.mappings_cli import sample_files
from tests.support.gateway import SAMPLES, RunningGateway
from tests.support.servers import RunningSandbox

PLATFORMS = ("taobao", "pinduoduo", "douyin", "jd", "wechat_channels")
# canonical.md §5: paid_fen of every sample, in file order.
PAID = {
    "taobao": [9500, 31760, 11300],
    "pinduoduo": [5980, 14070, 11970],
    "douyin": [6900, 19380, 8980],
    "jd": [19900, 40780, 16400],
    "wechat_channels": [6800, 13880, 25880],
}
# The demo configuration's routes (CONTRACT §1): the sandbox system each platform's shop writes to,
# and the customer code its value tables give the shop there.
ROUTE = {
    "taobao": ("u8", "010001"),
    "pinduoduo": ("u8openapi", "010002"),
    "douyin": ("k3", "01.003"),
    "jd": ("k3soap", "01.004"),
    "wechat_channels": ("k3soap", "01.005"),
}


def _as_sent(system: str, doc: dict) -> tuple[str, str, list[int]]:
    """(code, customer, each line's tax-inclusive amount in fen) of a document in the ERP's own
    field names, as ``GET /_sandbox/{system}/documents`` shows it."""
    if system in ("u8", "u8openapi"):
        return doc["code"], doc["custcode"], [round(float(ln["sum"]) * 100) for ln in doc["lines"]]
    if system == "k3":
        lines = [round(float(ln["FAllAmount"]) * 100) for ln in doc["lines"]]
        return doc["FBillNo"], doc["FCustID"]["FNumber"], lines
    return doc["BillNO"], doc["CustNumber"], [round(float(ln["Amount"]) * 100) for ln in doc["Entrys"]]


def _post(gw: RunningGateway, path: str, body: bytes, role: str = "platform"):
    with gw.client(role) as c:
        return c.post(path, content=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("platform", PLATFORMS)
def test_dry_run_gives_canonical_values_and_stores_nothing(gateway: RunningGateway, platform: str) -> None:
    files = sample_files(SAMPLES / platform)
    assert len(files) == 3
    for f, paid in zip(files, PAID[platform], strict=True):
        r = _post(gateway, f"/v1/mappings/{platform}/dry-run", f.read_bytes(), role="it")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["canonical"]["platform"] == platform
        assert body["canonical"]["totals"]["paid_fen"] == paid, f.name
        assert body["unknown_fields"] == [], f.name
    with gateway.client("it") as c:
        assert c.get("/v1/orders", params={"platform": platform}).json()["items"] == []


def test_every_sample_of_every_platform_becomes_one_document_in_its_erp(
    gateway: RunningGateway, sandbox: RunningSandbox
) -> None:
    ids: dict[str, tuple[str, str]] = {}
    for platform in PLATFORMS:
        for f in sample_files(SAMPLES / platform):
            r = _post(gateway, f"/v1/orders/{platform}", f.read_bytes())
            assert r.status_code == 202, (platform, f.name, r.text)
            body = r.json()
            assert body["platform"] == platform and body["status"] in ("accepted", "held")
            ids[body["id"]] = (platform, f.name)
    assert len(ids) == 15
    delivered = {}
    for gid, (platform, name) in ids.items():
        order = gateway.order(gid)
        if order["state"] == "held":  # never sent while the platform says it must not ship
            assert order["status"] == "PAID_HOLD", (platform, name)
            continue
        delivered[gid] = gateway.wait_state(gid, "delivered")
    sent = {
        system: {c: (cust, lines) for c, cust, lines in (_as_sent(system, d) for d in sandbox.documents(system))}
        for system in {system for system, _ in ROUTE.values()}
    }
    for system, docs in sent.items():  # one document per delivered order of the platforms routed there
        mine = [o for gid, o in delivered.items() if ROUTE[ids[gid][0]][0] == system]
        assert sorted(docs) == sorted(o["erp"]["document_no"] for o in mine), system
    for gid, order in delivered.items():
        platform, name = ids[gid]
        system, customer = ROUTE[platform]
        cust, lines = sent[system][order["erp"]["document_no"]]
        assert cust == customer, (platform, name)
        assert len(lines) == len(order["lines"]), (platform, name)
        # what the buyer paid for the goods reaches the ERP to the fen, line by line
        assert sum(lines) == sum(ln["paid_fen"] for ln in order["lines"]), (platform, name)


def test_a_resubmitted_order_of_each_platform_is_a_repeat(gateway: RunningGateway) -> None:
    for platform in PLATFORMS:
        body = sample_files(SAMPLES / platform)[0].read_bytes()
        first = _post(gateway, f"/v1/orders/{platform}", body)
        again = _post(gateway, f"/v1/orders/{platform}", msgspec.json.encode(msgspec.json.decode(body)))
        assert (first.status_code, again.status_code) == (202, 200), platform
        assert again.json()["id"] == first.json()["id"]
