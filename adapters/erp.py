"""Which adapter speaks a target's transport, and what every adapter may share.

A target of the configuration (``[targets.NAME]``) names its ``transport``; ``make_adapter``
imports that transport's module and calls its ``from_target(ctx)``. Adding a transport is one
module with such a function and one line in ``TRANSPORTS``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from gateway.config import TargetConfig
from gateway.errors import ConfigError, PermanentError
from gateway.ports import ErpAdapter, ErpDocument, ErpReceipt, UnitOfWorkFactory

if TYPE_CHECKING:
    from redis.asyncio import Redis

#: transport name → the module whose ``from_target(ctx)`` builds its adapter.
TRANSPORTS: dict[str, str] = {
    "u8_eai": "adapters.u8.eai",
    "u8_openapi": "adapters.u8.openapi",
    "k3_webapi": "adapters.k3.webapi",
    "k3_soap": "adapters.k3.soap",
}


@dataclass(frozen=True)
class AdapterContext:
    """What the composition root hands an adapter factory.

    Attributes:
        name: the target's name in the configuration.
        target: its configuration (address, credentials from the environment, timeouts, options).
        http: the process's shared HTTP client (connection pool).
        redis: the shared Redis client when ``GATEWAY_REDIS_URL`` is set, so state that must be
            one for all workers (a K3 session) lives there; None on the embedded queue.
        uow_factory: the gateway database, for what an adapter must keep across retries and
            restarts (a U8+ OpenAPI ``tradeid``).
    """

    name: str
    target: TargetConfig
    http: httpx.AsyncClient
    redis: Redis | None = None
    uow_factory: UnitOfWorkFactory | None = None

    def require(self, *keys: str) -> dict[str, str]:
        """The target's ``auth`` values for ``keys``; a ``ConfigError`` naming the missing ones."""
        missing = [k for k in keys if not self.target.auth.get(k)]
        if missing:
            names = ", ".join(missing)
            raise ConfigError(
                f"target {self.name}: [targets.{self.name}.auth] lacks {names}",
                f"目标 {self.name}：[targets.{self.name}.auth] 缺少 {names}",
                hint="Name an environment variable for each (key = \"${VAR}\") and export it",
            )
        return {k: self.target.auth[k] for k in keys}


def make_adapter(ctx: AdapterContext) -> ErpAdapter:
    """The adapter of ``ctx.target.transport``."""
    module_name = TRANSPORTS.get(ctx.target.transport)
    if module_name is None:
        raise ConfigError(
            f"target {ctx.name}: unknown transport {ctx.target.transport!r}",
            f"目标 {ctx.name}：未知传输方式 {ctx.target.transport!r}",
            hint=f"Use one of {', '.join(sorted(TRANSPORTS))}",
        )
    factory: Callable[[AdapterContext], ErpAdapter] = importlib.import_module(module_name).from_target
    return factory(ctx)


def written_earlier(
    found: ErpReceipt | None, doc: ErpDocument, *, erp: str, erp_zh: str, answer: str, hint: str
) -> ErpReceipt:
    """The receipt of a document whose code the ERP refused as taken: an earlier attempt of ours
    wrote it, so the look-up (``found``) must find it.

    Raises:
        PermanentError: the look-up cannot find it (another document type may hold the code);
            ``answer`` is the ERP's refusal text, ``hint`` where to look.
    """
    if found is None:
        raise PermanentError(
            f"{erp} reports document code {doc.code} as taken but its look-up cannot find it",
            f"{erp_zh} 报告单据编号 {doc.code} 已存在，但查询不到",
            partner_message=answer,
            hint=hint,
            document_code=doc.code,
        )
    return ErpReceipt(
        document_no=found.document_no,
        erp_key=found.erp_key,
        message=f"already in {erp}: written by an earlier attempt",
    )
