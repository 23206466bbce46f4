"""Chaos: the delivery promises of CONTRACT §5 under crashes and outages, on real PostgreSQL, real
Redis, ``gateway serve`` and two ``gateway worker`` processes (arq), and the sandbox U8 over
loopback.

(a) serve and workers SIGKILLed at random moments while a platform pushes 3,000 orders;
(b) the ERP down for 30 s: the circuit opens and holds the calls to a bound;
(c) Redis SIGKILLed and restarted empty mid-run;
(d) two workers on one outbox row: two arq jobs at once, and a lease that expires mid-call.

Each ends with every accepted order delivered and exactly one U8 document per order. Pacing is by
conditions with deadlines; nothing asserts on how long anything took.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from arq.connections import create_pool
from arq.jobs import Job, JobResult

from adapters.redis.connection import arq_settings
from tests.support.chaos import TARGET, Accepted, Database, Deployment, Platform, taobao_orders, wait_for, write_config
from tests.support.postgres import PostgresServer
from tests.support.redis import RedisServer, start_redis
from tests.support.servers import RunningSandbox

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]

# Retries quick enough that a recovered ERP drains the backlog in seconds, and never so few that a
# chaos run dead-letters an order.
FAST_RETRY = {"first_delay_s": 0.5, "factor": 2.0, "cap_s": 4.0, "max_attempts": 100, "unknown_outcome_delay_s": 1.0}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty PostgreSQL database on the session's throwaway server."""
    return postgres_server.create_database()


@pytest.fixture
def deploy(
    tmp_path: Path, sandbox: RunningSandbox, redis_server: RedisServer, pg_url: str
) -> Iterator[Callable[..., Deployment]]:
    """Build a deployment (not started) on this test's database, Redis and sandbox."""
    made: list[Deployment] = []

    def build(*, lease_s: float, target: dict[str, Any], env: dict[str, str] | None = None) -> Deployment:
        config = write_config(tmp_path / "gateway.toml", target)
        base = {
            "GATEWAY_DATABASE_URL": pg_url,
            "GATEWAY_REDIS_URL": redis_server.url,
            "GATEWAY_SANDBOX_URL": sandbox.url,
            "GATEWAY_CONFIG": str(config),
            "GATEWAY_LEASE_SECONDS": str(lease_s),
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_LOG_JSON": "true",
        }
        deployment = Deployment(tmp_path, base | (env or {}))
        made.append(deployment)
        return deployment

    yield build
    for deployment in made:
        deployment.close()


def _limits(concurrency: int, **more: Any) -> dict[str, Any]:
    """Target settings for a sandbox U8 serving ``concurrency`` calls at once. A permit left behind
    by a killed worker frees itself after ``permit_ttl_s``, which must exceed the longest call."""
    return {
        "concurrency": concurrency,
        "timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "limits": {"concurrency": concurrency, "permit_ttl_s": 10.0},
        "retry": FAST_RETRY,
    } | more


def _assert_delivered_once(db: Database, sandbox: RunningSandbox, accepted: list[Accepted]) -> None:
    """Every accepted order delivered, once: one order row each, one finished outbox row, one
    success in timeline and audit, no dead letter, and one U8 document under its code."""
    tids = {a.tid for a in accepted}
    assert len(tids) == len(accepted)
    orders = db.orders()
    assert set(orders) == tids, "orders lost or invented"
    states = db.count_by("SELECT state, count(*) FROM orders GROUP BY state")
    assert states == {"delivered": len(tids)}, states
    assert db.count_by("SELECT state, count(*) FROM outbox GROUP BY state") == {"done": len(tids)}
    assert db.scalar("SELECT count(*) FROM dead_letters") == 0
    timeline = db.count_by(
        "SELECT order_id, count(*) FROM order_timeline WHERE kind = 'erp.delivered' GROUP BY order_id"
    )
    audit = db.count_by(
        "SELECT subject_id, count(*) FROM audit_log WHERE action = 'delivery.succeeded' GROUP BY subject_id"
    )
    ids = {o["id"] for o in orders.values()}
    assert timeline == dict.fromkeys(ids, 1), "an order without, or with more than one, recorded success"
    assert audit == dict.fromkeys(ids, 1), "an order without, or with more than one, audited success"
    codes = [d["code"] for d in sandbox.documents("u8")]
    assert len(codes) == len(tids), f"{len(codes)} U8 documents for {len(tids)} orders"
    assert len(set(codes)) == len(codes), "duplicate U8 document codes"
    assert set(codes) == {o["erp_document_no"] for o in orders.values()}


def _delivered(deployment: Deployment, db: Database, count: int) -> bool:
    deployment.check_alive()  # a crashed process would only make the wait time out
    return db.delivered() >= count


