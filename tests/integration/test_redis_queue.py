"""The arq job queue on a real Redis: one job per name however many relays offer it, including
while the job runs and while its result is kept; a new name (the next attempt) is queued."""

from __future__ import annotations

import pytest
from arq.connections import create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix

from adapters.redis.connection import arq_settings
from adapters.redis.queue import ArqJobQueue

pytestmark = pytest.mark.integration


async def test_a_job_name_is_queued_once_and_the_next_attempt_again(redis_url: str) -> None:
    pool = await create_pool(arq_settings(redis_url))
    try:
        relays = [ArqJobQueue(pool), ArqJobQueue(pool)]
        assert await relays[0].enqueue_delivery(7, job_id="outbox:7:0") is True
        assert await relays[1].enqueue_delivery(7, job_id="outbox:7:0") is False  # already queued
        assert await pool.zcard("arq:queue") == 1

        # Taken by a worker (job key gone, in progress), then finished (result kept): still refused.
        await pool.set(in_progress_key_prefix + "outbox:7:0", b"1")
        assert await relays[1].enqueue_delivery(7, job_id="outbox:7:0") is False
        await pool.delete(job_key_prefix + "outbox:7:0", in_progress_key_prefix + "outbox:7:0")
        await pool.zrem("arq:queue", "outbox:7:0")
        await pool.set(result_key_prefix + "outbox:7:0", b"done")
        assert await relays[0].enqueue_delivery(7, job_id="outbox:7:0") is False

        assert await relays[1].enqueue_delivery(7, job_id="outbox:7:1") is True  # the next claim's job
    finally:
        await pool.aclose()
