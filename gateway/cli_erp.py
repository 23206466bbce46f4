"""``gateway erp …``: work with the ERP targets beyond delivery (shipment read-back)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer

from gateway.cli_common import fail
from gateway.settings import load_settings

erp_app = typer.Typer(help="Work with the ERP targets beyond delivery.", no_args_is_help=True)


@erp_app.command("readback")
def erp_readback(
    target: str = typer.Option(None, "--target", help="Only this target (polled even if its readback is not enabled)"),
    once: bool = typer.Option(False, "--once", help="One round over the targets, a summary, and exit"),
) -> None:
    """Read shipments back from the ERPs (U8 发货单, K3 发货通知 / 销售出库单) for delivered orders
    and record each new one once as an `erp.shipped` status event. Without --once: a round every
    interval_s until Ctrl-C (with GATEWAY_REDIS_URL sharing the workers' lock)."""
    from gateway.commands import run_readback
    from gateway.errors import ConfigError
    from gateway.logging import configure_logging

    settings = load_settings()
    if not once:
        configure_logging(settings.log_level, json=settings.log_json)
        typer.echo("gateway erp readback: polling every target's interval_s; Ctrl-C stops", err=True)
    try:
        with _readback_progress(enabled=once) as progress:
            report = asyncio.run(run_readback(settings, target=target, once=once, progress=progress))
    except ConfigError as exc:
        raise fail(f"{exc.code}: {exc.message_en}" + (f"\n{exc.hint}" if exc.hint else "")) from None
    except KeyboardInterrupt:
        report = None
    if report is None:
        typer.echo("gateway erp readback: stopped", err=True)
        raise typer.Exit(0)
    for t in report.targets:
        line = f"{t.target}: {t.orders} delivered orders asked, {t.shipments} shipments seen, {t.recorded} recorded"
        if t.errors:
            typer.secho(f"{line}; {t.errors} calls failed ({t.error}): see the log", fg=typer.colors.RED)
        else:
            typer.echo(line)
    typer.echo(f"{report.recorded} new shipments recorded as erp.shipped events")
    raise typer.Exit(1 if report.errors else 0)


@contextmanager
def _readback_progress(*, enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """A line per target on standard error, fed with (target, orders asked, recorded) per batch."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(target: str, orders: int, recorded: int) -> None:
            text = f"reading back {target}: {orders} orders asked, {recorded} shipments recorded"
            if target not in tasks:
                tasks[target] = bar.add_task(text, total=None)
            bar.update(tasks[target], description=text)

        yield update
