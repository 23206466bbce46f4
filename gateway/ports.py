"""Ports: what the core needs from the outside world, as Protocols.

The core (intake, delivery, rules) speaks only to these. ``adapters/db`` implements the storage
ports on SQLAlchemy; ``adapters/u8`` the ERP port; unit tests use hand-written fakes. Every
implementation honours the same conformance tests.

Times crossing these ports are timezone-aware ``datetime`` objects in UTC unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self

import msgspec

from gateway.audit import AuditEntry, ChainCheck
from gateway.stopline import Control

if TYPE_CHECKING:
    from gateway.unknown_fields import FieldStats

# --------------------------------------------------------------------------- records

OrderState = Literal["accepted", "held", "delivering", "delivered", "dead", "cancelled"]
OutboxState = Literal["pending", "leased", "done", "dead"]


class Binding(msgspec.Struct, kw_only=True):
    """The binder row: a platform order and its gateway and ERP identities."""

    order_id: str  # gateway id
    platform: str
    shop_id: str
    platform_order_id: str
    platform_version: str | None
    payload_sha256: str
    erp_target: str | None = None
    erp_document_no: str | None = None


class OrderRecord(msgspec.Struct, kw_only=True):
    id: str  # gateway id (ULID text)
    seq: int | None = None  # database-assigned integer, the source of deterministic ERP codes
    platform: str
    shop_id: str
    platform_order_id: str
    platform_version: str | None
    state: OrderState
    canonical: dict[str, Any]  # the CanonicalOrder as builtins
    mapping_version: str
    rules_version: str
    payload_sha256: str
    erp_target: str | None = None
    erp_document_no: str | None = None
    erp_status: str | None = None  # pending | delivered | failed
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TimelineEntry(msgspec.Struct, kw_only=True):
    at: datetime
    kind: str
    detail: dict[str, Any] = msgspec.field(default_factory=dict)


class OutboxLease(msgspec.Struct, kw_only=True):
    """A claimed outbox row. ``token`` fences every write about this attempt."""

    id: int
    order_id: str
    target: str
    kind: str  # deliver | update | cancel (an edit of the document in the ERP: gateway.erp_edits)
    attempts: int  # attempts made before this one
    token: int
    lease_expires_at: datetime
    state_data: dict[str, Any] = msgspec.field(default_factory=dict)  # e.g. {"outcome_unknown": true}


class DueRow(msgspec.Struct, kw_only=True, frozen=True):
    """An outbox row that may be claimed now: what the relay needs to name one queue job."""

    id: int
    token: int  # grows with every claim, so ``(id, token)`` names one attempt or deferral
    attempts: int


class InterceptOverride(msgspec.Struct, kw_only=True):
    """Two people letting an intercepted (rejected) order through after all (``gateway.review``):
    the first asks, a second, different person confirms; the order is then stored."""

    intercept_id: str
    state: Literal["requested", "confirmed"]
    rules: list[str]  # the rule codes overridden: the intercept's, as the first person saw them
    requested_by: str  # the actor (``Caller.actor``) who asked
    requester: str  # who that is as a person (the key's label, else its id): the second must differ
    requested_at: datetime
    reason: str
    confirmed_by: str | None = None
    confirmed_at: datetime | None = None
    confirm_reason: str | None = None
    order_id: str | None = None  # the gateway order the intercept became
    seq: int | None = None  # database-assigned, the listing's key


class InterceptRecord(msgspec.Struct, kw_only=True):
    id: str
    platform: str
    shop_id: str | None
    platform_order_id: str | None
    rule_codes: list[str]
    verdict: Literal["reject", "hold"]
    violations: list[dict[str, Any]]
    mapping_version: str | None
    rules_version: str | None
    payload_sha256: str
    snapshot: dict[str, Any]  # masked canonical order (or what could be read of it)
    order_id: str | None = None  # set when the order was stored (held)
    created_at: datetime | None = None
    override: InterceptOverride | None = None  # read only: its override, if someone asked for one


class ReviewItem(msgspec.Struct, kw_only=True):
    """A held order waiting for a person, with the newest record of why it is held."""

    order: OrderRecord
    hold: InterceptRecord | None  # the newest ``hold`` intercept of the order (None: held before 0007)


class DeadLetter(msgspec.Struct, kw_only=True):
    id: str
    outbox_id: int
    order_id: str
    target: str
    reason_code: str
    message_en: str
    message_zh: str
    partner_message: str | None
    hint: str | None
    attempts: int
    created_at: datetime | None = None
    replayed_at: datetime | None = None


class ApiKeyRecord(msgspec.Struct, kw_only=True):
    id: str
    role: str
    key_hash: str  # hex sha256 of the whole key
    label: str | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None


RefundRowState = Literal["pending", "applied"]


class RefundRecord(msgspec.Struct, kw_only=True):
    """A platform refund as received (its newest version), waiting for its order or applied to it."""

    platform: str
    refund_id: str
    platform_order_id: str
    platform_version: str | None
    state: RefundRowState  # pending: its order is not stored yet
    canonical: dict[str, Any]  # the CanonicalRefund as builtins
    payload_sha256: str  # the raw response, in the payload store
    order_id: str | None = None  # the gateway order it was applied to
    seq: int | None = None  # arrival order
    created_at: datetime | None = None
    updated_at: datetime | None = None
    applied_at: datetime | None = None


class Page(msgspec.Struct, kw_only=True):
    items: list[Any]
    next_cursor: str | None = None


# --------------------------------------------------------------------------- storage ports


class OrderRepository(Protocol):
    async def find_binding(self, platform: str, shop_id: str, platform_order_id: str) -> Binding | None: ...

    async def add(self, order: OrderRecord) -> OrderRecord:
        """Insert the order and its binder row; return it with ``seq`` assigned."""

    async def get(self, order_id: str) -> OrderRecord | None: ...

    async def list(
        self, *, platform: str | None, platform_order_id: str | None, cursor: str | None, limit: int
    ) -> Page: ...

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
        """A newer version of the order, or the same payload mapped again; the versions that
        produced it are recorded when given."""

    async def set_state(self, order_id: str, state: OrderState) -> None: ...

    async def set_state_if(self, order_id: str, *, expect: OrderState, state: OrderState) -> bool:
        """Compare-and-set: move the order to ``state`` only if it is still in ``expect``; False,
        with nothing written, otherwise (another writer moved it first, or no such order). Of
        two concurrent transactions only one sees True."""

    async def set_erp(self, order_id: str, *, target: str, document_no: str | None, status: str) -> None:
        """Record the ERP document in the order and the binder."""

    async def add_timeline(self, order_id: str, kind: str, detail: dict[str, Any]) -> None: ...

    async def timeline(self, order_id: str) -> list[TimelineEntry]: ...


class RefundRepository(Protocol):
    async def get(self, platform: str, refund_id: str) -> RefundRecord | None: ...

    async def add(self, record: RefundRecord) -> RefundRecord:
        """Insert a refund seen for the first time; ``Conflict`` when ``(platform, refund_id)`` is
        already stored. Returns it with ``seq`` and the times assigned."""

    async def replace(self, record: RefundRecord, *, expected_version: str | None) -> bool:
        """Store another version of ``(platform, refund_id)`` (every field but ``seq`` and
        ``created_at``) if the stored ``platform_version`` is still ``expected_version``; False,
        with nothing written, when another writer changed it first."""

    async def stored_for_order(self, platform: str, platform_order_id: str) -> bool | None:
        """Whether refunds of this platform order are stored, told inside a transaction that no
        other writer can run beside (SQLite's writer); None where that cannot be known before the
        commit (the caller then checks after it)."""

    async def for_order(self, platform: str, platform_order_id: str) -> list[RefundRecord]:
        """Every refund of one platform order, pending or applied, in arrival order."""

    async def mark_applied(self, platform: str, refund_ids: Sequence[str], *, order_id: str, now: datetime) -> None:
        """Record that these refunds are applied to the gateway order ``order_id``."""


class PayloadAges(msgspec.Struct, kw_only=True, frozen=True):
    """Raw payloads received before a time: how many, their uncompressed bytes, the oldest."""

    count: int
    bytes: int
    oldest: datetime | None = None


class PayloadStore(Protocol):
    async def put(self, sha256: str, raw: bytes) -> None:
        """Store the raw body compressed; a second put of the same hash is a no-op."""

    async def get(self, sha256: str) -> bytes | None:
        """The raw body; None when it was never stored or was purged (``gateway.retention``)."""

    async def received_before(self, cutoff: datetime) -> PayloadAges:
        """What a purge with this cutoff would delete (first received before ``cutoff``)."""

    async def purge_before(self, cutoff: datetime, *, limit: int) -> tuple[int, int]:
        """Delete up to ``limit`` payloads first received before ``cutoff``, oldest first; the
        number deleted and their uncompressed bytes. Nothing else is touched: the orders,
        intercepts, refunds and audit entries keep the hash (``payload_sha256``)."""


class Outbox(Protocol):
    async def add(self, *, order_id: str, target: str, kind: str, available_at: datetime) -> int: ...

    async def claim(self, *, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[OutboxLease]:
        """Lease up to ``limit`` rows that are due (leased and expired first, then pending and
        available), earliest due first, never a row while an older row of its order is unfinished;
        each claim increments the row's token. The leases come back in ``id`` order."""

    async def claim_one(self, outbox_id: int, *, owner: str, now: datetime, lease_seconds: float) -> OutboxLease | None:
        """Lease the row ``outbox_id`` if it is claimable now (pending and available, or leased with
        an expired lease, and no older row of its order unfinished); None otherwise (done, dead,
        leased by someone else, not due yet). Increments the token like ``claim``."""

    async def due(self, *, now: datetime, limit: int) -> list[DueRow]:
        """Up to ``limit`` rows ``claim`` would take now (expired leases, then pending rows), without
        claiming them: what the relay turns into queue jobs."""

    async def defer(self, lease: OutboxLease, *, now: datetime, available_at: datetime) -> bool:
        """Back to pending *without* counting an attempt (no ERP call was made: the circuit was
        open or no permit was free). Counts the deferral in ``state_data["deferrals"]`` so that a
        token ahead of the attempts still tells a dead worker apart. Fenced by the token."""

    async def finish(self, lease: OutboxLease, *, now: datetime) -> bool:
        """Mark done. False when the lease was lost (token moved on): nothing was written."""

    async def reschedule(
        self, lease: OutboxLease, *, now: datetime, available_at: datetime, error: str, state_data: dict[str, Any]
    ) -> bool:
        """Back to pending for a later attempt; ``attempts`` grows by one."""

    async def bury(self, lease: OutboxLease, *, now: datetime, error: str) -> bool:
        """Mark dead (the dead letter itself is written by ``DeadLetters.add``)."""

    async def requeue(self, outbox_id: int, *, now: datetime, state_data: dict[str, Any] | None = None) -> bool:
        """A dead row back to pending (replay) with a fresh retry budget; ``state_data`` is merged
        into the row's."""

    async def pending_count(self) -> int: ...

    async def next_due_at(self) -> datetime | None: ...

    async def backlog(self) -> dict[str, TargetBacklog]:
        """Per target: undelivered rows (pending or leased) and the oldest one's ``created_at``;
        targets with none are absent."""


class TargetBacklog(msgspec.Struct, kw_only=True, frozen=True):
    count: int
    oldest_created_at: datetime | None


class TargetControls(Protocol):
    """The stop-line control of each target (``gateway.stopline.Control``)."""

    async def all(self) -> dict[str, Control]: ...

    async def put(self, control: Control) -> bool:
        """Store ``control`` if the stored row is still at ``control.version`` (0: no row yet);
        the stored version becomes ``control.version + 1``. False when another process won."""


class InterceptRepository(Protocol):
    async def add(self, record: InterceptRecord) -> None:
        """Insert; ``override`` is not stored here (``ReviewRepository``)."""

    async def get(self, intercept_id: str) -> InterceptRecord | None:
        """One intercept with its ``override``, if any."""

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
    ) -> Page: ...


