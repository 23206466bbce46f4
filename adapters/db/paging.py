"""Keyset pagination: opaque cursors (the last row's integer key, base64url-encoded) and pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Row

from gateway.errors import PayloadInvalid
from gateway.ports import Page


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


def page_of(rows: Sequence[Row[Any]], limit: int, to_item: Callable[[Row[Any]], Any]) -> Page:
    """One page from up to ``limit + 1`` rows keyed by ``seq``, newest first; the extra row only
    says that another page exists."""
    shown = rows[:limit]
    more = len(rows) > limit and bool(shown)
    return Page(items=[to_item(r) for r in shown], next_cursor=encode_cursor(shown[-1].seq) if more else None)
