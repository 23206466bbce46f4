"""The shipment read-back core (gateway.readback) on the in-memory fakes: which orders the ERP is
asked about, each shipment recorded once with its timeline and audit entries, failures contained."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from gateway.config import ReadbackConfig, TargetConfig
from gateway.errors import RetryableError, UnknownOutcomeError
from gateway.metrics import Metrics
from gateway.ports import ErpShipment, ErpShipmentLine, OrderState
from gateway.readback import ReadbackScheduler, event_id, poll_once, poll_target
from tests.support.storage import make_order
from tests.unit.fakes import FakeUnitOfWorkFactory


class NowClock:
    """The wall clock plus an offset: the fakes stamp ``updated_at`` with the real time."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class ScriptedErp:
    """``ErpAdapter.shipments`` from a table of shipments per code; remembers every call."""

    def __init__(self, *, fail: Exception | None = None) -> None:
        self.shipped: dict[str, list[ErpShipment]] = {}
        self.calls: list[tuple[list[str], datetime]] = []
        self.fail = fail

    def ship(self, code: str, no: str, *lines: tuple[str, int], waybill: str = "SF100") -> None:
        items = [ErpShipmentLine(item_code=item, qty=qty, row=i) for i, (item, qty) in enumerate(lines, start=1)]
        shipment = ErpShipment(
            document_code=code,
            shipment_no=no,
            shipped_at=datetime(2026, 12, 7, 2, 0, tzinfo=UTC),
            carrier="SF",
            waybill_no=waybill,
            lines=items,
        )
        self.shipped.setdefault(code, []).append(shipment)

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        self.calls.append((list(codes), since))
        if self.fail is not None:
            raise self.fail
        return [s for code in codes for s in self.shipped.get(code, [])]

    def asked(self) -> list[str]:
        return [code for codes, _ in self.calls for code in codes]


def target(name: str = "u8", *, batch: int = 50, lookback_days: int = 14, enabled: bool = True) -> TargetConfig:
    readback = ReadbackConfig(enabled=enabled, interval_s=1, lookback_days=lookback_days, batch=batch)
    return TargetConfig(transport="u8_eai", url="http://erp.invalid", readback=readback)


async def add_order(
    uow_factory: FakeUnitOfWorkFactory, n: int, *, state: OrderState = "delivered", erp_target: str = "u8", qty: int = 2
) -> str:
    """An order as delivery leaves it; its document code is ``GW`` + its seq on 8 digits."""
    canonical = {"order_id": f"TB{n:08d}", "lines": [{"merchant_sku": "A-1", "qty": qty}]}
    async with uow_factory() as uow:
        order = await uow.orders.add(make_order(n, canonical=canonical))
        await uow.orders.set_erp(order.id, target=erp_target, document_no=f"DOC{n}", status="delivered")
        await uow.orders.set_state(order.id, state)
        await uow.commit()
    return f"GW{order.seq:08d}"


def timeline(uow_factory: FakeUnitOfWorkFactory, n: int, kind: str = "erp.shipped") -> list[dict]:
    return [e.detail for e in uow_factory.state.timeline.get(make_order(n).id, []) if e.kind == kind]


async def test_a_new_shipment_becomes_one_timeline_entry_one_audit_entry_and_one_row():
    uow, erp, clock = FakeUnitOfWorkFactory(), ScriptedErp(), NowClock()
    code = await add_order(uow, 1)
    erp.ship(code, "0000000001", ("030101", 2), waybill="SF1234567890")

    report = await poll_target("u8", target(), erp, uow, clock)
    again = await poll_target("u8", target(), erp, uow, clock)

    assert (report.orders, report.shipments, report.recorded) == (1, 1, 1)
    assert again.recorded == 0 and again.orders == 0  # shipped in full: not asked about any more
    [detail] = timeline(uow, 1)
    assert detail == {
        "target": "u8",
        "document_code": code,
        "shipment_no": "0000000001",
        "event_id": f"erp:u8:0000000001:{code}",
        "shipped_at": "2026-12-07T02:00:00+00:00",
        "carrier": "SF",
        "waybill_no": "SF1234567890",
        "lines": [{"item_code": "030101", "qty": 2, "row": 1}],
        "completes_order": True,
    }
    [entry] = [e for e in uow.state.audit if e.action == "order.shipped_by_erp"]
    assert (entry.subject_id, entry.actor, entry.data) == (make_order(1).id, "gateway", detail)
    [row] = uow.state.erp_shipments.values()
    assert row.event_id == event_id("u8", "0000000001", code) and row.completes_order