class ReviewRepository(Protocol):
    """Manual review (``gateway.review``): the queue of held orders and the two-person overrides
    of intercepts."""

    async def queue(
        self, *, platform: str | None, shop: str | None, rule: str | None, cursor: str | None, limit: int
    ) -> Page:
        """``ReviewItem``s of the orders in state ``held``, oldest order first; ``rule`` keeps those
        whose newest hold intercept names that rule."""

    async def latest_hold(self, order_id: str) -> InterceptRecord | None:
        """The newest ``hold`` intercept of an order."""

    async def get_override(self, intercept_id: str) -> InterceptOverride | None: ...

    async def request_override(self, record: InterceptOverride) -> InterceptOverride:
        """Insert a request (state ``requested``); ``Conflict`` when the intercept has one already.
        Returns it with ``seq``."""

    async def confirm_override(self, intercept_id: str, *, by: str, at: datetime, reason: str, order_id: str) -> bool:
        """Compare-and-set ``requested`` → ``confirmed``; False, with nothing written, when it is
        not ``requested`` any more."""

    async def overrides(self, *, state: str | None, cursor: str | None, limit: int) -> Page:
        """Override records, newest request first."""


class DeadLetterRepository(Protocol):
    async def add(self, letter: DeadLetter) -> None: ...

    async def get(self, letter_id: str) -> DeadLetter | None: ...

    async def list(self, *, cursor: str | None, limit: int, include_replayed: bool) -> Page: ...

    async def mark_replayed(self, letter_id: str, *, now: datetime) -> None: ...


