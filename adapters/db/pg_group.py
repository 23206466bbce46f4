"""PostgreSQL intake in groups: the orders of many concurrent requests stored by one transaction.

One transaction per order, statement by statement through SQLAlchemy Core, cost the server about
ten round trips and most of its CPU per order; and each transaction held the audit head row
(``FOR UPDATE``) from its audit append until its COMMIT (the WAL flush included), so intake in
every process went through that one lock an order at a time (``docs/benchmarks.md``).

Intake opens a ``GroupedUnitOfWork`` (``SqlUnitOfWorkFactory.group_commit``): its reads run at
once, its writes are recorded, and ``commit()`` hands them to the process's ``PgGroupCommitter``
and returns only once they are durable. The committer writes the units waiting at that moment,
at most ``max_group``, in ONE transaction on the plain ``asyncpg`` connection:

1. one statement inserts the bindings (``ON CONFLICT DO NOTHING``, in key order) and, for each
   order whose binding it inserted, the order, its timeline entries, its outbox row and its raw
   payload (``unnest`` arrays; foreign keys are checked at the end of the statement);
2. one statement appends their audit entries, sealed in order after the head this process last
   wrote, and only if the head row still holds that head (the UPDATE takes the row lock); if it
   does not, the head is read ``FOR UPDATE`` and the entries sealed again — one chain, no gaps;
3. COMMIT; then each unit's ``commit()`` returns, and the next group, gathered meanwhile, starts.

The head row is locked from step 2 to the end of the COMMIT, once per group rather than once per
order. A unit whose binding was already taken (a repeat, or a concurrent first submission that
another transaction stored first) gets ``Conflict`` and none of its rows is stored; intake then
looks the binding up (a 200). A new order's stock reservation and fingerprints go in the same
group: the levels it reserves are locked and its safety-stock floors checked before step 1, and a
unit refused there gets its ``Conflict`` (``details["reason"] == "stock_below_floor"``) with
nothing of it stored (``pg_group_stock.py``). Units of another shape (a held order and its
intercept, an update, a rejection, a release of stock), and every unit of a group whose
transaction failed, are written one by one, each in its own transaction through the Core
repositories, as without grouping; an error of such a unit is raised by its ``commit()``, with
nothing of the unit stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.db.audit_log import Draft, seal
from adapters.db.pg_group_stock import StockWrites, check_group, write_group
from gateway.errors import Conflict

if TYPE_CHECKING:
    from adapters.db.engine import Database

_json = msgspec.json.encode

# Step 1. The rows travel as four JSON documents (``jsonb_to_recordset``): one text parameter each,
# which costs the client one msgspec encode, where arrays of columns cost asyncpg a Python-level
# check of every element. ``o_in`` is referenced twice, so PostgreSQL computes it once. Rows of an
# order whose binding was not inserted are filtered out through ``b`` and ``o``.
_INSERT_GROUP = """
WITH o_in AS (
    SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS u(
        id text, platform text, shop_id text, platform_order_id text, platform_version text, state text,
        canonical jsonb, mapping_version text, rules_version text, payload_sha256 text, erp_target text,
        erp_document_no text, erp_status text, created_at timestamptz, updated_at timestamptz)
), b AS (
    INSERT INTO order_bindings (platform, shop_id, platform_order_id, order_id, platform_version,
                                payload_sha256, erp_target, erp_document_no, updated_at)
    SELECT platform, shop_id, platform_order_id, id, platform_version, payload_sha256, erp_target,
           erp_document_no, updated_at
    FROM o_in ORDER BY platform, shop_id, platform_order_id
    ON CONFLICT DO NOTHING
    RETURNING order_id
), o AS (
    INSERT INTO orders (id, platform, shop_id, platform_order_id, platform_version, state, canonical,
                        mapping_version, rules_version, payload_sha256, erp_target, erp_document_no,
                        erp_status, created_at, updated_at)
    SELECT id, platform, shop_id, platform_order_id, platform_version, state, canonical, mapping_version,
           rules_version, payload_sha256, erp_target, erp_document_no, erp_status, created_at, updated_at
    FROM o_in WHERE id IN (SELECT order_id FROM b)
    RETURNING id
), t AS (
    INSERT INTO order_timeline (order_id, at, kind, detail)
    SELECT order_id, at, kind, detail
    FROM jsonb_to_recordset($2::text::jsonb) AS u(order_id text, at timestamptz, kind text, detail jsonb)
    WHERE order_id IN (SELECT id FROM o)
), x AS (
    INSERT INTO outbox (order_id, target, kind, state, attempts, token, available_at, state_data,
                        created_at, updated_at)
    SELECT order_id, target, kind, 'pending', 0, 0, available_at, '{}'::jsonb, created_at, created_at
    FROM jsonb_to_recordset($3::text::jsonb)
        AS u(order_id text, target text, kind text, available_at timestamptz, created_at timestamptz)
    WHERE order_id IN (SELECT id FROM o)
), p AS (
    INSERT INTO raw_payloads (sha256, body, size, received_at)
    SELECT sha256, decode(body, 'base64'), size, received_at
    FROM jsonb_to_recordset($4::text::jsonb)
        AS u(order_id text, sha256 text, body text, size int, received_at timestamptz)
    WHERE order_id IN (SELECT id FROM o)
    ON CONFLICT (sha256) DO NOTHING
)
SELECT id FROM o
"""

# Step 2: entries sealed after the head ($3, $4) go in only if the head row still holds it. ``at``
# and ``data`` are JSON strings in the document, so they come out as exactly the text hashed.
_APPEND_AUDIT = """
WITH head AS (
    UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1 AND seq = $3 AND hash = $4 RETURNING id
)
INSERT INTO audit_log (seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash)
SELECT seq, at, actor, action, subject_type, subject_id, data, prev_hash, hash
FROM jsonb_to_recordset($5::text::jsonb) AS u(
    seq bigint, at text, actor text, action text, subject_type text, subject_id text, data text,
    prev_hash text, hash text)
