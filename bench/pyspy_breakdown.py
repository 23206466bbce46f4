"""Where a gateway process spends its time, from a py-spy "raw" (collapsed stacks) profile.

    .venv/bin/python bench/pyspy_breakdown.py PROFILE --rate 250 --requests 5300

Each sample is put in the first bucket whose marker function is on its stack (most specific
first), separately for the event-loop thread and for helper threads. With ``--requests`` (orders
answered while py-spy ran) a bucket is also shown as milliseconds per order: samples / rate /
requests. ``bench/ingest.py --profile`` runs this on its own profile.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# (bucket, marker functions): the first bucket with a marker on the stack takes the sample.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("delivery worker (embedded, same process)", ("deliver", "EmbeddedWorker._run", "EmbeddedWorker._run_one")),
    ("outbox relay (due rows to arq)", ("OutboxRelay._run", "OutboxRelay.relay_once", "OutboxRelay._until_due")),
    (
        "PostgreSQL group commit (rows, statements, COMMIT)",
        ("PgGroupCommitter._run", "PgGroupCommitter._write_group", "PgGroupCommitter._transaction"),
    ),
    ("PostgreSQL binding look-up", ("_Orders.find_binding",)),
    ("grouped unit of work: recording the writes", ("_Orders.add", "_Payloads.put", "_Audit.append", "_Outbox.add")),
    ("auth guard (role_of)", ("role_of",)),
    ("JSON decode (decode_payload)", ("decode_payload",)),
    ("unknown_fields walk", ("CompiledDictionary.unknown_fields",)),
    ("mapping: compiled dictionary", ("CompiledDictionary.translate",)),
    ("mapping: shop, struct replace", ("translate",)),
    ("rules (evaluate)", ("evaluate",)),
    ("SQL begin + SAVEPOINT (writer lock)", ("SqliteWriter.begin", "SqlUnitOfWork.__aenter__")),
    ("SQL binding look-up", ("SqlOrderRepository.find_binding", "SqliteOrderRepository.find_binding")),
    ("SQL raw payload insert (+ zlib)", ("SqlPayloadStore.put", "SqlitePayloadStore.put")),
    ("SQL order + binding insert", ("SqlOrderRepository.add", "SqliteOrderRepository.add")),
    ("SQL timeline insert", ("SqlOrderRepository.add_timeline", "SqliteOrderRepository.add_timeline")),
    ("SQL audit append (head update, insert, hash)", ("SqlAuditLog.append", "SqliteAuditLog.append")),
    ("SQL outbox insert", ("SqlOutbox.add", "SqliteOutbox.add")),
    ("commit (RELEASE, group COMMIT + fsync)", ("SqliteWriter.commit", "SqliteWriter._commit_group", "do_commit")),
    ("intake other (sha256, to_builtins, answer)", ("accept_order", "_store_new")),
    ("handler other (metrics, response)", ("OrderController.submit",)),
]
_CORE = ("Connection.", "WriterSession.", "ReaderSession.", "SqliteWriter.")
FRAMEWORK = "HTTP framework + event loop (uvicorn, Litestar, asyncio)"
IDLE_LEAVES = ("_connection_worker_thread", "_worker (concurrent/futures/thread.py", "Condition.wait", "Queue.get")


def _names(stack: str) -> list[str]:
    return [frame.split(" (", 1)[0] for frame in stack.split(";")]


def breakdown(profile: Path) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Samples per bucket on the loop thread and on helper threads, and SQLite-in-C samples."""
    loop: Counter[str] = Counter()
    helpers: Counter[str] = Counter()
    sql: Counter[str] = Counter()
    for raw in profile.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        names = set(_names(stack))
        leaf = stack.rsplit(";", 1)[-1]
        thread = stack.startswith("Thread._bootstrap")
        if thread and leaf.startswith(IDLE_LEAVES):
            helpers["idle (waiting for work)"] += n
            continue
        bucket = next((b for b, markers in BUCKETS if names.intersection(markers)), None)
        if bucket is None:
            bucket = "helper thread, other" if thread else FRAMEWORK
        (helpers if thread else loop)[bucket] += n
        if leaf.startswith(("DefaultDialect.do_execute", "DefaultDialect.do_commit", "do_executemany")):
            sql["sqlite3 C code under SQLAlchemy (statements, COMMIT)"] += n
        elif "sqlite_direct.py" in leaf or "sqlite_writer.py" in leaf:
            sql["plain-driver statements (sqlite_direct, savepoints: Python + C)"] += n
        elif any(name.startswith(_CORE) for name in names):
            sql["SQLAlchemy Core around it"] += n
    return loop, helpers, sql


def report(profile: Path, rate: float, requests: int | None, cpu_seconds: float | None = None) -> str:
    """The breakdown as text. With ``cpu_seconds`` (the process's measured CPU over the same
    window) sample time is scaled to it: py-spy counts a thread waiting for a CPU as busy, and in
    its default (blocking) mode its own pauses lengthen every sample."""
    loop, helpers, sql = breakdown(profile)
    busy = sum(loop.values()) + sum(n for b, n in helpers.items() if not b.startswith("idle"))
    scale = cpu_seconds / (busy / rate) if cpu_seconds and busy else 1.0
    out = []
    if cpu_seconds:
        out.append(
            f"busy samples {busy / rate:.1f} s, measured CPU {cpu_seconds:.1f} s: ms/order scaled by {scale:.2f}"
        )
    for title, counts in (("event-loop thread", loop), ("helper threads", helpers), ("SQL split (all threads)", sql)):
        total = sum(counts.values())
        if not total:
            continue
        out.append(f"{title}: {total} samples ({total / rate:.1f} s)")
        for bucket, n in counts.most_common():
            idle = bucket.startswith("idle")
            per = f" {n / rate * scale / requests * 1000:7.3f} ms/order" if requests and not idle else ""
            out.append(f"  {bucket:58} {n:6d} {n / total * 100:5.1f}%{per}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--rate", type=float, default=250.0, help="py-spy sampling rate used (Hz)")
    ap.add_argument("--requests", type=int, help="orders answered while py-spy ran")
    ap.add_argument("--cpu-seconds", type=float, help="the process's CPU time over the same window")
    args = ap.parse_args()
    print(report(args.profile, args.rate, args.requests, args.cpu_seconds))


if __name__ == "__main__":
    main()
