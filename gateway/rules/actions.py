"""Actions: what a rule set does to an order besides judging it, written as data in the rule-set
file (``[[actions]]``) and governed with it.

Each action has an ``id``, a ``do`` — ``tag`` (add a tag), ``carrier`` (choose the carrier),
``warehouse`` (choose the warehouse by region, with a fallback when stock is short) or ``gift``
(add a gift line) — and a ``when`` whose conditions must all hold. Actions run in the order they
are written, before the checks, and each sees what the ones before it did (a carrier chosen for a
tag an earlier action set). What they choose is kept on the order (``CanonicalOrder.fulfilment``,
gift lines with ``added_by``) and flows into the ERP document through the ERP dictionary.

A combination pattern (``when.combo``) is ``SKU*N`` terms joined by ``+``:
``SNK-2026-01*2+SNK-2026-02*1`` holds when the order has at least 2 of SNK-2026-01 and 1 of
SNK-2026-02 (a term without ``*N`` means 1). SKU patterns in ``skus_any`` / ``skus_all`` may use
shell wildcards (``LOVE-*``).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from gateway.errors import ConfigError
from schemas.order import CanonicalOrder, Fulfilment, Line

if TYPE_CHECKING:
    from gateway.rules.catalog import RuleContext


class When(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    platforms: list[str] = msgspec.field(default_factory=list)
    shops: list[str] = msgspec.field(default_factory=list)
    skus_any: list[str] = msgspec.field(default_factory=list)  # merchant SKU patterns: one present
    skus_all: list[str] = msgspec.field(default_factory=list)  # every pattern present
    tags_any: list[str] = msgspec.field(default_factory=list)
    member_levels: list[str] = msgspec.field(default_factory=list)
    provinces: list[str] = msgspec.field(default_factory=list)  # names or GB/T 2260 codes
    combo: str | None = None
    min_paid_fen: int | None = None


class ActionSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: str
    do: Literal["tag", "carrier", "warehouse", "gift"]
    when: When = msgspec.field(default_factory=When)
    enabled: bool = True
    description: str | None = None
    tag: str | None = None  # do = "tag"
    carrier: str | None = None  # do = "carrier"
    override: bool = False  # carrier / warehouse: replace what an earlier action chose
    by_region: dict[str, list[str]] = msgspec.field(default_factory=dict)  # do = "warehouse"
    fallback: str | None = None  # do = "warehouse": when no warehouse of the region has the stock
    gift_sku: str | None = None  # do = "gift"
    gift_qty: int = 1
    gift_title: str = "赠品"
    per_combo: bool = False  # gift: one gift_qty for every time the combo fits in the order


_TERM = re.compile(r"^\s*(?P<sku>[^*]+?)\s*(?:\*\s*(?P<qty>\d+))?\s*$")


def parse_combo(text: str) -> tuple[tuple[str, int], ...]:
    """``"A*2+B*1"`` → ``(("A", 2), ("B", 1))``. Raises ValueError on a malformed pattern."""
    out = []
    for term in text.split("+"):
        m = _TERM.match(term)
        if not m or not m["sku"]:
            raise ValueError(f"combination term {term!r} is not SKU*N")
        qty = int(m["qty"] or 1)
        if qty <= 0:
            raise ValueError(f"combination term {term!r} needs a quantity above 0")
        out.append((m["sku"], qty))
    return tuple(out)


@dataclass(frozen=True)
class Action:
    spec: ActionSpec
    combo: tuple[tuple[str, int], ...] = ()

    def applies(self, order: CanonicalOrder, ctx: RuleContext, tags: list[str], qty: dict[str, int]) -> bool:
        w = self.spec.when
        if w.platforms and order.platform not in w.platforms:
            return False
        if w.shops and ctx.shop_id not in w.shops:
            return False
        if w.skus_any and not any(_has(qty, p) for p in w.skus_any):
            return False
        if w.skus_all and not all(_has(qty, p) for p in w.skus_all):
            return False
        if w.tags_any and not set(w.tags_any) & set(tags):
            return False
        if w.member_levels and order.buyer.member_level not in w.member_levels:
            return False
        if w.provinces and not _in_provinces(order, w.provinces):
            return False
        if w.min_paid_fen is not None and order.totals.paid_fen < w.min_paid_fen:
            return False
        return not (self.combo and _combo_times(self.combo, qty) == 0)


def _has(qty: dict[str, int], pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(sku, pattern) for sku in qty)


def _in_provinces(order: CanonicalOrder, provinces: list[str]) -> bool:
    codes = order.receiver.division_codes or {}
    return order.receiver.province in provinces or codes.get("province") in provinces


def _combo_times(combo: tuple[tuple[str, int], ...], qty: dict[str, int]) -> int:
    """How many whole times the combination fits in the order's quantities."""
    times = None
    for pattern, need in combo:
        have = sum(q for sku, q in qty.items() if fnmatch.fnmatchcase(sku, pattern))
        fits = have // need
        times = fits if times is None else min(times, fits)
    return times or 0


