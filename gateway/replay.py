"""Replaying a dead letter: its outbox row goes back to the queue, and the same document code is
sent again — so a replay can never create a second ERP document (a delivery whose outcome was
unknown is looked up first, as on any retry).

The operator chooses which platform dictionary the order is delivered with:

* ``first`` — the order exactly as it was mapped when it arrived, by the dictionary version
  recorded on it (``mapping_version``). Nothing about the order changes.
* ``current`` — the stored raw payload mapped again by the dictionary published now, e.g. after
  IT corrected the field that made the ERP reject the document. The new order must pass the rules
  as at intake; if it would be intercepted or held the replay is refused and nothing changes.
  The order records the new versions, and its timeline and the audit log name both versions and
  the canonical fields that changed (paths only: values may be personal data).

The ERP document is always built at send time with the target's outbound dictionary and value
tables as configured then, so a fixed value table (a missing SKU code, say) takes effect either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from gateway.clock import Clock
from gateway.errors import Conflict, NotFound, PayloadPurged
from gateway.intake import decode_payload, rule_context, translate
from gateway.ports import DeadLetter, OrderRecord, UnitOfWork, UnitOfWorkFactory
from gateway.refund_intake import with_stored_refunds
from gateway.retention import stored_payload
from gateway.runtime import Runtime

DictionaryChoice = Literal["first", "current"]
DICTIONARY_CHOICES: tuple[DictionaryChoice, ...] = ("first", "current")


class ReplayRefused(Conflict):
    code = "REPLAY_REFUSED"
    message_zh = "无法重放该死信"
    message_en = "The dead letter cannot be replayed"


@dataclass(frozen=True)
class ReplayResult:
    letter: DeadLetter
    dictionary: DictionaryChoice
    mapping_version: str
    previous_mapping_version: str
    changed: list[str] = field(default_factory=list)  # canonical paths the new mapping changed


async def replay_dead_letter(
    letter_id: str,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    actor: str,
    runtime: Runtime,
    dictionary: DictionaryChoice = "first",
) -> ReplayResult:
    """Requeue the delivery behind a dead letter, with the chosen platform dictionary.

    Raises:
        NotFound: no such dead letter.
        ReplayRefused: replayed already, or (``current``) the order mapped again would be
            intercepted.
        PayloadPurged: (``current``) its raw payload was deleted under the retention policy.
    """
    now = clock.now()
    async with uow_factory() as uow:
        letter = await uow.dead_letters.get(letter_id)
        if letter is None:
            raise NotFound(f"no dead letter {letter_id}", f"死信 {letter_id} 不存在")
        if letter.replayed_at is not None:
            raise ReplayRefused(
                f"dead letter {letter_id} was replayed at {letter.replayed_at.isoformat()}",
                f"死信 {letter_id} 已于 {letter.replayed_at.isoformat()} 重放",
            )
        order = await uow.orders.get(letter.order_id)
        if order is None:  # the foreign key makes this impossible; a clear error all the same
            raise NotFound(f"the order of dead letter {letter_id} is gone", f"死信 {letter_id} 对应的订单不存在")
        previous = order.mapping_version
        changed: list[str] = []
        if dictionary == "current":
            changed = await _remap(uow, order, runtime, actor=actor)
        version = runtime.platform_dictionaries[order.platform].version if dictionary == "current" else previous
        replay = {"dictionary": dictionary, "mapping_version": version, "by": actor}
        if not await uow.outbox.requeue(letter.outbox_id, now=now, state_data={"replay": replay}):
            raise ReplayRefused(
                f"the delivery of dead letter {letter_id} is not dead any more",
                f"死信 {letter_id} 的投递已不处于失败状态",
            )
        await uow.dead_letters.mark_replayed(letter_id, now=now)
        await uow.orders.set_state(letter.order_id, "accepted")
        await uow.orders.set_erp(letter.order_id, target=letter.target, document_no=None, status="pending")
        detail = {
            "dead_letter_id": letter_id,
            "target": letter.target,
            "dictionary": dictionary,
            "mapping_version": version,
            "previous_mapping_version": previous,
            "by": actor,
        }
        await uow.orders.add_timeline(letter.order_id, "erp.replayed", detail)
        await uow.audit.append(
            actor=actor,
            action="dead_letter.replayed",
            subject_type="order",
            subject_id=letter.order_id,
            data=detail | ({"changed": changed} if dictionary == "current" else {}),
        )
        await uow.commit()
    return ReplayResult(letter, dictionary, version, previous, changed)


async def _remap(uow: UnitOfWork, order: OrderRecord, runtime: Runtime, *, actor: str) -> list[str]:
    """Map the order's raw payload again with the current dictionary and store the result;
    return the canonical paths that changed."""
    try:
        raw = await stored_payload(uow, order.payload_sha256, of_en=f"order {order.id}", of_zh=f"订单 {order.id} ")
    except PayloadPurged as exc:
        exc.hint = "Replay with dictionary=first: the order as first mapped is still stored"
        raise
    payload = decode_payload(raw, max_bytes=len(raw) + 1)
    fresh, _unknown = translate(order.platform, payload, runtime, shop_header=order.shop_id)
    old_source = order.canonical.get("source") or {}
    fresh = msgspec.structs.replace(
        fresh,
        shop_id=order.shop_id,
        source=msgspec.structs.replace(
            fresh.source,
            raw_sha256=old_source.get("raw_sha256", order.payload_sha256),
            fetched_at=old_source.get("fetched_at", fresh.source.fetched_at),
        ),
    )
    # The actions too, so the order keeps its warehouse, carrier, tags and gifts (decided afresh).
    fresh, violations = runtime.ruleset.judge(fresh, rule_context(fresh, runtime))
    blocking = [v for v in violations if v.severity in ("reject", "hold")]
    if blocking:
        raise ReplayRefused(
            "mapped with the current dictionary the order breaks rules "
            + ", ".join(v.rule for v in blocking)
            + "; correct the dictionary or replay with dictionary=first",
            "按当前字典重新映射后订单违反规则 "
            + "、".join(v.rule for v in blocking)
            + "；请修正字典，或以 dictionary=first 重放",
            violations=[{"rule": v.rule, "severity": v.severity, "path": v.path} for v in blocking],
        )
    canonical = await with_stored_refunds(uow, order, msgspec.to_builtins(fresh))  # the refunds stay
    changed = sorted(_diff(order.canonical, canonical))
    dictionary = runtime.platform_dictionaries[order.platform]
    await uow.orders.replace_canonical(
        order.id,
        canonical=canonical,
        platform_version=order.platform_version,
        payload_sha256=order.payload_sha256,
        mapping_version=dictionary.version,
        rules_version=runtime.ruleset.version,
    )
    await uow.orders.add_timeline(
        order.id,
        "order.remapped",
        {"from_version": order.mapping_version, "to_version": dictionary.version, "changed": changed, "by": actor},
    )
    return changed


def _diff(old: Any, new: Any, path: str = "") -> set[str]:
    """Paths under which ``old`` and ``new`` differ (``lines[0].sku_code``), values left out."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: set[str] = set()
        for key in old.keys() | new.keys():
            out |= _diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = set()
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out |= _diff(a, b, f"{path}[{i}]")
        return out
    return set() if old == new else {path or "."}
