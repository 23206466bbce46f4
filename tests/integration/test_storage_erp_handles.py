"""ERP handles (a U8+ OpenAPI ``tradeid`` kept per document, erp-protocols.md §2 O1) on every
storage implementation (fakes, SQLite, PostgreSQL): stored once, never replaced, kept apart per
target, code and name, and one value for two writers racing for the same key."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.storage import T0

pytestmark = pytest.mark.integration


async def put(storage, target: str, code: str, name: str, value: str) -> str:  # noqa: ANN001
    async with storage.uow() as uow:
        stored = await uow.erp_handles.put_if_absent(target, code, name, value, now=T0)
        await uow.commit()
    return stored


async def get(storage, target: str, code: str, name: str) -> str | None:  # noqa: ANN001
    async with storage.uow(write=False) as uow:
        return await uow.erp_handles.get(target, code, name)


async def test_the_first_value_stays_and_every_writer_gets_it(storage):
    assert await get(storage, "u8-cloud", "GW00000001", "tradeid") is None
    assert await put(storage, "u8-cloud", "GW00000001", "tradeid", "t-first") == "t-first"
    assert await put(storage, "u8-cloud", "GW00000001", "tradeid", "t-second") == "t-first"
    assert await get(storage, "u8-cloud", "GW00000001", "tradeid") == "t-first"


async def test_handles_are_kept_apart_by_target_code_and_name(storage):
    await put(storage, "u8-cloud", "GW00000001", "tradeid", "a")
    await put(storage, "u8-other", "GW00000001", "tradeid", "b")
    await put(storage, "u8-cloud", "GW00000002", "tradeid", "c")
    await put(storage, "u8-cloud", "GW00000001", "requestid", "d")
    found = [
        await get(storage, "u8-cloud", "GW00000001", "tradeid"),
        await get(storage, "u8-other", "GW00000001", "tradeid"),
        await get(storage, "u8-cloud", "GW00000002", "tradeid"),
        await get(storage, "u8-cloud", "GW00000001", "requestid"),
    ]
    assert found == ["a", "b", "c", "d"]


async def test_a_value_not_committed_is_not_kept(storage):
    async with storage.uow() as uow:
        await uow.erp_handles.put_if_absent("u8-cloud", "GW00000003", "tradeid", "lost", now=T0)
        # leaves without commit: rolled back
    assert await get(storage, "u8-cloud", "GW00000003", "tradeid") is None
    assert await put(storage, "u8-cloud", "GW00000003", "tradeid", "kept") == "kept"


async def test_two_racing_writers_end_with_one_value(storage):
    async def second() -> str:
        # Begins while the first holds its row uncommitted: PostgreSQL's insert waits for it,
        # SQLite and the fakes wait for the writer; either way it then reads the first's value.
        return await put(storage, "u8-cloud", "GW00000004", "tradeid", "t-loser")

    async with storage.uow() as uow:
        mine = await uow.erp_handles.put_if_absent("u8-cloud", "GW00000004", "tradeid", "t-winner", now=T0)
        task = asyncio.create_task(second())
        await asyncio.sleep(0.2)
        assert not task.done()
        await uow.commit()
    assert (mine, await task) == ("t-winner", "t-winner")
    assert await get(storage, "u8-cloud", "GW00000004", "tradeid") == "t-winner"


async def test_many_concurrent_writers_agree(storage):
    values = await asyncio.gather(*(put(storage, "u8-cloud", "GW00000005", "tradeid", f"t-{n}") for n in range(8)))
    assert len(set(values)) == 1
    assert await get(storage, "u8-cloud", "GW00000005", "tradeid") == values[0]
