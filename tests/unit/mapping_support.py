"""What the per-platform mapping tests (``test_mapping_<platform>.py``) share: a platform's compiled
dictionary and order samples, its hand-written twin in bench/ and the money checks.

The helpers return values and leave the asserting to the tests, where pytest explains a failure.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec

from gateway.mapping.dictionary import CompiledDictionary, load_dictionary
from gateway.rules.catalog import RuleContext
from gateway.rules.checks import amount_mismatch
from schemas.order import CanonicalOrder, Line

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
CTX = RuleContext(shop_id="s", target="t", tables={})


def platform_dictionary(platform: str) -> CompiledDictionary:
    return load_dictionary(REPO / "mappings" / "platforms" / f"{platform}.toml")


def sample_folder(platform: str) -> Path:
    return REPO / "mappings" / "samples" / platform


def sample_names(platform: str) -> list[str]:
    """The platform's order samples ``0?_*.json``, as bench/mapping.py picks them (``x.refund_get.json``,
    with two dots, are not orders)."""
    return sorted(f.name for f in sample_folder(platform).glob("0?_*.json") if f.name.count(".") == 1)


def read_sample(platform: str, name: str) -> dict[str, Any]:
    """A sample as the platform sent it, freshly decoded: the caller may change it."""
    return msgspec.json.decode((sample_folder(platform) / name).read_bytes())


def edge_payloads(
    platform: str,
    edges: Iterable[tuple[str, str, Callable[[dict[str, Any]], Any]]],
    order: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[tuple[str, dict[str, Any]]]:
    """(label, payload) for each sample, then for each edge case ``(label, sample, mutate)``: the sample
    with ``mutate`` applied to its order object (``order(payload)``)."""
    out = [(name, read_sample(platform, name)) for name in sample_names(platform)]
    for label, name, mutate in edges:
        payload = read_sample(platform, name)
        mutate(order(payload))
        out.append((label, payload))
    return out


def handwritten(platform: str) -> Callable[[Any], CanonicalOrder]:
    """``handwritten_<platform>`` from bench/, imported as bench/mapping.py imports it: with bench/ on the
    path (last), where the twins find ``handwritten_common``."""
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))
    return getattr(importlib.import_module(f"handwritten_{platform}"), f"handwritten_{platform}")


def twin_builtins(platform: str, payload: dict[str, Any]) -> Any:
    """The twin's order for ``payload`` as builtins, to compare with ``msgspec.to_builtins`` of the
    dictionary's."""
    return msgspec.to_builtins(handwritten(platform)(payload))


def money(line: Line) -> tuple[int, ...]:
    return (line.qty, line.unit_price_fen, line.line_total_fen, line.discount_fen, line.paid_fen)


def money_gaps(o: CanonicalOrder) -> list[str]:
    """Where an order's money fails to add up to the fen ([] where it does): paid = goods − discount +
    freight + buyer fees; the lines' totals, paid and discounts sum to goods, goods − discount and
    discount; and AMOUNT_MISMATCH finds nothing."""
    t = o.totals
    sums = {
        "paid = goods - discount + freight + buyer fees": (
            t.paid_fen,
            t.goods_fen - t.discount_fen + t.freight_fen + t.buyer_fee_fen,
        ),
        "lines' totals = goods": (sum(ln.line_total_fen for ln in o.lines), t.goods_fen),
        "lines' paid = goods - discount": (sum(ln.paid_fen for ln in o.lines), t.goods_fen - t.discount_fen),
        "lines' discounts = discount": (sum(ln.discount_fen for ln in o.lines), t.discount_fen),
    }
    gaps = [f"{what}: {got} != {want}" for what, (got, want) in sums.items() if got != want]
    return gaps + [f"AMOUNT_MISMATCH {finding}" for finding in amount_mismatch(o, CTX, {})]