def _stalled(deployment: Deployment, db: Database, what: str) -> Callable[[], str]:
    """A failure message for a delivery wait, made when the wait fails: the outbox and the logs."""

    def message() -> str:
        try:
            with redis_sync.Redis.from_url(deployment.serve.env["GATEWAY_REDIS_URL"]) as client:
                queued = f"{client.zcard('arq:queue')} arq jobs queued"
        except redis_sync.RedisError as exc:
            queued = f"Redis: {exc}"
        return f"{what}; {db.delivered()} delivered; {queued}; {db.outbox_summary()}\n{deployment.log_tails()}"

    return message


def _audit_chain_intact(deployment: Deployment) -> None:
    done = deployment.serve.cli("audit", "verify", check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------------ (a) process kills

ORDERS = 3000
KILLS = 5
PROCESSES = ("serve", "worker0", "worker1")


def test_orders_survive_serve_and_workers_sigkilled_at_random_moments(
    deploy: Callable[..., Deployment], sandbox: RunningSandbox, pg_url: str
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))
    rng = random.Random(seed)
    print(f"chaos seed {seed} (CHAOS_SEED={seed} repeats the kill plan)")
    # Every process dies at least once. The first kill is the API's while orders are still coming
    # in (the platform then resubmits); the others fall at random points of the whole run, by
    # progress = accepted + delivered orders (0..2N), however fast this machine is.
    others = ["worker0", "worker1", *rng.choices(PROCESSES, k=KILLS - 3)]
    rng.shuffle(others)
    plan = [("serve", "accepted", round(rng.uniform(0.1, 0.6) * ORDERS))]
    plan += [(v, "progress", round(rng.uniform(0.05, 0.9) * 2 * ORDERS)) for v in others]
    plan[1:] = sorted(plan[1:], key=lambda step: step[2])

    sandbox.capacity("u8", concurrency=4, service_ms=3)
    deployment = deploy(lease_s=3, target=_limits(4))
    key = deployment.prepare()
    deployment.start()
    db = Database(pg_url)
    platform = Platform(deployment.url, key)
    failures: list[BaseException] = []

    gauges = {"accepted": lambda: platform.accepted, "progress": lambda: platform.accepted + db.delivered()}

    def chaos() -> None:
        try:
            for victim, gauge, at in plan:
                wait_for(lambda g=gauges[gauge], at=at: g() >= at, 150, f"{gauge} {at}")
                time.sleep(rng.uniform(0, 0.3))  # not always right on the poll
                deployment.kill(victim)
                deployment.restart(victim)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    killer = threading.Thread(target=chaos, name="chaos", daemon=True)
    killer.start()
    accepted = platform.push_all(taobao_orders(ORDERS), threads=8)
    killer.join(180)
    assert not killer.is_alive() and not failures, f"kill plan {plan} failed: {failures}"
    assert not platform.refused, platform.refused[:5]
    assert len(accepted) == ORDERS
    wait_for(lambda: _delivered(deployment, db, ORDERS), 150, _stalled(deployment, db, f"{ORDERS} orders delivered"))

    assert deployment.kills == [victim for victim, _, _ in plan]
    _assert_delivered_once(db, sandbox, accepted)
    _audit_chain_intact(deployment)
    print(
        f"kills {plan}; resubmitted {platform.resubmitted}, repeats answered 200: "
        f"{sum(a.status == 200 for a in accepted)}; U8 calls {len(sandbox.calls('u8'))}"
    )


# --------------------------------------------------------------------------------- (b) ERP outage

FAILURE_THRESHOLD = 3
OPEN_S = 5.0
ERP_CONCURRENCY = 4
OUTAGE_S = 30.0


