"""Stop the line: the pure state machine with a fake clock, its wiring on the fakes (transitions
stored once, audited, metered, alerted) and delivery deferring a stopped target's rows."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import msgspec
import pytest

from gateway.config import load_config, parse_config
from gateway.delivery import DeliveryDeps, deliver
from gateway.lines import StopLines, alert_text
from gateway.metrics import Metrics
from gateway.stopline import Control, StopLineConfig, command, evaluate
from tests.unit.fakes import FakeUnitOfWorkFactory

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CFG = StopLineConfig(max_backlog=10, max_oldest_s=60, resume_below=3)


class FakeClock:
    def __init__(self, t: datetime = T0) -> None:
        self.t = t

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def step(cfg: StopLineConfig, c: Control, backlog: int, age: float, clock: FakeClock) -> Control:
    nxt = evaluate(cfg, c, backlog=backlog, oldest_age_s=age, now=clock.now())
    return c if nxt is None else nxt


# --------------------------------------------------------------------------- the state machine


def test_disabled_without_max_backlog() -> None:
    assert not StopLineConfig().enabled
    assert evaluate(StopLineConfig(), Control(target="u8"), backlog=10**6, oldest_age_s=10**6, now=T0) is None


def test_stops_only_when_both_the_backlog_and_the_oldest_age_pass_their_limits() -> None:
    clock = FakeClock()
    c = Control(target="u8")
    assert step(CFG, c, 11, 59, clock).state == "running"  # many, but fresh
    assert step(CFG, c, 10, 600, clock).state == "running"  # old, but not more than max_backlog
    clock.advance(5)
    stopped = step(CFG, c, 11, 61, clock)
    assert stopped.state == "stopped" and stopped.by == "auto" and stopped.changed_at == clock.now()
    assert stopped.data == {"backlog": 11, "oldest_age_s": 61}


def test_resumes_automatically_below_the_lower_mark_only() -> None:
    clock = FakeClock()
    c = step(CFG, Control(target="u8"), 11, 61, clock)
    assert step(CFG, c, 5, 0, clock).state == "stopped"  # below max_backlog, not below resume_below
    assert step(CFG, c, 3, 0, clock).state == "stopped"
    clock.advance(30)
    resumed = step(CFG, c, 2, 0, clock)
    assert resumed.state == "running" and resumed.by == "auto" and resumed.changed_at == clock.now()


def test_no_automatic_resume_when_disabled_and_the_default_lower_mark_is_half() -> None:
    cfg = StopLineConfig(max_backlog=10, max_oldest_s=1, auto_resume=False)
    assert cfg.low_mark == 5
    c = step(cfg, Control(target="u8"), 11, 2, FakeClock())
    assert step(cfg, c, 0, 0, FakeClock()).state == "stopped"


def test_an_operator_stop_is_only_undone_by_an_operator() -> None:
    clock = FakeClock()
    c = command(Control(target="u8"), "stop", actor="it", backlog=0, oldest_age_s=0, now=clock.now())
    assert c.state == "stopped" and c.by == "it"
    assert step(CFG, c, 0, 0, clock).state == "stopped"  # empty backlog: still stopped
    c = command(c, "resume", actor="it", backlog=0, oldest_age_s=0, now=clock.now())
    assert c.state == "running"


def test_after_an_operator_resume_the_same_backlog_does_not_stop_the_line_again() -> None:
    clock = FakeClock()
    c = step(CFG, Control(target="u8"), 20, 100, clock)
    c = command(c, "resume", actor="it", backlog=20, oldest_age_s=100, now=clock.now())
    assert c.state == "running" and not c.armed
    clock.advance(10)
    assert step(CFG, c, 20, 110, clock).state == "running"  # draining: not stopped again
    c = step(CFG, c, 2, 1, clock)  # drained below the lower mark: armed again
    assert c.armed and c.state == "running"
    assert step(CFG, c, 11, 61, clock).state == "stopped"


def test_stop_line_configuration_parses() -> None:
    demo = load_config(None, env={})
    assert not demo.targets["u8-demo"].stop_line.enabled
    text = """
[targets.u8.stop_line]
max_backlog = 500
max_oldest_s = 600
resume_below = 100
auto_resume = false
webhook_url = "${WECOM_HOOK}"
[targets.u8]
transport = "u8_eai"
url = "http://u8"
"""
    cfg = parse_config(text, origin="t", env={"WECOM_HOOK": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"})
    sl = cfg.targets["u8"].stop_line
    assert (sl.max_backlog, sl.max_oldest_s, sl.low_mark, sl.auto_resume) == (500, 600, 100, False)
    assert sl.webhook_url and sl.webhook_url.endswith("key=k")


# --------------------------------------------------------------------------- wired on the fakes


def _config(webhook: str | None = None):
    hook = f'webhook_url = "{webhook}"\n' if webhook else ""
    text = f"""
