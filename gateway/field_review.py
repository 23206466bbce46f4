"""IT's review of unknown fields: list them with a suggested target, confirm one (which drafts a
dictionary change for the usual dry run and second-person approval) or dismiss it. Every
decision is in the audit log with the person who made it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway import governance as gov
from gateway.clock import Clock
from gateway.errors import Conflict, NotFound, RequestError
from gateway.ports import UnitOfWorkFactory
from gateway.unknown_fields import TARGETS, FieldStats, draft_change, suggest


class FieldDecided(Conflict):
    code = "FIELD_ALREADY_DECIDED"
    message_zh = "该字段已被处理"
    message_en = "This field was confirmed or dismissed already"


class NoSuggestion(RequestError):
    status_code = 422
    code = "NO_SUGGESTED_TARGET"
    message_zh = "没有建议的目标，请指定 target"
    message_en = "There is no suggested target; name one"


def describe(record: dict[str, Any]) -> dict[str, Any]:
    st: FieldStats = record["stats"]
    s = suggest(st)
    share = st.ratio_sum / st.numeric if st.numeric else None
    return {
        "id": record["id"],
        "platform": st.platform,
        "path": st.path,
        "count": st.count,
        "first_seen": st.first_seen,
        "last_seen": st.last_seen,
        "sample": st.sample,
        "numeric": st.numeric,
        "share_of_paid": round(share, 4) if share is not None else None,
        "state": record["state"],
        "target": record["target"],
        "decided_by": record["decided_by"],
        "decided_at": record["decided_at"],
        "draft_id": record["draft_id"],
        "suggestion": {"target": s.target, "reason_en": s.reason_en, "reason_zh": s.reason_zh},
    }


async def list_fields(
    uow_factory: UnitOfWorkFactory, platform: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    async with uow_factory(write=False) as uow:
        return [describe(r) for r in await uow.unknown_fields.list(platform, state)]


async def _field(uow_factory: UnitOfWorkFactory, field_id: int) -> dict[str, Any]:
    async with uow_factory(write=False) as uow:
        record = await uow.unknown_fields.get(field_id)
    if record is None:
        raise NotFound(f"no unknown field #{field_id}", f"未知字段 #{field_id} 不存在")
    if record["state"] != "new":
        raise FieldDecided(
            f"field #{field_id} was {record['state']} by {record['decided_by']}",
            f"字段 #{field_id} 已由 {record['decided_by']} 处理（{record['state']}）",
            state=record["state"],
        )
    return record


async def confirm(
    uow_factory: UnitOfWorkFactory,
    field_id: int,
    *,
    target: str | None,
    actor: str,
    clock: Clock,
    base: Path | None = None,
) -> dict[str, Any]:
    """Draft the dictionary change that maps the field to ``target`` (default: the suggestion)."""
    record = await _field(uow_factory, field_id)
    st: FieldStats = record["stats"]
    chosen = target or suggest(st).target
    if chosen is None:
        raise NoSuggestion(
            f"no suggested target for {st.path}; send one of {', '.join(TARGETS)}",
            f"{st.path} 没有建议的目标；请从 {'、'.join(TARGETS)} 中指定",
        )
    async with uow_factory(write=False) as uow:
        versions = await uow.dictionaries.list()
    published = next(
        (v for v in versions if v.kind == "order" and v.platform == st.platform and v.state == "published"), None
    )
    if published is None or published.id is None:
        raise NotFound(f"no published dictionary for {st.platform}", f"{st.platform} 没有已发布的字典")
    current = await gov.get_version(uow_factory, published.id)
    compiled = gov.check_text(current.text, origin=current.name, base=base)
    text = draft_change(current.text, compiled, st.path, chosen)
    draft = await gov.propose(
        uow_factory,
        text,
        actor=actor,
        clock=clock,
        note=f"{st.path} → {chosen} (unknown field #{field_id})",
        base=base,
    )
    async with uow_factory() as uow:
        if not await uow.unknown_fields.decide(
            field_id, state="confirmed", target=chosen, by=actor, at=clock.now(), draft_id=draft.id
        ):
            raise FieldDecided(f"field #{field_id} was decided meanwhile", f"字段 #{field_id} 已被他人处理")
        await uow.audit.append(
            actor=actor,
            action="unknown_field.confirmed",
            subject_type="unknown_field",
            subject_id=str(field_id),
            data={"platform": st.platform, "path": st.path, "target": chosen, "draft_id": draft.id},
        )
        await uow.commit()
    return {"field": field_id, "target": chosen, "draft": gov.describe(draft)} | {
        "next": f"POST /v1/mappings/versions/{draft.id}/dry-run"
    }


async def dismiss(uow_factory: UnitOfWorkFactory, field_id: int, *, actor: str, clock: Clock) -> dict[str, Any]:
    record = await _field(uow_factory, field_id)
    st: FieldStats = record["stats"]
    async with uow_factory() as uow:
        if not await uow.unknown_fields.decide(
            field_id, state="dismissed", target=None, by=actor, at=clock.now(), draft_id=None
        ):
            raise FieldDecided(f"field #{field_id} was decided meanwhile", f"字段 #{field_id} 已被他人处理")
        await uow.audit.append(
            actor=actor,
            action="unknown_field.dismissed",
            subject_type="unknown_field",
            subject_id=str(field_id),
            data={"platform": st.platform, "path": st.path},
        )
        await uow.commit()
    return {"field": field_id, "state": "dismissed"}
