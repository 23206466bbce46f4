"""Canonical order → the ERP document a target expects, through the target's outbound dictionary."""

from __future__ import annotations

from gateway.config import TargetConfig
from gateway.errors import ConfigError
from gateway.ports import ErpDocument, OrderRecord
from gateway.runtime import Runtime


def document_code(prefix: str, seq: int, width: int) -> str:
    """The ERP document code of an order: ``prefix`` + the order's database sequence, zero-padded.

    Deterministic (every retry and replay sends the same code, which is what makes the ERP write
    idempotent) and unique per gateway database; it fits the ERP's column width or fails loudly.
    """
    digits = width - len(prefix)
    code = f"{prefix}{seq:0{digits}d}" if digits > 0 else ""
    if digits <= 0 or len(code) > width:
        raise ConfigError(
            f"document code for sequence {seq} does not fit {width} characters with prefix {prefix!r}",
            f"单据号（序号 {seq}，前缀 {prefix!r}）超过 {width} 位",
            hint="Shorten code_prefix or raise code_width in the target's configuration",
        )
    return code


def build_document(order: OrderRecord, target_name: str, target: TargetConfig, runtime: Runtime) -> ErpDocument:
    """Translate a stored order for one target. Raises ``MappingError`` when a value table lacks
    an entry (an unknown SKU, say) — a permanent failure that needs IT, not a retry."""
    if order.seq is None:
        raise ValueError("order has no sequence number")
    code = document_code(target.code_prefix, order.seq, target.code_width)
    dictionary = runtime.erp_dictionaries[target.dictionary]
    out = dictionary.translate_object(
        {"order": order.canonical, "target": dict(target.params), "document": {"code": code}},
        runtime.tables[target_name],
    )
    entries = out.get("entries", [])
    for i, entry in enumerate(entries, start=1):
        entry.setdefault("irowno", i)
    return ErpDocument(
        target=target_name,
        kind="saleorder",
        code=code,
        order_id=order.id,
        platform_order_id=order.platform_order_id,
        header=out.get("header", {}),
        entries=entries,
    )