def compile_actions(specs: list[ActionSpec], origin: str) -> tuple[Action, ...]:
    """Check each action names what its ``do`` needs; parse combination patterns.

    Raises:
        ConfigError: a missing or unknown parameter, a repeated id, a bad combination pattern.
    """
    seen: set[str] = set()
    out = []
    needs = {"tag": ("tag",), "carrier": ("carrier",), "warehouse": ("by_region",), "gift": ("gift_sku",)}
    for spec in specs:
        where = f"{origin}: actions[{spec.id}]"
        if spec.id in seen:
            raise ConfigError(f"{where}: the id is used twice", f"{where}：动作 id 重复")
        seen.add(spec.id)
        missing = [k for k in needs[spec.do] if not getattr(spec, k)]
        if missing:
            raise ConfigError(
                f"{where}: do = {spec.do!r} needs {', '.join(missing)}", f"{where}：{spec.do} 缺少 {', '.join(missing)}"
            )
        if spec.do == "gift" and spec.gift_qty <= 0:
            raise ConfigError(f"{where}: gift_qty must be above 0", f"{where}：gift_qty 必须大于 0")
        try:
            combo = parse_combo(spec.when.combo) if spec.when.combo else ()
        except ValueError as exc:
            raise ConfigError(f"{where}: when.combo: {exc}", f"{where}：when.combo 格式错误：{exc}") from None
        out.append(Action(spec, combo))
    return tuple(out)


def quantities(order: CanonicalOrder) -> dict[str, int]:
    """Quantity per merchant SKU over the platform's lines (gift lines the actions add left out)."""
    out: dict[str, int] = {}
    for line in order.lines:
        if line.merchant_sku and line.added_by is None:
            out[line.merchant_sku] = out.get(line.merchant_sku, 0) + line.qty
    return out


def _choose_warehouse(spec: ActionSpec, order: CanonicalOrder, ctx: RuleContext, qty: dict[str, int]) -> str | None:
    codes = order.receiver.division_codes or {}
    for key in (codes.get("province"), order.receiver.province, "*"):
        if key and key in spec.by_region:
            candidates = spec.by_region[key]
            break
    else:
        return spec.fallback
    stock = ctx.facts.stock
    if stock is None:
        return candidates[0] if candidates else spec.fallback
    for wh in candidates:
        # Every counted SKU must be available there; a SKU with no count anywhere does not decide.
        if all(lv.get(wh) is not None and lv[wh].available >= n for sku, n in qty.items() if (lv := stock.get(sku))):
            return wh
    return spec.fallback or (candidates[0] if candidates else None)


def apply_actions(actions: tuple[Action, ...], order: CanonicalOrder, ctx: RuleContext) -> CanonicalOrder:
    """The order with what the actions chose, decided afresh: gift lines and choices an order
    judged before carries are dropped first, so each judgement gives them exactly once."""
    if not actions:
        return order
    base = msgspec.structs.replace(
        order, lines=[ln for ln in order.lines if ln.added_by is None], fulfilment=Fulfilment()
    )
    qty = quantities(base)
    tags: list[str] = []
    carrier: str | None = None
    warehouse: str | None = None
    applied: list[str] = []
    gifts: list[Line] = []
    for action in actions:
        spec = action.spec
        if not spec.enabled or not action.applies(base, ctx, tags, qty):
            continue
        if spec.do == "tag":
            if spec.tag in tags:
                continue
            tags.append(spec.tag or "")
        elif spec.do == "carrier":
            if carrier is not None and not spec.override:
                continue
            carrier = spec.carrier
        elif spec.do == "warehouse":
            if warehouse is not None and not spec.override:
                continue
            warehouse = _choose_warehouse(spec, base, ctx, qty)
            if warehouse is None:
                continue
        else:
            times = _combo_times(action.combo, qty) if spec.per_combo and action.combo else 1
            gifts.append(
                Line(
                    line_id=f"gift:{spec.id}",
                    merchant_sku=spec.gift_sku,
                    title=spec.gift_title,
                    qty=spec.gift_qty * times,
                    unit_price_fen=0,
                    line_total_fen=0,
                    paid_fen=0,
                    is_gift=True,
                    added_by=spec.id,
                )
            )
        applied.append(spec.id)
    if not applied:
        return base
    return msgspec.structs.replace(
        base,
        lines=[*base.lines, *gifts],
        fulfilment=Fulfilment(tags=tags, carrier=carrier, warehouse=warehouse, actions=applied),
    )


def gift_skus(actions: tuple[Action, ...]) -> set[str]:
    return {a.spec.gift_sku for a in actions if a.spec.do == "gift" and a.spec.gift_sku}


def describe(actions: tuple[Action, ...]) -> list[dict[str, Any]]:
    """The actions as ``GET /v1/rules`` lists them."""
    return [msgspec.to_builtins(a.spec) for a in actions]
