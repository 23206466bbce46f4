"""The audit hash chain, as pure functions: what an entry's hash covers and how a chain is checked.

Each entry's hash is SHA-256 over the canonical JSON (sorted keys, UTF-8, no spaces) of
``{seq, at, actor, action, subject_type, subject_id, data, prev_hash}``; the first entry's
``prev_hash`` is sixty-four zeros. Changing any stored field of any entry, deleting one, or
inserting one breaks the chain at that sequence number.

An *anchor* is the head of the chain at one moment, ``{"at", "hash", "seq"}`` as one line of
sorted, compact JSON (``gateway audit anchor``). Kept outside the gateway (an auditor's files, a
ticket, an e-mail), it proves later that the chain up to that entry was not rewritten: a chain
rebuilt from scratch with fresh hashes verifies on its own, but no longer ends in the anchor's hash
at the anchor's sequence number.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any, Protocol

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
    anchor_matches: bool | None = None  # None: no anchor was given


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


# --------------------------------------------------------------------------- anchors

_HEX64 = re.compile(r"[0-9a-f]{64}")


class Anchor(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One entry's place in the chain, to keep outside the gateway. ``at`` is informative (the
    hash covers it); a check compares it when it is given."""

    seq: int
    hash: str
    at: str | None = None


def anchor_of(entry: AuditEntry) -> Anchor:
    return Anchor(seq=entry.seq, hash=entry.hash, at=entry.at)


def encode_anchor(anchor: Anchor) -> str:
    """The stable form: one line of JSON, keys sorted, no spaces, and a newline."""
    return _encoder.encode(msgspec.structs.asdict(anchor)).decode() + "\n"


def decode_anchor(text: str | bytes) -> Anchor:
    """Read an anchor (as :func:`encode_anchor` writes it, or hand-made with the same keys).

    Raises:
        ValueError: not JSON, a key missing or unknown, ``seq`` below 1, ``hash`` not 64 hex digits.
    """
    try:
        anchor = msgspec.json.decode(text, type=Anchor)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f'not an audit anchor ({{"seq", "hash", "at"}}): {exc}') from None
    return checked_anchor(anchor.seq, anchor.hash, anchor.at)


def checked_anchor(seq: int, hash: str, at: str | None = None) -> Anchor:  # noqa: A002 - the field's name
    """An anchor from its parts; ``ValueError`` naming the part that cannot be one."""
    if seq < 1:
        raise ValueError(f"an anchor's seq is 1 or more, not {seq}")
    digest = hash.strip().lower()
    if not _HEX64.fullmatch(digest):
        raise ValueError(f"an anchor's hash is 64 hexadecimal digits, not {hash!r}")
    return Anchor(seq=seq, hash=digest, at=at)


def check_anchor(check: ChainCheck, entry: AuditEntry | None, anchor: Anchor) -> ChainCheck:
    """Combine a walk of the whole chain (``check``) with the entry now at the anchor's sequence
    number: the result is broken at the first entry the walk found broken at or before the anchor,
    else at the anchor when that entry is missing or differs from it, else as the walk says.

    A chain that no longer reaches the anchor, or reaches it with another hash, was cut or
    rewritten somewhere up to the anchor; where cannot be told, so ``checked`` is then 0: none of
    those entries is proven to be the anchored one."""
    if not check.ok and check.broken_at is not None and check.broken_at <= anchor.seq:
        return msgspec.structs.replace(check, anchor_matches=False)
    if entry is None or entry.seq != anchor.seq:
        return ChainCheck(
            ok=False,
            checked=0,
            broken_at=anchor.seq,
            reason="the chain ends before the anchor's entry",
            anchor_matches=False,
        )
    if entry.hash != anchor.hash or (anchor.at is not None and entry.at != anchor.at):
        return ChainCheck(
            ok=False,
            checked=0,
            broken_at=anchor.seq,
            reason="the entry at the anchor's sequence number is not the anchored one (the chain was rewritten)",
            anchor_matches=False,
        )
    return msgspec.structs.replace(check, anchor_matches=True)


class _Log(Protocol):  # ``gateway.ports.AuditLog``, which imports this module
    async def list(self, *, after_seq: int, limit: int) -> Any: ...

    async def verify(self) -> ChainCheck: ...


async def verify_log(audit: _Log, anchor: Anchor | None = None) -> ChainCheck:
    """Walk the whole chain; with an anchor, also prove the chain up to it unchanged."""
    check = await audit.verify()
    if anchor is None:
        return check
    found = await audit.list(after_seq=anchor.seq - 1, limit=1)
    return check_anchor(check, found[0] if found else None, anchor)


async def head_anchor(audit: _Log) -> tuple[ChainCheck, Anchor | None]:
    """The anchor of the newest entry, after a walk of the chain proved it sound; no anchor when
    the chain is broken or empty."""
    check = await audit.verify()
    if not check.ok or check.checked == 0:
        return check, None
    found = await audit.list(after_seq=check.checked - 1, limit=1)
    return check, anchor_of(found[0])
