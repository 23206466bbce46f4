"""Log lines carry no clear buyer name, phone or address (gateway/logging.py, CONTRACT §5)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gateway.errors import ConfigError
from gateway.logging import configure_logging, get_logger
from schemas.order import Receiver

CLEAR = ("王小明", "13812341234", "13912345678", "深南大道10000号", "tb_buyer_nick")


@pytest.fixture
def lines():
    """Configure JSON logging into a buffer; yield a function returning the parsed lines."""
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    reset()


def reset() -> None:
    # Leave the root logger as pytest found it: a handler bound to this test's captured stderr
    # would fail once that stream is closed.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_gateway_handler", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


def assert_nothing_clear(text: str) -> None:
    for secret in CLEAR:
        assert secret not in text


def test_event_with_receiver_and_phone_in_message_is_masked(lines):
    get_logger("test").info(
        "buyer asked to call 13912345678 before delivery",
        order_id="3456789012345678901",
        receiver={"name": "王小明", "phone": "13812341234", "province": "广东省", "detail": "深南大道10000号"},
        buyer_nick="tb_buyer_nick",
    )
    [line] = lines()
    assert_nothing_clear(json.dumps(line, ensure_ascii=False))
    assert line["event"] == "buyer asked to call 139****5678 before delivery"
    assert line["receiver"] == {
        "name": "王**",
        "phone": "138****1234",
        "province": "广东省",
        "detail": "***(medium)",
    }
    assert line["buyer_nick"] == "t************"
    assert line["order_id"] == "3456789012345678901"
    assert line["level"] == "info" and line["logger"] == "test" and "timestamp" in line


def test_structs_exceptions_and_stdlib_records_are_masked_too(lines):
    log = get_logger("test")
    log.info("order", items=[Receiver(name="王小明", phone="13812341234", detail="深南大道10000号")])
    try:
        raise ValueError("ERP rejected phone 13812341234")
    except ValueError:
        log.exception("delivery failed")
    logging.getLogger("some.library").warning("receiver %s at %s", "13912345678", "x")
    got = lines()
    assert len(got) == 3
    assert_nothing_clear("\n".join(json.dumps(line, ensure_ascii=False) for line in got))
    assert got[0]["items"][0]["name"] == "王**"
    assert "ValueError: ERP rejected phone 138****1234" in got[1]["exception"]
    assert got[2]["event"] == "receiver 139****5678 at x"


def test_uvicorn_access_log_is_quiet_by_default(lines):
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /health/live HTTP/1.1" 200')
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    assert [line["logger"] for line in lines()] == ["uvicorn.error"]


def test_console_renderer_masks_as_well():
    out = io.StringIO()
    configure_logging("debug", json=False, stream=out)
    try:
        get_logger("test").debug("call 13812341234", name="王小明")
    finally:
        reset()
    assert "138****1234" in out.getvalue() and "王**" in out.getvalue()
    assert_nothing_clear(out.getvalue())


def test_configuring_twice_keeps_one_handler_and_foreign_handlers():
    foreign = logging.NullHandler()
    logging.getLogger().addHandler(foreign)
    try:
        configure_logging("INFO", stream=io.StringIO())
        configure_logging("INFO", stream=io.StringIO())
        ours = [h for h in logging.getLogger().handlers if getattr(h, "_gateway_handler", False)]
        assert len(ours) == 1
        assert foreign in logging.getLogger().handlers
    finally:
        logging.getLogger().removeHandler(foreign)
        reset()


def test_unknown_level_is_a_config_error():
    with pytest.raises(ConfigError):
        configure_logging("LOUD")
