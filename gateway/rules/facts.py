"""What the database knows about an order that its rules need: the version it replaces and what
changed, when its address changed before, other orders for the same receiver and goods, and the
stock of its SKUs.

Intake reads these in the unit of work that stores the order (``gateway.order_facts``), so on
SQLite they are exact under the single writer; the checks stay pure functions of the order, the
context and these facts. A field that is None was not looked up (a dry run without a database, or
no rule that needs it): the rules that need it then do not run, rather than guess.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.ports import FingerprintMatch, StockLevel
from gateway.versions import OrderChanges


@dataclass(frozen=True)
class Facts:
    now: datetime | None = None
    previous: dict[str, Any] | None = None  # the stored canonical order this version replaces
    changes: OrderChanges | None = None  # what this version changed against ``previous``
    changed_at: datetime | None = None  # when (the platform's update time, else now)
    address_changes: tuple[datetime, ...] = ()  # when earlier versions changed the address
    fingerprint: str | None = None  # None: the receiver is not in clear, nothing to compare
    duplicates: tuple[FingerprintMatch, ...] | None = None  # other orders with the fingerprint
    stock: dict[str, dict[str, StockLevel]] | None = None  # sku → warehouse → level (counted SKUs)
    extra: dict[str, Any] = field(default_factory=dict)


NO_FACTS = Facts()


def _norm(value: Any) -> str:
    text = unicodedata.normalize("NFKC", str(value or ""))
    return "".join(text.split()).lower()


def fingerprint(order: dict[str, Any], key: bytes) -> str | None:
    """HMAC-SHA256 of the receiver's phone and address and the order's set of SKUs (gift lines
    left out), or None when the phone or address is not in clear (masked or platform ciphertext
    cannot be compared across platforms).

    The key (``GATEWAY_FINGERPRINT_KEY``) keeps the stored hashes from being reversed by trying
    every phone number: without it they say nothing.
    """
    r = order.get("receiver") or {}
    if r.get("pii_state") != "plain" or not r.get("phone"):
        return None
    phone = "".join(ch for ch in str(r["phone"]) if ch.isdigit())[-11:]
    # The street (乡镇街道) is left out: some platforms send it apart, others inside the detail.
    place = "|".join(_norm(r.get(f)) for f in ("province", "city", "district", "detail"))
    if not phone or not _norm(r.get("detail")):
        return None
    skus = sorted(
        {
            str(ln.get("merchant_sku") or ln.get("sku_id") or "")
            for ln in order.get("lines", [])
            if not ln.get("is_gift")
        }
    )
    text = "\x1f".join([phone, place, ",".join(skus)])
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
