"""One process of audit writers, for the chain-under-load test (tests/integration/test_storage_audit.py):

    python -m tests.support.audit_writers URL PROCESS WRITERS ENTRIES START_AT

``WRITERS`` asyncio tasks on one engine each append ``ENTRIES`` entries to the audit log at
``URL``, every one its own transaction, beginning at the wall-clock time ``START_AT`` so that the
processes overlap. Each entry's data names its process, writer and number.
"""

from __future__ import annotations

import asyncio
import sys
import time

from adapters.db.engine import create_engine
from adapters.db.uow import SqlUnitOfWorkFactory


async def run(url: str, process: int, writers: int, entries: int, start_at: float) -> None:
    db = create_engine(url)
    factory = SqlUnitOfWorkFactory(db)
    try:
        async with factory(write=False) as uow:  # connect before the start, not in the race
            await uow.audit.list(after_seq=0, limit=1)
        await asyncio.sleep(max(0.0, start_at - time.time()))

        async def writer(w: int) -> None:
            for n in range(entries):
                async with factory() as uow:
                    await uow.audit.append(
                        actor=f"p{process}-w{w}",
                        action="load.test",
                        subject_type="test",
                        subject_id=f"{process}.{w}.{n}",
                        data={"process": process, "writer": w, "n": n},
                    )
                    await uow.commit()

        await asyncio.gather(*(writer(w) for w in range(writers)))
    finally:
        await db.dispose()


if __name__ == "__main__":
    url, process, writers, entries, start_at = sys.argv[1:6]
    asyncio.run(run(url, int(process), int(writers), int(entries), float(start_at)))