async def test_one_erp_shipment_of_two_orders_is_one_event_for_each():
    uow, erp, clock = FakeUnitOfWorkFactory(), ScriptedErp(), NowClock()
    first, second = await add_order(uow, 1), await add_order(uow, 2)
    erp.ship(first, "0000000007", ("030101", 2))  # one 发货单, lines of both orders
    erp.ship(second, "0000000007", ("030101", 2))

    assert (await poll_target("u8", target(), erp, uow, clock)).recorded == 2
    assert (await poll_target("u8", target(), erp, uow, clock)).recorded == 0
    ids = sorted(r.event_id for r in uow.state.erp_shipments.values())
    assert ids == [f"erp:u8:0000000007:{first}", f"erp:u8:0000000007:{second}"]
    assert [len(timeline(uow, n)) for n in (1, 2)] == [1, 1]


async def test_a_partial_shipment_keeps_the_order_asked_about_until_the_rest_ships():
    uow, erp, clock = FakeUnitOfWorkFactory(), ScriptedErp(), NowClock()
    code = await add_order(uow, 1, qty=3)
    erp.ship(code, "S1", ("030101", 1))
    first = await poll_target("u8", target(), erp, uow, clock)
    second = await poll_target("u8", target(), erp, uow, clock)  # the same partial shipment again
    erp.ship(code, "S2", ("030101", 2))
    third = await poll_target("u8", target(), erp, uow, clock)
    fourth = await poll_target("u8", target(), erp, uow, clock)

    assert [r.recorded for r in (first, second, third, fourth)] == [1, 0, 1, 0]
    assert [r.orders for r in (first, second, third, fourth)] == [1, 1, 1, 0]
    assert [d["completes_order"] for d in timeline(uow, 1)] == [False, True]
    assert len(uow.state.audit) == 2


async def test_only_delivered_orders_of_the_target_changed_within_the_lookback_are_asked_about():
    uow, erp, clock = FakeUnitOfWorkFactory(), ScriptedErp(), NowClock()
    wanted = await add_order(uow, 1)
    for n, state in enumerate(("accepted", "held", "delivering", "dead", "cancelled"), start=2):
        await add_order(uow, n, state=state)  # type: ignore[arg-type]
    await add_order(uow, 7, erp_target="k3")  # delivered, to another target
    old = await add_order(uow, 8)
    uow.state.orders[make_order(8).id].updated_at = clock.now() - timedelta(days=15)
    shipped = await add_order(uow, 9)
    erp.ship(shipped, "S9", ("030101", 2))
    await poll_target("u8", target(), erp, uow, clock)  # records S9, which completes order 9
    erp.calls.clear()

    await poll_target("u8", target(), erp, uow, clock)

    assert erp.asked() == [wanted]
    assert old not in erp.asked()
    [(_, since)] = erp.calls
    created = uow.state.orders[make_order(1).id].created_at
    assert since == created - timedelta(days=1)  # ERPs date shipments by their local day


async def test_codes_go_to_the_erp_in_batches_and_foreign_shipments_are_ignored():
    uow, erp, clock = FakeUnitOfWorkFactory(), ScriptedErp(), NowClock()
    codes = [await add_order(uow, n) for n in range(1, 6)]
    erp.ship(codes[4], "S5", ("030101", 2))
    erp.shipped[codes[0]] = [ErpShipment(document_code="GW99999999", shipment_no="X", lines=[])]
    seen: list[tuple[str, int, int]] = []

    report = await poll_target("u8", target(batch=2), erp, uow, clock, progress=lambda *a: seen.append(a))

    assert [c for c, _ in erp.calls] == [codes[0:2], codes[2:4], codes[4:5]]
    assert (report.orders, report.shipments, report.recorded) == (5, 2, 1)
    assert list(uow.state.erp_shipments) == [("u8", "S5", codes[4])]
    assert seen == [("u8", 2, 0), ("u8", 4, 0), ("u8", 5, 1)]