class AuditLog(Protocol):
    async def append(
        self, *, actor: str, action: str, subject_type: str, subject_id: str, data: dict[str, Any]
    ) -> AuditEntry:
        """Append one entry to the chain inside the current transaction. Concurrent writers are
        serialised on the chain head so there is one sequence, no forks and no gaps."""

    async def list(self, *, after_seq: int, limit: int) -> Sequence[AuditEntry]: ...

    async def verify(self) -> ChainCheck: ...


class ApiKeyRepository(Protocol):
    async def add(self, record: ApiKeyRecord) -> None: ...

    async def find_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...


DictionaryState = Literal["draft", "approved", "published", "superseded", "rejected"]


class DictionaryVersion(msgspec.Struct, kw_only=True):
    """One version of a dictionary as stored: its TOML text and where it is on the way to being
    used (``gateway.governance`` draws the states)."""

    name: str  # ``[dictionary] name`` or ``[ruleset] name``: what a version is a version of
    kind: str  # order | refund | document | ruleset
    platform: str | None
    version: str  # as declared in the text
    digest: str  # sha256 of the text
    text: str  # empty in listings
    state: DictionaryState
    proposed_by: str
    proposed_at: datetime
    id: int | None = None  # database-assigned; what operators name a version by
    approved_by: str | None = None
    approved_at: datetime | None = None
    published_by: str | None = None
    published_at: datetime | None = None
    superseded_at: datetime | None = None
    rejected_by: str | None = None
    rejected_at: datetime | None = None
    base_id: int | None = None  # the version published when the dry run ran
    dry_run: dict[str, Any] | None = None  # the dry run's summary; None in listings
    has_dry_run: bool = False
    note: str | None = None

    @property
    def mapping_version(self) -> str:
        """What orders record: ``<declared version>+<first 12 hex of the digest>``."""
        return f"{self.version}+{self.digest[:12]}"


