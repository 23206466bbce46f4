"""The audit hash chain, as pure functions: what an entry's hash covers and how a chain is checked.

Each entry's hash is SHA-256 over the canonical JSON (sorted keys, UTF-8, no spaces) of
``{seq, at, actor, action, subject_type, subject_id, data, prev_hash}``; the first entry's
``prev_hash`` is sixty-four zeros. Changing any stored field of any entry, deleting one, or
inserting one breaks the chain at that sequence number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import msgspec

GENESIS_HASH = "0" * 64

_encoder = msgspec.json.Encoder(order="sorted")


class AuditEntry(msgspec.Struct, kw_only=True):
    seq: int
    at: str
    actor: str
    action: str
    subject_type: str
    subject_id: str
    data: dict[str, Any]
    prev_hash: str
    hash: str


def entry_hash(
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    data: dict[str, Any],
    prev_hash: str,
) -> str:
    """Return the hex SHA-256 that seals one entry to its predecessor."""
    doc = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "data": data,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(_encoder.encode(doc)).hexdigest()


class ChainCheck(msgspec.Struct, kw_only=True):
    ok: bool
    checked: int
    broken_at: int | None = None
    reason: str | None = None


def verify_chain(
    entries: Iterable[AuditEntry], *, start_prev_hash: str = GENESIS_HASH, start_seq: int = 1
) -> ChainCheck:
    """Walk entries in sequence order; name the first whose seq, link or hash is wrong."""
    prev = start_prev_hash
    expected_seq = start_seq
    checked = 0
    for e in entries:
        if e.seq != expected_seq:
            return ChainCheck(ok=False, checked=checked, broken_at=expected_seq, reason="gap in sequence")
        if e.prev_hash != prev:
            return ChainCheck(ok=False, checked=checked, broken_at=e.seq, reason="link to predecessor broken")
        h = entry_hash(
            seq=e.seq,
            at=e.at,
            actor=e.actor,
            action=e.action,
            subject_type=e.subject_type,
            subject_id=e.subject_id,
            data=e.data,
            prev_hash=e.prev_hash,
        )
        if h != e.hash:
            return ChainCheck(ok=False, checked=checked, broken_at=e.seq, reason="entry altered")
        prev = e.hash
        expected_seq += 1
        checked += 1
    return ChainCheck(ok=True, checked=checked)
