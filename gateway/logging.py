"""Structured logging: JSON lines on stderr, with buyer PII masked in every line (CONTRACT §5).

structlog renders both our own events and records from libraries that use the standard
``logging`` module (uvicorn, SQLAlchemy, arq), so the masking processor sees every line the
process writes, not only the ones our code wrote carefully.

Servers started with uvicorn must pass ``log_config=None``, or uvicorn installs its own handlers
and its lines bypass the masking.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import IO, Any

import msgspec
import structlog
from structlog.typing import EventDict, WrappedLogger

from gateway import pii
from gateway.errors import ConfigError

# Marks the handler configure_logging installs, so a second call replaces it without removing
# handlers someone else added (pytest's caplog, an operator's file handler).
_HANDLER_TAG = "_gateway_handler"

# uvicorn's access log carries method, path and status only; at INFO it would double the volume
# of every request for no information the metrics lack.
_QUIET = {"uvicorn.access": logging.WARNING}
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def mask_pii(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask PII-named keys and scrub phone and ID numbers from all text.

    Runs just before rendering, after exceptions became text, so a phone number inside an
    exception message is scrubbed too.
    """
    return {key: _redact_item(key, value) for key, value in event_dict.items()}


def _redact_item(key: str, value: Any) -> Any:
    if key == "event" and not isinstance(value, str):
        value = str(value)
    return pii.redact({key: _builtins(value)})[key]


def _builtins(value: Any) -> Any:
    # Structs and dataclasses become dicts so their PII fields are masked by name: their repr
    # would print a receiver's name in clear. Anything else unknown becomes text, scrubbed next,
    # rather than reaching the renderer's repr fallback after the masking.
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {k: _builtins(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_builtins(v) for v in value]
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _builtins(dataclasses.asdict(value))
    return repr(value)


def configure_logging(level: str = "INFO", json: bool = True, *, stream: IO[str] | None = None) -> None:
    """Route structlog and standard logging through one masking handler.

    Safe to call more than once: the handler it installed before is replaced.

    Args:
        level: The root level name (``DEBUG``, ``INFO``, ``WARNING``, ...), any case.
        json: One JSON object per line when true; coloured console lines for a person otherwise.
        stream: Where lines go; standard error by default.

    Raises:
        ConfigError: ``level`` is not a logging level name.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ConfigError(f"Unknown log level {level!r}", f"未知的日志级别 {level!r}")

    stream = stream or sys.stderr
    handler = masking_handler(stream, json=json)
    setattr(handler, _HANDLER_TAG, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)

    for name in _UVICORN:
        # Their lines must reach our handler (and its masking) instead of uvicorn's own.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(max(numeric, _QUIET.get(name, logging.NOTSET)))

    route_structlog()


def masking_handler(stream: IO[str], *, json: bool = True) -> logging.Handler:
    """A handler writing to ``stream`` what :func:`configure_logging` writes: every record,
    structlog's or the standard library's, rendered with buyer PII masked.

    :func:`configure_logging` installs one on the root logger; add another (a file an operator or a
    test keeps) with ``logging.getLogger().addHandler(masking_handler(f))`` after it, or after
    :func:`route_structlog`.
    """
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            mask_pii,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    return handler


def route_structlog() -> None:
    """Send structlog's events through the standard ``logging`` handlers (and their masking).
    Until it is called, structlog prints to standard output by itself, unmasked."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # The chain above is the same for every call, so loggers cached before a later call
        # still pick up the new handler, level and renderer.
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (by convention the module's ``__name__``)."""
    return structlog.stdlib.get_logger(name)
