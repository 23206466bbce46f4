"""API-key authentication and role guards (CONTRACT §2): no or unknown key → 401, wrong role → 403.

Keys are stored only as SHA-256 hashes; a short-lived in-memory cache keeps the database out of the
hot path. ``admin`` may use every route. Each request also knows *who* calls: the key's id and
label (``caller_of``), cached with the role, for the audit entries of governance actions.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from gateway.auth import MISS, Caller, allowed, hash_key, parse_bearer
from gateway.errors import Forbidden, Unauthorized

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Coroutine[Any, Any, None]]


async def role_of(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The role of the request's API key; raises ``Unauthorized``."""
    cached = connection.scope.get("state", {}).get("role")
    if cached:
        return cached
    key = parse_bearer(connection.headers.get("authorization"))
    if not key:
        raise Unauthorized(
            hint="Send Authorization: Bearer <api key>; create one with `gateway keys create --role ROLE`"
        )
    container = connection.app.state.container
    digest = hash_key(key)
    caller = container.keys.get(digest)
    if caller is MISS:
        async with container.uow_factory(write=False) as uow:
            record = await uow.keys.find_by_hash(digest)
        live = record is not None and record.revoked_at is None
        caller = Caller(record.role, record.id, record.label) if live else None
        container.keys.put(digest, caller)
    if caller is None:
        raise Unauthorized()
    state = connection.scope.setdefault("state", {})
    state["role"], state["caller"] = caller.role, caller
    return caller.role


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """Who sent the request (after a guard or ``authorize`` let it through): its key's id, label
    and role. ``caller_of(request).actor`` is what audit entries name."""
    return connection.scope["state"]["caller"]


async def authorize(connection: ASGIConnection[Any, Any, Any, Any], wanted: frozenset[str]) -> str:
    """The request's role when it is one of ``wanted`` (or ``admin``); raises ``Unauthorized`` or
    ``Forbidden``. Handlers on the hot path call it themselves: Litestar copies the route handler
    for every guard call, which cost more than the whole check."""
    role = await role_of(connection)
    if not allowed(role, wanted):
        raise Forbidden(
            f"role {role!r} may not use this endpoint; it needs one of {sorted(wanted | {'admin'})}",
            f"角色 {role!r} 无权访问此接口，需要 {sorted(wanted | {'admin'})} 之一",
        )
    return role


def requires(*roles: str) -> Guard:
    """A guard letting through keys whose role is one of ``roles`` (or ``admin``)."""
    wanted = frozenset(roles)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        await authorize(connection, wanted)

    return guard


ANY_ROLE = ("platform", "wms", "erp", "it", "auditor")