class RecordedPayload(msgspec.Struct, kw_only=True, frozen=True):
    """A raw payload the gateway received, with what it became: the corpus of a dry run."""

    source: str  # order | intercept | refund
    ref: str  # the gateway order id, intercept id or refund id
    platform_order_id: str | None
    shop_id: str | None
    body: bytes


class RecordedOrder(msgspec.Struct, kw_only=True, frozen=True):
    """An order as the rules judged it when it arrived: the corpus of a rule set's dry run."""

    source: str  # order | intercept | sample
    ref: str  # the gateway order id, intercept id, or sample file
    platform: str
    shop_id: str | None
    platform_order_id: str | None
    canonical: dict[str, Any]  # the stored canonical order; an intercept's masked snapshot
    rules_version: str | None  # the rule set that judged it
    recorded: str  # the order's state, or ``intercepted``


class DictionaryVersions(Protocol):
    """Dictionary versions and the publication generation every process watches."""

    async def lock(self) -> int:
        """Serialise governance writes (the publication row, ``FOR UPDATE``); the generation."""

    async def generation(self) -> int:
        """The publication generation: it grows by one with every publish and rollback."""

    async def set_generation(self, generation: int, *, by: str, now: datetime) -> None: ...

    async def add(self, version: DictionaryVersion) -> DictionaryVersion:
        """Insert; returns it with ``id``."""

    async def get(self, version_id: int) -> DictionaryVersion | None: ...

    async def list(self, *, name: str | None = None, state: str | None = None) -> list[DictionaryVersion]:
        """Newest first, without text and dry-run summary."""

    async def published(self) -> list[DictionaryVersion]:
        """The published version of every dictionary, with text."""

    async def update(self, version_id: int, *, expect: DictionaryState, **values: Any) -> bool:
        """Change columns of a version still in state ``expect``; False (nothing written) otherwise."""

    async def recorded_payloads(self, platform: str, *, refunds: bool, limit: int) -> list[RecordedPayload]:
        """The newest ``limit`` raw payloads of orders and intercepts (or refunds) of a platform."""

    async def recorded_orders(self, targets: Sequence[str], *, limit: int) -> list[OrderRecord]:
        """The newest ``limit`` stored orders routed to any of ``targets``."""

    async def recorded_verdicts(self, *, limit: int) -> list[RecordedOrder]:
        """The newest ``limit`` stored orders (accepted, held, …) and rejected orders' intercepts
        of every platform, newest first."""


