"""All five platforms end to end: every recorded sample over real HTTP becomes one ERP document in
the sandbox, and the dry run answers canonical.md's values without storing anything."""

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
CUSTOMER = {"taobao": "010001", "pinduoduo": "010002", "douyin": "010003", "jd": "010004", "wechat_channels": "010005"}


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


def test_every_sample_of_every_platform_becomes_one_u8_document(
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
    docs = {d["code"]: d for d in sandbox.documents("u8")}
    assert sorted(docs) == sorted(o["erp"]["document_no"] for o in delivered.values())
    for gid, order in delivered.items():
        platform, name = ids[gid]
        doc = docs[order["erp"]["document_no"]]
        assert doc["custcode"] == CUSTOMER[platform], (platform, name)
        assert len(doc["lines"]) == len(order["lines"]), (platform, name)
        # what the buyer paid for the goods reaches U8 to the fen, line by line
        paid_lines = sum(ln["paid_fen"] for ln in order["lines"])
        assert round(sum(ln["sum"] for ln in doc["lines"]) * 100) == paid_lines, (platform, name)


def test_a_resubmitted_order_of_each_platform_is_a_repeat(gateway: RunningGateway) -> None:
    for platform in PLATFORMS:
        body = sample_files(SAMPLES / platform)[0].read_bytes()
        first = _post(gateway, f"/v1/orders/{platform}", body)
        again = _post(gateway, f"/v1/orders/{platform}", msgspec.json.encode(msgspec.json.decode(body)))
        assert (first.status_code, again.status_code) == (202, 200), platform
        assert again.json()["id"] == first.json()["id"]
