"""API keys and roles (CONTRACT §2): ``Authorization: Bearer gwk_<role>_<secret>``.

A key is shown once when created; the database keeps only its SHA-256 and its role. The role in
the key's text is a label for the person holding it (as ``ghp_`` is on a GitHub token): the role
that counts is the one stored against the hash, so editing the prefix grants nothing.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NamedTuple

ROLES = frozenset({"platform", "wms", "erp", "it", "auditor", "admin"})
"""Every role; ``admin`` may do everything."""

KEY_PREFIX = "gwk"
# token_urlsafe(32): 32 random bytes are 43 base64url characters without padding.
_KEY_RE = re.compile(rf"^{KEY_PREFIX}_(?P<role>[a-z]+)_[A-Za-z0-9_-]{{43}}$")


def generate_key(role: str) -> str:
    """A new API key for ``role``: ``gwk_<role>_`` and 256 random bits in URL-safe base64.

    Raises:
        ValueError: ``role`` is not one of :data:`ROLES`.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(sorted(ROLES))}")
    return f"{KEY_PREFIX}_{role}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    """The hex SHA-256 of ``key``: what the database stores and looks a key up by."""
    # No salt and no slow KDF on purpose: those defend guessable passwords. A key holds 256
    # random bits, so no dictionary or rainbow table can reach it and a fast hash is as safe
    # (GitHub and Stripe tokens are stored the same way), while each request stays cheap.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def verify_key(key: str, key_hash: str) -> bool:
    """Whether ``key`` hashes to ``key_hash``, compared in constant time."""
    return hmac.compare_digest(hash_key(key), key_hash)


def well_formed(key: str) -> bool:
    """Whether ``key`` has the shape :func:`generate_key` gives, so garbage costs no look-up."""
    return bool(_KEY_RE.match(key))


def parse_bearer(header_value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``.

    The scheme is case-insensitive (RFC 7235); anything but exactly one token after it is
    ``None``, and so is a token longer than 256 characters, so nobody makes us hash megabytes.
    """
    if not header_value:
        return None
    parts = header_value.split()
    if len(parts) != 2 or parts[0].lower() != "bearer" or len(parts[1]) > 256:
        return None
    return parts[1]


def allowed(role: str | None, required: frozenset[str]) -> bool:
    """Whether ``role`` may use an endpoint open to the roles in ``required``; admin may do all."""
    if role not in ROLES:
        return False
    return role == "admin" or role in required


class Caller(NamedTuple):
    """Who is calling: the API key's role and identity, resolved once per key and cached."""

    role: str
    key_id: str
    label: str | None = None

    @property
    def actor(self) -> str:
        """How audit entries and dictionary versions name the caller: the key's label (the person
        it was issued to) and its id, which tells two keys with one label apart."""
        return f"{self.label[:60]} (key {self.key_id})" if self.label else f"key {self.key_id}"


class _Miss(enum.Enum):
    MISS = enum.auto()


MISS = _Miss.MISS
"""What :meth:`KeyCache.get` returns when it knows nothing about a hash."""


class KeyCache:
    """Key hash → what the key grants (its role, or the ``Caller`` it identifies) or "no such key",
    for a few seconds, so a key costs one look-up per TTL.

    Unknown keys are cached too (negative entries): a client retrying with a revoked key must not
    turn into a database query per request. The price is that creating or revoking a key takes
    up to ``ttl`` seconds to be seen by every process.

    Args:
        ttl: Seconds an entry is trusted.
        max_size: Entries kept; the least recently used go first, so a flood of random keys
            cannot grow memory.
        clock: Monotonic seconds; tests pass a fake.
    """

    def __init__(self, ttl: float = 30.0, max_size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._loading: dict[str, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: str) -> Any | Literal[_Miss.MISS]:
        """The cached grant (a role or a ``Caller``), ``None`` for a known-unknown key, or :data:`MISS`."""
        # A dict look-up is not constant-time, and need not be: timing could reveal at most how a
        # SHA-256 of the caller's own guess compares, which brings no key closer.
        entry = self._entries.get(key_hash)
        if entry is None:
            return MISS
        expires, role = entry
        if self._clock() >= expires:
            del self._entries[key_hash]
            return MISS
        self._entries.move_to_end(key_hash)
        return role

    def put(self, key_hash: str, role: Any) -> None:
        """Remember ``role`` (a role or a ``Caller``; ``None``: no such key) for ``ttl`` seconds."""
        self._entries[key_hash] = (self._clock() + self.ttl, role)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def invalidate(self, key_hash: str | None = None) -> None:
        """Forget one hash (a key revoked in this process), or everything."""
        if key_hash is None:
            self._entries.clear()
        else:
            self._entries.pop(key_hash, None)

    async def resolve(self, key_hash: str, load: Callable[[str], Awaitable[Any]]) -> Any:
        """The role of ``key_hash``, calling ``load`` (the database) only on a miss.

        Concurrent misses for one hash share a single ``load``: a burst of requests with a new
        key must not become a burst of queries. If ``load`` fails, nothing is cached and the
        error reaches the caller that ran it; the others try once more themselves.
        """
        while True:
            cached = self.get(key_hash)
            if cached is not MISS:
                return cached
            pending = self._loading.get(key_hash)
            if pending is None:
                break
            # wait() neither raises the loader's error here nor cancels it if we are cancelled.
            await asyncio.wait([pending])
        done = asyncio.get_running_loop().create_future()
        self._loading[key_hash] = done
        try:
            role = await load(key_hash)
            # A stored role we do not know grants nothing.
            known = (role.role if isinstance(role, Caller) else role) in ROLES
            role = role if known else None
            self.put(key_hash, role)
            return role
        finally:
            del self._loading[key_hash]
            done.set_result(None)