WHERE EXISTS (SELECT 1 FROM head)
"""
_LOCK_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"

_FIND_BINDING = (
    "SELECT order_id, platform_version, payload_sha256, erp_target, erp_document_no"
    " FROM order_bindings WHERE platform = $1 AND shop_id = $2 AND platform_order_id = $3"
)


class _Op(NamedTuple):
    """One recorded write: replayed as ``uow.<repo>.<method>(*args, **kwargs)`` when the unit is
    written on its own."""

    repo: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


# The rows of step 1, as the JSON documents carry them (field names = the recordset's columns).
class _OrderRow(msgspec.Struct):
    id: str
    platform: str
    shop_id: str
    platform_order_id: str
    platform_version: str | None
    state: str
    canonical: dict[str, Any]
    mapping_version: str
    rules_version: str
    payload_sha256: str
    erp_target: str | None
    erp_document_no: str | None
    erp_status: str | None
    created_at: datetime
    updated_at: datetime


class _TimelineRow(msgspec.Struct):
    order_id: str
    at: datetime
    kind: str
    detail: dict[str, Any]


class _OutboxRow(msgspec.Struct):
    order_id: str
    target: str
    kind: str
    available_at: datetime
    created_at: datetime


class _PayloadRow(msgspec.Struct):
    order_id: str
    sha256: str
    body: bytes  # zlib-compressed; base64 in JSON
    size: int
    received_at: datetime


class _AuditRow(msgspec.Struct):
    seq: int
    at: str
    actor: str
    action: str
    subject_type: str
    subject_id: str
    data: str
    prev_hash: str
    hash: str


@dataclass
class _NewOrder:
    """A unit that stores one new order (the shape step 1 writes), its rows ready to send."""

    order: _OrderRow
    timeline: list[_TimelineRow]
    outbox: list[_OutboxRow]
    payload: _PayloadRow
    audit: Draft
    stock: StockWrites


@dataclass
class _Unit:
    ops: list[_Op]
    new: _NewOrder | None
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


# A unit a group can write: exactly one order, payload and audit entry, any timeline and outbox
# rows and fingerprints of that order, at most one reservation of its stock (``pg_group_stock``).
# Anything else (intercepts, updates, releases, counts) makes the unit go alone.
_ONE_EACH = (("orders", "add"), ("payloads", "put"), ("audit", "append"))
_RESERVE = ("stock", "reserve")
_GROUP_SHAPE = {*_ONE_EACH, ("orders", "add_timeline"), ("outbox", "add"), _RESERVE, ("fingerprints", "add")}


def _new_order(ops: list[_Op], staged: dict[str, Any]) -> _NewOrder | None:
    """The unit's rows for step 1, or None when it is of another shape."""
    kinds = [(op.repo, op.method) for op in ops]
    if not set(kinds) <= _GROUP_SHAPE or any(kinds.count(k) != 1 for k in _ONE_EACH) or kinds.count(_RESERVE) > 1:
        return None
    order: _OrderRow = staged["order"]
    if any(row.order_id != order.id for row in (*staged["timeline"], *staged["outbox"], *staged["fingerprints"])):
        return None
    reserve = next((op for op in ops if (op.repo, op.method) == _RESERVE), None)
    if reserve is not None and reserve.args[0] != order.id:
        return None
    return _NewOrder(
        order=order,
        timeline=staged["timeline"],
        outbox=staged["outbox"],
        payload=msgspec.structs.replace(staged["payload"], order_id=order.id),
        audit=staged["audit"],
        stock=StockWrites.of(
            order.id,
            None if reserve is None else (reserve.args[1], reserve.kwargs["at"]),
            staged["fingerprints"],
        ),
    )


