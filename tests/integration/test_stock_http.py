"""POST /v1/stock and GET /v1/stock over real HTTP on SQLite: counts stored with one audit entry,
stale counts ignored, refused bodies storing nothing, and the roles of CONTRACT §2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.gateway import RunningGateway

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def line(sku: str, warehouse: str = "SH01", on_hand: Any = 10, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "warehouse": warehouse, "on_hand": on_hand, **extra}


def post(gw: RunningGateway, body: Any, role: str = "wms") -> httpx.Response:
    with gw.client(role) as c:
        if isinstance(body, bytes):
            return c.post("/v1/stock", content=body, headers={"Content-Type": "application/json"})
        return c.post("/v1/stock", json=body)


def levels(gw: RunningGateway, *skus: str, role: str = "erp") -> list[dict[str, Any]]:
    with gw.client(role) as c:
        r = c.get("/v1/stock", params=[("sku", s) for s in skus])
    assert r.status_code == 200, r.text
    return r.json()["items"]


def stock_entries(gw: RunningGateway) -> list[dict[str, Any]]:
    with gw.client("auditor") as c:
        r = c.get("/v1/audit", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["action"] == "stock.reported"]


def test_counts_are_stored_audited_and_listed_with_what_is_available(gateway: RunningGateway) -> None:
    r = post(
        gateway,
        {
            "items": [
                line("A-1", on_hand=10, reserved=3, as_of=T0.isoformat()),
                line("A-1", "BJ02", on_hand=4, as_of="2026-11-01T16:00:00+08:00"),  # the same instant
                line("B-2", on_hand=0),  # as_of: when received
            ]
        },
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["applied"], body["stale"]) == (3, 0) and isinstance(body["audit_seq"], int)

    items = levels(gateway, "A-1", "B-2", "NO-COUNT")
    assert [(i["sku"], i["warehouse"]) for i in items] == [("A-1", "BJ02"), ("A-1", "SH01"), ("B-2", "SH01")]
    a_sh = items[1]
    assert (a_sh["on_hand"], a_sh["reserved"], a_sh["pending"], a_sh["available"]) == (10, 3, 0, 7)
    assert datetime.fromisoformat(a_sh["as_of"]) == T0 == datetime.fromisoformat(items[0]["as_of"])
    received = datetime.fromisoformat(items[2]["as_of"])
    assert abs(datetime.now(UTC) - received) < timedelta(minutes=1)

    (entry,) = stock_entries(gateway)
    assert entry["seq"] == body["audit_seq"] and entry["subject_type"] == "stock"
    assert entry["actor"].startswith("test (key ")  # who reported it: the wms key's label and id
    data = entry["data"]
    assert (data["items"], data["applied"], data["stale"], data["skus"], data["warehouses"]) == (3, 3, 0, 2, 2)
    assert "A-1" not in str(data)  # counts, not the list
    with gateway.client("auditor") as c:
        assert c.get("/v1/audit/verify").json()["ok"] is True


def test_an_older_count_is_stale_and_changes_nothing(gateway: RunningGateway) -> None:
    assert post(gateway, {"items": [line("A-1", on_hand=10, as_of=T0.isoformat())]}).status_code == 202
    older = (T0 - timedelta(hours=1)).isoformat()
    newer = (T0 + timedelta(hours=1)).isoformat()
    r = post(
        gateway,
        {"items": [line("A-1", on_hand=99, as_of=older), line("C-3", on_hand=5, as_of=older)]},
        role="erp",
    )
    assert r.status_code == 202 and (r.json()["applied"], r.json()["stale"]) == (1, 1)
    assert [i["on_hand"] for i in levels(gateway, "A-1")] == [10]
    r = post(gateway, {"items": [line("A-1", on_hand=8, as_of=newer)]}, role="admin")
    assert r.status_code == 202 and (r.json()["applied"], r.json()["stale"]) == (1, 0)
    assert [i["on_hand"] for i in levels(gateway, "A-1", role="auditor")] == [8]
    assert [(e["data"]["applied"], e["data"]["stale"]) for e in stock_entries(gateway)] == [(1, 0), (1, 1), (1, 0)]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"items": [line("A-1", on_hand="10")]}, "items[0].on_hand"),
        ({"items": [line("A-1"), line("B-2", on_hand=-1)]}, "items[1].on_hand"),
        ({"items": [line("A-1", reserved=-2)]}, "items[0].reserved"),
        ({"items": [line("A-1", on_hand=1.5)]}, "items[0].on_hand"),
        ({"items": [line("A-1", on_hand=True)]}, "items[0].on_hand"),
        ({"items": [{"sku": "A-1", "on_hand": 1}]}, "items[0]"),  # no warehouse
        ({"items": [line("", on_hand=1)]}, "items[0].sku"),
        ({"items": [line("A-1", onhand=1)]}, "items[0]"),  # an unknown field (a typo) is not ignored
        ({"items": [line("A-1", as_of="2026-11-01T08:00:00")]}, "items[0].as_of"),  # no offset
        ({"items": [line("A-1", as_of="yesterday")]}, "items[0].as_of"),
        ({"items": [line("A-1", as_of=(datetime.now(UTC) + timedelta(days=1)).isoformat())]}, "items[0].as_of"),
        ({"items": [line("A-1"), line("B-2"), line("A-1", on_hand=3)]}, "items[2]"),  # twice
        ({"items": [line("A-1"), line("A-1", "BJ02"), line("A-1", "BJ02")]}, "items[2]"),
        ({"items": []}, "items"),
        ({"items": "A-1"}, "items"),
        ({"stock": [line("A-1")]}, ""),
        ([line("A-1")], ""),
    ],
)
def test_a_refused_body_is_a_400_naming_the_field_and_stores_nothing(
    gateway: RunningGateway, body: Any, path: str
) -> None:
    r = post(gateway, body)
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["code"] == "PAYLOAD_INVALID" and error["message_zh"] and error["message_en"]
    if path:
        assert error["path"] == path, error
    assert levels(gateway, "A-1", "B-2") == []  # not even the valid items before the bad one
    assert stock_entries(gateway) == []


@pytest.mark.parametrize("raw", [b"", b"   ", b"{not json", b'{"items": [', '{"items": "\xff"}'.encode("latin-1")])
def test_a_body_that_is_not_json_is_a_400(gateway: RunningGateway, raw: bytes) -> None:
    r = post(gateway, raw)
    assert r.status_code == 400 and r.json()["code"] == "PAYLOAD_INVALID", r.text


def test_more_than_10000_items_or_4_mib_is_a_413_and_stores_nothing(gateway: RunningGateway) -> None:
    many = {"items": [line(f"S{n:05d}", on_hand=n) for n in range(10_001)]}
    r = post(gateway, many)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "PAYLOAD_TOO_LARGE" and r.json()["limit"] == 10_000
    huge = {"items": [line("A-1", note="x" * (4 * 1024 * 1024))]}
    r = post(gateway, huge)
    assert r.status_code == 413 and r.json()["code"] == "PAYLOAD_TOO_LARGE", r.text
    assert levels(gateway, "S00000", "S10000", "A-1") == [] and stock_entries(gateway) == []

    r = post(gateway, {"items": many["items"][:10_000]})  # exactly the limit: fine
    assert r.status_code == 202 and r.json()["applied"] == 10_000
    assert [i["on_hand"] for i in levels(gateway, "S09999")] == [9999]


def test_roles(gateway: RunningGateway) -> None:
    body = {"items": [line("A-1")]}
    with httpx.Client(base_url=gateway.url, timeout=30) as anonymous:
        assert anonymous.post("/v1/stock", json=body).status_code == 401
        assert anonymous.get("/v1/stock", params={"sku": "A-1"}).status_code == 401
        wrong = anonymous.post("/v1/stock", json=body, headers={"Authorization": "Bearer gwk_wms_nope"})
        assert wrong.status_code == 401 and wrong.json()["code"] == "UNAUTHORIZED"
    for role in ("platform", "it", "auditor"):
        r = post(gateway, body, role=role)
        assert r.status_code == 403 and r.json()["code"] == "FORBIDDEN", role
    with gateway.client("platform") as c:
        assert c.get("/v1/stock", params={"sku": "A-1"}).status_code == 403
    assert levels(gateway, "A-1", role="admin") == [] and stock_entries(gateway) == []
    for role in ("wms", "erp", "admin"):
        assert post(gateway, body, role=role).status_code == 202, role
    for role in ("wms", "erp", "it", "auditor", "admin"):
        assert len(levels(gateway, "A-1", role=role)) == 1, role


def test_get_needs_a_sku(gateway: RunningGateway) -> None:
    with gateway.client("wms") as c:
        r = c.get("/v1/stock")
        assert r.status_code == 400 and r.json()["code"] == "PAYLOAD_INVALID" and r.json()["path"] == "sku"
        r = c.get("/v1/stock", params=[("sku", f"S{n}") for n in range(101)])
        assert r.status_code == 400 and r.json()["code"] == "PAYLOAD_INVALID"
