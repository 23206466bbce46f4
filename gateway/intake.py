"""Intake: a platform's order payload in, a durable canonical order (or an intercept) out.

    bytes → JSON → dictionary → canonical order → one transaction: the facts its rules need
    (gateway.order_facts), actions and checks (gateway.rules), then what the verdict writes
    (gateway.intake_store):
        accepted: order + binder row + outbox row + stock reservation + audit entry
        held:     order + binder row + intercept + audit entry (no outbox row: never delivered)
        rejected: intercept + audit entry (422)

Everything a request writes commits together before the answer is sent, so a crash at any point
leaves either nothing or the whole record. A repeat of the same platform order at the same or an
older platform version changes nothing and answers 200 with the first answer's body.

Refunds stored for the order (``gateway.refund_intake``: some arrive before their order, and a new
order version replaces the canonical that carried the others) are applied right after a 202, in a
transaction of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.clock import Clock
from gateway.errors import Conflict, MappingError, PayloadInvalid, PayloadTooLarge, UnknownPlatform
from gateway.intake_store import IntakeResult, answer, intercept, store_new, store_order, store_update
from gateway.mapping.dictionary import CompiledDictionary
from gateway.order_facts import DEV_FINGERPRINT_KEY, gather_facts, record_facts
from gateway.ports import UnitOfWorkFactory
from gateway.rules.catalog import RuleContext, Violation
from gateway.rules.facts import NO_FACTS, Facts
from gateway.runtime import Runtime
from schemas.order import PLATFORMS, CanonicalOrder

_decoder = msgspec.json.Decoder()


def decode_payload(body: bytes, *, max_bytes: int) -> Any:
    """Bytes → JSON value, with a reason a caller can act on when it is not JSON."""
    PayloadTooLarge.check(body, max_bytes)
    if not body.strip():
        raise PayloadInvalid("the body is empty", "报文为空")
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise PayloadInvalid(
                f"the body is not valid UTF-8 (byte {uexc.start})",
                f"报文不是合法的 UTF-8 编码（第 {uexc.start} 字节）",
                reason="encoding",
            ) from None
        raise PayloadInvalid(f"the body is not JSON: {exc}", f"报文不是合法的 JSON：{exc}", reason="json") from None


def translate(
    platform: str, payload: Any, runtime: Runtime, *, shop_header: str | None
) -> tuple[CanonicalOrder, list[str]]:
    """Payload → canonical order with its shop resolved; also the unknown source fields."""
    if platform not in PLATFORMS:
        raise UnknownPlatform(f"unknown platform {platform!r}; one of {', '.join(PLATFORMS)}", f"未知平台 {platform!r}")
    dictionary = runtime.dictionary_for(platform)
    if dictionary is None:
        raise UnknownPlatform(
            f"no dictionary is published for {platform}",
            f"平台 {platform} 尚无已发布的字典",
            hint=f"Add mappings/platforms/{platform}.toml",
        )
    order: CanonicalOrder = dictionary.translate(payload)
    shop_id = runtime.config.resolve_shop(platform, header=shop_header, alias=dictionary.shop_alias(payload))
    order = msgspec.structs.replace(order, shop_id=shop_id)
    return order, dictionary.unknown_fields(payload)


def rule_context(order: CanonicalOrder, runtime: Runtime, facts: Facts = NO_FACTS) -> RuleContext:
    shop = runtime.config.shops[order.shop_id or ""]
    return RuleContext(shop_id=order.shop_id or "", target=shop.target, tables=runtime.tables[shop.target], facts=facts)


def evaluate(order: CanonicalOrder, runtime: Runtime) -> list[Violation]:
    """The order's violations without what the database knows of it (no history, stock or
    duplicates): dry runs and replays."""
    return runtime.ruleset.judge(order, rule_context(order, runtime))[1]


def verdict_of(violations: list[Violation]) -> str:
    if any(v.severity == "reject" for v in violations):
        return "reject"
    return "hold" if any(v.severity == "hold" for v in violations) else "accept"


def _newer(new: str | None, old: str | None) -> bool:
    if new is None or old is None:
        return new is not None and old is None
    return new > old  # both ISO-8601 in the same offset, or numeric strings of equal width


async def accept_order(
    platform: str,
    body: bytes,
    *,
    shop_header: str | None,
    uow_factory: UnitOfWorkFactory,
    runtime: Runtime,
    clock: Clock,
    max_bytes: int,
    actor: str = "platform",
    fingerprint_key: bytes = DEV_FINGERPRINT_KEY,
    observe_unknown: Callable[[CompiledDictionary, Any, list[str]], None] | None = None,
) -> IntakeResult:
    """Take one order payload; return the answer to send. Raises ``RequestError``s for 4xx.

    ``observe_unknown`` is told of source fields the dictionary does not map (the registry IT
    reviews, ``gateway.unknown_fields``) of each new order or order version, not of repeats."""
    payload = decode_payload(body, max_bytes=max_bytes)
    sha = hashlib.sha256(body).hexdigest()
    order, unknown = translate(platform, payload, runtime, shop_header=shop_header)
    now = clock.now()
    order = msgspec.structs.replace(
        order,
        source=msgspec.structs.replace(order.source, raw_sha256=sha, fetched_at=now.isoformat(timespec="seconds")),
    )
    dictionary = runtime.platform_dictionaries[platform]
    ruleset = runtime.ruleset
    canonical_in = msgspec.to_builtins(order)  # once: the facts' diff and fingerprint read it
    # On PostgreSQL two first submissions of one order can both miss the binding and race to insert
    # it; the loser's insert is a Conflict, and its next pass finds the winner's binding (a 200).
    # A factory may offer ``group_commit`` (PostgreSQL): units whose writes are stored together
    # with other requests' in one transaction. Then the first pass stores the order as new without
    # looking its binding up (usually it is new): a binding already there makes the commit a
    # Conflict with nothing stored, and the next pass looks it up. A rejection stores no binding,
    # so it looks first. A stock reservation that another order's took meanwhile is a Conflict too
    # (``StockRepository.reserve``), and the next pass judges with the stock as it is now.
    grouped = getattr(uow_factory, "group_commit", None)
    attempts = (1, 2, 3, 4) if grouped is not None else (1, 2, 3)
    rules_s = 0.0
    for attempt in attempts:
        try:
            async with (grouped or uow_factory)() as uow:
                looked = grouped is None or attempt > 1
                binding = (
                    await uow.orders.find_binding(platform, order.shop_id or "", order.order_id) if looked else None
                )
                if binding is not None and (
                    binding.payload_sha256 == sha or not _newer(order.platform_version, binding.platform_version)
                ):
                    stored = await uow.orders.get(binding.order_id)
                    assert stored is not None
                    return IntakeResult(200, answer(stored, unknown), stored.id, "duplicate", rules_s)
                stored = await uow.orders.get(binding.order_id) if binding is not None else None
                started = time.perf_counter()
                facts = await gather_facts(
                    uow, order, canonical_in, stored=stored, ruleset=ruleset, now=now, key=fingerprint_key
                )
                ctx = rule_context(order, runtime, facts)
                acted, violations = ruleset.judge(order, ctx)
                verdict = verdict_of(violations)
                rules_s += time.perf_counter() - started
                if not looked and verdict == "reject":
                    binding = await uow.orders.find_binding(platform, order.shop_id or "", order.order_id)
                    if binding is not None:
                        continue  # a known order: the next pass judges it as the version it is
                await uow.payloads.put(sha, body)
                canonical = msgspec.to_builtins(acted) if acted is not order else canonical_in
                if verdict == "reject":
                    result = await intercept(
                        uow, acted, canonical, violations, sha, dictionary.version, runtime, unknown, actor
                    )
                elif binding is None:
                    result = await store_new(
                        uow,
                        acted,
                        canonical,
                        violations,
                        verdict,
                        sha,
                        dictionary.version,
                        runtime,
                        clock,
                        unknown,
                        actor,
                    )
                else:
                    assert stored is not None
                    result = await store_update(
                        uow, stored, acted, canonical, violations, verdict, sha, runtime, clock, unknown, actor, facts
                    )
                if result.order_id is not None and result.status_code == 202:
                    await record_facts(
                        uow,
                        acted,
                        facts,
                        order_id=result.order_id,
                        state=result.state or "",
                        ruleset=ruleset,
                        tables=ctx.tables,
                        now=now,
                    )
                # Refunds to apply to it (stored before it arrived, or carried by the version it
                # replaces): known here where no refund can commit beside this transaction.
                refunds_here = getattr(uow, "refunds", None)
                refunds_stored = (
                    await refunds_here.stored_for_order(platform, order.order_id)
                    if refunds_here is not None and result.status_code == 202
                    else None
                )
                await uow.commit()
        except Conflict:
            if attempt == attempts[-1]:
                raise
            continue
        result = dataclasses.replace(result, rules_seconds=rules_s)
        if result.status_code == 202 and unknown and observe_unknown is not None:
            observe_unknown(dictionary, payload, unknown)
        if result.status_code == 202 and result.order_id is not None and refunds_stored is not False:
            # Refunds that arrived before this order, or that a newer version of it must carry
            # again: applied right after, in their own transaction (refund_intake imports this module);
            # where the transaction could not tell, the look-up happens there.
            from gateway.refund_intake import settle_after_intake

            await settle_after_intake(
                uow_factory, platform=platform, platform_order_id=order.order_id, order_id=result.order_id, clock=clock
            )
        return result
    raise Conflict(
        f"order {order.order_id} changed while it was stored; send it again",
        f"订单 {order.order_id} 在保存时被同时修改，请重新提交",
    )


__all__ = ["IntakeResult", "MappingError", "accept_order", "decode_payload", "evaluate", "store_order", "translate"]