class PgGroupCommitter:
    """The process's group writer for intake on PostgreSQL (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, *, max_group: int = 64) -> None:
        self.engine = engine
        self.max_group = max_group
        self._waiting: list[_Unit] = []
        self._task: asyncio.Task[None] | None = None
        # The audit head as this process last wrote it: a hint, trusted only through step 2's
        # conditional UPDATE.
        self._head: tuple[int, str] | None = None
        self.groups = 0  # transactions written, for tests and the curious
        self.grouped_units = 0

    async def write(self, unit: _Unit, db: Database) -> None:
        """Store ``unit``; return once it is durable, or raise what made it fail."""
        if unit.new is None:
            await _write_alone(unit.ops, db)
            return
        self._waiting.append(unit)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(db), name="pg-group-commit")
        await unit.done

    async def _run(self, db: Database) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[: self.max_group], self._waiting[self.max_group :]
                await self._write_group(group, db)
        finally:
            self._task = None
            if self._waiting:  # cancelled (shutdown) with units still waiting: none was written
                waiting, self._waiting = self._waiting, []
                for unit in waiting:
                    if not unit.done.done():
                        unit.done.cancel()

    async def _write_group(self, group: list[_Unit], db: Database) -> None:
        try:
            stored, refused = await self._transaction(group)
        except asyncio.CancelledError:
            for unit in group:
                if not unit.done.done():
                    unit.done.cancel()
            raise
        except Exception:
            # Whatever failed (a deadlock with another process, a lost connection, a bad row), each
            # unit is written on its own now: one unit's fault is only that unit's error. A unit
            # the failed transaction may have stored after all (the COMMIT's answer was lost) meets
            # its own binding: a Conflict, and intake answers 200 from what is stored.
            self._head = None
            for unit in group:  # in the order they came: of two units of one order, the first wins
                await _settle(unit, _write_alone(unit.ops, db))
            return
        self.groups += 1
        self.grouped_units += len(group)
        for unit in group:
            if unit.done.done():
                continue
            if unit.new is not None and unit.new.order.id in refused:
                unit.done.set_exception(refused[unit.new.order.id])
            elif unit.new is not None and unit.new.order.id in stored:
                unit.done.set_result(None)
            else:
                unit.done.set_exception(Conflict("this platform order is already stored", "该平台订单已存在"))

    async def _transaction(self, group: list[_Unit]) -> tuple[set[str], dict[str, Conflict]]:
        """Steps 1–3 for ``group``, the stock levels it reserves locked and checked first; the ids
        of the orders stored, and those refused below a safety stock with their ``Conflict``."""
        news = [u.new for u in group if u.new is not None]
        conn = await self.engine.connect()
        try:
            raw = (await conn.get_raw_connection()).driver_connection
            async with raw.transaction():
                refused, as_of = await check_group(raw, [n.stock for n in news if n.stock.wanted])
                news = [n for n in news if n.order.id not in refused]
                args = (
                    _text([n.order for n in news]),
                    _text([row for n in news for row in n.timeline]),
                    _text([row for n in news for row in n.outbox]),
                    _text([n.payload for n in news]),
                )
                stored = {row[0] for row in await raw.fetch(_INSERT_GROUP, *args)} if news else set()
                await write_group(raw, [n.stock for n in news if n.order.id in stored], as_of)
                drafts = [n.audit for n in news if n.order.id in stored]
                if drafts:
                    await self._append_audit(raw, drafts)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.invalidate()  # its state is unknown: do not hand it to the next user
            raise
        finally:
            await conn.close()
        return stored, refused

    async def _append_audit(self, raw: Any, drafts: list[Draft]) -> None:
        head = self._head
        if head is None:
            head = tuple(await raw.fetchrow(_LOCK_HEAD))
        for _ in range(2):
            rows, seq, prev = [], head[0], head[1]
            for d in drafts:
                entry = seal(d, seq, prev)
                rows.append(
                    _AuditRow(
                        entry.seq, d.at, d.actor, d.action, d.subject_type, d.subject_id, d.data_text, prev, entry.hash
                    )
                )
                seq, prev = entry.seq, entry.hash
            status = await raw.execute(_APPEND_AUDIT, seq, prev, head[0], head[1], _text(rows))
            if status == f"INSERT 0 {len(rows)}":
                self._head = (seq, prev)  # set once written; reset if the transaction fails
                return
            head = tuple(await raw.fetchrow(_LOCK_HEAD))  # another process appended since: re-seal
        raise RuntimeError("the audit head moved while it was locked")  # cannot happen: we hold the lock


def _text(rows: list[Any]) -> str:
    return _json(rows).decode()


async def _settle(unit: _Unit, work: Any) -> None:
    try:
        await work
    except asyncio.CancelledError:
        if not unit.done.done():
            unit.done.cancel()
        raise
    except BaseException as exc:
        if not unit.done.done():
            unit.done.set_exception(exc)
    else:
        if not unit.done.done():
            unit.done.set_result(None)


async def _write_alone(ops: list[_Op], db: Database) -> None:
    """Replay a unit's writes in a transaction of its own, through the Core repositories."""
    from adapters.db.uow import SqlUnitOfWork

    async with SqlUnitOfWork(db) as uow:
        for op in ops:
            await getattr(getattr(uow, op.repo), op.method)(*op.args, **op.kwargs)
        await uow.commit()
