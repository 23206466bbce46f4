"""Property: whatever a platform sends, a dictionary gives a canonical order or a typed mapping error
naming the path — never an unhandled exception, never a silently wrong amount.

Every bundled platform dictionary runs over its recorded samples mutated by hypothesis: a field
dropped, retyped (number ↔ text, bool, null, list, object), nested one level deeper, a text
truncated, odd Unicode put into a text (zero-width and bidi marks, full-width digits, combining
marks, emoji, NUL; not a lone surrogate, which the JSON decoder already refuses). An order that
comes out either has the same amounts as the unmutated sample, or fails the ``AMOUNT_MISMATCH``
rule that intercepts it before any ERP sees it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.errors import MappingError
from gateway.mapping.dictionary import CompiledDictionary, load_dictionary
from gateway.mappings_cli import sample_files
from gateway.rules.catalog import RuleContext
from gateway.rules.checks import amount_mismatch
from schemas.order import CanonicalOrder

REPO = Path(__file__).resolve().parents[2]
PLATFORMS = sorted(p.stem for p in (REPO / "mappings" / "platforms").glob("*.toml"))
CTX = RuleContext(shop_id="s", target="t", tables={})

ODD = ["\u200b", "\u200e", "\u202e", "\ufeff", "\u0301", "\u3000", "１２", "😀", "\x00", "\\", '"']


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _money(order: CanonicalOrder) -> Any:
    t = order.totals
    return (
        (t.goods_fen, t.discount_fen, t.freight_fen, t.paid_fen),
        # A gift line is worth nothing: losing one (a dropped gift_list) changes no amount.
        [
            (ln.qty, ln.unit_price_fen, ln.line_total_fen, ln.discount_fen, ln.paid_fen)
            for ln in order.lines
            if ln.line_total_fen or ln.paid_fen
        ],
    )


def _mutate(value: Any, kind: str, data: st.DataObject) -> tuple[bool, Any]:
    """(keep the key?, the new value)."""
    if kind == "drop":
        return False, None
    if kind == "retype":
        if isinstance(value, bool):
            return True, str(value).lower()
        if isinstance(value, int | float):
            return True, data.draw(st.sampled_from([str(value), None, True, [value], {"v": value}]))
        if isinstance(value, str):
            return True, data.draw(st.sampled_from([None, 0, -1, 1.5, False, [value], {"v": value}, ""]))
        return True, data.draw(st.sampled_from([None, "x", 0, [], {}]))
    if kind == "nest":
        return True, data.draw(st.sampled_from([[value], {"value": value}]))
    if kind == "truncate" and isinstance(value, str) and value:
        return True, value[: data.draw(st.integers(0, len(value) - 1))]
    if kind == "unicode" and isinstance(value, str):
        at = data.draw(st.integers(0, len(value)))
        return True, value[:at] + data.draw(st.sampled_from(ODD)) + value[at:]
    return True, value


def _cases() -> list[tuple[str, str, Any]]:
    out = []
    for platform in PLATFORMS:
        folder = REPO / "mappings" / "samples" / platform
        for f in sample_files(folder):
            out.append((platform, f.stem, msgspec.json.decode(f.read_bytes())))
    return out


CASES = _cases()
DICTS: dict[str, CompiledDictionary] = {}


def _dictionary(platform: str) -> CompiledDictionary:
    if platform not in DICTS:
        DICTS[platform] = load_dictionary(REPO / "mappings" / "platforms" / f"{platform}.toml")
    return DICTS[platform]


@pytest.mark.parametrize(("platform", "sample", "payload"), CASES, ids=[f"{p}/{s}" for p, s, _ in CASES])
@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_samples_give_an_order_or_a_typed_error(platform: str, sample: str, payload: Any, data) -> None:
    d = _dictionary(platform)
    original = d.translate(payload)
    root_path = tuple(d.spec.dictionary.root.split(".")) if d.spec.dictionary.root else ()
    root = payload
    for k in root_path:
        root = root[k]
    paths = _paths(root)
    path = data.draw(st.sampled_from(paths), label="path")
    kind = data.draw(st.sampled_from(["drop", "retype", "nest", "truncate", "unicode"]), label="kind")

    mutated = copy.deepcopy(payload)
    parent = mutated
    for k in (*root_path, *path[:-1]):
        parent = parent[k]
    keep, new = _mutate(parent[path[-1]], kind, data)
    if keep:
        parent[path[-1]] = new
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])

    try:
        order = d.translate(mutated)
    except MappingError as exc:
        assert exc.path, "a mapping error names where"
        assert exc.message_en and exc.message_zh
        event("mapping error")
        return
    assert isinstance(order, CanonicalOrder)
    # Round trip through JSON with the canonical schema: what comes out is what the API would serve.
    msgspec.json.decode(msgspec.json.encode(order), type=CanonicalOrder)
    if _money(order) == _money(original):
        event("order, same amounts")
    else:
        event("order, amounts changed: intercepted")
        findings = list(amount_mismatch(order, CTX, {}))
        assert findings, f"{platform}/{sample}: {kind} at {path} changed the amounts without an intercept"
