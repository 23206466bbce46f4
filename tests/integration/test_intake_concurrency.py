"""The same order submitted many times at once: one 202, the rest 200, one order stored —
on real SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.db.engine import create_engine
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.intake import accept_order
from gateway.runtime import load_runtime

REPO = Path(__file__).resolve().parents[2]
ORDER = (REPO / "mappings" / "samples" / "taobao" / "02_multi_line_coupons.json").read_bytes()


async def test_concurrent_duplicates_store_one_order(database_url: str) -> None:
    runtime = load_runtime(load_config(None, env={}))
    engines = [create_engine(database_url) for _ in range(3)]  # several processes' worth of pools
    try:
        factories = [SqlUnitOfWorkFactory(db) for db in engines]

        async def submit(i: int):
            return await accept_order(
                "taobao",
                ORDER,
                shop_header=None,
                uow_factory=factories[i % len(factories)],
                runtime=runtime,
                clock=SystemClock(),
                max_bytes=1 << 20,
            )

        results = await asyncio.gather(*(submit(i) for i in range(12)))
        codes = sorted(r.status_code for r in results)
        assert codes == [200] * 11 + [202]
        assert len({r.order_id for r in results}) == 1
        async with factories[0](write=False) as uow:
            page = await uow.orders.list(platform="taobao", platform_order_id=None, cursor=None, limit=10)
            assert len(page.items) == 1
            assert await uow.outbox.pending_count() == 1
    finally:
        for db in engines:
            await db.dispose()