[targets.u8-demo]
transport = "u8_eai"
url = "http://u8"
[targets.u8-demo.stop_line]
max_backlog = 2
max_oldest_s = 10
resume_below = 1
{hook}"""
    return parse_config(text, origin="t", env={})


async def _fill(uow, n: int) -> None:
    async with uow() as u:
        for i in range(n):
            await u.outbox.add(order_id=f"o{i}", target="u8-demo", kind="saleorder", available_at=T0)
        await u.commit()


async def test_a_growing_backlog_stops_the_line_once_and_a_drained_one_resumes_it() -> None:
    uow = FakeUnitOfWorkFactory()
    clock = FakeClock(datetime.now(UTC))
    metrics = Metrics(targets=["u8-demo"])
    config = _config()
    woken = []
    lines = StopLines(config.targets, uow, clock, metrics=metrics, on_resume=lambda: woken.append(1))
    other = StopLines(config.targets, uow, clock)  # a second process sharing the database
    await _fill(uow, 3)
    assert await lines.tick() == []  # three undelivered, but fresh
    clock.advance(11)
    [made] = await lines.tick()
    assert made.state == "stopped" and lines.is_stopped("u8-demo")
    assert await other.tick() == [] and other.is_stopped("u8-demo")  # sees it; does not alert again
    assert metrics.stop_the_line.labels("u8-demo")._value.get() == 1
    async with uow(write=False) as u:
        [entry] = [e for e in await u.audit.list(after_seq=0, limit=10) if e.action.startswith("target.")]
    assert entry.action == "target.stopped" and entry.data["backlog"] == 3 and entry.subject_id == "u8-demo"
    for row in uow.state.outbox.values():
        row.state = "done"
    [made] = await other.tick()
    assert made.state == "running" and not other.is_stopped("u8-demo")
    await lines.tick()
    assert not lines.is_stopped("u8-demo") and metrics.stop_the_line.labels("u8-demo")._value.get() == 0


async def test_operator_commands_are_stored_audited_and_wake_delivery() -> None:
    uow = FakeUnitOfWorkFactory()
    woken = []
    lines = StopLines(_config().targets, uow, FakeClock(datetime.now(UTC)), on_resume=lambda: woken.append(1))
    stopped = await lines.command("u8-demo", "stop", actor="it")
    assert stopped.state == "stopped" and stopped.by == "it" and lines.is_stopped("u8-demo")
    resumed = await lines.command("u8-demo", "resume", actor="admin")
    assert resumed.state == "running" and woken == [1] and resumed.version == 2
    with pytest.raises(LookupError):
        await lines.command("nope", "stop", actor="it")
    async with uow(write=False) as u:
        actions = [(e.action, e.actor) for e in await u.audit.list(after_seq=0, limit=10)]
    assert actions == [("target.stopped", "it"), ("target.resumed", "admin")]


async def test_delivery_defers_a_stopped_targets_rows_without_an_attempt() -> None:
    from gateway.intake import accept_order
    from gateway.runtime import load_runtime
    from tests.unit.test_delivery_core import ORDER, FakeErp

    config = load_config(None, env={})
    runtime = load_runtime(config)
    uow = FakeUnitOfWorkFactory()
    clock = FakeClock(datetime.now(UTC))
    result = await accept_order(
        "taobao", ORDER, shop_header=None, uow_factory=uow, runtime=runtime, clock=clock, max_bytes=1 << 20
    )
    assert result.status_code == 202  # intake accepts while the line is stopped
    lines = StopLines(config.targets, uow, clock)
    await lines.command("u8-demo", "stop", actor="it")
    erp = FakeErp()
    deps = DeliveryDeps(uow_factory=uow, runtime=runtime, adapters={"u8-demo": erp}, clock=clock, lines=lines)
    deps.rng = random.Random(1)
    async with uow() as u:
        (lease,) = await u.outbox.claim(owner="t", now=clock.now(), lease_seconds=30, limit=10)
        await u.commit()
    assert await deliver(lease, deps) == "deferred"
    assert erp.calls == []
    row = next(iter(uow.state.outbox.values()))
    assert row.state == "pending" and row.attempts == 0 and row.available_at > clock.now()
    await lines.command("u8-demo", "resume", actor="it")
    clock.advance(5)
    async with uow() as u:
        (lease,) = await u.outbox.claim(owner="t", now=clock.now(), lease_seconds=30, limit=10)
        await u.commit()
    assert await deliver(lease, deps) == "delivered" and erp.calls == ["submit"]


# --------------------------------------------------------------------------- the WeCom webhook


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        answer = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/cgi-bin/webhook/send?key=test", _Receiver.received
    server.shutdown()


async def test_each_transition_posts_a_wecom_text_message(receiver) -> None:
    url, received = receiver
    uow = FakeUnitOfWorkFactory()
    lines = StopLines(_config(url).targets, uow, FakeClock(datetime.now(UTC)))
    await lines.command("u8-demo", "stop", actor="it")
    await lines.command("u8-demo", "resume", actor="it")
    await lines.stop()  # waits for the alerts in flight
    assert [m["msgtype"] for m in received] == ["text", "text"]
    assert "熔断" in received[0]["text"]["content"] and "Stop the line" in received[0]["text"]["content"]
    assert "恢复" in received[1]["text"]["content"] and "resumed" in received[1]["text"]["content"]


async def test_a_failing_webhook_is_logged_and_nothing_else() -> None:
    uow = FakeUnitOfWorkFactory()
    lines = StopLines(_config("http://127.0.0.1:9/unreachable").targets, uow, FakeClock(datetime.now(UTC)))
    stopped = await lines.command("u8-demo", "stop", actor="it")
    await lines.stop()
    assert stopped.state == "stopped" and lines.is_stopped("u8-demo")


def test_alert_text_has_both_languages() -> None:
    c = Control(target="u8", state="stopped", data={"backlog": 7, "oldest_age_s": 99.5})
    text = alert_text("u8", c)
    assert "积压 7 单" in text and "backlog 7 orders" in text and "99.5" in text
    assert msgspec.json.encode({"msgtype": "text", "text": {"content": text}})
