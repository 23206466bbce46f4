"""The retention policy's parts that need no database: the period, a run cut off by an error, and
what a purged payload answers (gateway/retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.config import load_config, parse_config
from gateway.errors import ConfigError, PayloadPurged
from gateway.retention import ENV_PAYLOAD_DAYS, payload_days, purge_payloads, stored_payload
from tests.unit.fakes import FakePayloadStore, FakeUnitOfWorkFactory

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_the_period_comes_from_the_configuration_and_the_environment_overrides_it() -> None:
    bundled = load_config(None)
    assert payload_days(bundled, env={}) == 180
    assert payload_days(parse_config("[retention]\npayload_days = 30\n", origin="t"), env={}) == 30
    assert payload_days(parse_config("", origin="t"), env={}) == 180  # no [retention]: the default
    assert payload_days(bundled, env={ENV_PAYLOAD_DAYS: "7"}) == 7
    assert payload_days(bundled, env={ENV_PAYLOAD_DAYS: " "}) == 180
    with pytest.raises(ConfigError, match=ENV_PAYLOAD_DAYS):
        payload_days(bundled, env={ENV_PAYLOAD_DAYS: "-1"})
    with pytest.raises(ConfigError, match="payload_days"):
        parse_config("[retention]\npayload_days = -5\n", origin="t")
    with pytest.raises(ConfigError):
        parse_config("[retention]\npayload_day = 5\n", origin="t")


async def _stored(factory: FakeUnitOfWorkFactory, n: int, age_days: int) -> list[str]:
    shas = [f"{age_days:03d}{i:061d}" for i in range(n)]
    async with factory() as uow:
        for sha in shas:
            await uow.payloads.put(sha, b'{"x": 1}')
        await uow.commit()
    for sha in shas:
        factory.state.payload_received[sha] = NOW - timedelta(days=age_days)
    return shas


async def test_days_zero_keeps_everything() -> None:
    factory = FakeUnitOfWorkFactory()
    await _stored(factory, 3, 400)
    report = await purge_payloads(factory, days=0, now=NOW, actor="ops")
    assert (report.cutoff, report.payloads, report.audit_seq) == (None, 0, None)
    assert len(factory.state.payloads) == 3 and factory.state.audit == []


async def test_a_run_cut_off_by_an_error_records_what_it_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    factory = FakeUnitOfWorkFactory()
    await _stored(factory, 5, 200)
    real = FakePayloadStore.purge_before
    calls = []

    async def failing(self: FakePayloadStore, cutoff: datetime, *, limit: int) -> tuple[int, int]:
        calls.append(limit)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return await real(self, cutoff, limit=limit)

    monkeypatch.setattr(FakePayloadStore, "purge_before", failing)
    with pytest.raises(RuntimeError, match="went away"):
        await purge_payloads(factory, days=180, now=NOW, actor="ops", batch=2)
    assert len(factory.state.payloads) == 3  # the first batch is committed, the second rolled back
    (entry,) = factory.state.audit
    assert entry.action == "retention.purged" and entry.actor == "ops"
    assert entry.data["completed"] is False and entry.data["payloads"] == 2 and entry.data["batches"] == 1


async def test_a_purged_payload_is_payload_purged() -> None:
    factory = FakeUnitOfWorkFactory()
    (sha,) = await _stored(factory, 1, 1)
    async with factory(write=False) as uow:
        assert await stored_payload(uow, sha, of_en="order X", of_zh="订单 X ") == b'{"x": 1}'
        with pytest.raises(PayloadPurged) as caught:
            await stored_payload(uow, "f" * 64, of_en="order X", of_zh="订单 X ")
    body = caught.value.to_body()
    assert caught.value.status_code == 410
    assert body["code"] == "PAYLOAD_PURGED" and body["payload_sha256"] == "f" * 64
    assert "order X" in body["message_en"] and "订单 X" in body["message_zh"]
