"""Stop the line (熔断) per ERP target: a pure state machine, no I/O, clock passed in.

``evaluate`` turns a target's backlog (undelivered orders and the age of the oldest) and its
current control into the next control, or None when nothing changes:

* running → stopped when ``backlog > max_backlog`` *and* ``oldest age > max_oldest_s``;
* stopped (automatically) → running when ``auto_resume`` and ``backlog < resume_below``.

``command`` applies an operator's ``stop`` or ``resume``. An operator stop is only undone by an
operator resume. After an operator resume the automatic stop is disarmed until the backlog has
drained below ``resume_below`` — otherwise the backlog that caused the stop would stop the line
again at once and the operator could never drain it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

LineState = Literal["running", "stopped"]


class StopLineConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[targets.X.stop_line]``; disabled while ``max_backlog`` is unset."""

    max_backlog: int | None = None
    """Undelivered orders for the target above which the line may stop."""
    max_oldest_s: float = 300.0
    """…and the oldest undelivered order must be older than this (seconds)."""
    resume_below: int | None = None
    """The lower mark for the automatic resume; None: half of ``max_backlog``."""
    auto_resume: bool = True
    webhook_url: str | None = None
    """An enterprise-WeChat (WeCom) group robot webhook to alert on each transition."""
    check_interval_s: float = 1.0
    """How often each delivering process evaluates the backlog."""
    defer_s: float = 2.0
    """How long a row of a stopped target is put back for before it is looked at again."""

    @property
    def enabled(self) -> bool:
        return self.max_backlog is not None

    @property
    def low_mark(self) -> int:
        if self.resume_below is not None:
            return self.resume_below
        return (self.max_backlog or 0) // 2


class Control(msgspec.Struct, kw_only=True, frozen=True):
    """A target's stop-line control, shared by every process through the database."""

    target: str
    state: LineState = "running"
    by: str = "auto"  # who made the last change: "auto" or the operator's role
    armed: bool = True  # False after an operator resume, until the backlog drains
    version: int = 0  # 0: never stored; every stored change increments it (compare-and-set)
    changed_at: datetime | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)  # the figures at the last change


def age_seconds(oldest: datetime | None, now: datetime) -> float:
    return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())


def evaluate(
    cfg: StopLineConfig, control: Control, *, backlog: int, oldest_age_s: float, now: datetime
) -> Control | None:
    """The next control of the target, or None when it stays as it is."""
    figures = {"backlog": backlog, "oldest_age_s": round(oldest_age_s, 3)}
    if not cfg.enabled:
        return None
    assert cfg.max_backlog is not None  # noqa: S101 - enabled
    if control.state == "running":
        if not control.armed:
            if backlog < cfg.low_mark or backlog <= cfg.max_backlog and oldest_age_s <= cfg.max_oldest_s:
                return msgspec.structs.replace(control, armed=True)
            return None
        if backlog > cfg.max_backlog and oldest_age_s > cfg.max_oldest_s:
            return msgspec.structs.replace(control, state="stopped", by="auto", changed_at=now, data=figures)
        return None
    if control.by == "auto" and cfg.auto_resume and backlog < cfg.low_mark:
        return msgspec.structs.replace(control, state="running", by="auto", armed=True, changed_at=now, data=figures)
    return None


def command(
    control: Control, action: Literal["stop", "resume"], *, actor: str, backlog: int, oldest_age_s: float, now: datetime
) -> Control:
    """An operator's command; the control it leaves (a resume of a running line re-arms nothing)."""
    figures = {"backlog": backlog, "oldest_age_s": round(oldest_age_s, 3)}
    if action == "stop":
        return msgspec.structs.replace(control, state="stopped", by=actor, armed=True, changed_at=now, data=figures)
    return msgspec.structs.replace(control, state="running", by=actor, armed=False, changed_at=now, data=figures)
