"""Manual review's storage on every implementation (fakes, SQLite, PostgreSQL): the compare-and-set
of an order's state, the queue of held orders, and the two-person override records."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from gateway.errors import Conflict
from gateway.ports import InterceptOverride, InterceptRecord
from tests.support.storage import T0, add_orders, make_order

pytestmark = pytest.mark.integration


def _intercept(n: int, *, order_id: str | None = None, verdict: str = "hold", rules=("PAID_HOLD",), **kw):
    fields = {
        "id": f"01ICPT{n:06d}",
        "platform": "taobao",
        "shop_id": "demo-taobao",
        "platform_order_id": f"TB{n:08d}",
        "rule_codes": list(rules),
        "verdict": verdict,
        "violations": [{"rule": r, "severity": verdict, "message_zh": "暂扣", "message_en": "held"} for r in rules],
        "mapping_version": "m1",
        "rules_version": "r1",
        "payload_sha256": f"{n:064x}",
        "snapshot": {"order_id": f"TB{n:08d}"},
        "order_id": order_id,
    }
    fields.update(kw)
    return InterceptRecord(**fields)


def _request(intercept_id: str, *, by: str = "张三 (key k1)", person: str = "label:张三") -> InterceptOverride:
    return InterceptOverride(
        intercept_id=intercept_id,
        state="requested",
        rules=["COUPON_STACK_LIMIT"],
        requested_by=by,
        requester=person,
        requested_at=T0,
        reason="客户已确认，放行",
    )


async def test_set_state_if_moves_only_from_the_expected_state(storage):
    (order,) = await add_orders(storage, make_order(1, state="held"))
    async with storage.uow() as uow:
        assert not await uow.orders.set_state_if(order.id, expect="accepted", state="cancelled")
        assert not await uow.orders.set_state_if("01NOSUCHORDER", expect="held", state="accepted")
        assert await uow.orders.set_state_if(order.id, expect="held", state="accepted")
        assert not await uow.orders.set_state_if(order.id, expect="held", state="cancelled")  # moved on
        await uow.commit()
    async with storage.uow(write=False) as uow:
        assert (await uow.orders.get(order.id)).state == "accepted"


async def test_of_two_concurrent_decisions_exactly_one_wins(storage):
    (order,) = await add_orders(storage, make_order(1, state="held"))

    async def second() -> bool:
        # Begins while the first transaction holds its change uncommitted: SQLite and the fakes wait
        # for the writer, PostgreSQL for the row lock, and then the state has moved on.
        async with storage.uow() as uow:
            won = await uow.orders.set_state_if(order.id, expect="held", state="cancelled")
            await uow.commit()
        return won

    async with storage.uow() as uow:
        assert await uow.orders.set_state_if(order.id, expect="held", state="accepted")
        task = asyncio.create_task(second())
        await asyncio.sleep(0.2)
        assert not task.done()
        await uow.commit()
    assert await task is False
    async with storage.uow(write=False) as uow:
        assert (await uow.orders.get(order.id)).state == "accepted"


async def test_queue_lists_held_orders_oldest_first_with_their_newest_hold(storage):
    orders = await add_orders(
        storage,
        make_order(1, state="held"),
        make_order(2, state="accepted"),
        make_order(3, state="held", platform="jd", shop_id="demo-jd"),
        make_order(4, state="held"),
        make_order(5, state="cancelled"),
    )
    o1, _, o3, o4, _ = orders
    async with storage.uow() as uow:
        await uow.intercepts.add(_intercept(1, order_id=o1.id, rules=("AMOUNT_HOLD",)))
        await uow.intercepts.add(_intercept(11, order_id=o1.id, rules=("PAID_HOLD",)))  # newer: it counts
        await uow.intercepts.add(_intercept(3, order_id=o3.id, platform="jd", shop_id="demo-jd"))
        await uow.intercepts.add(_intercept(9, verdict="reject", rules=("PAID_HOLD",)))  # no order: not held
        await uow.commit()
    async with storage.uow(write=False) as uow:
        page = await uow.reviews.queue(platform=None, shop=None, rule=None, cursor=None, limit=10)
        assert [i.order.id for i in page.items] == [o1.id, o3.id, o4.id] and page.next_cursor is None
        first = page.items[0]
        assert first.hold.id == "01ICPT000011" and first.hold.rule_codes == ["PAID_HOLD"]
        assert first.hold.created_at is not None and first.order.canonical == o1.canonical
        assert page.items[2].hold is None  # held without an intercept record (before 0007)
        one = await uow.reviews.queue(platform=None, shop=None, rule=None, cursor=None, limit=1)
        two = await uow.reviews.queue(platform=None, shop=None, rule=None, cursor=one.next_cursor, limit=1)
        three = await uow.reviews.queue(platform=None, shop=None, rule=None, cursor=two.next_cursor, limit=1)
        assert [p.items[0].order.id for p in (one, two, three)] == [o1.id, o3.id, o4.id]
        assert three.next_cursor is None
        by = await uow.reviews.queue(platform="jd", shop=None, rule=None, cursor=None, limit=10)
        assert [i.order.id for i in by.items] == [o3.id]
        by = await uow.reviews.queue(platform=None, shop="demo-taobao", rule=None, cursor=None, limit=10)
        assert [i.order.id for i in by.items] == [o1.id, o4.id]
        by = await uow.reviews.queue(platform=None, shop=None, rule="PAID_HOLD", cursor=None, limit=10)
        assert [i.order.id for i in by.items] == [o1.id, o3.id]
        by = await uow.reviews.queue(platform=None, shop=None, rule="AMOUNT_HOLD", cursor=None, limit=10)
        assert by.items == []  # only the newest hold of an order counts
        assert (await uow.reviews.latest_hold(o1.id)).id == "01ICPT000011"
        assert await uow.reviews.latest_hold(o4.id) is None


async def test_override_requested_once_confirmed_once_and_shown_with_the_intercept(storage):
    (order,) = await add_orders(storage, make_order(1))
    async with storage.uow() as uow:
        await uow.intercepts.add(_intercept(1, verdict="reject", rules=("COUPON_STACK_LIMIT",)))
        await uow.intercepts.add(_intercept(2, verdict="reject", rules=("COUPON_STACK_LIMIT",)))
        first = await uow.reviews.request_override(_request("01ICPT000001"))
        await uow.commit()
    assert isinstance(first.seq, int)
    with pytest.raises(Conflict):
        async with storage.uow() as uow:
            await uow.reviews.request_override(_request("01ICPT000001", by="李四 (key k2)", person="label:李四"))
            await uow.commit()
    async with storage.uow() as uow:
        await uow.reviews.request_override(_request("01ICPT000002"))
        await uow.commit()
    at = T0 + timedelta(minutes=5)
    async with storage.uow() as uow:
        assert await uow.reviews.confirm_override(
            "01ICPT000001", by="李四 (key k2)", at=at, reason="同意", order_id=order.id
        )
        assert not await uow.reviews.confirm_override(
            "01ICPT000001", by="王五 (key k3)", at=at, reason="同意", order_id=order.id
        )
        await uow.commit()
    async with storage.uow(write=False) as uow:
        got = await uow.reviews.get_override("01ICPT000001")
        assert await uow.reviews.get_override("01ICPT000009") is None
        record = await uow.intercepts.get("01ICPT000001")
        assert await uow.intercepts.get("01ICPT000009") is None
        listed = await uow.intercepts.list(
            rule=None, platform=None, shop=None, since=None, until=None, cursor=None, limit=10
        )
        waiting = await uow.reviews.overrides(state="requested", cursor=None, limit=10)
        every = await uow.reviews.overrides(state=None, cursor=None, limit=1)
        rest = await uow.reviews.overrides(state=None, cursor=every.next_cursor, limit=1)
    assert (got.state, got.confirmed_by, got.confirmed_at, got.order_id) == ("confirmed", "李四 (key k2)", at, order.id)
    assert (got.requested_by, got.requester, got.reason, got.rules) == (
        "张三 (key k1)",
        "label:张三",
        "客户已确认，放行",
        ["COUPON_STACK_LIMIT"],
    )
    assert record.override == got and record.rule_codes == ["COUPON_STACK_LIMIT"]
    assert {r.id: (r.override.state if r.override else None) for r in listed.items} == {
        "01ICPT000001": "confirmed",
        "01ICPT000002": "requested",
    }
    assert [o.intercept_id for o in waiting.items] == ["01ICPT000002"]
    assert [o.intercept_id for o in every.items + rest.items] == ["01ICPT000002", "01ICPT000001"]  # newest first


async def test_a_release_by_a_newer_version_never_undoes_a_decision_made_meanwhile(postgres_server, monkeypatch):
    """PostgreSQL intake reads a known order outside its (grouped) write: a person's reject that
    commits in between makes the release a conflict, and intake reads the order again."""
    import copy

    import msgspec

    from adapters.db import pg_group_unit
    from adapters.db.engine import create_engine
    from adapters.db.migrate import upgrade
    from adapters.db.uow import SqlUnitOfWorkFactory
    from gateway.clock import SystemClock
    from gateway.config import load_config
    from gateway.intake import accept_order
    from gateway.review import Reviewer, decide
    from gateway.runtime import load_runtime
    from tests.support.gateway import SAMPLES

    url = postgres_server.create_database()
    upgrade(url)
    runtime = load_runtime(load_config(None, env={}))
    payload = msgspec.json.decode((SAMPLES / "taobao" / "01_single_line_paid.json").read_bytes())
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["status"] = "PAID_FORBID_CONSIGN"
    held = msgspec.json.encode(payload)
    released = copy.deepcopy(payload)
    released["trade_fullinfo_get_response"]["trade"].update(
        status="WAIT_SELLER_SEND_GOODS", modified="2024-06-18 21:00:00"
    )
    db = create_engine(url)
    try:
        factory = SqlUnitOfWorkFactory(db)
        clock = SystemClock()

        async def submit(raw: bytes):
            return await accept_order(
                "taobao", raw, shop_header=None, uow_factory=factory, runtime=runtime, clock=clock, max_bytes=1 << 20
            )

        first = await submit(held)
        assert first.status_code == 202 and first.body["status"] == "held"
        order_id = first.order_id
        original_get = pg_group_unit._Orders.get
        decided: list[dict] = []

        async def get_then_someone_decides(self, gateway_id: str):
            stored = await original_get(self, gateway_id)
            if not decided:  # once: between intake's read and its write
                reviewer = Reviewer(actor="张三 (key k1)", person="label:张三")
                decided.append(
                    await decide(
                        gateway_id, "reject", reason="取消", reviewer=reviewer, uow_factory=factory, clock=clock
                    )
                )
            return stored

        monkeypatch.setattr(pg_group_unit._Orders, "get", get_then_someone_decides)
        second = await submit(msgspec.json.encode(released))
        assert decided and decided[0]["state"] == "cancelled"
        assert second.status_code == 202 and second.outcome == "updated"
        async with factory(write=False) as uow:
            order = await uow.orders.get(order_id)
            kinds = [t.kind for t in await uow.orders.timeline(order_id)]
            due = await uow.outbox.due(now=clock.now(), limit=10)
        assert order.state == "cancelled" and order.erp_status is None
        assert kinds == ["order.held", "review.rejected", "order.updated"]
        assert due == []  # no delivery was queued for it
    finally:
        await db.dispose()