class UnknownFields(Protocol):
    """The per-platform registry of source fields no dictionary maps (``gateway.unknown_fields``)."""

    async def add(self, batch: list[FieldStats]) -> None:
        """Merge aggregates: counts and sums add up, the first sighting stays, the last moves on."""

    async def list(self, platform: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Records ``{id, state, target, decided_by, decided_at, draft_id, stats}``, newest sightings first."""

    async def get(self, field_id: int) -> dict[str, Any] | None: ...

    async def decide(
        self, field_id: int, *, state: str, target: str | None, by: str, at: datetime, draft_id: int | None
    ) -> bool:
        """Confirm or dismiss a field still ``new``; False when it was decided already."""


class StockReport(msgspec.Struct, kw_only=True, frozen=True):
    """One line of ``POST /v1/stock``: what a WMS or ERP counted of one SKU in one warehouse."""

    sku: str  # the merchant SKU (canonical ``lines[].merchant_sku``)
    warehouse: str
    on_hand: int
    reserved: int = 0  # what the WMS has allocated itself (orders it knows of, not yet shipped)
    as_of: datetime  # when it was counted: an older count never replaces a newer one


class StockLevel(msgspec.Struct, kw_only=True, frozen=True):
    """The stock of one SKU in one warehouse as the rules see it.

    ``pending`` is what the gateway has reserved for orders it accepted *after* the count
    (``as_of``): a count already reflects the orders before it, so each new count starts the
    gateway's own share afresh and nothing reserved is ever leaked.
    """

    sku: str
    warehouse: str
    on_hand: int
    reserved: int
    pending: int
    as_of: datetime

    @property
    def available(self) -> int:
        """On hand less what the WMS and the gateway have promised (safety stock not taken off)."""
        return self.on_hand - self.reserved - self.pending


class StockPutResult(msgspec.Struct, kw_only=True, frozen=True):
    applied: int  # counts stored
    stale: int  # counts older than the stored one for their SKU and warehouse: ignored


class Reservation(msgspec.Struct, kw_only=True, frozen=True):
    """What an accepted order holds of one SKU in one warehouse. ``floor``: when not None, the
    reservation may only be made while ``available - qty >= floor`` (the safety stock) for a SKU
    and warehouse that has a count; else the whole reservation is refused with ``Conflict``."""

    sku: str
    warehouse: str
    qty: int
    floor: int | None = None


class StockRepository(Protocol):
    """Counts reported by the WMS or ERP (``POST /v1/stock``) and the gateway's reservations."""

    async def put(self, reports: Sequence[StockReport], *, now: datetime) -> StockPutResult:
        """Store each count unless the stored one for its SKU and warehouse is newer (``as_of``)."""

    async def levels(self, skus: Sequence[str]) -> list[StockLevel]:
        """Every warehouse's level of each of ``skus`` that has a count."""

    async def reserve(self, order_id: str, items: Sequence[Reservation], *, at: datetime) -> None:
        """Replace the order's reservations with ``items`` (none: release them all). With the rows
        locked (PostgreSQL ``FOR UPDATE``; SQLite's single writer), checks each item's ``floor``
        against the level without the order's own earlier reservations; ``Conflict`` when one
        fails, and nothing is changed."""

    async def release(self, order_id: str) -> None:
        """Drop the order's reservations (cancelled, rejected by a person)."""


class FingerprintMatch(msgspec.Struct, kw_only=True, frozen=True):
    """Another order with the same fingerprint (``gateway.rules.facts``)."""

    order_id: str
    platform: str
    shop_id: str
    platform_order_id: str
    at: datetime


class FingerprintRepository(Protocol):
    """Keyed hashes of who and what an order is for (receiver phone + address + SKU set), for the
    cross-channel duplicate rule; the hashes are HMACs, never the phone or address itself."""

    async def add(
        self, fingerprint: str, *, order_id: str, platform: str, shop_id: str, platform_order_id: str, at: datetime
    ) -> None:
        """Record it (a repeat of the same fingerprint and order is a no-op)."""

    async def matches(
        self, fingerprint: str, *, since: datetime, exclude_order_id: str | None
    ) -> list[FingerprintMatch]:
        """Orders recorded with ``fingerprint`` at or after ``since``, oldest first."""


class ErpHandleRepository(Protocol):
    """Values an ERP adapter must keep for a document across retries and restarts, keyed by
    (target, document code, name): a U8+ OpenAPI ``tradeid`` (erp-protocols.md §2, O1: persist
    it and reuse it on every retry of the same document)."""

    async def get(self, target: str, code: str, name: str) -> str | None: ...

    async def put_if_absent(self, target: str, code: str, name: str, value: str, *, now: datetime) -> str:
        """Store ``value`` unless one is stored already; the stored value either way. Of two
        writers racing for the same key, both get the value of the one that committed first."""


class ErpShipmentRecord(msgspec.Struct, kw_only=True, frozen=True):
    """A shipment of one order read back from an ERP and recorded once (``gateway.readback``): the
    source of one status event, whose id ``event_id`` is deterministic
    (``erp:{target}:{shipment_no}:{document_code}``: one U8 发货单 or K3 bill may ship several of
    our orders, each its own event) so a later events subsystem can deliver it at least once and
    its consumers drop repeats."""

    target: str
    shipment_no: str  # the ERP's own number; with the target and the document code, the key of "once"
    order_id: str
    document_code: str
    shipped_at: datetime | None = None
    carrier: str | None = None
    waybill_no: str | None = None
    lines: list[dict[str, Any]] = msgspec.field(default_factory=list)  # [{item_code, qty, row}]
    completes_order: bool = False  # with the earlier shipments, every ordered unit has shipped
    event_id: str
    recorded_at: datetime


class ErpShipmentRepository(Protocol):
    """Shipments read back from the ERPs, one per (target, shipment number, document code)."""

    async def add_if_new(self, record: ErpShipmentRecord) -> bool:
        """Insert ``record`` unless its (target, shipment_no, document_code) is recorded already;
        True when this call inserted it. Of two writers racing for the same key exactly one gets
        True (PostgreSQL's insert waits for the first one's transaction, then does nothing)."""

    async def for_order(self, order_id: str) -> list[ErpShipmentRecord]:
        """The order's recorded shipments, oldest first."""

    async def lock_order(self, order_id: str) -> None:
        """Hold the order until the transaction ends, so that two pollers recording shipments of
        one order count them one after the other (``completes_order`` sees the earlier ones)."""

    async def awaiting(self, target: str, *, changed_since: datetime, after_seq: int, limit: int) -> list[OrderRecord]:
        """Delivered orders of ``target`` changed (delivered, edited) at or after ``changed_since``
        with no recorded shipment that completes them, by ``seq`` after ``after_seq``."""


class UnitOfWork(Protocol):
    """One transaction. Leaving the block without ``commit()`` rolls back."""

    orders: OrderRepository
    payloads: PayloadStore
    outbox: Outbox
    intercepts: InterceptRepository
    reviews: ReviewRepository
    dead_letters: DeadLetterRepository
    audit: AuditLog
    keys: ApiKeyRepository
    controls: TargetControls
    refunds: RefundRepository
    dictionaries: DictionaryVersions
    unknown_fields: UnknownFields
    stock: StockRepository
    fingerprints: FingerprintRepository
    erp_handles: ErpHandleRepository
    erp_shipments: ErpShipmentRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, write: bool = True) -> UnitOfWork:
        """A new unit of work. ``write=False`` promises no writes (SQLite may then skip the writer lock)."""


