"""Order versions: what a newer platform version of a known order changed.

Intake compares the stored canonical order with the new one and records the result on the order's
timeline (``order.updated``) and hands it to the rules (``RuleContext.facts.changes``): the
address-change and freight rules read it. It names *which* fields changed, never their values,
so the timeline and the audit log stay free of buyers' addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ADDRESS_FIELDS = ("country", "province", "city", "district", "street", "detail", "postal_code")
"""Receiver fields that make up the address: a change of any is an address change."""
CONTACT_FIELDS = ("name", "phone")
_TOTALS = ("goods_fen", "discount_fen", "freight_fen", "buyer_fee_fen", "paid_fen", "refunded_fen")


@dataclass(frozen=True)
class QtyChange:
    line_id: str
    old: int
    new: int


@dataclass(frozen=True)
class OrderChanges:
    """What one version changed against the stored one."""

    address: tuple[str, ...] = ()  # receiver address fields that changed (ADDRESS_FIELDS)
    contact: tuple[str, ...] = ()  # receiver name / phone changed
    lines_added: tuple[str, ...] = ()  # line ids
    lines_removed: tuple[str, ...] = ()
    qty: tuple[QtyChange, ...] = ()
    amounts: dict[str, tuple[int, int]] = field(default_factory=dict)  # totals field → (old, new)
    status: tuple[str, str] | None = None  # (old, new) canonical status
    memo: bool = False  # seller memo or buyer message
    other: tuple[str, ...] = ()  # other top-level fields that changed

    @property
    def any(self) -> bool:
        return bool(
            self.address
            or self.contact
            or self.lines_added
            or self.lines_removed
            or self.qty
            or self.amounts
            or self.status
            or self.memo
            or self.other
        )

    def detail(self) -> dict[str, Any]:
        """For the timeline and the audit log: names, counts and amounts, never an address."""
        out: dict[str, Any] = {}
        if self.address:
            out["address"] = list(self.address)
        if self.contact:
            out["contact"] = list(self.contact)
        if self.lines_added or self.lines_removed or self.qty:
            out["lines"] = {
                "added": list(self.lines_added),
                "removed": list(self.lines_removed),
                "qty": [{"line_id": q.line_id, "from": q.old, "to": q.new} for q in self.qty],
            }
        if self.amounts:
            out["amounts"] = {k: {"from": a, "to": b} for k, (a, b) in self.amounts.items()}
        if self.status:
            out["status"] = {"from": self.status[0], "to": self.status[1]}
        if self.memo:
            out["memo"] = True
        if self.other:
            out["other"] = list(self.other)
        return out


_COMPARED = {"receiver", "lines", "totals", "status", "seller_memo", "buyer", "source", "fulfilment"}
# Fields that change with every version or are derived from the others.
_IGNORED = {"source", "platform_version", "updated_at", "platform_status", "fulfilment"}


def diff_orders(old: dict[str, Any], new: dict[str, Any]) -> OrderChanges:
    """Compare two canonical orders given as builtins (``msgspec.to_builtins``)."""
    r_old, r_new = old.get("receiver") or {}, new.get("receiver") or {}
    address = tuple(f for f in ADDRESS_FIELDS if (r_old.get(f) or None) != (r_new.get(f) or None))
    contact = tuple(f for f in CONTACT_FIELDS if (r_old.get(f) or None) != (r_new.get(f) or None))

    lines_old = {ln["line_id"]: ln for ln in old.get("lines", []) if not ln.get("added_by")}
    lines_new = {ln["line_id"]: ln for ln in new.get("lines", []) if not ln.get("added_by")}
    added = tuple(k for k in lines_new if k not in lines_old)
    removed = tuple(k for k in lines_old if k not in lines_new)
    qty = tuple(
        QtyChange(k, lines_old[k]["qty"], ln["qty"])
        for k, ln in lines_new.items()
        if k in lines_old and lines_old[k]["qty"] != ln["qty"]
    )
    t_old, t_new = old.get("totals") or {}, new.get("totals") or {}
    amounts = {k: (t_old.get(k, 0), t_new.get(k, 0)) for k in _TOTALS if t_old.get(k, 0) != t_new.get(k, 0)}
    status = (old.get("status"), new.get("status")) if old.get("status") != new.get("status") else None
    memo = old.get("seller_memo") != new.get("seller_memo") or (old.get("buyer") or {}).get("message") != (
        new.get("buyer") or {}
    ).get("message")
    other = tuple(
        sorted(k for k in set(old) | set(new) if k not in _COMPARED and k not in _IGNORED and old.get(k) != new.get(k))
    )
    return OrderChanges(
        address=address,
        contact=contact,
        lines_added=added,
        lines_removed=removed,
        qty=qty,
        amounts=amounts,
        status=status,  # type: ignore[arg-type]
        memo=memo,
        other=other,
    )
