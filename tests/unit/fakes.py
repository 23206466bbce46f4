"""In-memory fakes of every storage port, honouring the same semantics as ``adapters/db`` (the
conformance suite in ``tests/integration/test_storage_conformance.py`` runs against both).

A unit of work copies the whole state when it begins and publishes the copy on ``commit()``;
leaving without committing discards it. Write units of work are serialised by one lock, as on
SQLite, so concurrent writers never lose each other's changes.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import msgspec

from gateway.audit import GENESIS_HASH, AuditEntry, ChainCheck, entry_hash, verify_chain
from gateway.errors import Conflict, NotFound, PayloadInvalid
from gateway.ports import (
    ApiKeyRecord,
    Binding,
    DeadLetter,
    DueRow,
    ErpShipmentRecord,
    FingerprintMatch,
    InterceptOverride,
    InterceptRecord,
    OrderRecord,
    OrderState,
    OutboxLease,
    Page,
    PayloadAges,
    RefundRecord,
    Reservation,
    ReviewItem,
    StockLevel,
    StockPutResult,
    StockReport,
    TargetBacklog,
    TimelineEntry,
)
from gateway.stock import check_floors, combine, one_per_key
from gateway.stopline import Control

_encoder = msgspec.json.Encoder(order="sorted")


def _now() -> datetime:
    return datetime.now(UTC)


def _json_copy(value: Any) -> Any:
    """What a JSON column gives back."""
    return msgspec.json.decode(msgspec.json.encode(value))


@dataclass
class FakeOutboxRow:
    id: int
    order_id: str
    target: str
    kind: str
    state: str = "pending"
    attempts: int = 0
    token: int = 0
    available_at: datetime = field(default_factory=_now)
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    last_error: str | None = None
    state_data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=_now)


@dataclass
class FakeState:
    orders: dict[str, OrderRecord] = field(default_factory=dict)
    bindings: dict[tuple[str, str, str], Binding] = field(default_factory=dict)
    timeline: dict[str, list[TimelineEntry]] = field(default_factory=dict)
    payloads: dict[str, bytes] = field(default_factory=dict)
    payload_received: dict[str, datetime] = field(default_factory=dict)
    outbox: dict[int, FakeOutboxRow] = field(default_factory=dict)
    intercepts: list[tuple[int, InterceptRecord]] = field(default_factory=list)
    dead_letters: list[tuple[int, DeadLetter]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    audit_head: tuple[int, str] = (0, GENESIS_HASH)
    keys: dict[str, ApiKeyRecord] = field(default_factory=dict)
    controls: dict[str, Control] = field(default_factory=dict)
    refunds: dict[tuple[str, str], RefundRecord] = field(default_factory=dict)
    overrides: dict[str, InterceptOverride] = field(default_factory=dict)  # by intercept id
    stock: dict[tuple[str, str], StockReport] = field(default_factory=dict)  # (sku, warehouse) → newest count
    reservations: dict[tuple[str, str, str], tuple[int, datetime]] = field(default_factory=dict)  # → (qty, at)
    fingerprints: dict[tuple[str, str], FingerprintMatch] = field(default_factory=dict)  # (fingerprint, order id)
    erp_handles: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (target, code, name) → value
    erp_shipments: dict[tuple[str, str, str], ErpShipmentRecord] = field(default_factory=dict)  # (target, no, code)
    last_seq: int = 0  # one counter for every autoincrement key

    def next_seq(self) -> int:
        self.last_seq += 1
        return self.last_seq


def _page(keyed: Sequence[tuple[int, Any]], cursor: str | None, limit: int) -> Page:
    """Newest first by key, as the SQL repositories page."""
    if cursor:
        try:
            after = int(cursor)
        except ValueError as exc:
            raise PayloadInvalid(f"invalid cursor {cursor!r}") from exc
        keyed = [(k, v) for k, v in keyed if k < after]
    ordered = sorted(keyed, key=lambda kv: kv[0], reverse=True)
    shown = ordered[:limit]
    more = len(ordered) > limit and bool(shown)
    return Page(items=[copy.deepcopy(v) for _, v in shown], next_cursor=str(shown[-1][0]) if more else None)


class FakeOrderRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    def _order(self, order_id: str) -> OrderRecord:
        try:
            return self._s.orders[order_id]
        except KeyError:
            raise NotFound(f"order {order_id} not found") from None

    def _binding(self, order_id: str) -> Binding:
        return next(b for b in self._s.bindings.values() if b.order_id == order_id)

    async def find_binding(self, platform: str, shop_id: str, platform_order_id: str) -> Binding | None:
        return copy.deepcopy(self._s.bindings.get((platform, shop_id, platform_order_id)))

    async def add(self, order: OrderRecord) -> OrderRecord:
        key = (order.platform, order.shop_id, order.platform_order_id)
        if key in self._s.bindings or order.id in self._s.orders:
            raise Conflict("this platform order (or gateway id) is already stored")
        created = order.created_at or _now()
        stored = msgspec.structs.replace(
            order,
            seq=self._s.next_seq(),
            canonical=_json_copy(order.canonical),
            created_at=created,
            updated_at=order.updated_at or created,
        )
        self._s.orders[order.id] = stored
        self._s.bindings[key] = Binding(
            order_id=order.id,
            platform=order.platform,
            shop_id=order.shop_id,
            platform_order_id=order.platform_order_id,
            platform_version=order.platform_version,
            payload_sha256=order.payload_sha256,
            erp_target=order.erp_target,
            erp_document_no=order.erp_document_no,
        )
        return copy.deepcopy(stored)

    async def get(self, order_id: str) -> OrderRecord | None:
        return copy.deepcopy(self._s.orders.get(order_id))

    async def list(
        self, *, platform: str | None, platform_order_id: str | None, cursor: str | None, limit: int
    ) -> Page:
        found = [
            (o.seq or 0, o)
            for o in self._s.orders.values()
            if (platform is None or o.platform == platform)
            and (platform_order_id is None or o.platform_order_id == platform_order_id)
        ]
        return _page(found, cursor, limit)

    async def replace_canonical(
        self,
        order_id: str,
        *,
        canonical: dict[str, Any],
        platform_version: str | None,
        payload_sha256: str,
        mapping_version: str | None = None,
        rules_version: str | None = None,
    ) -> None:
        order, binding = self._order(order_id), self._binding(order_id)
        order.canonical = _json_copy(canonical)
        order.mapping_version = mapping_version or order.mapping_version
        order.rules_version = rules_version or order.rules_version
        order.platform_version = binding.platform_version = platform_version
        order.payload_sha256 = binding.payload_sha256 = payload_sha256
        order.updated_at = _now()

    async def set_state(self, order_id: str, state: OrderState) -> None:
        order = self._order(order_id)
        order.state = state
        order.updated_at = _now()

    async def set_state_if(self, order_id: str, *, expect: OrderState, state: OrderState) -> bool:
        order = self._s.orders.get(order_id)
        if order is None or order.state != expect:
            return False
        order.state = state
        order.updated_at = _now()
        return True

    async def set_erp(self, order_id: str, *, target: str, document_no: str | None, status: str) -> None:
        order, binding = self._order(order_id), self._binding(order_id)
        order.erp_target = binding.erp_target = target
        if document_no is not None:
            order.erp_document_no = binding.erp_document_no = document_no
        order.erp_status = status
        order.updated_at = _now()

    async def add_timeline(self, order_id: str, kind: str, detail: dict[str, Any]) -> None:
        entry = TimelineEntry(at=_now(), kind=kind, detail=_json_copy(detail))
        self._s.timeline.setdefault(order_id, []).append(entry)

    async def timeline(self, order_id: str) -> list[TimelineEntry]:
        return copy.deepcopy(self._s.timeline.get(order_id, []))


class FakePayloadStore:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def put(self, sha256: str, raw: bytes) -> None:
        if sha256 not in self._s.payloads:
            self._s.payloads[sha256] = bytes(raw)
            self._s.payload_received[sha256] = _now()

    async def get(self, sha256: str) -> bytes | None:
        return self._s.payloads.get(sha256)

    def _before(self, cutoff: datetime) -> list[str]:
        received = self._s.payload_received
        return sorted((sha for sha in self._s.payloads if received[sha] < cutoff), key=received.__getitem__)

    async def received_before(self, cutoff: datetime) -> PayloadAges:
        shas = self._before(cutoff)
        return PayloadAges(
            count=len(shas),
            bytes=sum(len(self._s.payloads[sha]) for sha in shas),
            oldest=self._s.payload_received[shas[0]] if shas else None,
        )

    async def purge_before(self, cutoff: datetime, *, limit: int) -> tuple[int, int]:
        shas = self._before(cutoff)[:limit]
        size = sum(len(self._s.payloads.pop(sha)) for sha in shas)
        for sha in shas:
            del self._s.payload_received[sha]
        return len(shas), size


class FakeOutbox:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add(self, *, order_id: str, target: str, kind: str, available_at: datetime) -> int:
        row = FakeOutboxRow(
            id=self._s.next_seq(), order_id=order_id, target=target, kind=kind, available_at=available_at
        )
        self._s.outbox[row.id] = row
        return row.id

    def _claimable(self, now: datetime) -> list[FakeOutboxRow]:
        """Rows a claim would take, in claim order: expired leases, then pending rows, each
        earliest due first (as the SQL claims), none behind an unfinished older row of its order."""
        rows = sorted(self._s.outbox.values(), key=lambda r: r.id)
        expired = [r for r in rows if r.state == "leased" and r.lease_expires_at and r.lease_expires_at < now]
        pending = [r for r in rows if r.state == "pending" and r.available_at <= now]
        candidates = sorted(expired, key=lambda r: (r.lease_expires_at, r.id)) + sorted(
            pending, key=lambda r: (r.available_at, r.id)
        )
        return [
            row
            for row in candidates
            if not any(r.order_id == row.order_id and r.id < row.id and r.state in ("pending", "leased") for r in rows)
        ]

    def _lease(self, row: FakeOutboxRow, owner: str, now: datetime, lease_seconds: float) -> OutboxLease:
        row.state, row.lease_owner, row.token = "leased", owner, row.token + 1
        row.lease_expires_at = now + timedelta(seconds=lease_seconds)
        return OutboxLease(
            id=row.id,
            order_id=row.order_id,
            target=row.target,
            kind=row.kind,
            attempts=row.attempts,
            token=row.token,
            lease_expires_at=row.lease_expires_at,
            state_data=copy.deepcopy(row.state_data),
        )

    async def claim(self, *, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[OutboxLease]:
        leases = [self._lease(row, owner, now, lease_seconds) for row in self._claimable(now)[:limit]]
        return sorted(leases, key=lambda lease: lease.id)

    async def claim_one(self, outbox_id: int, *, owner: str, now: datetime, lease_seconds: float) -> OutboxLease | None:
        row = next((r for r in self._claimable(now) if r.id == outbox_id), None)
        return self._lease(row, owner, now, lease_seconds) if row is not None else None

    async def due(self, *, now: datetime, limit: int) -> list[DueRow]:
        return [DueRow(id=r.id, token=r.token, attempts=r.attempts) for r in self._claimable(now)[:limit]]

    async def defer(self, lease: OutboxLease, *, now: datetime, available_at: datetime) -> bool:
        row = self._fenced(lease)
        if row is None:
            return False
        row.state, row.available_at = "pending", available_at
        row.lease_owner = row.lease_expires_at = None
        row.state_data = _json_copy(lease.state_data | {"deferrals": int(lease.state_data.get("deferrals", 0)) + 1})
        return True

    def _fenced(self, lease: OutboxLease) -> FakeOutboxRow | None:
        row = self._s.outbox.get(lease.id)
        if row is None or row.token != lease.token or row.state != "leased":
            return None
        return row

    def _end_attempt(self, lease: OutboxLease, state: str, error: str | None) -> FakeOutboxRow | None:
        row = self._fenced(lease)
        if row is not None:
            row.state, row.attempts = state, row.attempts + 1
            row.lease_owner = row.lease_expires_at = None
            if error is not None:
                row.last_error = error
        return row

    async def finish(self, lease: OutboxLease, *, now: datetime) -> bool:
        return self._end_attempt(lease, "done", None) is not None

    async def reschedule(
        self,
        lease: OutboxLease,
        *,
        now: datetime,
        available_at: datetime,
        error: str,
        state_data: dict[str, Any],
    ) -> bool:
        row = self._end_attempt(lease, "pending", error)
        if row is None:
            return False
        row.available_at, row.state_data = available_at, _json_copy(state_data)
        return True

    async def bury(self, lease: OutboxLease, *, now: datetime, error: str) -> bool:
        return self._end_attempt(lease, "dead", error) is not None

    async def requeue(self, outbox_id: int, *, now: datetime, state_data: dict[str, Any] | None = None) -> bool:
        row = self._s.outbox.get(outbox_id)
        if row is None or row.state != "dead":
            return False
        row.state, row.attempts, row.available_at = "pending", 0, now
        row.state_data = dict(row.state_data) | {"token_base": row.token, "deferrals": 0} | (state_data or {})
        return True

    async def pending_count(self) -> int:
        return sum(1 for r in self._s.outbox.values() if r.state in ("pending", "leased"))

    async def next_due_at(self) -> datetime | None:
        times = [r.available_at for r in self._s.outbox.values() if r.state == "pending"]
        times += [r.lease_expires_at for r in self._s.outbox.values() if r.state == "leased" and r.lease_expires_at]
        return min(times) if times else None

    async def backlog(self) -> dict[str, TargetBacklog]:
        found: dict[str, TargetBacklog] = {}
        for r in self._s.outbox.values():
            if r.state not in ("pending", "leased"):
                continue
            prev = found.get(r.target)
            oldest = (
                r.created_at
                if prev is None or prev.oldest_created_at is None
                else min(prev.oldest_created_at, r.created_at)
            )
            found[r.target] = TargetBacklog(count=(prev.count if prev else 0) + 1, oldest_created_at=oldest)
        return found


class FakeTargetControls:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def all(self) -> dict[str, Control]:
        return dict(self._s.controls)

    async def put(self, control: Control) -> bool:
        stored = self._s.controls.get(control.target)
        if (stored.version if stored else 0) != control.version:
            return False
        self._s.controls[control.target] = msgspec.structs.replace(control, version=control.version + 1)
        return True


class FakeInterceptRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add(self, record: InterceptRecord) -> None:
        if any(r.id == record.id for _, r in self._s.intercepts):
            raise Conflict(f"intercept {record.id} exists")
        stored = msgspec.structs.replace(copy.deepcopy(record), created_at=record.created_at or _now(), override=None)
        self._s.intercepts.append((self._s.next_seq(), stored))

    def _with_override(self, record: InterceptRecord) -> InterceptRecord:
        return msgspec.structs.replace(record, override=copy.deepcopy(self._s.overrides.get(record.id)))

    async def get(self, intercept_id: str) -> InterceptRecord | None:
        found = next((r for _, r in self._s.intercepts if r.id == intercept_id), None)
        return None if found is None else self._with_override(copy.deepcopy(found))

    async def list(
        self,
        *,
        rule: str | None,
        platform: str | None,
        shop: str | None,
        since: datetime | None,
        until: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        def keep(r: InterceptRecord) -> bool:
            at = r.created_at
            assert at is not None
            return (
                (rule is None or rule in r.rule_codes)
                and (platform is None or r.platform == platform)
                and (shop is None or r.shop_id == shop)
                and (since is None or at >= since)
                and (until is None or at < until)
            )

        page = _page([(k, r) for k, r in self._s.intercepts if keep(r)], cursor, limit)
        page.items = [self._with_override(r) for r in page.items]
        return page


class FakeReviewRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    def _latest_holds(self) -> dict[str, InterceptRecord]:
        return {
            r.order_id: r
            for _, r in sorted(self._s.intercepts, key=lambda kr: kr[0])
            if r.verdict == "hold" and r.order_id
        }

    async def queue(
        self, *, platform: str | None, shop: str | None, rule: str | None, cursor: str | None, limit: int
    ) -> Page:
        holds = self._latest_holds()
        found = sorted(
            (
                o
                for o in self._s.orders.values()
                if o.state == "held"
                and (platform is None or o.platform == platform)
                and (shop is None or o.shop_id == shop)
                and (rule is None or (o.id in holds and rule in holds[o.id].rule_codes))
            ),
            key=lambda o: o.seq or 0,
        )
        if cursor:
            try:
                after = int(cursor)
            except ValueError as exc:
                raise PayloadInvalid(f"invalid cursor {cursor!r}") from exc
            found = [o for o in found if (o.seq or 0) > after]
        shown = found[:limit]
        more = len(found) > limit and bool(shown)
        items = [ReviewItem(order=copy.deepcopy(o), hold=copy.deepcopy(holds.get(o.id))) for o in shown]
        return Page(items=items, next_cursor=str(shown[-1].seq) if more else None)

    async def latest_hold(self, order_id: str) -> InterceptRecord | None:
        return copy.deepcopy(self._latest_holds().get(order_id))

    async def get_override(self, intercept_id: str) -> InterceptOverride | None:
        return copy.deepcopy(self._s.overrides.get(intercept_id))

    async def request_override(self, record: InterceptOverride) -> InterceptOverride:
        if record.intercept_id in self._s.overrides:
            raise Conflict(f"an override of intercept {record.intercept_id} is already stored")
        if not any(r.id == record.intercept_id for _, r in self._s.intercepts):
            raise Conflict(f"intercept {record.intercept_id} does not exist")  # the foreign key
        stored = msgspec.structs.replace(record, seq=self._s.next_seq(), rules=list(record.rules))
        self._s.overrides[record.intercept_id] = stored
        return copy.deepcopy(stored)

    async def confirm_override(self, intercept_id: str, *, by: str, at: datetime, reason: str, order_id: str) -> bool:
        stored = self._s.overrides.get(intercept_id)
        if stored is None or stored.state != "requested":
            return False
        stored.state, stored.confirmed_by, stored.confirmed_at = "confirmed", by, at
        stored.confirm_reason, stored.order_id = reason, order_id
        return True

    async def overrides(self, *, state: str | None, cursor: str | None, limit: int) -> Page:
        found = [(o.seq or 0, o) for o in self._s.overrides.values() if state is None or o.state == state]
        return _page(found, cursor, limit)


class FakeDeadLetterRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add(self, letter: DeadLetter) -> None:
        if any(d.id == letter.id for _, d in self._s.dead_letters):
            raise Conflict(f"dead letter {letter.id} exists")
        stored = msgspec.structs.replace(letter, created_at=letter.created_at or _now())
        self._s.dead_letters.append((self._s.next_seq(), stored))

    async def get(self, letter_id: str) -> DeadLetter | None:
        return copy.deepcopy(next((d for _, d in self._s.dead_letters if d.id == letter_id), None))

    async def list(self, *, cursor: str | None, limit: int, include_replayed: bool) -> Page:
        found = [(k, d) for k, d in self._s.dead_letters if include_replayed or d.replayed_at is None]
        return _page(found, cursor, limit)

    async def mark_replayed(self, letter_id: str, *, now: datetime) -> None:
        letter = next((d for _, d in self._s.dead_letters if d.id == letter_id), None)
        if letter is None:
            raise NotFound(f"dead letter {letter_id} not found")
        letter.replayed_at = now


class FakeAuditLog:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def append(
        self, *, actor: str, action: str, subject_type: str, subject_id: str, data: dict[str, Any]
    ) -> AuditEntry:
        seq, prev_hash = self._s.audit_head
        fields = {
            "seq": seq + 1,
            "at": _now().isoformat(),
            "actor": actor,
            "action": action,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "data": msgspec.json.decode(_encoder.encode(data)),
            "prev_hash": prev_hash,
        }
        entry = AuditEntry(**fields, hash=entry_hash(**fields))
        self._s.audit.append(entry)
        self._s.audit_head = (entry.seq, entry.hash)
        return copy.deepcopy(entry)

    async def list(self, *, after_seq: int, limit: int) -> Sequence[AuditEntry]:
        entries = sorted((e for e in self._s.audit if e.seq > after_seq), key=lambda e: e.seq)
        return copy.deepcopy(entries[:limit])

    async def verify(self) -> ChainCheck:
        entries = sorted(self._s.audit, key=lambda e: e.seq)
        result = verify_chain(entries)
        if not result.ok:
            return result
        head_seq, head_hash = self._s.audit_head
        last_hash = entries[-1].hash if entries else GENESIS_HASH
        if head_seq > len(entries):
            return ChainCheck(
                ok=False,
                checked=len(entries),
                broken_at=len(entries) + 1,
                reason="entries missing at the end",
            )
        if head_seq < len(entries):
            return ChainCheck(
                ok=False, checked=len(entries), broken_at=head_seq + 1, reason="entries beyond the chain head"
            )
        if head_hash != last_hash:
            return ChainCheck(
                ok=False,
                checked=len(entries),
                broken_at=head_seq,
                reason="chain head does not match the last entry",
            )
        return result


class FakeApiKeyRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add(self, record: ApiKeyRecord) -> None:
        if any(k.key_hash == record.key_hash for k in self._s.keys.values()) or record.id in self._s.keys:
            raise Conflict("api key exists")
        self._s.keys[record.id] = msgspec.structs.replace(record, created_at=record.created_at or _now())

    async def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return copy.deepcopy(next((k for k in self._s.keys.values() if k.key_hash == key_hash), None))


class FakeRefundRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def stored_for_order(self, platform: str, platform_order_id: str) -> bool | None:
        # The fake's write units of work run one at a time, like SQLite's writer.
        return any(k[0] == platform and r.platform_order_id == platform_order_id for k, r in self._s.refunds.items())

    async def get(self, platform: str, refund_id: str) -> RefundRecord | None:
        return copy.deepcopy(self._s.refunds.get((platform, refund_id)))

    async def add(self, record: RefundRecord) -> RefundRecord:
        key = (record.platform, record.refund_id)
        if key in self._s.refunds:
            raise Conflict(f"refund {record.refund_id} of {record.platform} is already stored")
        if record.order_id is not None and record.order_id not in self._s.orders:
            raise Conflict(f"order {record.order_id} does not exist")  # the foreign key
        now = _now()
        stored = msgspec.structs.replace(
            record,
            seq=self._s.next_seq(),
            canonical=_json_copy(record.canonical),
            created_at=record.created_at or now,
            updated_at=record.updated_at or now,
        )
        self._s.refunds[key] = stored
        return copy.deepcopy(stored)

    async def replace(self, record: RefundRecord, *, expected_version: str | None) -> bool:
        stored = self._s.refunds.get((record.platform, record.refund_id))
        if stored is None or stored.platform_version != expected_version:
            return False
        self._s.refunds[(record.platform, record.refund_id)] = msgspec.structs.replace(
            record,
            seq=stored.seq,
            canonical=_json_copy(record.canonical),
            created_at=stored.created_at,
            updated_at=record.updated_at or _now(),
        )
        return True

    async def for_order(self, platform: str, platform_order_id: str) -> list[RefundRecord]:
        found = [
            r for r in self._s.refunds.values() if r.platform == platform and r.platform_order_id == platform_order_id
        ]
        return copy.deepcopy(sorted(found, key=lambda r: r.seq or 0))

    async def mark_applied(self, platform: str, refund_ids: Sequence[str], *, order_id: str, now: datetime) -> None:
        for refund_id in refund_ids:
            stored = self._s.refunds.get((platform, refund_id))
            if stored is not None:
                stored.state, stored.order_id, stored.applied_at, stored.updated_at = "applied", order_id, now, now


class FakeStockRepository:
    """Write units of work run one at a time (the factory's lock), as on SQLite: ``reserve`` needs
    no row locks to decide two orders for the last unit one after the other."""

    def __init__(self, state: FakeState) -> None:
        self._s = state

    def _pending(self, sku: str, warehouse: str, as_of: datetime, exclude_order_id: str | None = None) -> int:
        return sum(
            qty
            for (order_id, s, w), (qty, at) in self._s.reservations.items()
            if (s, w) == (sku, warehouse) and at > as_of and order_id != exclude_order_id
        )

    async def put(self, reports: Sequence[StockReport], *, now: datetime) -> StockPutResult:
        one_per_key(reports)
        applied = 0
        for r in reports:
            key = (r.sku, r.warehouse)
            stored = self._s.stock.get(key)
            if stored is None or stored.as_of <= r.as_of:
                self._s.stock[key] = msgspec.structs.replace(r, as_of=r.as_of.astimezone(UTC))
                applied += 1
        return StockPutResult(applied=applied, stale=len(reports) - applied)

    async def levels(self, skus: Sequence[str]) -> list[StockLevel]:
        wanted = set(skus)
        return [
            StockLevel(
                sku=r.sku,
                warehouse=r.warehouse,
                on_hand=r.on_hand,
                reserved=r.reserved,
                pending=self._pending(r.sku, r.warehouse, r.as_of),
                as_of=r.as_of,
            )
            for key, r in sorted(self._s.stock.items())
            if key[0] in wanted
        ]

    async def reserve(self, order_id: str, items: Sequence[Reservation], *, at: datetime) -> None:
        wanted = combine(items)
        available = {
            key: r.on_hand - r.reserved - self._pending(*key, r.as_of, exclude_order_id=order_id)
            for key in wanted
            if (r := self._s.stock.get(key)) is not None
        }
        check_floors(order_id, wanted, available)
        await self.release(order_id)
        for (sku, warehouse), r in wanted.items():
            if r.qty > 0:
                self._s.reservations[(order_id, sku, warehouse)] = (r.qty, at.astimezone(UTC))

    async def release(self, order_id: str) -> None:
        for key in [k for k in self._s.reservations if k[0] == order_id]:
            del self._s.reservations[key]


class FakeFingerprintRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add(
        self, fingerprint: str, *, order_id: str, platform: str, shop_id: str, platform_order_id: str, at: datetime
    ) -> None:
        self._s.fingerprints.setdefault(
            (fingerprint, order_id),
            FingerprintMatch(
                order_id=order_id,
                platform=platform,
                shop_id=shop_id,
                platform_order_id=platform_order_id,
                at=at.astimezone(UTC),
            ),
        )

    async def matches(
        self, fingerprint: str, *, since: datetime, exclude_order_id: str | None
    ) -> list[FingerprintMatch]:
        found = [
            m
            for (fp, order_id), m in self._s.fingerprints.items()
            if fp == fingerprint and m.at >= since and order_id != exclude_order_id
        ]
        return sorted(found, key=lambda m: (m.at, m.order_id))


class FakeErpHandleRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def get(self, target: str, code: str, name: str) -> str | None:
        return self._s.erp_handles.get((target, code, name))

    async def put_if_absent(self, target: str, code: str, name: str, value: str, *, now: datetime) -> str:
        return self._s.erp_handles.setdefault((target, code, name), value)


class FakeErpShipmentRepository:
    def __init__(self, state: FakeState) -> None:
        self._s = state

    async def add_if_new(self, record: ErpShipmentRecord) -> bool:
        key = (record.target, record.shipment_no, record.document_code)
        if key in self._s.erp_shipments:
            return False
        self._s.erp_shipments[key] = record
        return True

    async def for_order(self, order_id: str) -> list[ErpShipmentRecord]:
        found = [r for r in self._s.erp_shipments.values() if r.order_id == order_id]
        return sorted(found, key=lambda r: (r.recorded_at, r.shipment_no))

    async def lock_order(self, order_id: str) -> None:
        """Write units of work are serialised by the factory's lock already."""

    async def awaiting(self, target: str, *, changed_since: datetime, after_seq: int, limit: int) -> list[OrderRecord]:
        complete = {r.order_id for r in self._s.erp_shipments.values() if r.completes_order}
        found = [
            o
            for o in self._s.orders.values()
            if o.erp_target == target
            and o.state == "delivered"
            and o.updated_at is not None
            and o.updated_at >= changed_since
            and (o.seq or 0) > after_seq
            and o.id not in complete
        ]
        return copy.deepcopy(sorted(found, key=lambda o: o.seq or 0)[:limit])


class FakeUnitOfWork:
    def __init__(self, factory: FakeUnitOfWorkFactory, *, write: bool) -> None:
        self._factory = factory
        self._lock = factory.write_lock if write else None
        self._state: FakeState | None = None

    def _begin(self) -> None:
        self._state = state = copy.deepcopy(self._factory.state)
        self.orders = FakeOrderRepository(state)
        self.payloads = FakePayloadStore(state)
        self.outbox = FakeOutbox(state)
        self.intercepts = FakeInterceptRepository(state)
        self.reviews = FakeReviewRepository(state)
        self.dead_letters = FakeDeadLetterRepository(state)
        self.audit = FakeAuditLog(state)
        self.keys = FakeApiKeyRepository(state)
        self.controls = FakeTargetControls(state)
        self.refunds = FakeRefundRepository(state)
        self.stock = FakeStockRepository(state)
        self.fingerprints = FakeFingerprintRepository(state)
        self.erp_handles = FakeErpHandleRepository(state)
        self.erp_shipments = FakeErpShipmentRepository(state)

    async def __aenter__(self) -> Self:
        if self._lock is not None:
            await self._lock.acquire()
        self._begin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._state = None
        if self._lock is not None:
            self._lock.release()

    async def commit(self) -> None:
        if self._state is None:
            raise RuntimeError("the unit of work is not open: use `async with`")
        self._factory.state = self._state
        self._factory.commits += 1
        self._begin()  # like a connection: later work starts a new transaction

    async def rollback(self) -> None:
        self._begin()


class FakeUnitOfWorkFactory:
    """``UnitOfWorkFactory`` over one shared in-memory state (``state``, for test assertions)."""

    def __init__(self, state: FakeState | None = None) -> None:
        self.state = state or FakeState()
        self.write_lock = asyncio.Lock()
        self.commits = 0

    def __call__(self, *, write: bool = True) -> FakeUnitOfWork:
        return FakeUnitOfWork(self, write=write)
