"""Retention of raw payloads: the platform's bytes are kept ``[retention] payload_days`` (180 by
default; ``GATEWAY_RETENTION_PAYLOAD_DAYS`` overrides, 0 keeps them forever), then deleted by
``gateway retention purge`` (or ``POST /v1/admin/retention/purge``).

Only ``raw_payloads`` rows go. Orders, binder rows, timelines, intercepts (their snapshot is the
masked canonical order, not the payload), refunds and the audit log stay as they are, and keep the
payload's SHA-256: an audit entry whose hash covers ``payload_sha256`` still verifies, the hash
still names what was received, and the bytes are gone. What needs the bytes afterwards (a dead
letter replayed with today's dictionary) answers 410 ``PAYLOAD_PURGED``.

A purge deletes in batches, oldest first, each batch its own transaction, so intake keeps going on
SQLite's single writer between batches. One audit entry, ``retention.purged``, records the run
(cutoff, counts, bytes, who) in the transaction of its last batch. A run stopped by an error
records what it had deleted with ``"completed": false``; a run killed outright records nothing,
and the next run's entry, whose cutoff is later, states that nothing older remains.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import msgspec

from gateway.audit import AuditEntry
from gateway.config import GatewayConfig
from gateway.errors import ConfigError, PayloadPurged
from gateway.ports import UnitOfWork, UnitOfWorkFactory

ENV_PAYLOAD_DAYS = "GATEWAY_RETENTION_PAYLOAD_DAYS"
PURGE_BATCH = 1000

Progress = Callable[[int, int], None]  # (deleted so far, to delete)


def payload_days(config: GatewayConfig, env: Mapping[str, str] | None = None) -> int:
    """Days raw payloads are kept: ``GATEWAY_RETENTION_PAYLOAD_DAYS`` if set, else the
    configuration's ``[retention] payload_days``; 0 keeps them forever."""
    env = os.environ if env is None else env
    raw = (env.get(ENV_PAYLOAD_DAYS) or "").strip()
    if not raw:
        return config.retention.payload_days
    if not raw.isdigit():
        raise ConfigError(
            f"{ENV_PAYLOAD_DAYS}={raw!r} is not a whole number of days (0 keeps payloads forever)",
            f"{ENV_PAYLOAD_DAYS}={raw!r} 不是整数天数（0 表示永久保留）",
            hint=f"unset {ENV_PAYLOAD_DAYS} to use [retention] payload_days of the configuration",
        )
    return int(raw)


class PurgeReport(msgspec.Struct, kw_only=True):
    """What a purge deleted (or, with ``dry_run``, would delete)."""

    dry_run: bool
    payload_days: int
    cutoff: str | None  # payloads first received before this time go; None: retention is off
    payloads: int = 0
    bytes: int = 0  # uncompressed
    oldest_received_at: str | None = None
    batches: int = 0
    completed: bool = True
    audit_seq: int | None = None  # the ``retention.purged`` entry


async def purge_payloads(
    uow_factory: UnitOfWorkFactory,
    *,
    days: int,
    now: datetime,
    actor: str,
    dry_run: bool = False,
    batch: int = PURGE_BATCH,
    progress: Progress | None = None,
) -> PurgeReport:
    """Delete the raw payloads first received more than ``days`` days before ``now``.

    Args:
        days: The retention period; 0 purges nothing.
        actor: Who runs it, as the audit entry names them.
        dry_run: Count what would go; delete nothing, write no audit entry.
        progress: Called after each batch with (deleted so far, to delete).
    """
    if days <= 0:
        return PurgeReport(dry_run=dry_run, payload_days=days, cutoff=None)
    cutoff = now - timedelta(days=days)
    async with uow_factory(write=False) as uow:
        ages = await uow.payloads.received_before(cutoff)
    report = PurgeReport(
        dry_run=dry_run,
        payload_days=days,
        cutoff=cutoff.isoformat(),
        oldest_received_at=ages.oldest.isoformat() if ages.oldest else None,
    )
    if dry_run:
        report.payloads, report.bytes = ages.count, ages.bytes
        return report
    try:
        while True:
            async with uow_factory() as uow:
                n, size = await uow.payloads.purge_before(cutoff, limit=batch)
                step = msgspec.structs.replace(
                    report, payloads=report.payloads + n, bytes=report.bytes + size, batches=report.batches + 1
                )
                entry = await _record(uow, step, actor) if n < batch else None
                await uow.commit()
            report = step
            if progress is not None:
                progress(report.payloads, max(ages.count, report.payloads))
            if entry is not None:
                report.audit_seq = entry.seq
                return report
    except BaseException:
        if report.payloads:  # what the committed batches deleted
            report.completed = False
            try:
                async with uow_factory() as uow:
                    entry = await _record(uow, report, actor)
                    await uow.commit()
                report.audit_seq = entry.seq
            except Exception:  # noqa: BLE001, S110 - the first error is the one to report
                pass
        raise


async def _record(uow: UnitOfWork, report: PurgeReport, actor: str) -> AuditEntry:
    data = msgspec.to_builtins(report)
    for key in ("dry_run", "audit_seq"):
        data.pop(key)
    return await uow.audit.append(
        actor=actor, action="retention.purged", subject_type="retention", subject_id="raw_payloads", data=data
    )


async def stored_payload(uow: UnitOfWork, sha256: str, *, of_en: str, of_zh: str) -> bytes:
    """The raw payload ``sha256`` of a stored record (an order, an intercept, a refund).

    Such a payload was stored in the transaction that stored its record, so one that is missing
    was purged.

    Raises:
        PayloadPurged: it is not stored any more.
    """
    raw = await uow.payloads.get(sha256)
    if raw is None:
        raise PayloadPurged(
            f"the raw payload of {of_en} (sha256 {sha256}) was deleted under the retention policy; "
            "the record and the payload's hash are kept",
            f"{of_zh}的原始报文（sha256 {sha256}）已按保留期限删除；记录及报文哈希仍保留",
            payload_sha256=sha256,
        )
    return raw
