"""What auditors read: intercepts (JSON and CSV for Excel) and the hash-chained audit log; and what
IT replays: dead letters."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from gateway.app.security import requires
from gateway.audit import Anchor, checked_anchor, verify_log
from gateway.errors import PayloadInvalid
from gateway.replay import DictionaryChoice, replay_dead_letter


def _when(value: str | None, name: str) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise PayloadInvalid(f"{name} is not an ISO-8601 time: {value!r}", f"{name} 不是 ISO-8601 时间") from None
    if dt.tzinfo is None:
        raise PayloadInvalid(f"{name} needs an offset, e.g. 2024-06-18T00:00:00+08:00", f"{name} 需要带时区偏移")
    return dt


def intercept_filters(
    rule: FromQuery[str | None] = None,
    platform: FromQuery[str | None] = None,
    shop: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """The filters shared by the JSON and CSV views of the intercept log."""
    return {
        "rule": rule,
        "platform": platform,
        "shop": shop,
        "since": _when(since, "since"),
        "until": _when(until, "until"),
    }


def _intercept_body(r: Any) -> dict[str, Any]:
    body = msgspec.to_builtins(r)
    body["created_at"] = r.created_at.isoformat() if r.created_at else None
    return body


class AuditController(Controller):
    path = "/v1"
    tags = ["audit"]

    dependencies = {"filters": Provide(intercept_filters, sync_to_thread=False)}

    @get("/intercepts", guards=[requires("auditor")])
    async def intercepts(
        self,
        request: Request,
        filters: NamedDependency[dict[str, Any]],
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            page = await uow.intercepts.list(**filters, cursor=cursor, limit=limit)
        return {"items": [_intercept_body(r) for r in page.items], "next_cursor": page.next_cursor}

    @get("/intercepts.csv", guards=[requires("auditor")])
    async def intercepts_csv(self, request: Request, filters: NamedDependency[dict[str, Any]]) -> Stream:
        """The same rows as CSV, UTF-8 with a BOM so Excel opens the Chinese text correctly."""
        c = request.app.state.container

        async def rows() -> AsyncIterator[bytes]:
            yield "\ufeff".encode()
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(
                [
                    "intercept_id",
                    "created_at",
                    "platform",
                    "shop_id",
                    "order_id",
                    "verdict",
                    "rules",
                    "message_zh",
                    "message_en",
                    "rules_version",
                    "mapping_version",
                    "payload_sha256",
                    "gateway_order_id",
                ]
            )
            cursor = None
            while True:
                async with c.uow_factory(write=False) as uow:
                    page = await uow.intercepts.list(**filters, cursor=cursor, limit=500)
                for r in page.items:
                    w.writerow(
                        [
                            r.id,
                            r.created_at.isoformat() if r.created_at else "",
                            r.platform,
                            r.shop_id or "",
                            r.platform_order_id or "",
                            r.verdict,
                            " ".join(r.rule_codes),
                            "；".join(v.get("message_zh", "") for v in r.violations),
                            "; ".join(v.get("message_en", "") for v in r.violations),
                            r.rules_version or "",
                            r.mapping_version or "",
                            r.payload_sha256,
                            r.order_id or "",
                        ]
                    )
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
                cursor = page.next_cursor
                if not cursor:
                    break

        return Stream(
            rows(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="intercepts.csv"'},
        )

    @get("/audit", guards=[requires("auditor")])
    async def audit(
        self,
        request: Request,
        after: Annotated[int, QueryParameter(ge=0)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Audit entries in sequence order after ``after``; pass the last seq back to page on."""
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            entries = await uow.audit.list(after_seq=after, limit=limit)
        items = [msgspec.to_builtins(e) for e in entries]
        return {"items": items, "next_after": items[-1]["seq"] if len(items) == limit else None}

    @get("/audit/verify", guards=[requires("auditor")])
    async def audit_verify(
        self,
        request: Request,
        anchor_seq: Annotated[int | None, QueryParameter(ge=1)] = None,
        anchor_hash: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """Walk the chain. With ``anchor_seq`` and ``anchor_hash`` (from ``gateway audit anchor``)
        also prove the chain up to that entry unchanged: ``"anchor": {"seq", "hash", "matches"}``."""
        anchor = _anchor(anchor_seq, anchor_hash)
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            check = await verify_log(uow.audit, anchor)
        body: dict[str, Any]
        if check.ok:
            body = {"ok": True, "checked": check.checked}
        else:
            body = {"ok": False, "broken_at": check.broken_at, "checked": check.checked, "reason": check.reason}
        if anchor is not None:
            body["anchor"] = {"seq": anchor.seq, "hash": anchor.hash, "matches": check.anchor_matches}
        return body


def _anchor(seq: int | None, digest: str | None) -> Anchor | None:
    if seq is None and not digest:
        return None
    if seq is None or not digest:
        raise PayloadInvalid(
            "give both anchor_seq and anchor_hash (as `gateway audit anchor` prints them), or neither",
            "anchor_seq 与 anchor_hash 须同时提供（即 `gateway audit anchor` 的输出），或都不提供",
        )
    try:
        return checked_anchor(seq, digest)
    except ValueError as exc:
        raise PayloadInvalid(str(exc), f"锚点无效：{exc}") from None


class DeadLetterController(Controller):
    path = "/v1/dead-letters"
    tags = ["dead letters"]

    @get("/", guards=[requires("it")])
    async def list_letters(
        self,
        request: Request,
        include_replayed: FromQuery[bool] = False,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            page = await uow.dead_letters.list(cursor=cursor, limit=limit, include_replayed=include_replayed)
        items = []
        for d in page.items:
            body = msgspec.to_builtins(d)
            body["created_at"] = d.created_at.isoformat() if d.created_at else None
            body["replayed_at"] = d.replayed_at.isoformat() if d.replayed_at else None
            items.append(body)
        return {"items": items, "next_cursor": page.next_cursor}

    @post("/{letter_id:str}/replay", guards=[requires("it")], status_code=202)
    async def replay(self, request: Request, letter_id: FromPath[str]) -> Response:
        """Requeue a dead letter's delivery under the same document code. Body (optional):
        ``{"dictionary": "first"}`` — the order as mapped on arrival (the default) — or
        ``{"dictionary": "current"}`` — its raw payload mapped again by today's dictionary."""
        c = request.app.state.container
        role = request.scope["state"]["role"]
        choice = _replay_choice(await request.body())
        result = await replay_dead_letter(
            letter_id, uow_factory=c.uow_factory, clock=c.clock, actor=role, runtime=c.runtime, dictionary=choice
        )
        c.wake_delivery()
        body = {
            "id": result.letter.id,
            "order_id": result.letter.order_id,
            "status": "requeued",
            "dictionary": result.dictionary,
            "mapping_version": result.mapping_version,
            "previous_mapping_version": result.previous_mapping_version,
        }
        if result.dictionary == "current":
            body["changed"] = result.changed
        return Response(body, status_code=202)


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True):
    dictionary: DictionaryChoice = "first"


def _replay_choice(raw: bytes) -> DictionaryChoice:
    if not raw.strip():
        return "first"
    try:
        return msgspec.json.decode(raw, type=ReplayRequest).dictionary
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadInvalid(
            f'the replay request is invalid: {exc}; send {{"dictionary": "first"}} or {{"dictionary": "current"}}',
            f'重放请求无效：{exc}；请发送 {{"dictionary": "first"}} 或 {{"dictionary": "current"}}',
        ) from None