# --------------------------------------------------------------------------- ERP port


class ErpDocument(msgspec.Struct, kw_only=True):
    """A document ready for one ERP transport, already translated by an outbound dictionary."""

    target: str
    kind: str  # "saleorder"
    code: str  # deterministic document code; the same on every retry
    order_id: str  # gateway id
    platform_order_id: str
    header: dict[str, Any]
    entries: list[dict[str, Any]]


class ErpReceipt(msgspec.Struct, kw_only=True):
    document_no: str
    erp_key: str | None = None
    message: str | None = None


class ErpShipmentLine(msgspec.Struct, kw_only=True, frozen=True):
    item_code: str  # the ERP's inventory / material code
    qty: int
    row: int | None = None  # the sale order's row number it ships, when the ERP links it


class ErpShipment(msgspec.Struct, kw_only=True, frozen=True):
    """A shipment the ERP recorded against one of our sale orders (a U8 发货单, a K3 发货通知 or
    销售出库单), read back for sites whose WMS does not call the gateway."""

    document_code: str  # our sale-order code it ships (``ErpDocument.code``)
    shipment_no: str  # the ERP's own number for the shipment: with the target, the key of "once"
    shipped_at: datetime | None = None
    carrier: str | None = None
    waybill_no: str | None = None
    lines: list[ErpShipmentLine] = msgspec.field(default_factory=list)


