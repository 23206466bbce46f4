"""API keys, the key cache and roles (gateway/auth.py, CONTRACT §2)."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from gateway.auth import (
    MISS,
    ROLES,
    KeyCache,
    allowed,
    generate_key,
    hash_key,
    parse_bearer,
    verify_key,
    well_formed,
)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_generated_key_format(role):
    key = generate_key(role)
    prefix, key_role, secret = key.split("_", 2)
    assert (prefix, key_role) == ("gwk", role)
    assert len(secret) == 43
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert well_formed(key)


def test_keys_are_unique_and_roles_checked():
    assert len({generate_key("it") for _ in range(100)}) == 100
    with pytest.raises(ValueError):
        generate_key("root")


def test_hash_is_hex_sha256_and_verified():
    key = generate_key("wms")
    assert hash_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert len(hash_key(key)) == 64
    assert verify_key(key, hash_key(key))
    assert not verify_key(generate_key("wms"), hash_key(key))


@pytest.mark.parametrize("key", ["", "gwk_it_short", "gwk_IT_" + "a" * 43, "xyz_it_" + "a" * 43, "gwk_it_" + "a" * 44])
def test_malformed_keys(key):
    assert not well_formed(key)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer a b", None),
        ("abc", None),
        ("", None),
        (None, None),
        ("Bearer " + "a" * 257, None),
    ],
)
def test_parse_bearer(header, token):
    assert parse_bearer(header) == token


# Which roles may call an endpoint, as CONTRACT §2 lists them.
ENDPOINTS = {
    "POST /v1/orders": frozenset({"platform"}),
    "GET /v1/orders": frozenset({"wms", "erp", "it", "auditor"}),
    "POST /v1/events": frozenset({"wms", "erp"}),
    "POST /v1/mappings/dry-run": frozenset({"it", "platform"}),
    "GET /v1/intercepts": frozenset({"auditor"}),
    "GET /v1/dead-letters": frozenset({"it", "admin"}),
}


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_allowed_for_every_role(role, endpoint):
    required = ENDPOINTS[endpoint]
    assert allowed(role, required) is (role == "admin" or role in required)


def test_admin_may_do_everything_and_nobody_else_may():
    assert allowed("admin", frozenset())
    assert not allowed(None, frozenset({"it"}))
    assert not allowed("root", frozenset({"root"}))  # not a role, whatever the endpoint says


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_entries_expire_after_ttl():
    clock = FakeClock()
    cache = KeyCache(ttl=30, clock=clock)
    assert cache.get("h1") is MISS
    cache.put("h1", "wms")
    cache.put("h2", None)
    clock.now += 29.9
    assert cache.get("h1") == "wms"
    assert cache.get("h2") is None  # a negative entry, not a miss
    clock.now += 0.1
    assert cache.get("h1") is MISS
    assert cache.get("h2") is MISS
    assert len(cache) == 0


def test_cache_is_bounded_least_recently_used_first():
    cache = KeyCache(max_size=2, clock=FakeClock())
    cache.put("a", "it")
    cache.put("b", "it")
    cache.get("a")
    cache.put("c", "it")
    assert cache.get("b") is MISS
    assert cache.get("a") == "it" and cache.get("c") == "it"
    cache.invalidate("a")
    assert cache.get("a") is MISS
    cache.invalidate()
    assert len(cache) == 0


async def test_unknown_key_costs_one_lookup_per_ttl():
    clock = FakeClock()
    cache = KeyCache(ttl=30, clock=clock)
    calls = []

    async def load(key_hash):
        calls.append(key_hash)
        await asyncio.sleep(0)
        return None

    assert await asyncio.gather(*(cache.resolve("unknown", load) for _ in range(20))) == [None] * 20
    assert await cache.resolve("unknown", load) is None
    assert calls == ["unknown"]
    clock.now += 30
    assert await cache.resolve("unknown", load) is None
    assert calls == ["unknown", "unknown"]


async def test_resolve_caches_roles_and_drops_unknown_ones():
    cache = KeyCache(clock=FakeClock())
    roles = {"h-it": "it", "h-odd": "superuser"}

    async def load(key_hash):
        return roles.get(key_hash)

    assert await cache.resolve("h-it", load) == "it"
    assert await cache.resolve("h-odd", load) is None
    roles["h-it"] = "auditor"
    assert await cache.resolve("h-it", load) == "it"  # until the TTL passes


async def test_a_failed_lookup_is_not_cached_and_waiters_retry():
    cache = KeyCache(clock=FakeClock())
    attempts = 0

    async def load(key_hash):
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if attempts == 1:
            raise ConnectionError("database down")
        return "erp"

    first, second = await asyncio.gather(cache.resolve("h", load), cache.resolve("h", load), return_exceptions=True)
    assert isinstance(first, ConnectionError)
    assert second == "erp"
    assert attempts == 2
    assert cache.get("h") == "erp"
