"""Dictionary versions on real SQLite and PostgreSQL (``gateway.governance``, ``gateway.publication``):
seeding from the bundled files, a publish that fails half-way, and two containers on one database
switching together."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from adapters.db.audit_log import SqlAuditLog
from gateway import governance as gov
from gateway.bootstrap import Container, build_container
from gateway.clock import SystemClock
from gateway.config import load_config
from gateway.publication import POLL_INTERVAL_S
from gateway.runtime import DictionaryFile, bundled_dictionaries
from gateway.settings import Settings
from tests.integration.test_dictionary_governance import MEMO, PAID_FROM_TOTAL

pytestmark = pytest.mark.integration

CLOCK = SystemClock()


async def _versions(c: Container, name: str | None = "taobao") -> list[Any]:
    async with c.uow_factory(write=False) as uow:
        return await uow.dictionaries.list(name=name)


async def _audit(c: Container) -> list[Any]:
    async with c.uow_factory(write=False) as uow:
        return list(await uow.audit.list(after_seq=0, limit=1000))


async def _publish(c: Container, text: str, *, proposer: str = "ann", approver: str = "bob") -> gov.Publication:
    v = await gov.propose(c.uow_factory, text, actor=proposer, clock=CLOCK)
    await gov.dry_run(c.uow_factory, v.id, actor=proposer, runtime=c.runtime, clock=CLOCK, samples=None)
    await gov.approve(c.uow_factory, v.id, actor=approver, clock=CLOCK)
    return await gov.publish(c.uow_factory, v.id, actor=proposer, runtime=c.runtime, clock=CLOCK)


def _files_with(text: str) -> list[DictionaryFile]:
    """The bundled files, with ``text`` in place of the Taobao dictionary (a new release)."""
    files = bundled_dictionaries(load_config(None, env={}))
    taobao = next(f for f in files if f.compiled.name == "taobao")
    changed = DictionaryFile(taobao.path, text, gov.check_text(text))
    return [changed if f is taobao else f for f in files]


async def test_seeding_is_idempotent_and_a_changed_file_becomes_a_draft(container: Container) -> None:
    c = container
    seeded = await _versions(c, None)
    assert seeded and {v.state for v in seeded} == {"published"} and {v.proposed_by for v in seeded} == {"seed"}
    files = bundled_dictionaries(c.config)
    assert await gov.seed(c.uow_factory, files, clock=CLOCK) == []  # a second start: nothing
    async with c.uow_factory(write=False) as uow:
        generation = await uow.dictionaries.generation()
    # An upgrade ships another Taobao dictionary: a draft by "files", the published one stays.
    done = await gov.seed(c.uow_factory, _files_with(MEMO), clock=CLOCK)
    assert len(done) == 1 and done[0].startswith("proposed taobao 3+")
    assert await gov.seed(c.uow_factory, _files_with(MEMO), clock=CLOCK) == []
    draft, published = await _versions(c)
    assert (draft.state, draft.proposed_by, published.state) == ("draft", "files", "published")
    async with c.uow_factory(write=False) as uow:
        assert await uow.dictionaries.generation() == generation  # nothing published
    # Rejected, it is not proposed again by the next start.
    await gov.reject(c.uow_factory, draft.id, actor="ann", clock=CLOCK, note="not yet")
    assert await gov.seed(c.uow_factory, _files_with(MEMO), clock=CLOCK) == []
    actions = [(e.actor, e.action) for e in await _audit(c)]
    assert ("files", "dictionary.proposed") in actions and ("ann", "dictionary.rejected") in actions
    assert actions.count(("seed", "dictionary.seeded")) == len([v for v in seeded if v.kind != "ruleset"])
    assert actions.count(("seed", "ruleset.seeded")) == len([v for v in seeded if v.kind == "ruleset"]) == 1


async def test_a_failed_publish_leaves_the_old_version_published(container: Container, monkeypatch) -> None:
    c = container
    v = await gov.propose(c.uow_factory, MEMO, actor="ann", clock=CLOCK)
    await gov.dry_run(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK, samples=None)
    await gov.approve(c.uow_factory, v.id, actor="bob", clock=CLOCK)
    (before,) = [x for x in await _versions(c) if x.state == "published"]
    async with c.uow_factory(write=False) as uow:
        generation = await uow.dictionaries.generation()

    async def broken_append(self: Any, **kw: Any) -> Any:
        if kw["action"] == "dictionary.published":
            raise RuntimeError("the disk is full")
        return await original(self, **kw)

    # The audit entry is the last write of the publish: everything before it must roll back.
    original = SqlAuditLog.append
    monkeypatch.setattr(SqlAuditLog, "append", broken_append)
    if c.db.is_sqlite:
        from adapters.db.sqlite_direct import SqliteAuditLog

        monkeypatch.setattr(SqliteAuditLog, "append", broken_append)
    with pytest.raises(RuntimeError, match="disk is full"):
        await gov.publish(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK)
    monkeypatch.undo()
    states = {x.id: x.state for x in await _versions(c)}
    assert states == {before.id: "published", v.id: "approved"}
    async with c.uow_factory(write=False) as uow:
        assert await uow.dictionaries.generation() == generation
    assert not await c.dictionaries.check()  # nothing to switch to
    done = await gov.publish(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK)
    assert done.generation == generation + 1 and done.previous.id == before.id


async def test_publish_switches_a_second_container_within_the_documented_time(
    container: Container, database_url: str
) -> None:
    other = await build_container(Settings(database_url=database_url), start_worker=False, migrate=False)
    seen: list[str] = []
    other.runtime_listeners.append(lambda rt: seen.append(rt.platform_dictionaries["taobao"].version))
    other.dictionaries.start()  # the background check, as `gateway serve` and `gateway worker` run it
    try:
        first = other.runtime.platform_dictionaries["taobao"].version
        done = await _publish(container, PAID_FROM_TOTAL)
        started = time.monotonic()
        assert container.runtime.platform_dictionaries["taobao"].version == first  # not switched by itself...
        assert await container.dictionaries.check()  # ...until it checks (the API does after a publish)
        assert container.runtime.platform_dictionaries["taobao"].version == done.version.mapping_version
        while other.runtime.platform_dictionaries["taobao"].version != done.version.mapping_version:
            assert time.monotonic() - started < POLL_INTERVAL_S + 1.0, "the second container did not switch"
            await asyncio.sleep(0.02)
        assert seen == [done.version.mapping_version] and other.dictionaries.generation == done.generation
        # A rollback by one person switches it back the same way.
        back = await gov.rollback(other.uow_factory, done.previous.id, actor="ann", runtime=other.runtime, clock=CLOCK)
        assert back.version.mapping_version == first
        started = time.monotonic()
        while container.runtime.platform_dictionaries["taobao"].version != first:
            await container.dictionaries.check()
            assert time.monotonic() - started < POLL_INTERVAL_S + 1.0
            await asyncio.sleep(0.05)
    finally:
        await other.aclose()


async def test_approval_needs_a_current_dry_run(container: Container) -> None:
    c = container
    v = await gov.propose(c.uow_factory, MEMO, actor="ann", clock=CLOCK)
    await gov.dry_run(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK, samples=None)
    await _publish(c, PAID_FROM_TOTAL, proposer="cat", approver="dan")  # another version goes first
    with pytest.raises(gov.DryRunRequired, match="dry-run against"):
        await gov.approve(c.uow_factory, v.id, actor="bob", clock=CLOCK)
    await gov.dry_run(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK, samples=None)
    approved = await gov.approve(c.uow_factory, v.id, actor="bob", clock=CLOCK)
    assert approved.state == "approved"
    # An approved version whose base was replaced since is not published over it.
    w = await gov.propose(c.uow_factory, MEMO.replace('version = "3"', 'version = "4"'), actor="ann", clock=CLOCK)
    await gov.dry_run(c.uow_factory, w.id, actor="ann", runtime=c.runtime, clock=CLOCK, samples=None)
    await gov.approve(c.uow_factory, w.id, actor="bob", clock=CLOCK)
    await gov.publish(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK)
    with pytest.raises(gov.DryRunRequired, match="was published after"):
        await gov.publish(c.uow_factory, w.id, actor="ann", runtime=c.runtime, clock=CLOCK)


def test_the_migrations_end_in_one_head_after_the_dictionary_versions(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from adapters.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    head = script.get_current_head()  # raises when there are two heads
    chain = [r.revision for r in script.walk_revisions("base", head)]
    assert "0005_dictionary_versions" in chain
    assert script.get_revision("0005_dictionary_versions").down_revision == "0004_refunds"


async def test_delivery_follows_the_published_dictionaries(database_url: str, redis_url: str) -> None:
    """The embedded worker of `gateway serve` and the jobs of a `gateway worker` (arq) deliver with
    the Runtime of the newest publication, not the one they started with."""
    from gateway import jobs

    embedded = await build_container(Settings(database_url=database_url), start_worker=True, migrate=False)
    ctx: dict[str, Any] = {"settings": Settings(database_url=database_url, redis_url=redis_url), "metrics_at": None}
    await jobs._startup(ctx)  # what `gateway worker` runs at start: the container, deps in the job context
    try:
        assert embedded.worker is not None
        done = await _publish(embedded, MEMO)
        for c in (embedded, ctx["container"]):
            assert await c.dictionaries.check()
        new = done.version.mapping_version
        assert embedded.worker.deps.runtime.platform_dictionaries["taobao"].version == new
        assert ctx["deps"].runtime.platform_dictionaries["taobao"].version == new
        assert ctx["container"].runtime is ctx["deps"].runtime
    finally:
        await jobs._shutdown(ctx)
        await embedded.aclose()


async def test_processes_starting_together_seed_once(database_url: str) -> None:
    """Several processes starting at once on a new database (serve and workers): each name is
    published once and each changed file proposed once."""
    from adapters.db.engine import create_engine
    from adapters.db.uow import SqlUnitOfWorkFactory

    dbs = [create_engine(database_url) for _ in range(3)]
    try:
        factories = [SqlUnitOfWorkFactory(db) for db in dbs]
        files = bundled_dictionaries(load_config(None, env={}))
        done = await asyncio.gather(*(gov.seed(f, files, clock=CLOCK) for f in factories))
        assert sorted(len(d) for d in done) == [0, 0, len(files)]
        changed = _files_with(MEMO)
        done = await asyncio.gather(*(gov.seed(f, changed, clock=CLOCK) for f in factories))
        assert sorted(len(d) for d in done) == [0, 0, 1]
        async with factories[0](write=False) as uow:
            versions = await uow.dictionaries.list()
            assert await uow.dictionaries.generation() == 1
        assert len(versions) == len(files) + 1
        assert sorted(v.state for v in versions if v.name == "taobao") == ["draft", "published"]
    finally:
        for db in dbs:
            await db.dispose()
