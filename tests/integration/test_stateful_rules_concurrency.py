"""Concurrent intake against the stateful rules on real SQLite and PostgreSQL (PostgreSQL through
its grouped unit of work): orders racing for the last units of stock never take more than there is,
whatever the interleaving."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from adapters.db.engine import create_engine
from adapters.db.uow import SqlUnitOfWorkFactory
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.intake import accept_order
from gateway.ports import StockReport
from gateway.runtime import load_runtime

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = msgspec.json.decode((REPO / "mappings" / "samples" / "taobao" / "01_single_line_paid.json").read_bytes())
SKU = "HOME-PILLOW-GRY-4874"  # one per order; 浙江 → WH-SH


def body(n: int) -> bytes:
    payload = copy.deepcopy(SAMPLE)
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["tid"] = 6_000_000_000_000_000_000 + n * 100
    trade["tid_str"] = str(trade["tid"])
    return msgspec.json.encode(payload)


@pytest.fixture(scope="module")
def runtime() -> Any:
    return load_runtime(load_config(None, env={}))


async def test_orders_racing_for_the_last_units_take_no_more_than_there_is(database_url: str, runtime: Any) -> None:
    db = create_engine(database_url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        async with factory() as uow:
            await uow.stock.put(
                [StockReport(sku=SKU, warehouse="WH-SH", on_hand=5, reserved=1, as_of=datetime.now(UTC))],
                now=datetime.now(UTC),
            )
            await uow.commit()

        async def submit(n: int) -> Any:
            return await accept_order(
                "taobao",
                body(n),
                shop_header=None,
                uow_factory=factory,
                runtime=runtime,
                clock=SystemClock(),
                max_bytes=1 << 20,
            )

        results = await asyncio.gather(*(submit(n) for n in range(12)))
        assert [r.status_code for r in results] == [202] * 12
        statuses = sorted(r.body["status"] for r in results)
        assert statuses == ["accepted"] * 4 + ["held"] * 8  # 5 on hand, 1 reserved by the WMS
        async with factory(write=False) as uow:
            (level,) = await uow.stock.levels([SKU])
            assert (level.pending, level.available) == (4, 0)
            held = [r for r in results if r.body["status"] == "held"]
            for r in held:
                hold = await uow.reviews.latest_hold(r.order_id)
                assert hold is not None and hold.rule_codes == ["OVERSELL"]
    finally:
        await db.dispose()
