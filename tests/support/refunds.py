"""The orders the refund samples belong to (``mappings/samples/<platform>/03_partial_refund.json``).

Taobao's comes from its order dictionary. For Pinduoduo, JD and WeChat Channels the order
dictionaries do not exist yet, so ``sample_order`` builds those orders by hand from the sample's
values and canonical.md §1/§5 (line ids: PDD ``order_sn:sku_id``, JD ``orderId:skuId``, WX
``product_id:sku_id``). Once ``mappings/platforms/<platform>.toml`` lands, replace the body with
``_from_dictionary(platform)``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.order import CanonicalOrder
from tests.support.gateway import REPO, SAMPLES


def _line(line_id: str, sku_id: str, merchant_sku: str, qty: int, unit_fen: int) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "sku_id": sku_id,
        "merchant_sku": merchant_sku,
        "qty": qty,
        "unit_price_fen": unit_fen,
        "line_total_fen": unit_fen * qty,
        "paid_fen": unit_fen * qty,
    }


_BY_HAND: dict[str, dict[str, Any]] = {
    "pinduoduo": {
        "order_id": "240615-994012377645120",
        "lines": [_line("240615-994012377645120:3234567890123", "3234567890123", "TEE-COT-WHT-L", 3, 3990)],
    },
    "jd": {
        "order_id": "295600011122",
        "lines": [
            _line("295600011122:100034567891", "100034567891", "PWR-20K", 1, 12800),
            _line("295600011122:100034567892", "100034567892", "CASE-IP15-CLR", 1, 3600),
        ],
    },
    "wechat_channels": {
        "order_id": "3719011122233344455",
        "lines": [
            _line("10000323456789:2000032345678", "2000032345678", "QLT-SLK", 1, 19900),
            _line("10000323456790:2000032345679", "2000032345679", "PIL-LTX", 2, 2990),
        ],
    },
}


def _from_dictionary(platform: str) -> CanonicalOrder:
    from gateway.mapping.dictionary import load_dictionary

    d = load_dictionary(REPO / "mappings" / "platforms" / f"{platform}.toml")
    return d.translate(msgspec.json.decode((SAMPLES / platform / "03_partial_refund.json").read_bytes()))


def sample_order(platform: str) -> CanonicalOrder:
    """The canonical order of ``<platform>/03_partial_refund.json`` (shipped, nothing refunded yet
    for the hand-built ones)."""
    if platform == "taobao":
        return _from_dictionary(platform)
    spec = _BY_HAND[platform]
    paid = sum(ln["paid_fen"] for ln in spec["lines"])
    return msgspec.convert(
        {
            "platform": platform,
            "order_id": spec["order_id"],
            "status": "SHIPPED",
            "platform_version": "2024-06-15T00:00:00+08:00",
            "lines": spec["lines"],
            "totals": {"goods_fen": paid, "paid_fen": paid},
        },
        CanonicalOrder,
    )
