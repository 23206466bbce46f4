"""``gateway.readback.PollLock`` on Redis: one ``SET key owner NX PX ttl`` per round.

Several ``gateway worker`` processes each run the shipment read-back's scheduler; whoever sets the
key first polls the target, the others skip that interval. The key is never released by hand: it
expires after ``ttl_s`` (most of an interval), which is also what frees it when its holder died.
Redis holds no order data here, only who polled last.
"""

from __future__ import annotations

import os
import socket

from redis.asyncio import Redis

DEFAULT_PREFIX = "gateway:lock"


class RedisPollLock:
    def __init__(self, redis: Redis, *, prefix: str = DEFAULT_PREFIX, owner: str | None = None) -> None:
        self._redis = redis
        self._prefix = prefix
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    async def acquire(self, key: str, ttl_s: float) -> bool:
        """True when this call set the key (nobody holds it); RedisError when Redis is out of reach."""
        ms = max(1, int(ttl_s * 1000))
        return bool(await self._redis.set(f"{self._prefix}:{key}", self.owner, nx=True, px=ms))
