"""Administration: the retention purge over HTTP, for a scheduler that has an admin key and no
shell on the gateway's machine (``gateway retention purge`` is the same thing at the shell)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, post

from gateway.app.security import caller_of, requires
from gateway.errors import PayloadInvalid
from gateway.retention import payload_days, purge_payloads


class PurgeRequest(msgspec.Struct, forbid_unknown_fields=True):
    dry_run: bool = False


class AdminController(Controller):
    path = "/v1/admin"
    tags = ["admin"]

    @post("/retention/purge", guards=[requires("admin")], status_code=200)
    async def retention_purge(self, request: Request) -> dict[str, Any]:
        """Delete the raw payloads older than the retention period (body, optional:
        ``{"dry_run": true}`` to count them only). Orders, intercepts and the audit chain stay; the
        run is recorded as a ``retention.purged`` audit entry."""
        c = request.app.state.container
        dry_run = _purge_request(await request.body()).dry_run
        report = await purge_payloads(
            c.uow_factory,
            days=payload_days(c.runtime.config),
            now=c.clock.now(),
            actor=caller_of(request).actor,
            dry_run=dry_run,
        )
        return msgspec.to_builtins(report)


def _purge_request(raw: bytes) -> PurgeRequest:
    if not raw.strip():
        return PurgeRequest()
    try:
        return msgspec.json.decode(raw, type=PurgeRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PayloadInvalid(
            f'the purge request is invalid: {exc}; send {{"dry_run": true}}, {{"dry_run": false}} or nothing',
            f'清理请求无效：{exc}；请发送 {{"dry_run": true}}、{{"dry_run": false}} 或空请求体',
        ) from None
