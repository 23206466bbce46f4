"""Redis: the connection behind ``GATEWAY_REDIS_URL`` (arq's job queue and the shared ERP limits).

Redis holds no order data. The outbox in the database is the truth; Redis only carries jobs
derived from it and the per-target concurrency and rate limits, so losing Redis delays work but
loses none.
"""

from adapters.redis.connection import arq_settings, describe, redis_client
from adapters.redis.limits import RedisConcurrencyLimiter, RedisRateLimiter

__all__ = ["RedisConcurrencyLimiter", "RedisRateLimiter", "arq_settings", "describe", "redis_client"]