class ErpAdapter(Protocol):
    """Speaks one ERP transport. Raises ``RetryableError`` (nothing written), ``UnknownOutcomeError``
    (may have been written) or ``PermanentError`` (business rejection, with the ERP's words)."""

    async def submit(self, doc: ErpDocument) -> ErpReceipt: ...

    async def lookup(self, doc: ErpDocument) -> ErpReceipt | None:
        """Is a document with ``doc.code`` already in the ERP? None when it is not."""

    async def update(self, doc: ErpDocument) -> ErpReceipt:
        """Edit the document ``doc.code`` already in the ERP to carry ``doc`` (U8 ``proc="edit"``,
        K3 ``SO/Update``). ``PermanentError`` when the ERP refuses (shipped, audited, closed)."""

    async def cancel(self, doc: ErpDocument) -> ErpReceipt:
        """Close or delete the document ``doc.code`` as the ERP allows; a document that is not
        there any more is a success."""

    async def shipments(self, codes: Sequence[str], *, since: datetime) -> list[ErpShipment]:
        """Shipments recorded in the ERP since ``since`` for the sale orders ``codes``."""

    async def aclose(self) -> None: ...


# --------------------------------------------------------------------------- queue port


class JobQueue(Protocol):
    """Carries delivery jobs from the outbox relay to whoever runs ``deliver`` (arq on Redis).
    The queue is a hint, not the truth: a job lost with a Redis restart is offered again from the
    outbox."""

    async def enqueue_delivery(self, outbox_id: int, *, job_id: str) -> bool:
        """Queue one delivery job; False when a job with ``job_id`` is already queued or was
        enqueued recently (nothing new then).

        Raises:
            RetryableError: the queue is unreachable; the relay offers the row again later.
        """