def test_erp_outage_opens_the_circuit_and_holds_calls_to_probes(
    deploy: Callable[..., Deployment], sandbox: RunningSandbox, pg_url: str
) -> None:
    circuit = {"failure_threshold": FAILURE_THRESHOLD, "open_seconds": OPEN_S, "half_open_probes": 1}
    # An ERP slower than intake, so that it goes down with a backlog queued and every worker busy.
    sandbox.capacity("u8", concurrency=ERP_CONCURRENCY, service_ms=50)
    deployment = deploy(lease_s=10, target=_limits(ERP_CONCURRENCY, circuit=circuit))
    key = deployment.prepare()
    deployment.start()
    db = Database(pg_url)
    platform = Platform(deployment.url, key)

    accepted = platform.push_all(taobao_orders(300))
    wait_for(lambda: db.delivered() >= 30, 60, "the first deliveries")
    sandbox.fault("u8", "http500", rate=1.0)
    down_at = time.monotonic()
    backlog = len(accepted) - db.delivered()
    seen = _watch_circuit(deployment.url, until=lambda: time.monotonic() - down_at >= OUTAGE_S)
    accepted += platform.push_all(taobao_orders(300, start=300))  # orders keep coming during the outage
    wait_for(lambda: time.monotonic() - down_at >= OUTAGE_S, OUTAGE_S + 10, "the end of the outage")
    sandbox.clear_faults("u8")
    seen.join(10)
    assert not platform.refused, platform.refused[:5]
    wait_for(
        lambda: _delivered(deployment, db, len(accepted)), 120, _stalled(deployment, db, "delivery after the outage")
    )

    _assert_delivered_once(db, sandbox, accepted)
    # What reached the ERP while it was down: the failures that open a circuit shared by all
    # workers, the calls already in flight when it opened, and one probe per open interval.
    failed = [c for c in sandbox.calls("u8") if c["outcome"] == "fault:http500"]
    bound = FAILURE_THRESHOLD + ERP_CONCURRENCY + math.ceil(OUTAGE_S / OPEN_S) + 1
    print(
        f"{len(failed)} calls reached the ERP while it was down (bound {bound}), with {backlog} orders queued;"
        f" readiness showed {seen.states}"
    )
    assert 0 < len(failed) <= bound, f"{len(failed)} calls reached the ERP during the outage; bound {bound}"
    assert "open" in seen.states, f"readiness never showed the circuit open: {seen.states}"


class _CircuitWatch(threading.Thread):
    """Polls ``/health/ready`` and collects the circuit states the target shows."""

    def __init__(self, url: str, until: Callable[[], bool]) -> None:
        super().__init__(name="circuit-watch", daemon=True)
        self.url = url
        self.until = until
        self.states: set[str] = set()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self.until():
                try:
                    ready = client.get("/health/ready").json()
                    self.states.add(ready["checks"]["erp_targets"][TARGET]["circuit"])
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                time.sleep(0.2)


def _watch_circuit(url: str, until: Callable[[], bool]) -> _CircuitWatch:
    watch = _CircuitWatch(url, until)
    watch.start()
    return watch


# ----------------------------------------------------------------------------------- (c) Redis lost


def test_redis_sigkilled_and_restarted_mid_run_loses_nothing(
    deploy: Callable[..., Deployment], sandbox: RunningSandbox, pg_url: str, redis_server: RedisServer
) -> None:
    sandbox.capacity("u8", concurrency=4, service_ms=3)
    deployment = deploy(lease_s=5, target=_limits(4))
    key = deployment.prepare()
    deployment.start()
    db = Database(pg_url)
    platform = Platform(deployment.url, key)
    failures: list[BaseException] = []
    at_kill: list[int] = []

    def lose_redis() -> None:
        try:
            wait_for(lambda: db.delivered() >= 100, 90, "the first deliveries")
            at_kill.append(db.delivered())
            redis_server.restart(kill=True, down_s=2.0)  # same port, empty: every queued job is gone
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    killer = threading.Thread(target=lose_redis, name="redis-killer", daemon=True)
    killer.start()
    accepted = platform.push_all(taobao_orders(800))
    killer.join(120)
    assert not killer.is_alive() and not failures, failures
    assert not platform.refused, platform.refused[:5]
    assert at_kill[0] < len(accepted)  # Redis died with deliveries still to make
    # The workers ride out the restart: no process may end on its own (nothing restarts them here).
    wait_for(
        lambda: _delivered(deployment, db, len(accepted)),
        120,
        _stalled(deployment, db, "delivery after Redis came back"),
    )
    print(f"Redis killed with {at_kill[0]} of {len(accepted)} orders delivered")
    _assert_delivered_once(db, sandbox, accepted)


# ------------------------------------------------------------------------------- (d) racing workers


async def _arq(redis_url: str, action: Callable[[Any], Any]) -> Any:
    pool = await create_pool(arq_settings(redis_url))
    try:
        return await action(pool)
    finally:
        await pool.aclose()


async def _results(pool: Any, job_ids: list[str], within_s: float) -> dict[str, JobResult]:
    deadline = time.monotonic() + within_s
    found: dict[str, JobResult] = {}
    while len(found) < len(job_ids):
        for job_id in job_ids:
            if job_id not in found and (info := await Job(job_id, pool).result_info()) is not None:
                found[job_id] = info
        if time.monotonic() > deadline:
            raise AssertionError(f"arq jobs without a result after {within_s:.0f}s: {set(job_ids) - set(found)}")
        await asyncio.sleep(0.1)
    return found


