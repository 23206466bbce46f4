"""The delivery job queue on arq (Redis): the ``JobQueue`` port for the outbox relay.

arq's ``enqueue_job(..., _job_id=...)`` refuses a job whose name is queued, running, or whose
result is still kept (``keep_result``): that is what stops two relays from queuing one attempt twice.
Every relay offers every due row, so most offers of a busy backlog find the job already there: one
plain ``EXISTS`` answers those, and only a job not seen yet goes through arq's transaction (``WATCH``,
``EXISTS``, ``MULTI``, ``EXEC``: three round trips), which re-checks under the watch.
"""

from __future__ import annotations

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.errors import RetryableError

DELIVER_JOB = "deliver_outbox"


class QueueUnavailableError(RetryableError):
    code = "QUEUE_UNAVAILABLE"
    message_zh = "任务队列（Redis）不可用，稍后重试"
    message_en = "The job queue (Redis) is unavailable; will retry"


class ArqJobQueue:
    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    async def enqueue_delivery(self, outbox_id: int, *, job_id: str) -> bool:
        try:
            if await self.pool.exists(job_key_prefix + job_id, result_key_prefix + job_id):
                return False  # queued, running or just finished: offered by another relay
            job = await self.pool.enqueue_job(DELIVER_JOB, outbox_id, _job_id=job_id)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise QueueUnavailableError(f"Redis is unavailable ({type(exc).__name__}); will retry") from exc
        return job is not None
