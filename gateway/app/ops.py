"""For operators: liveness, readiness, Prometheus metrics, the OpenAPI document and the status page."""

from __future__ import annotations

from importlib import resources
from typing import Any

from litestar import Controller, Request, Response, get
from sqlalchemy import text

from gateway.app.security import ANY_ROLE, requires


class OpsController(Controller):
    tags = ["operations"]

    @get("/health/live", include_in_schema=True)
    async def live(self) -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "ok"}

    @get("/health/ready")
    async def ready(self, request: Request) -> Response:
        """Ready to take orders: the database answers and, embedded, the worker runs."""
        c = request.app.state.container
        checks: dict[str, Any] = {}
        ok = True
        try:
            async with c.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True, "dialect": c.db.dialect}
        except Exception as exc:  # readiness reports, it does not raise
            ok = False
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        if c.settings.embedded_queue:
            alive = c.worker is not None and c.worker.running
            checks["queue"] = {"ok": alive, "kind": "embedded"}
            ok = ok and alive
        elif c.arq is not None:
            try:
                await c.arq.ping()
                alive = c.relay is not None and c.relay.running
                checks["queue"] = {"ok": alive, "kind": "arq", "relay": alive}
            except Exception as exc:  # Redis down: orders are still accepted into the outbox
                alive = False
                checks["queue"] = {"ok": False, "kind": "arq", "error": type(exc).__name__}
            ok = ok and alive
        # The circuits every worker shares (in Redis with arq, in this process when embedded).
        # An open circuit does not make this process unready: it still takes orders.
        states = await c.circuit_states()
        checks["erp_targets"] = {
            name: {"ok": states[name] in ("closed", "half_open"), "circuit": states[name]} for name in states
        }
        return Response({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @get("/metrics")
    async def metrics(self, request: Request) -> Response:
        """Prometheus text format."""
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            c.metrics.set_backlog(await uow.outbox.backlog(), c.clock.now(), c.config.targets)
        await c.circuit_states()  # sets the circuit gauges (an open circuit whose interval passed turns half-open)
        body, content_type = c.metrics.render()
        return Response(body, media_type=content_type)

    @get("/schema")
    async def schema(self, request: Request) -> dict[str, Any]:
        """The OpenAPI document of this API."""
        return request.app.openapi_schema.to_schema()

    @get("/", include_in_schema=False)
    async def console(self) -> Response:
        """The status page; it asks for an API key and reads ``/v1/status`` with it."""
        page = resources.files("gateway.app").joinpath("console.html").read_text(encoding="utf-8")
        return Response(page, media_type="text/html; charset=utf-8")

    @get("/v1/status", guards=[requires(*ANY_ROLE)])
    async def status(self, request: Request) -> dict[str, Any]:
        """Counts for the status page: orders per state, pending deliveries, dead letters, audit."""
        c = request.app.state.container
        async with c.db.engine.connect() as conn:
            states = dict((await conn.execute(text("SELECT state, COUNT(*) FROM orders GROUP BY state"))).all())
            intercepts = (await conn.execute(text("SELECT COUNT(*) FROM intercepts"))).scalar_one()
            dead = (
                await conn.execute(text("SELECT COUNT(*) FROM dead_letters WHERE replayed_at IS NULL"))
            ).scalar_one()
            audit = (await conn.execute(text("SELECT COALESCE(MAX(seq), 0) FROM audit_log"))).scalar_one()
        async with c.uow_factory(write=False) as uow:
            pending = await uow.outbox.pending_count()
        return {
            "role": request.scope["state"]["role"],
            "orders": states,
            "intercepts": intercepts,
            "pending_deliveries": pending,
            "dead_letters": dead,
            "audit_entries": audit,
            "targets": sorted(c.config.targets),
            "rules_version": c.runtime.ruleset.version,
            "mapping_versions": {p: d.version for p, d in c.runtime.platform_dictionaries.items()},
        }