async def test_two_pollers_at_once_record_each_shipment_once():
    uow, erp, clock = FakeUnitOfWorkFactory(), ScriptedErp(), NowClock()
    for n in range(1, 4):
        code = await add_order(uow, n, qty=5)
        erp.ship(code, f"A{n}", ("030101", 2))
        erp.ship(code, f"B{n}", ("030101", 1))

    reports = await asyncio.gather(*(poll_target("u8", target(), erp, uow, clock) for _ in range(2)))

    assert sum(r.recorded for r in reports) == 6
    assert len(uow.state.erp_shipments) == 6
    assert sum(len(timeline(uow, n)) for n in range(1, 4)) == 6
    assert len([e for e in uow.state.audit if e.action == "order.shipped_by_erp"]) == 6


@pytest.mark.parametrize("error", [RetryableError("refused"), UnknownOutcomeError("garbled"), OSError("reset")])
async def test_a_failing_adapter_is_counted_and_the_other_targets_still_run(error):
    uow, clock, metrics = FakeUnitOfWorkFactory(), NowClock(), Metrics(targets=["u8", "k3"])
    await add_order(uow, 1, erp_target="u8")
    k3_code = await add_order(uow, 2, erp_target="k3")
    broken, working = ScriptedErp(fail=error), ScriptedErp()
    working.ship(k3_code, "SEOUT1", ("1.02.001", 2))

    report = await poll_once(
        {"u8": target("u8"), "k3": target("k3")}, {"u8": broken, "k3": working}, uow, clock, metrics=metrics
    )

    assert [(t.target, t.errors, t.recorded) for t in report.targets] == [("u8", 1, 0), ("k3", 0, 1)]
    code = getattr(error, "code", type(error).__name__)
    assert report.targets[0].error == code
    assert metrics.registry.get_sample_value("readback_errors_total", {"target": "u8", "code": code}) == 1
    assert metrics.registry.get_sample_value("readback_shipments_total", {"target": "k3"}) == 1
    assert timeline(uow, 1) == [] and len(timeline(uow, 2)) == 1


async def test_an_unknown_outcome_skips_its_batch_and_asks_about_the_next():
    uow, clock = FakeUnitOfWorkFactory(), NowClock()
    for n in range(1, 4):
        await add_order(uow, n)

    class FirstBatchGarbled(ScriptedErp):
        async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
            self.calls.append((list(codes), since))
            if len(self.calls) == 1:
                raise UnknownOutcomeError("garbled")
            return []

    erp = FirstBatchGarbled()
    report = await poll_target("u8", target(batch=2), erp, uow, clock)
    assert len(erp.calls) == 2 and report.errors == 1
    refused = ScriptedErp(fail=RetryableError("refused"))
    report = await poll_target("u8", target(batch=2), refused, uow, clock)
    assert len(refused.calls) == 1 and report.errors == 1  # the ERP is out of reach: the round ends


class Lock:
    def __init__(self, answer: bool | Exception) -> None:
        self.answer = answer
        self.keys: list[tuple[str, float]] = []

    async def acquire(self, key: str, ttl_s: float) -> bool:
        self.keys.append((key, ttl_s))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_the_scheduler_polls_enabled_targets_only_where_it_holds_the_lock():
    uow, clock = FakeUnitOfWorkFactory(), NowClock()
    code = await add_order(uow, 1)
    erp = ScriptedErp()
    erp.ship(code, "S1", ("030101", 2))
    targets = {"u8": target("u8"), "off": target("off", enabled=False)}
    adapters = {"u8": erp, "off": ScriptedErp()}

    held = ReadbackScheduler(targets, adapters, uow, clock, lock=Lock(False))
    assert list(held.targets) == ["u8"]
    assert await held.run_round("u8", ttl_s=0.9) is None and erp.calls == []
    broken = ReadbackScheduler(targets, adapters, uow, clock, lock=Lock(ConnectionError("redis down")))
    assert await broken.run_round("u8", ttl_s=0.9) is None  # logged; the loop goes on
    free = Lock(True)
    mine = ReadbackScheduler(targets, adapters, uow, clock, lock=free)
    report = await mine.run_round("u8", ttl_s=0.9)
    assert report is not None and report.recorded == 1
    assert free.keys == [("readback:u8", 0.9)] and mine.rounds == {"u8": 1}


