"""The delivery outbox: rows written with the order, leased by workers, fenced by a token.

A claim picks due rows (leased with an expired lease, then pending and available), earliest due
first, and skips any row whose order still has an older row in flight, so an order's deliveries
happen in the order they were queued. Each claim increments the row's ``token``; every later write about that
attempt names the token, so a worker whose lease expired and was taken over writes nothing.
On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets many workers claim at once without meeting.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, or_, select

from adapters.db.engine import Executor
from adapters.db.repositories import utcnow
from adapters.db.tables import UTCDateTime, outbox
from gateway.ports import DueRow, OutboxLease, TargetBacklog

_UNFINISHED = ("pending", "leased")
_NOW = bindparam("now", type_=UTCDateTime())

_earlier = outbox.alias("earlier")
# An order's rows go one at a time: none is claimed while an older row of the same order is
# unfinished (an index probe on ``order_id``; SQLite keeps the rowid ``id`` in every index).
_no_earlier_unfinished = ~(
    select(_earlier.c.id)
    .where(
        _earlier.c.order_id == outbox.c.order_id,
        _earlier.c.id < outbox.c.id,
        _earlier.c.state.in_(_UNFINISHED),
    )
    .exists()
)


def _due(state: str, due_at: Any, *, strictly: bool) -> Any:
    """Ids of rows in ``state`` due by ``now``, earliest first, at most ``limit``.

    One state per query and ``ORDER BY due_at, id`` follow the index ``(state, available_at)``, so
    the scan stops after ``limit`` rows instead of sorting every due row: a backlog of thousands
    costs what an empty outbox costs. (Expired leases are few: they sort the leased rows only.)
    """
    reached = due_at < _NOW if strictly else due_at <= _NOW
    return (
        select(outbox.c.id)
        .where(outbox.c.state == state, reached, _no_earlier_unfinished)
        .order_by(due_at, outbox.c.id)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=outbox)  # SQLite ignores it: its writer lock serialises
    )


_LEASE_COLUMNS = (
    outbox.c.id,
    outbox.c.order_id,
    outbox.c.target,
    outbox.c.kind,
    outbox.c.attempts,
    outbox.c.token,
    outbox.c.lease_expires_at,
    outbox.c.state_data,
)


# What every claim writes: the lease, and a token one higher than any earlier claim of the row.
_LEASE_VALUES = {
    "state": "leased",
    "lease_owner": bindparam("owner"),
    "lease_expires_at": bindparam("expires", type_=UTCDateTime()),
    "token": outbox.c.token + 1,
    "updated_at": _NOW,
}


def _claim(due_ids: Any) -> Any:
    return (
        outbox.update()
        .where(outbox.c.id.in_(due_ids.scalar_subquery()))
        .values(**_LEASE_VALUES)
        .returning(*_LEASE_COLUMNS)
    )


# Expired leases first: their worker died mid-call, and they are the oldest attempts.
_CLAIMS = (
    _claim(_due("leased", outbox.c.lease_expires_at, strictly=True)),
    _claim(_due("pending", outbox.c.available_at, strictly=False)),
)


def _due_rows(state: str, due_at: Any, *, strictly: bool) -> Any:
    """``_due`` as rows for the relay: read only, nothing locked."""
    reached = due_at < _NOW if strictly else due_at <= _NOW
    return (
        select(outbox.c.id, outbox.c.token, outbox.c.attempts)
        .where(outbox.c.state == state, reached, _no_earlier_unfinished)
        .order_by(due_at, outbox.c.id)
        .limit(bindparam("limit"))
    )


_DUE = (
    _due_rows("leased", outbox.c.lease_expires_at, strictly=True),
    _due_rows("pending", outbox.c.available_at, strictly=False),
)

# One row by id, on the same terms as a batch claim. On PostgreSQL a second claimer of the row
# waits on the first one's row lock, then re-checks the WHERE against the leased row: no match.
_CLAIM_ONE = (
    outbox.update()
    .where(
        outbox.c.id == bindparam("outbox_id"),
        or_(
            and_(outbox.c.state == "pending", outbox.c.available_at <= _NOW),
            and_(outbox.c.state == "leased", outbox.c.lease_expires_at < _NOW),
        ),
        _no_earlier_unfinished,
    )
    .values(**_LEASE_VALUES)
    .returning(*_LEASE_COLUMNS)
)

_INSERT = outbox.insert().returning(outbox.c.id)


def _fenced(lease: OutboxLease) -> Any:
    """An UPDATE that only touches the row while this lease still holds it."""
    return outbox.update().where(outbox.c.id == lease.id, outbox.c.token == lease.token, outbox.c.state == "leased")


class SqlOutbox:
    def __init__(self, conn: Executor) -> None:
        self._conn = conn

    async def add(self, *, order_id: str, target: str, kind: str, available_at: datetime) -> int:
        now = utcnow()
        return (
            await self._conn.execute(
                _INSERT,
                {
                    "order_id": order_id,
                    "target": target,
                    "kind": kind,
                    "state": "pending",
                    "attempts": 0,
                    "token": 0,
                    "available_at": available_at,
                    "state_data": {},
                    "created_at": now,
                    "updated_at": now,
                },
            )
        ).scalar_one()

    async def claim(self, *, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[OutboxLease]:
        params = {"now": now, "owner": owner, "expires": now + timedelta(seconds=lease_seconds)}
        leases: list[OutboxLease] = []
        for stmt in _CLAIMS:
            if len(leases) >= limit:
                break
            rows = await self._conn.execute(stmt, params | {"limit": limit - len(leases)})
            leases.extend(OutboxLease(**row._mapping) for row in rows)
        leases.sort(key=lambda lease: lease.id)  # RETURNING promises no order
        return leases

    async def claim_one(self, outbox_id: int, *, owner: str, now: datetime, lease_seconds: float) -> OutboxLease | None:
        params = {"now": now, "owner": owner, "expires": now + timedelta(seconds=lease_seconds), "outbox_id": outbox_id}
        row = (await self._conn.execute(_CLAIM_ONE, params)).first()
        return OutboxLease(**row._mapping) if row is not None else None

    async def due(self, *, now: datetime, limit: int) -> list[DueRow]:
        found: list[DueRow] = []
        for stmt in _DUE:
            if len(found) >= limit:
                break
            rows = await self._conn.execute(stmt, {"now": now, "limit": limit - len(found)})
            found.extend(DueRow(**row._mapping) for row in rows)
        return found

    async def defer(self, lease: OutboxLease, *, now: datetime, available_at: datetime) -> bool:
        deferrals = int(lease.state_data.get("deferrals", 0)) + 1
        stmt = _fenced(lease).values(
            state="pending",
            available_at=available_at,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
            state_data=lease.state_data | {"deferrals": deferrals},
        )
        return (await self._conn.execute(stmt)).rowcount == 1

    async def finish(self, lease: OutboxLease, *, now: datetime) -> bool:
        return await self._end_attempt(lease, "done", now)

    async def reschedule(
        self,
        lease: OutboxLease,
        *,
        now: datetime,
        available_at: datetime,
        error: str,
        state_data: dict[str, Any],
    ) -> bool:
        return await self._end_attempt(
            lease, "pending", now, available_at=available_at, last_error=error, state_data=state_data
        )

    async def bury(self, lease: OutboxLease, *, now: datetime, error: str) -> bool:
        return await self._end_attempt(lease, "dead", now, last_error=error)

    async def _end_attempt(self, lease: OutboxLease, state: str, now: datetime, **values: Any) -> bool:
        """Close the attempt while the lease still holds the row (``attempts`` grows by one);
        False when the token moved on, and then nothing was written."""
        stmt = _fenced(lease).values(
            state=state,
            attempts=outbox.c.attempts + 1,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
            **values,
        )
        return (await self._conn.execute(stmt)).rowcount == 1

    async def requeue(self, outbox_id: int, *, now: datetime, state_data: dict[str, Any] | None = None) -> bool:
        """A dead row back to pending with the full retry budget: ``attempts`` starts afresh, and so
        does the count of interrupted claims (``token_base`` = the token now, ``deferrals`` = 0).
        ``state_data`` is kept (an unknown outcome must still be looked up first), with
        ``state_data`` merged in."""
        found = (
            await self._conn.execute(
                select(outbox.c.token, outbox.c.state_data).where(outbox.c.id == outbox_id, outbox.c.state == "dead")
            )
        ).first()
        if found is None:
            return False
        data = dict(found.state_data or {}) | {"token_base": found.token, "deferrals": 0} | (state_data or {})
        stmt = (
            outbox.update()
            .where(outbox.c.id == outbox_id, outbox.c.state == "dead", outbox.c.token == found.token)
            .values(state="pending", attempts=0, available_at=now, updated_at=now, state_data=data)
        )
        return (await self._conn.execute(stmt)).rowcount == 1

    async def pending_count(self) -> int:
        """Rows not yet done or dead (waiting or leased)."""
        stmt = select(func.count()).select_from(outbox).where(outbox.c.state.in_(_UNFINISHED))
        return (await self._conn.execute(stmt)).scalar_one()

    async def next_due_at(self) -> datetime | None:
        """When the earliest row becomes claimable: a pending row's ``available_at`` or a lease's expiry."""
        pending = select(func.min(outbox.c.available_at)).where(outbox.c.state == "pending")
        leased = select(func.min(outbox.c.lease_expires_at)).where(outbox.c.state == "leased")
        times = [(await self._conn.execute(q)).scalar_one() for q in (pending, leased)]
        found = [t for t in times if t is not None]
        return min(found) if found else None

    async def backlog(self) -> dict[str, TargetBacklog]:
        stmt = (
            select(outbox.c.target, func.count(), func.min(outbox.c.created_at))
            .where(outbox.c.state.in_(_UNFINISHED))
            .group_by(outbox.c.target)
        )
        found: dict[str, TargetBacklog] = {}
        for target, count, oldest in (await self._conn.execute(stmt)).all():
            if isinstance(oldest, str):  # SQLite's MIN() loses the column type
                oldest = datetime.fromisoformat(oldest)
            if oldest is not None:
                oldest = oldest.replace(tzinfo=UTC) if oldest.tzinfo is None else oldest.astimezone(UTC)
            found[target] = TargetBacklog(count=count, oldest_created_at=oldest)
        return found