def _one_success(db: Database, order_id: str) -> None:
    kinds = [r["kind"] for r in db.fetch("SELECT kind FROM order_timeline WHERE order_id = $1", order_id)]
    assert kinds.count("erp.delivered") == 1 and "erp.dead_letter" not in kinds, kinds
    actions = [r["action"] for r in db.fetch("SELECT action FROM audit_log WHERE subject_id = $1", order_id)]
    assert actions.count("delivery.succeeded") == 1, actions


def test_two_arq_jobs_for_one_row_on_two_workers_make_one_document(
    deploy: Callable[..., Deployment], sandbox: RunningSandbox, pg_url: str, redis_server: RedisServer
) -> None:
    # One job at a time per worker: while one worker holds the slow ERP call, the other job can
    # only run on the other worker.
    sandbox.capacity("u8", concurrency=4, service_ms=3000)
    deployment = deploy(
        lease_s=30, target=_limits(4), env={"GATEWAY_WORKER_CONCURRENCY": "1", "GATEWAY_LOG_LEVEL": "INFO"}
    )
    key = deployment.prepare()
    db = Database(pg_url)
    # The relays' own job for the row's first attempt (a fresh database: outbox row 1, token 0)
    # is kept out by taking its name, so the two jobs below are the only ones.
    asyncio.run(_arq(redis_server.url, lambda pool: pool.set("arq:result:outbox:1:0", b"taken by the test", ex=600)))
    deployment.start()
    for worker in deployment.workers.values():
        wait_for(lambda w=worker: "arq worker started" in w.log.read_text(errors="replace"), 60, f"{worker.log.name}")
    [order] = Platform(deployment.url, key).push_all(taobao_orders(1))
    [row] = db.fetch("SELECT id, order_id FROM outbox")
    assert row["id"] == 1 and row["order_id"] == order.gateway_id

    async def race(pool: Any) -> dict[str, JobResult]:
        for job_id in ("race-a", "race-b"):
            assert await pool.enqueue_job("deliver_outbox", 1, _job_id=job_id) is not None
        return await _results(pool, ["race-a", "race-b"], within_s=60)

    results = asyncio.run(_arq(redis_server.url, race))
    outcomes = sorted(r.result for r in results.values())
    assert outcomes == ["delivered", "noop"], results
    winner = next(r for r in results.values() if r.result == "delivered")
    loser = next(r for r in results.values() if r.result == "noop")
    assert loser.start_time < winner.finish_time, "the jobs did not overlap, so one worker ran both"

    [row] = db.fetch("SELECT state, token, attempts FROM outbox")
    assert (row["state"], row["token"], row["attempts"]) == ("done", 1, 1)  # one claim, one attempt
    assert len(sandbox.calls("u8")) == 1
    docs = sandbox.documents("u8")
    assert [d["code"] for d in docs] == [db.orders()[order.tid]["erp_document_no"]]
    _one_success(db, order.gateway_id)


def test_lease_expiring_mid_call_is_taken_over_and_makes_one_document(
    deploy: Callable[..., Deployment], sandbox: RunningSandbox, pg_url: str
) -> None:
    slow_ms = 5000  # long enough that the takeover comes while the first call is still at U8
    deployment = deploy(lease_s=1, target=_limits(4))
    key = deployment.prepare()
    deployment.start()
    db = Database(pg_url)
    sandbox.fault("u8", "slow", rate=1.0, ms=slow_ms)  # U8 writes the document long after the lease ran out
    [order] = Platform(deployment.url, key).push_all(taobao_orders(1))
    wait_for(lambda: sandbox.capacity("u8").get("peak_open", 0) >= 1, 30, "the first call to reach U8")
    sandbox.clear_faults("u8")  # only that first call is slow
    wait_for(lambda: db.orders()[order.tid]["state"] == "delivered", 60, _stalled(deployment, db, "delivery"))
    calls = wait_for(
        lambda: (calls := sandbox.calls("u8")) and any(c["ms"] >= slow_ms for c in calls) and calls,
        30,
        "the slow call to finish at U8",
    )

    [row] = db.fetch("SELECT state, token FROM outbox")
    assert row["state"] == "done" and row["token"] >= 2, row  # claimed again after the lease expired
    # The takeover happened while the first call was still at U8.
    [first] = [c for c in calls if c["ms"] >= slow_ms]
    started = datetime.fromisoformat(first["at"])
    ended = started + timedelta(milliseconds=first["ms"])
    assert any(started < datetime.fromisoformat(c["at"]) < ended for c in calls if c is not first), calls
    docs = sandbox.documents("u8")
    assert [d["code"] for d in docs] == [db.orders()[order.tid]["erp_document_no"]]
    # Whatever became of the first claim (arq cuts its job off when the lease runs out: the job
    # timeout is the lease), nothing of it was recorded: one success in outbox, timeline and audit.
    _one_success(db, order.gateway_id)
