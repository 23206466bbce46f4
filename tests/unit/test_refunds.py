"""Refund dictionaries and applying a refund to an order (canonical.md §5, Taobao 03)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from gateway.mapping.dictionary import load_dictionary
from gateway.refunds import RefundUnmatched, apply_refund

REPO = Path(__file__).resolve().parents[2]
TB = REPO / "mappings" / "samples" / "taobao"


@pytest.fixture(scope="module")
def order():
    d = load_dictionary(REPO / "mappings" / "platforms" / "taobao.toml")
    return d.translate(msgspec.json.decode((TB / "03_partial_refund.json").read_bytes()))


@pytest.fixture(scope="module")
def refund():
    d = load_dictionary(REPO / "mappings" / "refunds" / "taobao.toml")
    return d.translate(msgspec.json.decode((TB / "03_partial_refund.refund_get.json").read_bytes()))


def test_taobao_refund_maps(refund) -> None:
    assert (refund.order_id, refund.line_id, refund.refund_id) == (
        "3963300018845521109",
        "3963300018847521109",
        "152345678901234567",
    )
    assert (refund.state, refund.amount_fen, refund.qty) == ("REFUNDED", 6000, 2)
    assert refund.merchant_sku == "NOTE-A5-WHT" and refund.updated_at == "2024-06-16T09:41:27+08:00"


def test_partial_refund_gives_canonical_values(order, refund) -> None:
    updated, changed = apply_refund(order, refund)
    assert changed
    first, second = updated.lines
    assert (second.refund.state, second.refund.amount_fen, second.refund.qty) == ("REFUNDED", 6000, 2)
    assert second.refund.refund_ids == ["152345678901234567"] and not second.refund.needs_review
    assert first.refund.state == "NONE"
    assert updated.totals.refunded_fen == 6000 and updated.totals.paid_fen == 11300
    again, changed_again = apply_refund(updated, refund)
    assert not changed_again and again == updated


def test_a_refund_without_a_line_is_matched_by_amount_only_for_review(order, refund) -> None:
    anonymous = msgspec.structs.replace(refund, line_id=None, merchant_sku=None, refund_id="r2", amount_fen=4500)
    updated, _ = apply_refund(order, anonymous)
    assert updated.lines[0].refund.needs_review is True
    assert updated.totals.refunded_fen == 0  # not counted until a person confirms it
    with pytest.raises(RefundUnmatched):
        apply_refund(order, msgspec.structs.replace(anonymous, refund_id="r3", amount_fen=1))


def test_a_line_refunded_in_two_goes_adds_up_and_counts_only_confirmed(order, refund) -> None:
    """Two after-sales on one line (1 unit each): quantities and amounts add up; the line's state is
    what still asks for work; refunded_fen counts the confirmed record only; a closed one drops out."""
    line_id = refund.line_id
    first = msgspec.structs.replace(refund, refund_id="R1", qty=1, amount_fen=3000, state="REFUNDED")
    second = msgspec.structs.replace(refund, refund_id="R2", qty=1, amount_fen=3000, state="IN_PROGRESS")
    o, _ = apply_refund(order, first)
    o, changed = apply_refund(o, second)
    (line,) = [ln for ln in o.lines if ln.line_id == line_id]
    assert changed and (line.refund.state, line.refund.qty, line.refund.amount_fen) == ("IN_PROGRESS", 2, 6000)
    assert line.refund.refund_ids == ["R1", "R2"] and o.totals.refunded_fen == 3000
    o, _ = apply_refund(o, msgspec.structs.replace(second, state="REFUNDED"))
    (line,) = [ln for ln in o.lines if ln.line_id == line_id]
    assert (line.refund.state, line.refund.amount_fen, o.totals.refunded_fen) == ("REFUNDED", 6000, 6000)
    o, _ = apply_refund(o, msgspec.structs.replace(second, state="CLOSED"))
    (line,) = [ln for ln in o.lines if ln.line_id == line_id]
    assert (line.refund.state, line.refund.qty, o.totals.refunded_fen) == ("REFUNDED", 1, 3000)
    # the same record again changes nothing
    assert apply_refund(o, msgspec.structs.replace(second, state="CLOSED"))[1] is False
