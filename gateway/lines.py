"""Stop the line, wired: evaluates each target's backlog on a timer (and sets the backlog gauges,
``outbox_pending`` and ``oldest_undelivered_seconds``, from the same reading), stores transitions in the
``target_controls`` table (compare-and-set, so of several processes exactly one makes — and
alerts — each transition), applies operator commands, and tells delivery which targets are
stopped. The decisions themselves are ``gateway.stopline``'s.

Each transition raises the alert once: the ``stop_the_line{target}`` gauge, a warning in the log,
an audit entry (``target.stopped`` / ``target.resumed`` with the figures), and a POST to the
target's WeCom robot webhook when one is configured (failures are logged, never fatal). Every
process refreshes the gauge and its view of the stopped targets from the table on each tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from gateway.clock import Clock
from gateway.config import TargetConfig
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ports import TargetBacklog, UnitOfWorkFactory
from gateway.stopline import Control, age_seconds, command, evaluate

log = get_logger("gateway.lines")


def alert_text(target: str, control: Control) -> str:
    """The WeCom message: Chinese, then English."""
    backlog = control.data.get("backlog", "?")
    age = control.data.get("oldest_age_s", "?")
    who = "自动" if control.by == "auto" else f"操作员（{control.by}）"
    if control.state == "stopped":
        return (
            f"【熔断】ERP 目标 {target} 已停止发送新单据（{who}）：积压 {backlog} 单，最早一单已等待 {age} 秒。\n"
            f"[Stop the line] Deliveries to ERP target {target} are stopped ({control.by}): "
            f"backlog {backlog} orders, oldest waiting {age} s."
        )
    return (
        f"【恢复】ERP 目标 {target} 已恢复发送（{who}）：积压 {backlog} 单。\n"
        f"[Resumed] Deliveries to ERP target {target} resumed ({control.by}): backlog {backlog} orders."
    )


class StopLines:
    def __init__(
        self,
        targets: Mapping[str, TargetConfig],
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        http: httpx.AsyncClient | None = None,
        on_resume: Any = None,  # called after a resume: wake delivery
    ) -> None:
        self.targets = targets
        self.uow_factory = uow_factory
        self.clock = clock
        self.metrics = metrics
        self.http = http
        self.on_resume = on_resume
        self.stopped: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._alerts: set[asyncio.Task[None]] = set()
        enabled = [t.stop_line.check_interval_s for t in targets.values() if t.stop_line.enabled]
        # Without stop-the-line the loop still refreshes the backlog gauges, less often.
        self.interval_s = min(enabled) if enabled else 5.0

    # ------------------------------------------------------------------ what delivery asks

    def is_stopped(self, target: str) -> bool:
        return target in self.stopped

    def defer_s(self, target: str) -> float:
        cfg = self.targets.get(target)
        return cfg.stop_line.defer_s if cfg is not None else 2.0

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stop-the-line")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._alerts:
            await asyncio.wait(self._alerts, timeout=5)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # the database may be briefly away: try again next tick
                log.exception("evaluating stop-the-line failed")
            await asyncio.sleep(self.interval_s)

    async def read(self) -> tuple[dict[str, TargetBacklog], dict[str, Control]]:
        async with self.uow_factory(write=False) as uow:
            return await uow.outbox.backlog(), await uow.controls.all()

    async def tick(self) -> list[Control]:
        """Evaluate every target once; return the transitions this process made."""
        backlog, controls = await self.read()
        now = self.clock.now()
        made: list[Control] = []
        for name, target in self.targets.items():
            if not target.stop_line.enabled:
                continue
            current = controls.get(name) or Control(target=name)
            b = backlog.get(name)
            count = b.count if b else 0
            age = age_seconds(b.oldest_created_at if b else None, now)
            nxt = evaluate(target.stop_line, current, backlog=count, oldest_age_s=age, now=now)
            if nxt is not None:
                stored = await self._store(current, nxt, actor="gateway")
                if stored is not None:
                    controls[name] = stored
                    if stored.state != current.state:
                        made.append(stored)
        self._refresh(controls)
        if self.metrics is not None:
            self.metrics.set_backlog(backlog, now, self.targets)
        return made

    async def command(self, target: str, action: Literal["stop", "resume"], *, actor: str) -> Control:
        """An operator's stop or resume; raises LookupError for an unknown target."""
        if target not in self.targets:
            raise LookupError(target)
        for _ in range(5):  # lost a compare-and-set to another process: read again
            backlog, controls = await self.read()
            current = controls.get(target) or Control(target=target)
            b = backlog.get(target)
            now = self.clock.now()
            nxt = command(
                current,
                action,
                actor=actor,
                backlog=b.count if b else 0,
                oldest_age_s=age_seconds(b.oldest_created_at if b else None, now),
                now=now,
            )
            stored = await self._store(current, nxt, actor=actor)
            if stored is not None:
                controls[target] = stored
                self._refresh(controls)
                return stored
        raise RuntimeError(f"could not change the line of {target}: too much contention")

    async def _store(self, current: Control, nxt: Control, *, actor: str) -> Control | None:
        """Write ``nxt`` if nobody changed the row since ``current``; audit and alert a transition."""
        changed = nxt.state != current.state
        async with self.uow_factory() as uow:
            if not await uow.controls.put(nxt):
                return None
            if changed or actor != "gateway":
                await uow.audit.append(
                    actor=actor,
                    action="target.stopped" if nxt.state == "stopped" else "target.resumed",
                    subject_type="target",
                    subject_id=nxt.target,
                    data=nxt.data | {"by": nxt.by, "previous": current.state},
                )
            await uow.commit()
        stored = Control(**{**_fields(nxt), "version": nxt.version + 1})
        if changed:
            self._alert(stored)
        return stored

    def _refresh(self, controls: Mapping[str, Control]) -> None:
        self.stopped = {name for name, c in controls.items() if c.state == "stopped"}
        if self.metrics is not None:
            for name in self.targets:
                self.metrics.stop_the_line.labels(name).set(1 if name in self.stopped else 0)

    # ------------------------------------------------------------------ alerts

    def _alert(self, control: Control) -> None:
        if self.metrics is not None:
            self.metrics.stop_the_line.labels(control.target).set(1 if control.state == "stopped" else 0)
        log.warning(
            "stop the line: deliveries stopped" if control.state == "stopped" else "stop the line: deliveries resumed",
            target=control.target,
            by=control.by,
            **control.data,
        )
        if control.state == "running" and self.on_resume is not None:
            self.on_resume()
        cfg = self.targets.get(control.target)
        url = cfg.stop_line.webhook_url if cfg is not None else None
        if url:
            task = asyncio.get_running_loop().create_task(self._post(url, control))
            self._alerts.add(task)
            task.add_done_callback(self._alerts.discard)

    async def _post(self, url: str, control: Control) -> None:
        body = {"msgtype": "text", "text": {"content": alert_text(control.target, control)}}
        try:
            if self.http is not None:
                r = await self.http.post(url, json=body, timeout=5.0)
            else:
                async with httpx.AsyncClient() as client:
                    r = await client.post(url, json=body, timeout=5.0)
            answer = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            if r.status_code >= 300 or answer.get("errcode", 0) != 0:
                log.warning(
                    "WeCom webhook refused the alert", target=control.target, status=r.status_code, answer=answer
                )
        except Exception as exc:  # an alert that cannot be sent must not stop anything else
            log.warning("WeCom webhook failed", target=control.target, error=type(exc).__name__, detail=str(exc))


def _fields(control: Control) -> dict[str, Any]:
    return {f: getattr(control, f) for f in control.__struct_fields__}
