"""Audit anchors (gateway/audit.py): their stable form, and what a check against one proves."""

from __future__ import annotations

import pytest

from gateway.audit import (
    GENESIS_HASH,
    Anchor,
    AuditEntry,
    ChainCheck,
    check_anchor,
    decode_anchor,
    encode_anchor,
    entry_hash,
)

H = "ab" * 32


def _entry(seq: int, data: dict, prev: str) -> AuditEntry:
    fields = {
        "seq": seq,
        "at": f"2026-11-26T10:00:0{seq}+00:00",
        "actor": "a",
        "action": "x",
        "subject_type": "order",
        "subject_id": f"o{seq}",
        "data": data,
        "prev_hash": prev,
    }
    return AuditEntry(**fields, hash=entry_hash(**fields))


def test_the_anchor_is_one_line_of_sorted_compact_json() -> None:
    text = encode_anchor(Anchor(seq=12, hash=H, at="2026-11-26T10:00:00+00:00"))
    assert text == f'{{"at":"2026-11-26T10:00:00+00:00","hash":"{H}","seq":12}}\n'
    assert decode_anchor(text) == Anchor(seq=12, hash=H, at="2026-11-26T10:00:00+00:00")
    # hand-made: spaces, upper-case hex, no time
    assert decode_anchor(f'{{ "seq": 3, "hash": "{H.upper()}" }}') == Anchor(seq=3, hash=H)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "not an audit anchor"),
        (f'{{"seq": 0, "hash": "{H}"}}', "1 or more"),
        ('{"seq": 3, "hash": "abc"}', "64 hexadecimal"),
        (f'{{"seq": 3, "hash": "{H}", "by": "x"}}', "not an audit anchor"),
        ('{"seq": 3}', "not an audit anchor"),
    ],
)
def test_a_bad_anchor_is_refused_with_the_reason(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        decode_anchor(text)


def test_check_anchor() -> None:
    first = _entry(1, {"n": 1}, GENESIS_HASH)
    second = _entry(2, {"n": 2}, first.hash)
    anchor = Anchor(seq=2, hash=second.hash, at=second.at)
    intact = ChainCheck(ok=True, checked=5)
    assert check_anchor(intact, second, anchor) == ChainCheck(ok=True, checked=5, anchor_matches=True)
    # broken after the anchor: still broken, but the part up to the anchor is proven
    later = ChainCheck(ok=False, checked=3, broken_at=4, reason="entry altered")
    assert check_anchor(later, second, anchor).anchor_matches is True
    # broken before it: the walk's finding stands
    early = ChainCheck(ok=False, checked=0, broken_at=1, reason="entry altered")
    assert check_anchor(early, second, anchor) == ChainCheck(
        ok=False, checked=0, broken_at=1, reason="entry altered", anchor_matches=False
    )
    # the chain rebuilt consistently (a walk alone finds nothing), or cut short of the anchor
    rebuilt = _entry(2, {"n": 20}, first.hash)
    check = check_anchor(intact, rebuilt, anchor)
    assert (check.ok, check.broken_at, check.checked, check.anchor_matches) == (False, 2, 0, False)
    assert "rewritten" in (check.reason or "")
    short = check_anchor(ChainCheck(ok=True, checked=1), None, anchor)
    assert (short.ok, short.broken_at, short.reason) == (False, 2, "the chain ends before the anchor's entry")
    # an anchor whose time was edited does not match either
    assert check_anchor(intact, second, Anchor(seq=2, hash=second.hash, at="2020-01-01T00:00:00+00:00")).ok is False
