"""Refund intake: a platform's refund or after-sale response in, per-line refund state on the
stored order out (CONTRACT §2, ``POST /v1/refunds/{platform}``).

    bytes → JSON → refund dictionary (mappings/refunds/) → CanonicalRefund(s) → one transaction:
        order stored:     refund rows (applied) + the order's canonical + timeline + audit entry
        order not stored: refund rows (pending) + audit entry; applied when the order is taken in

The ``refunds`` table keeps every refund received (its newest version) and is the record of an
order's refunds: whoever writes an order's canonical again — intake of a newer order version, a
replay under the current dictionary — applies the stored refunds to it again, so a refund is never
lost to a later copy of the order. Refunds are applied in the order they first arrived; where two
name one line, the later one's state shows (the line keeps both ids).

A version older than the stored one (``older_version``) is stale: it neither overwrites the row
nor touches the order. A request that changes nothing (the same refunds again) answers 200.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from gateway.clock import Clock
from gateway.errors import ConfigError, Conflict, NotFound, RequestError, UnknownPlatform
from gateway.intake import decode_payload
from gateway.logging import get_logger
from gateway.mapping.dictionary import CompiledDictionary, load_dictionary
from gateway.ports import OrderRecord, RefundRecord, UnitOfWork, UnitOfWorkFactory
from gateway.refunds import RefundUnmatched, apply_refunds, decode_refunds, older_version, refund_line
from gateway.runtime import Runtime
from schemas.order import PLATFORMS, CanonicalOrder
from schemas.refund import CanonicalRefund

log = get_logger("gateway.refunds")


class RefundsInOrder(RequestError):
    """The platform sends its refunds inside the order detail, not through a refund API."""

    code = "REFUNDS_IN_ORDER"
    status_code = 400
    message_zh = "该平台的退款信息随订单详情提供，请提交订单"
    message_en = "This platform's refunds come inside the order detail; submit the order instead"


# Platforms without a refund dictionary whose order payload carries each line's refund state.
_IN_ORDER = {"douyin": ("order.orderDetail", "sku_order_list[].after_sale_info")}


class _Raced(Conflict):
    """Another request stored a version of the same refund meanwhile: run the request again."""


@dataclass(frozen=True)
class RefundResult:
    status_code: int  # 202 something changed, 200 a repeat (or only stale versions)
    body: dict[str, Any]
    changed: bool
    pending: bool


# --------------------------------------------------------------------------- dictionaries

_loaded: dict[Path, dict[str, CompiledDictionary]] = {}


def refund_dictionaries(runtime: Runtime) -> dict[str, CompiledDictionary]:
    """The refund dictionaries by platform: the runtime's (the published ones) where it carries
    them, else ``<mappings>/refunds/*.toml`` compiled once per process on first use."""
    published = getattr(runtime, "refund_dictionaries", None)
    if published is not None:
        return published
    base = runtime.config.mappings_path() / "refunds"
    found = _loaded.get(base)
    if found is None:
        found = {}
        for path in sorted(base.glob("*.toml")):
            d = load_dictionary(path)
            platform = d.spec.dictionary.platform or d.name
            if d.spec.dictionary.kind != "refund" or platform not in PLATFORMS:
                raise ConfigError(
                    f'{path}: a refund dictionary needs kind = "refund" and a known platform',
                    f'{path}：退款字典须为 kind = "refund"，且平台已知',
                )
            found[platform] = d
        _loaded[base] = found
    return found


def refund_dictionary(runtime: Runtime, platform: str) -> CompiledDictionary:
    if platform not in PLATFORMS:
        raise UnknownPlatform(f"unknown platform {platform!r}; one of {', '.join(PLATFORMS)}", f"未知平台 {platform!r}")
    dictionary = refund_dictionaries(runtime).get(platform)
    if dictionary is not None:
        return dictionary
    if platform in _IN_ORDER:
        api, path = _IN_ORDER[platform]
        raise RefundsInOrder(
            f"{platform} sends refunds inside the order ({api}: {path}); POST the order to /v1/orders/{platform}",
            f"{platform} 的退款信息在订单详情中（{api}：{path}），请将订单提交到 /v1/orders/{platform}",
            hint=f"POST the {api} response to /v1/orders/{platform}: each line's refund state is taken from it",
        )
    raise UnknownPlatform(
        f"no refund dictionary is published for {platform}",
        f"平台 {platform} 尚无已发布的退款字典",
        hint=f"Add mappings/refunds/{platform}.toml",
    )


# --------------------------------------------------------------------------- the request


async def accept_refunds(
    platform: str,
    body: bytes,
    *,
    shop_header: str | None,
    uow_factory: UnitOfWorkFactory,
    runtime: Runtime,
    clock: Clock,
    max_bytes: int,
    actor: str = "platform",
) -> RefundResult:
    """Take one refund or after-sale response; return the answer to send. Raises
    ``RequestError``s for 4xx: ``REFUND_UNMATCHED`` (409) when a refund of a stored order names
    no line, SKU or unique amount of it (nothing is stored then)."""
    dictionary = refund_dictionary(runtime, platform)
    payload = decode_payload(body, max_bytes=max_bytes)
    refunds, unknown = decode_refunds(dictionary, payload)
    latest: dict[str, CanonicalRefund] = {}
    for refund in refunds:  # one response may list a refund twice: keep its newest version
        seen = latest.get(refund.refund_id)
        if seen is None or not older_version(refund.platform_version, seen.platform_version):
            latest[refund.refund_id] = refund
    sha = hashlib.sha256(body).hexdigest()
    request = _Request(platform, list(latest.values()), unknown, sha, body, shop_header, actor)
    attempts = (1, 2, 3)
    for attempt in attempts:
        try:
            async with uow_factory() as uow:
                result = await _store(uow, request, clock.now())
                if result.changed:
                    await uow.commit()
        except RefundUnmatched:
            raise
        except Conflict:  # a concurrent request stored one of these refunds first: look again
            if attempt == attempts[-1]:
                raise
            continue
        break
    if result.pending and result.changed:
        await _settle_if_arrived(uow_factory, request, clock, result)
    return result


@dataclass(frozen=True)
class _Request:
    platform: str
    refunds: list[CanonicalRefund]
    unknown: list[str]
    sha: str
    body: bytes
    shop_header: str | None
    actor: str


async def _store(uow: UnitOfWork, req: _Request, now: datetime) -> RefundResult:
    by_order: dict[str, list[CanonicalRefund]] = {}
    for refund in req.refunds:
        by_order.setdefault(refund.order_id, []).append(refund)
    items: dict[str, dict[str, Any]] = {}
    changed = pending = False
    payload_stored = False
    gateway_ids: set[str | None] = set()
    for platform_order_id, group in by_order.items():
        order = await _find_order(uow, req.platform, platform_order_id, req.shop_header)
        gateway_ids.add(order.id if order else None)
        written: set[str] = set()  # refund ids whose row this request added or replaced
        current: list[CanonicalRefund] = []  # the refunds of this request that are not stale
        for refund in group:
            stored = await uow.refunds.get(req.platform, refund.refund_id)
            if stored is not None and stored.canonical.get("confirmed_line_id") and not refund.confirmed_line_id:
                # a person confirmed its line: a newer version of the refund keeps that
                refund = msgspec.structs.replace(
                    refund,
                    confirmed_line_id=stored.canonical["confirmed_line_id"],
                    confirmed_by=stored.canonical.get("confirmed_by"),
                )
            canonical = msgspec.to_builtins(refund)
            if stored is not None and older_version(refund.platform_version, stored.platform_version):
                items[refund.refund_id] = _item(
                    msgspec.convert(stored.canonical, CanonicalRefund),
                    stored.order_id,
                    None,
                    "stale",
                    received_version=refund.platform_version,
                )
                continue
            current.append(refund)
            if stored is not None and stored.canonical == canonical:
                continue  # this version is stored already
            if not payload_stored:
                await uow.payloads.put(req.sha, req.body)
                payload_stored = True
            record = RefundRecord(
                platform=req.platform,
                refund_id=refund.refund_id,
                platform_order_id=platform_order_id,
                platform_version=refund.platform_version,
                state="pending" if order is None else "applied",
                canonical=canonical,
                payload_sha256=req.sha,
                order_id=None if order is None else order.id,
                updated_at=now,
                applied_at=None if order is None else now,
            )
            if stored is None:
                await uow.refunds.add(record)
            elif not await uow.refunds.replace(record, expected_version=stored.platform_version):
                raise _Raced(f"refund {refund.refund_id} changed meanwhile", f"退款 {refund.refund_id} 已被并发修改")
            written.add(refund.refund_id)
        if order is None:
            pending = pending or bool(current)
            for refund in current:
                outcome = "pending" if refund.refund_id in written else "unchanged"
                items[refund.refund_id] = _item(refund, None, None, outcome)
            if written:
                changed = True
                await uow.audit.append(
                    actor=req.actor,
                    action="refund.pending",
                    subject_type="refund",
                    subject_id=f"{req.platform}:{platform_order_id}",
                    data=_audit_data(
                        req.platform,
                        platform_order_id,
                        [r for r in current if r.refund_id in written],
                        None,
                        req.sha,
                        req.unknown,
                    ),
                )
            continue
        applied = await _apply_stored(
            uow,
            order,
            now,
            actor=req.actor,
            cause="refund",
            fresh=written,
            required={r.refund_id for r in current},
            sha=req.sha,
            unknown=req.unknown,
        )
        changed = changed or bool(written) or bool(applied.marked) or applied.changed
        for refund in current:
            line = refund_line(applied.order, refund.refund_id)
            outcome = "applied" if refund.refund_id in written | applied.marked else "unchanged"
            items[refund.refund_id] = _item(refund, order.id, line, outcome)
    ids = list(by_order)
    single = ids[0] if len(ids) == 1 else None
    body: dict[str, Any] = {
        "order": next(iter(gateway_ids)) if len(gateway_ids) == 1 else None,
        "platform": req.platform,
        "order_id": single,
        "refunds": [items[r.refund_id] for r in req.refunds],
        "changed": changed,
        "pending": pending,
    }
    if req.unknown:
        body["unknown_fields"] = req.unknown
    return RefundResult(202 if changed else 200, body, changed, pending)


async def _find_order(uow: UnitOfWork, platform: str, platform_order_id: str, shop: str | None) -> OrderRecord | None:
    """The stored order a refund belongs to. Platform order ids are unique per platform; should
    two shops hold the same one, ``X-Shop-Id`` says which."""
    page = await uow.orders.list(platform=platform, platform_order_id=platform_order_id, cursor=None, limit=10)
    found = [o for o in page.items if shop is None or o.shop_id == shop]
    if len(found) > 1:
        raise RefundUnmatched(
            f"{len(found)} shops hold {platform} order {platform_order_id}; name the shop with X-Shop-Id",
            f"{len(found)} 个店铺都有 {platform} 订单 {platform_order_id}，请用 X-Shop-Id 指明店铺",
        )
    return found[0] if found else None


def _item(
    refund: CanonicalRefund,
    gateway_id: str | None,
    line: Any,
    outcome: str,
    *,
    received_version: str | None = None,
) -> dict[str, Any]:
    """One refund in the answer: as stored, the line it was applied to, and what this request did."""
    item = {
        "refund_id": refund.refund_id,
        "order": gateway_id,
        "order_id": refund.order_id,
        "state": refund.state,
        "qty": refund.qty,
        "amount_fen": refund.amount_fen,
        "line_id": line.line_id if line is not None else None,
        "needs_review": bool(line is not None and line.refund.needs_review),
        "platform_version": refund.platform_version,
        "outcome": outcome,  # applied | pending | unchanged | stale
    }
    if received_version is not None:
        item["received_version"] = received_version
    return item


def _summary(refund: CanonicalRefund, order: CanonicalOrder | None) -> dict[str, Any]:
    """What the timeline and the audit log say about a refund: ids, states and amounts only (the
    buyer's reason is free text and stays out of them)."""
    line = refund_line(order, refund.refund_id) if order is not None else None
    return {
        "refund_id": refund.refund_id,
        "state": refund.state,
        "qty": refund.qty,
        "amount_fen": refund.amount_fen,
        "line_id": line.line_id if line is not None else None,
        "needs_review": bool(line is not None and line.refund.needs_review),
        "platform_version": refund.platform_version,
    }


def _audit_data(
    platform: str,
    platform_order_id: str,
    refunds: list[CanonicalRefund],
    order: CanonicalOrder | None,
    sha: str | None,
    unknown: list[str],
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "platform": platform,
        "order_id": platform_order_id,
        "refunds": [_summary(r, order) for r in refunds],
    }
    if order is not None:
        data["refunded_fen"] = order.totals.refunded_fen
    if sha is not None:
        data["payload_sha256"] = sha
    if unknown:
        data["unknown_fields"] = unknown
    return data


# --------------------------------------------------------------------------- stored refunds → order


@dataclass(frozen=True)
class _Applied:
    order: CanonicalOrder
    changed: bool  # the order's canonical changed
    marked: set[str]  # pending refunds now applied
    unmatched: list[str]


async def _apply_stored(
    uow: UnitOfWork,
    order: OrderRecord,
    now: datetime,
    *,
    actor: str,
    cause: str,
    fresh: set[str] | None = None,
    required: set[str] | None = None,
    sha: str | None = None,
    unknown: list[str] | None = None,
) -> _Applied:
    """Apply every stored refund of ``order`` to its stored canonical; store the result with a
    timeline and an audit entry when anything changed. A refund in ``required`` that no line
    matches raises ``REFUND_UNMATCHED``; any other stays pending (noted in the timeline)."""
    rows = await uow.refunds.for_order(order.platform, order.platform_order_id)
    start = msgspec.convert(order.canonical, CanonicalOrder)
    refunds = [msgspec.convert(r.canonical, CanonicalRefund) for r in rows]
    updated, unmatched = apply_refunds(start, refunds)
    missed = [r.refund_id for r in unmatched]
    for refund in unmatched:
        if required and refund.refund_id in required:
            raise RefundUnmatched(
                f"refund {refund.refund_id} of order {refund.order_id} names no line, SKU or unique amount of it",
                f"退款 {refund.refund_id} 无法对应订单 {refund.order_id} 的任何行",
                hint="Check the refund in the platform's after-sale console and record it by hand",
                refund_id=refund.refund_id,
            )
    marked = {r.refund_id for r in rows if r.state == "pending" and r.refund_id not in missed}
    await uow.refunds.mark_applied(order.platform, sorted(marked), order_id=order.id, now=now)
    changed = updated != start
    if cause == "order":  # the order arrived or changed: every refund it now carries
        touched = [r for r in refunds if r.refund_id not in missed]
    else:
        touched = [r for r in refunds if r.refund_id in (fresh or set()) | marked]
    if changed or marked or (fresh and touched) or (missed and cause == "order"):
        canonical = msgspec.to_builtins(updated)
        if changed:
            await uow.orders.replace_canonical(
                order.id,
                canonical=canonical,
                platform_version=order.platform_version,  # the order's own version and payload
                payload_sha256=order.payload_sha256,
            )
        data = _audit_data(order.platform, order.platform_order_id, touched, updated, sha, unknown or [])
        data["cause"] = cause  # refund: a refund arrived; order: the order arrived or changed
        if missed:
            data["unmatched"] = missed
        await uow.orders.add_timeline(order.id, "order.refund", data)
        await uow.audit.append(actor=actor, action="order.refund", subject_type="order", subject_id=order.id, data=data)
    return _Applied(updated, changed, marked, missed)


async def settle_refunds(
    uow_factory: UnitOfWorkFactory,
    *,
    platform: str,
    platform_order_id: str,
    order_id: str,
    clock: Clock,
    actor: str = "gateway",
) -> bool:
    """Apply the stored refunds of an order intake has just stored or updated (pending ones that
    waited for it, applied ones that a new order version replaced). Runs right after intake's
    transaction, in its own; a first read keeps orders without refunds to one indexed look-up.
    Returns whether the order changed."""
    async with uow_factory(write=False) as uow:
        if not await uow.refunds.for_order(platform, platform_order_id):
            return False
    async with uow_factory() as uow:
        order = await uow.orders.get(order_id)
        if order is None:
            return False
        applied = await _apply_stored(uow, order, clock.now(), actor=actor, cause="order")
        await uow.commit()
    return applied.changed


async def _settle_if_arrived(uow_factory: UnitOfWorkFactory, req: _Request, clock: Clock, result: RefundResult) -> None:
    """After storing pending refunds: if their order was stored meanwhile (by a transaction that
    ran alongside this one and could not see the refunds yet), apply them now."""
    waiting = {item["order_id"] for item in result.body["refunds"] if item["outcome"] == "pending"}
    for platform_order_id in sorted(waiting):
        async with uow_factory(write=False) as uow:
            order = await _find_order(uow, req.platform, platform_order_id, req.shop_header)
        if order is not None:
            await settle_refunds(
                uow_factory,
                platform=req.platform,
                platform_order_id=platform_order_id,
                order_id=order.id,
                clock=clock,
                actor=req.actor,
            )


async def with_stored_refunds(uow: UnitOfWork, order: OrderRecord, canonical: dict[str, Any]) -> dict[str, Any]:
    """``canonical`` — a new copy of ``order`` about to be stored — with the order's stored
    refunds applied again (for writers of an order's canonical other than intake: a replay)."""
    rows = await uow.refunds.for_order(order.platform, order.platform_order_id)
    if not rows:
        return canonical
    start = msgspec.convert(canonical, CanonicalOrder)
    updated, _ = apply_refunds(start, [msgspec.convert(r.canonical, CanonicalRefund) for r in rows])
    return canonical if updated == start else msgspec.to_builtins(updated)


async def settle_after_intake(
    uow_factory: UnitOfWorkFactory, *, platform: str, platform_order_id: str, order_id: str, clock: Clock
) -> None:
    """``settle_refunds`` for intake: the order is durable already, so a failure here is logged,
    not raised; the refunds stay stored and are applied with the order's next version or the
    next refund posted for it."""
    try:
        await settle_refunds(
            uow_factory, platform=platform, platform_order_id=platform_order_id, order_id=order_id, clock=clock
        )
    except Exception:
        log.exception("applying stored refunds failed", platform=platform, order=order_id)


class RefundNotFound(NotFound):
    code = "REFUND_NOT_FOUND"
    message_zh = "该订单没有此退款"
    message_en = "The order has no such refund"


async def confirm_refund_line(
    uow_factory: UnitOfWorkFactory,
    order_id: str,
    refund_id: str,
    *,
    line_id: str | None,
    actor: str,
    clock: Clock,
) -> dict[str, Any]:
    """A person confirms which line a refund belongs to (``needs_review`` → confirmed): the line it
    was attached to by amount, or another one. From then on the refund counts in ``refunded_fen``
    when it is REFUNDED; the confirmation is kept with the stored refund and in the audit log."""
    async with uow_factory() as uow:
        order = await uow.orders.get(order_id)
        if order is None:
            raise NotFound(f"no order {order_id}", f"订单 {order_id} 不存在")
        stored = await uow.refunds.get(order.platform, refund_id)
        if stored is None or stored.platform_order_id != order.platform_order_id:
            raise RefundNotFound(f"order {order_id} has no refund {refund_id}", f"订单 {order_id} 没有退款 {refund_id}")
        current = msgspec.convert(order.canonical, CanonicalOrder)
        attached = refund_line(current, refund_id)
        target = line_id or (attached.line_id if attached is not None else None)
        if target is None or not any(ln.line_id == target for ln in current.lines):
            raise RequestError(
                f"order {order_id} has no line {target!r}; name one of "
                + ", ".join(ln.line_id for ln in current.lines),
                f"订单 {order_id} 没有行 {target!r}",
                hint='Send {"line_id": "<one of the order\'s line ids>"}',
            )
        refund = msgspec.convert(stored.canonical, CanonicalRefund)
        confirmed = msgspec.structs.replace(refund, confirmed_line_id=target, confirmed_by=actor)
        record = msgspec.structs.replace(stored, canonical=msgspec.to_builtins(confirmed), updated_at=clock.now())
        if not await uow.refunds.replace(record, expected_version=stored.platform_version):
            raise _Raced(f"refund {refund_id} changed meanwhile", f"退款 {refund_id} 已被并发修改")
        applied = await _apply_stored(uow, order, clock.now(), actor=actor, cause="confirmed", fresh={refund_id})
        line = refund_line(applied.order, refund_id)
        await uow.audit.append(
            actor=actor,
            action="refund.line_confirmed",
            subject_type="order",
            subject_id=order.id,
            data={
                "platform": order.platform,
                "refund_id": refund_id,
                "line_id": target,
                "was": attached.line_id if attached is not None else None,
                "refunded_fen": applied.order.totals.refunded_fen,
            },
        )
        await uow.commit()
    return {
        "order": order.id,
        "refund_id": refund_id,
        "line_id": target,
        "needs_review": bool(line and line.refund.needs_review),
        "refunded_fen": applied.order.totals.refunded_fen,
    }