async def test_the_scheduler_runs_a_round_each_interval_and_stops():
    uow, clock = FakeUnitOfWorkFactory(), NowClock()
    code = await add_order(uow, 1)
    erp = ScriptedErp()
    erp.ship(code, "S1", ("030101", 2))
    scheduler = ReadbackScheduler({"u8": target("u8")}, {"u8": erp}, uow, clock)
    scheduler.start()
    try:
        await asyncio.sleep(0.2)
        assert erp.calls == []  # the first round comes one interval after start
        for _ in range(60):
            if scheduler.rounds["u8"]:
                break
            await asyncio.sleep(0.05)
    finally:
        await scheduler.stop()
    assert scheduler.rounds["u8"] == 1 and len(timeline(uow, 1)) == 1


async def test_each_call_holds_one_of_the_targets_permits_and_a_full_erp_ends_the_round(monkeypatch):
    """Reading back counts against [targets.X.limits] like a delivery: the call runs holding a
    permit (given back after), and when deliveries hold them all it waits, then ends the round."""
    from gateway.limits import InProcessConcurrencyLimiter, LimitsConfig

    uow, clock = FakeUnitOfWorkFactory(), NowClock()
    limiter = InProcessConcurrencyLimiter({"u8": LimitsConfig(concurrency=1)})
    seen: list[int] = []

    class CountingErp(ScriptedErp):
        async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
            seen.append(limiter.in_use("u8"))
            return await super().shipments(codes, since=since)

    erp = CountingErp()
    erp.ship(await add_order(uow, 1), "0000000001", ("030101", 2))
    report = await poll_target("u8", target(), erp, uow, clock, limiter=limiter)
    assert report.recorded == 1 and seen == [1] and limiter.in_use("u8") == 0

    erp.ship(await add_order(uow, 2), "0000000002", ("030101", 2))
    held = await limiter.acquire("u8")  # a delivery holds the only slot
    assert held is not None
    monkeypatch.setattr("gateway.readback.PERMIT_WAIT_S", 0.3)
    blocked = await poll_target("u8", target(), erp, uow, clock, limiter=limiter)
    assert (blocked.recorded, blocked.errors, blocked.error) == (0, 1, "ERP_UNAVAILABLE") and seen == [1]
    await limiter.release(held)
    assert (await poll_target("u8", target(), erp, uow, clock, limiter=limiter)).recorded == 1


async def test_a_stopped_line_or_a_circuit_that_is_not_closed_pauses_the_reading_back():
    """The ERP is left alone while its line is stopped or its circuit open: no round, no call."""
    from gateway.circuit import CircuitConfig, Circuits
    from gateway.lines import StopLines

    uow, clock = FakeUnitOfWorkFactory(), NowClock()
    erp = ScriptedErp()
    erp.ship(await add_order(uow, 1), "S1", ("030101", 2))
    targets, adapters = {"u8": target("u8")}, {"u8": erp}
    lines = StopLines(targets, uow, clock)
    lines.stopped = {"u8"}
    stopped = ReadbackScheduler(targets, adapters, uow, clock, lines=lines)
    assert await stopped.run_round("u8", ttl_s=0.9) is None and erp.calls == []

    circuits = Circuits({"u8": CircuitConfig(failure_threshold=1, open_seconds=60)})
    ticket = await circuits.allow("u8")
    await circuits.record("u8", ticket, "failure")  # a delivery failed: the circuit opens
    tripped = ReadbackScheduler(targets, adapters, uow, clock, circuits=circuits)
    assert await tripped.run_round("u8", ttl_s=0.9) is None and erp.calls == []

    lines.stopped = set()
    running = ReadbackScheduler(targets, adapters, uow, clock, lines=lines, circuits=Circuits())
    report = await running.run_round("u8", ttl_s=0.9)
    assert report is not None and report.recorded == 1
