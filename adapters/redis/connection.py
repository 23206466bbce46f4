"""Connections to Redis from ``GATEWAY_REDIS_URL`` (``Settings.redis_url``): a ``redis.asyncio``
client for the shared limits, and arq's ``RedisSettings`` for the job queue.

Timeouts are short on purpose: Redis answers in microseconds when it is up, and a worker stuck on
a dead Redis should find out in seconds, report a retryable error and let the outbox drive again,
instead of hanging for the OS's TCP timeout.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from arq.connections import RedisSettings
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 15
RIDE_OUT_RETRIES = 60  # ~1 s apart: a worker waits about a minute for a restarted Redis, then gives up


def redis_client(
    url: str,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    socket_timeout_s: float = SOCKET_TIMEOUT_S,
    retries: int = 1,
    max_connections: int | None = 50,
    client_name: str = "gateway",
) -> Redis:
    """A pooled asyncio client for ``url`` (``redis://[user:password@]host:port/db``, ``rediss://``
    for TLS).

    Args:
        url: The value of ``GATEWAY_REDIS_URL``.
        connect_timeout_s: Give up connecting after this long.
        socket_timeout_s: Give up waiting for one reply after this long.
        retries: Extra tries of a command after a dropped connection or a timeout. One retry is
            what recovers the pool's stale sockets after a Redis restart without the caller
            noticing; more would only delay the error while Redis is really down.
        max_connections: Pool size; the limiter needs one connection per call in flight.
        client_name: Shown by ``CLIENT LIST``, to tell the gateway's connections apart.
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=socket_timeout_s,
        socket_keepalive=True,
        # A pooled socket idle longer than this is PINGed before use, so a connection the server
        # dropped is replaced rather than failing the next command.
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        # Both are needed: redis-py retries only errors listed on the connection itself, whatever
        # the Retry object would accept.
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        max_connections=max_connections,
        client_name=client_name,
    )


def arq_settings(
    url: str,
    *,
    connect_timeout_s: int = int(CONNECT_TIMEOUT_S),
    conn_retries: int = 5,
    conn_retry_delay_s: int = 1,
    ride_out_restarts: bool = False,
) -> RedisSettings:
    """arq's connection settings for ``url``.

    ``RedisSettings.from_dsn`` reads host, port, database, user, password and TLS from the URL
    but keeps arq's defaults for the rest (a 1 s connect timeout); ours are set here. arq retries
    the first connection ``conn_retries`` times, so a worker started together with Redis (as in
    docker compose) waits for it instead of exiting.

    ``ride_out_restarts`` is for an arq ``Worker``'s own pool: arq's poll loop does not catch
    Redis errors, so without it a Redis restart ends the worker process. With it every command
    reconnects and retries for about a minute (``RIDE_OUT_RETRIES``) before the error gets
    through. Not for pools that must fail fast (the relay's, readiness checks): they would hang.
    """
    settings = dataclasses.replace(
        RedisSettings.from_dsn(url),
        conn_timeout=connect_timeout_s,
        conn_retries=conn_retries,
        conn_retry_delay=conn_retry_delay_s,
    )
    if ride_out_restarts:
        settings = dataclasses.replace(
            settings,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), RIDE_OUT_RETRIES),  # 0.1, 0.2, 0.4, 0.8, 1, 1 … s
            # OSError too: a refused reconnect is raised as one inside redis-py's retry loop.
            retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        )
    return settings


def describe(url: str) -> str:
    """``host:port/db`` of ``url`` without the password, for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    db = parts.path.lstrip("/") or "0"
    return f"{parts.scheme}://{host}:{port}/{db}"
