"""ERP targets for IT: each target's stop-the-line and circuit state, and the operator's
``stop`` and ``resume`` commands (shared by every process through ``target_controls``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar import get as get_
from litestar.params import FromPath

from gateway.app.security import requires
from gateway.errors import NotFound
from gateway.stopline import Control, age_seconds


def _control_body(control: Control) -> dict[str, Any]:
    return {
        "state": control.state,
        "by": control.by,
        "armed": control.armed,
        "changed_at": control.changed_at.isoformat() if control.changed_at else None,
        "figures": control.data,
    }


class TargetController(Controller):
    path = "/v1/targets"
    tags = ["targets"]

    @get_("/", guards=[requires("it", "auditor")])
    async def list_targets(self, request: Request) -> dict[str, Any]:
        """Every target: its backlog, its stop-the-line thresholds and state, and its circuit."""
        c = request.app.state.container
        backlog, controls = await c.lines.read()
        circuits = await c.circuit_states()
        now = c.clock.now()
        items = []
        for name, target in sorted(c.config.targets.items()):
            b = backlog.get(name)
            cfg = target.stop_line
            control = controls.get(name) or Control(target=name)
            items.append(
                {
                    "target": name,
                    "backlog": b.count if b else 0,
                    "oldest_age_s": round(age_seconds(b.oldest_created_at if b else None, now), 3),
                    "stop_line": {
                        "enabled": cfg.enabled,
                        "max_backlog": cfg.max_backlog,
                        "max_oldest_s": cfg.max_oldest_s,
                        "resume_below": cfg.low_mark if cfg.enabled else None,
                        "auto_resume": cfg.auto_resume,
                        "webhook": bool(cfg.webhook_url),
                    }
                    | _control_body(control),
                    "circuit": circuits.get(name, "closed"),
                }
            )
        return {"items": items}

    @post("/{target:str}/stop", guards=[requires("it")], status_code=200)
    async def stop(self, request: Request, target: FromPath[str]) -> dict[str, Any]:
        """Stop sending new work to ``target`` until an operator resumes it."""
        return await self._command(request, target, "stop")

    @post("/{target:str}/resume", guards=[requires("it")], status_code=200)
    async def resume(self, request: Request, target: FromPath[str]) -> dict[str, Any]:
        """Resume deliveries to ``target``."""
        return await self._command(request, target, "resume")

    async def _command(self, request: Request, target: str, action: Any) -> dict[str, Any]:
        c = request.app.state.container
        role = request.scope["state"]["role"]
        try:
            control = await c.lines.command(target, action, actor=role)
        except LookupError:
            raise NotFound(f"no ERP target {target}", f"ERP 目标 {target} 不存在") from None
        return {"target": target} | _control_body(control)
