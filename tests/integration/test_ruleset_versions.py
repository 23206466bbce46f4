"""Rule-set versions on real SQLite and PostgreSQL (``gateway.governance``, ``gateway.publication``):
the bundled rule set seeded, a dry run over the recorded orders and intercepts read back from the
database, and two containers on one database switching rule sets together."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from gateway import governance as gov
from gateway.bootstrap import Container, build_container
from gateway.clock import SystemClock
from gateway.demo import rule_breaking_order
from gateway.intake import accept_order
from gateway.publication import POLL_INTERVAL_S
from gateway.runtime import bundled_rulesets
from gateway.settings import Settings
from tests.integration.test_ruleset_governance import MAX_3
from tests.support.gateway import SAMPLES

pytestmark = pytest.mark.integration

CLOCK = SystemClock()


async def _submit(c: Container, body: bytes) -> Any:
    return await accept_order(
        "taobao", body, shop_header=None, uow_factory=c.uow_factory, runtime=c.runtime, clock=CLOCK, max_bytes=1 << 20
    )


async def test_seeded_rule_set_and_a_dry_run_over_what_the_database_recorded(container: Container) -> None:
    c = container
    async with c.uow_factory(write=False) as uow:
        (seeded,) = [v for v in await uow.dictionaries.list() if v.kind == gov.RULESET_KIND]
    assert (seeded.name, seeded.state, seeded.proposed_by) == ("default", "published", "seed")
    assert c.runtime.ruleset.version == seeded.mapping_version
    assert await gov.seed(c.uow_factory, bundled_rulesets(c.config), clock=CLOCK) == []  # idempotent
    accepted = await _submit(c, (SAMPLES / "taobao" / "02_multi_line_coupons.json").read_bytes())
    intercepted = await _submit(c, rule_breaking_order(SAMPLES))
    assert (accepted.status_code, intercepted.status_code) == (202, 422)

    v = await gov.propose(c.uow_factory, MAX_3, actor="ann", clock=CLOCK, runtime=c.runtime)
    assert v.kind == gov.RULESET_KIND and v.platform is None
    done = await gov.dry_run(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK, samples=None)
    summary = done.dry_run
    assert summary["corpus"] == {"recorded": 2, "samples": 0, "limit": 500}
    assert summary["counts"] == {
        "checked": 2,
        "unchanged": 1,
        "changed": 0,
        "newly_failing": 0,
        "newly_passing": 1,
        "failing": 0,
    }
    (mine,) = summary["orders"]
    assert mine["source"] == "intercept" and mine["ref"] == intercepted.body["intercept_id"]
    assert mine["recorded"] == {"state": "intercepted", "rules_version": seeded.mapping_version}
    assert (mine["before"]["verdict"], mine["after"]["verdict"]) == ("reject", "accept")
    with pytest.raises(gov.ApproverIsProposer):
        await gov.approve(c.uow_factory, v.id, actor="ann", clock=CLOCK)


async def test_publish_switches_a_second_container_and_rollback_switches_back(
    container: Container, database_url: str
) -> None:
    other = await build_container(Settings(database_url=database_url), start_worker=False, migrate=False)
    seen: list[str] = []
    other.runtime_listeners.append(lambda rt: seen.append(rt.ruleset.version))
    other.dictionaries.start()  # the background check, as `gateway serve` and `gateway worker` run it
    try:
        first = other.runtime.ruleset.version
        c = container
        v = await gov.propose(c.uow_factory, MAX_3, actor="ann", clock=CLOCK, runtime=c.runtime)
        await gov.dry_run(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK, samples=None)
        await gov.approve(c.uow_factory, v.id, actor="bob", clock=CLOCK)
        done = await gov.publish(c.uow_factory, v.id, actor="ann", runtime=c.runtime, clock=CLOCK)
        started = time.monotonic()
        assert await c.dictionaries.check()
        assert c.runtime.ruleset.version == v.mapping_version
        assert c.runtime.ruleset.rules["COUPON_STACK_LIMIT"].params == {"max_coupons": 3}
        taobao = c.runtime.platform_dictionaries["taobao"].version
        assert other.runtime.platform_dictionaries["taobao"].version == taobao  # only the rule set changed
        while other.runtime.ruleset.version != v.mapping_version:
            assert time.monotonic() - started < POLL_INTERVAL_S + 1.0, "the second container did not switch"
            await asyncio.sleep(0.02)
        assert seen == [v.mapping_version] and other.dictionaries.generation == done.generation
        passed = await _submit(other, rule_breaking_order(SAMPLES))
        assert passed.status_code == 202 and passed.body["rules_version"] == v.mapping_version
        back = await gov.rollback(other.uow_factory, done.previous.id, actor="cat", runtime=other.runtime, clock=CLOCK)
        assert back.version.mapping_version == first
        started = time.monotonic()
        while c.runtime.ruleset.version != first:
            await c.dictionaries.check()
            assert time.monotonic() - started < POLL_INTERVAL_S + 1.0
            await asyncio.sleep(0.05)
        async with c.uow_factory(write=False) as uow:
            stored = await uow.orders.get(passed.order_id)
            actions = [e.action for e in await uow.audit.list(after_seq=0, limit=1000)]
        assert stored.rules_version == v.mapping_version  # kept after the rollback
        assert actions.count("ruleset.published") == 1 and actions.count("ruleset.rolled_back") == 1
    finally:
        await other.aclose()
