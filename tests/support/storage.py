"""Shared helpers of the storage conformance suites (tests/integration/test_storage_*.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.ports import OrderRecord

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def make_order(n: int, **overrides: Any) -> OrderRecord:
    fields: dict[str, Any] = {
        "id": f"01ORDER{n:06d}",
        "platform": "taobao",
        "shop_id": "demo-taobao",
        "platform_order_id": f"TB{n:08d}",
        "platform_version": "v1",
        "state": "accepted",
        "canonical": {"order_id": f"TB{n:08d}", "lines": [{"sku": "A-1", "qty": 2, "price": "9.90"}]},
        "mapping_version": "m1",
        "rules_version": "r1",
        "payload_sha256": f"{n:064x}",
    }
    fields.update(overrides)
    return OrderRecord(**fields)


async def add_orders(storage: Any, *orders: OrderRecord) -> list[OrderRecord]:
    async with storage.uow() as uow:
        stored = [await uow.orders.add(o) for o in orders]
        await uow.commit()
    return stored


async def add_outbox(storage: Any, order_id: str, available_at: datetime = T0) -> int:
    async with storage.uow() as uow:
        outbox_id = await uow.outbox.add(order_id=order_id, target="u8", kind="saleorder", available_at=available_at)
        await uow.commit()
    return outbox_id


async def claim(storage: Any, now: datetime = T0, *, owner: str = "w1", limit: int = 10, lease: float = 30):
    async with storage.uow() as uow:
        leases = await uow.outbox.claim(owner=owner, now=now, lease_seconds=lease, limit=limit)
        await uow.commit()
    return leases
