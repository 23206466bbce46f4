"""Opaque cursors for keyset pagination: the last row's integer key, base64url-encoded."""

from __future__ import annotations

import base64
import binascii

from gateway.errors import PayloadInvalid


def encode_cursor(key: int) -> str:
    return base64.urlsafe_b64encode(str(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The key after which the next page starts; None for the first page."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(text)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise PayloadInvalid(
            f"invalid cursor {cursor!r}", f"无效的分页游标 {cursor!r}", hint="pass next_cursor as returned"
        ) from exc
