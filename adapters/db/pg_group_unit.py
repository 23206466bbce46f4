"""The unit of work of intake on PostgreSQL (``GroupedUnitOfWork``): reads at once, writes recorded
and handed to the process's ``PgGroupCommitter`` (``pg_group.py``) at ``commit()``. The two modules
are one mechanism: this one records what intake does, that one writes it in groups."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import msgspec

from adapters.db.audit_log import draft
from adapters.db.erp_shipments import SqlErpShipmentRepository
from adapters.db.pg_group import (
    _FIND_BINDING,
    PgGroupCommitter,
    _new_order,
    _Op,
    _OrderRow,
    _OutboxRow,
    _PayloadRow,
    _TimelineRow,
    _Unit,
)
from adapters.db.pg_group_stock import FingerprintRow
from adapters.db.repositories import PAYLOAD_ZLIB_LEVEL, SqlOrderRepository, binding_from_row, utcnow
from adapters.db.stock import SqlFingerprintRepository, SqlStockRepository
from gateway.ports import (
    Binding,
    ErpShipmentRecord,
    FingerprintMatch,
    InterceptRecord,
    OrderRecord,
    OrderState,
    Reservation,
    StockLevel,
    StockPutResult,
    StockReport,
    TimelineEntry,
)

if TYPE_CHECKING:
    from adapters.db.engine import Database


class GroupedUnitOfWork:
    """A unit of work of intake on PostgreSQL: reads at once, writes at ``commit()``, grouped.

    Offers what intake uses: ``orders`` (``find_binding``, ``get`` and ``timeline`` read; ``add``,
    ``add_timeline``, ``replace_canonical``, ``set_state``, ``set_state_if``, ``set_erp`` are
    recorded), ``payloads.put``, ``outbox.add``, ``audit.append``, ``intercepts.add``, ``stock``
    (``levels`` reads; ``reserve``, ``release`` and ``put`` are recorded) and ``fingerprints``
    (``matches`` reads; ``add`` is recorded). Reads run at once, each on a connection of its own,
    outside the unit's transaction. What a recorded write would return or raise and only the
    database knows is not known before ``commit()``: ``add`` returns the record without ``seq``,
    ``outbox.add`` returns 0, ``audit.append`` None, ``stock.put`` zero counts, and a reservation
    refused below its safety stock is a ``Conflict`` from ``commit()``, not from ``reserve``. A new
    order's reservation and fingerprints are written with its group; other stock writes (a
    release, a count) make the unit go alone.
    Leaving the block without ``commit()`` writes nothing.
    """

    def __init__(self, db: Database, committer: PgGroupCommitter) -> None:
        self._db = db
        self._committer = committer
        self._ops: list[_Op] = []
        self._staged: dict[str, Any] = {"timeline": [], "outbox": [], "fingerprints": []}
        self.orders = _Orders(self)
        self.payloads = _Payloads(self)
        self.outbox = _Outbox(self)
        self.audit = _Audit(self)
        self.intercepts = _Intercepts(self)
        self.stock = _Stock(self)
        self.fingerprints = _Fingerprints(self)
        self.erp_shipments = _ErpShipments(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reset()

    def _record(self, repo: str, method: str, *args: Any, **kwargs: Any) -> None:
        self._ops.append(_Op(repo, method, args, kwargs))

    def _reset(self) -> None:
        self._ops = []
        self._staged = {"timeline": [], "outbox": [], "fingerprints": []}

    async def commit(self) -> None:
        """Write what was recorded; return once it is durable. ``Conflict`` when the order's
        binding was already taken (nothing of the unit is stored)."""
        ops, staged = self._ops, self._staged
        self._reset()
        if ops:
            await self._committer.write(_Unit(ops, _new_order(ops, staged)), self._db)

    async def rollback(self) -> None:
        self._reset()


class _Orders:
    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def find_binding(self, platform: str, shop_id: str, platform_order_id: str) -> Binding | None:
        conn = await self._uow._db.engine.connect()
        try:
            raw = (await conn.get_raw_connection()).driver_connection
            row = await raw.fetchrow(_FIND_BINDING, platform, shop_id, platform_order_id)
        finally:
            await conn.close()
        if row is None:
            return None
        return binding_from_row(platform, shop_id, platform_order_id, row)

    async def get(self, order_id: str) -> OrderRecord | None:
        async with self._uow._db.engine.connect() as conn:
            return await SqlOrderRepository(conn).get(order_id)

    async def timeline(self, order_id: str) -> list[TimelineEntry]:
        async with self._uow._db.engine.connect() as conn:
            return await SqlOrderRepository(conn).timeline(order_id)

    async def add(self, order: OrderRecord) -> OrderRecord:
        created_at = order.created_at or utcnow()
        order = msgspec.structs.replace(order, created_at=created_at, updated_at=order.updated_at or created_at)
        self._uow._record("orders", "add", order)
        self._uow._staged["order"] = _OrderRow(
            order.id,
            order.platform,
            order.shop_id,
            order.platform_order_id,
            order.platform_version,
            order.state,
            order.canonical,
            order.mapping_version,
            order.rules_version,
            order.payload_sha256,
            order.erp_target,
            order.erp_document_no,
            order.erp_status,
            created_at,
            order.updated_at,  # type: ignore[arg-type]
        )
        return order

    async def add_timeline(self, order_id: str, kind: str, detail: dict[str, Any]) -> None:
        self._uow._record("orders", "add_timeline", order_id, kind, detail)
        self._uow._staged["timeline"].append(_TimelineRow(order_id, utcnow(), kind, detail))

    async def replace_canonical(self, order_id: str, **kwargs: Any) -> None:
        self._uow._record("orders", "replace_canonical", order_id, **kwargs)

    async def set_state(self, order_id: str, state: OrderState) -> None:
        self._uow._record("orders", "set_state", order_id, state)

    async def set_state_if(self, order_id: str, *, expect: OrderState, state: OrderState) -> bool:
        """True for now; written as ``require_state``, which makes ``commit()`` a ``Conflict`` (with
        nothing of the unit stored) when the order is no longer in ``expect``."""
        self._uow._record("orders", "require_state", order_id, expect=expect, state=state)
        return True

    async def set_erp(self, order_id: str, **kwargs: Any) -> None:
        self._uow._record("orders", "set_erp", order_id, **kwargs)


class _Payloads:
    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def put(self, sha256: str, raw: bytes) -> None:
        self._uow._record("payloads", "put", sha256, raw)
        body = zlib.compress(raw, PAYLOAD_ZLIB_LEVEL)
        self._uow._staged["payload"] = _PayloadRow("", sha256, body, len(raw), utcnow())


class _Outbox:
    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def add(self, *, order_id: str, target: str, kind: str, available_at: datetime) -> int:
        self._uow._record("outbox", "add", order_id=order_id, target=target, kind=kind, available_at=available_at)
        self._uow._staged["outbox"].append(_OutboxRow(order_id, target, kind, available_at, utcnow()))
        return 0


class _Audit:
    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def append(
        self, *, actor: str, action: str, subject_type: str, subject_id: str, data: dict[str, Any]
    ) -> None:
        kwargs = {"actor": actor, "action": action, "subject_type": subject_type, "subject_id": subject_id}
        kwargs["data"] = data
        self._uow._record("audit", "append", **kwargs)
        self._uow._staged["audit"] = draft(**kwargs)


class _Intercepts:
    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def add(self, record: InterceptRecord) -> None:
        self._uow._record("intercepts", "add", record)


class _Stock:
    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def levels(self, skus: Sequence[str]) -> list[StockLevel]:
        async with self._uow._db.engine.connect() as conn:
            return await SqlStockRepository(conn).levels(skus)

    async def reserve(self, order_id: str, items: Sequence[Reservation], *, at: datetime) -> None:
        """Recorded; the floor is checked (rows locked) when the unit is written at ``commit()``."""
        self._uow._record("stock", "reserve", order_id, list(items), at=at)

    async def release(self, order_id: str) -> None:
        self._uow._record("stock", "release", order_id)

    async def put(self, reports: Sequence[StockReport], *, now: datetime) -> StockPutResult:
        """Recorded; how many counts were stale is only known at ``commit()``: zero counts here."""
        self._uow._record("stock", "put", list(reports), now=now)
        return StockPutResult(applied=0, stale=0)


class _Fingerprints:
    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def add(
        self, fingerprint: str, *, order_id: str, platform: str, shop_id: str, platform_order_id: str, at: datetime
    ) -> None:
        self._uow._record(
            "fingerprints",
            "add",
            fingerprint,
            order_id=order_id,
            platform=platform,
            shop_id=shop_id,
            platform_order_id=platform_order_id,
            at=at,
        )
        self._uow._staged["fingerprints"].append(
            FingerprintRow(fingerprint, order_id, platform, shop_id, platform_order_id, at)
        )

    async def matches(
        self, fingerprint: str, *, since: datetime, exclude_order_id: str | None
    ) -> list[FingerprintMatch]:
        async with self._uow._db.engine.connect() as conn:
            return await SqlFingerprintRepository(conn).matches(
                fingerprint, since=since, exclude_order_id=exclude_order_id
            )


class _ErpShipments:
    """Reads only: whether the ERP recorded a shipment of an order (a newer version's edit is held)."""

    def __init__(self, uow: GroupedUnitOfWork) -> None:
        self._uow = uow

    async def for_order(self, order_id: str) -> list[ErpShipmentRecord]:
        async with self._uow._db.engine.connect() as conn:
            return await SqlErpShipmentRepository(conn).for_order(order_id)
