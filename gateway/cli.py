"""The ``gateway`` command (CONTRACT §1). Typer gives typed options and ``--help`` for free; rich
draws progress for the commands that walk many payloads."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from gateway.cli_common import BY, fail
from gateway.cli_erp import erp_app
from gateway.cli_mappings import mappings_app
from gateway.settings import load_settings

app = typer.Typer(
    help="Order gateway: platform orders in, ERP documents out.", no_args_is_help=True, pretty_exceptions_enable=False
)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(mappings_app, name="mappings")
app.add_typer(erp_app, name="erp")




@app.command()
def serve(
    host: str = typer.Option(None, help="Listen address (default GATEWAY_HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="Listen port (default GATEWAY_PORT or 8080)"),
) -> None:
    """HTTP API and console; with no GATEWAY_REDIS_URL also the embedded delivery worker."""
    import uvicorn

    from gateway.app import create_app
    from gateway.logging import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    h, p = host or settings.host, port or settings.port
    typer.echo(
        f"gateway: console and API on http://{h}:{p}/  (database: {settings.database_url.split(':')[0]})", err=True
    )
    uvicorn.run(create_app(settings), host=h, port=p, log_config=None, log_level="warning", access_log=False)


@app.command()
def worker(
    check: bool = typer.Option(False, "--check", help="Health check: exit 0 if a worker is alive, else 1"),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        envvar="GATEWAY_WORKER_METRICS_PORT",
        help="Serve this worker's Prometheus metrics on http://<host>:<port>/metrics (deliveries, "
        "latency, retries, circuits, backlog); off when not given",
    ),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", envvar="GATEWAY_WORKER_METRICS_HOST"),
) -> None:
    """An arq delivery worker; needs GATEWAY_REDIS_URL. Run any number, on any machines."""
    from gateway.logging import configure_logging

    settings = load_settings()
    if not settings.redis_url:
        raise fail(
            "gateway worker needs GATEWAY_REDIS_URL (e.g. redis://127.0.0.1:6379/0).\n"
            "Without Redis, `gateway serve` delivers with its embedded worker: no separate worker is needed."
        )
    from gateway.jobs import check_health, run_worker

    if check:
        raise typer.Exit(check_health(settings))
    configure_logging(settings.log_level, json=settings.log_json)
    typer.echo(f"gateway worker: jobs from {_redis_where(settings.redis_url)}", err=True)
    if metrics_port is not None:
        typer.echo(f"gateway worker: metrics on http://{metrics_host}:{metrics_port}/metrics", err=True)
    run_worker(settings, metrics=(metrics_host, metrics_port) if metrics_port is not None else None)


def _redis_where(url: str) -> str:
    from adapters.redis.connection import describe

    return describe(url)


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", help="Listen address"),
    port: int = typer.Option(8090, help="Listen port"),
) -> None:
    """The simulated partner systems (ERP and platforms) with fault injection."""
    from adapters.sandbox.app import run_sandbox

    typer.echo(f"sandbox: partner systems on http://{host}:{port}/ (inspect /_sandbox/calls)", err=True)
    run_sandbox(host=host, port=port)


@app.command()
def demo(
    port: int = typer.Option(8080, help="Gateway port"),
    sandbox_port: int = typer.Option(8090, help="Sandbox port"),
    samples: Path = typer.Option(None, help="Folder of platform samples (default ../shared/reference/samples)"),
) -> None:
    """Sandbox + gateway + a feed of sample orders; prints the console address and one key per role."""
    from gateway.demo import run_demo

    run_demo(port=port, sandbox_port=sandbox_port, samples=samples)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply database migrations (Alembic) to GATEWAY_DATABASE_URL."""
    from adapters.db.migrate import current, upgrade

    settings = load_settings()
    try:
        upgrade(settings.database_url, revision)
    except Exception as exc:
        raise fail(
            f"migration failed: {exc}\nCheck GATEWAY_DATABASE_URL and that the database is reachable."
        ) from None
    typer.echo(f"database at revision {current(settings.database_url)}")


@keys_app.command("create")
def keys_create(
    role: str = typer.Option(..., help="platform, wms, erp, it, auditor or admin"),
    label: str = typer.Option(None, help="Who or what the key is for"),
) -> None:
    """Print a new API key once; only its hash is stored."""
    from gateway.commands import ROLES, create_key

    if role not in ROLES:
        raise fail(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    settings = load_settings()
    key = asyncio.run(create_key(settings, role=role, label=label))
    typer.echo(key)
    typer.secho("Store it now: it is not shown again.", err=True, fg=typer.colors.YELLOW)


@audit_app.command("verify")
def audit_verify(
    anchor: Path = typer.Option(
        None,
        "--anchor",
        help="An anchor file from `gateway audit anchor`: also prove the chain up to its entry unchanged",
    ),
) -> None:
    """Walk the audit hash chain; exit 0 when intact, 1 naming the first broken sequence number."""
    from gateway.audit import decode_anchor
    from gateway.commands import verify_audit

    pinned = None
    if anchor is not None:
        try:
            pinned = decode_anchor(anchor.read_bytes())
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read the anchor {anchor}: {exc}") from None
    settings = load_settings()
    check = asyncio.run(verify_audit(settings, pinned))
    if check.ok:
        typer.echo(f"audit chain intact: {check.checked} entries checked")
        if pinned is not None:
            typer.echo(
                f"anchor matches: entry {pinned.seq} still has hash {pinned.hash}; the chain up to it is unchanged"
            )
        raise typer.Exit(0)
    if pinned is not None and check.anchor_matches is False and check.broken_at == pinned.seq:
        message = (
            f"audit chain BROKEN at sequence {check.broken_at} ({check.reason}); "
            f"the chain up to the anchor is not the one anchored"
        )
    else:
        message = (
            f"audit chain BROKEN at sequence {check.broken_at} ({check.reason}); "
            f"{check.checked} entries before it are intact"
        )
        if check.anchor_matches:
            message += f"; the chain up to the anchor (sequence {pinned.seq}) is unchanged"  # type: ignore[union-attr]
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor(
    out: Path = typer.Option(None, "--out", help="Also write the anchor to this file"),
) -> None:
    """Print the chain's head as an anchor, {"at", "hash", "seq"} (one line of sorted JSON), to
    keep outside the gateway; `gateway audit verify --anchor FILE` proves the chain up to it later."""
    from gateway.audit import encode_anchor
    from gateway.commands import anchor_audit

    settings = load_settings()
    check, anchor = asyncio.run(anchor_audit(settings))
    if anchor is None:
        if check.ok:
            raise fail("the audit log is empty: nothing to anchor", 1)
        raise fail(
            f"audit chain BROKEN at sequence {check.broken_at} ({check.reason}): a broken chain is not anchored", 1
        )
    text = encode_anchor(anchor)
    if out is not None:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot write {out}: {exc}") from None
        typer.echo(f"anchor of entry {anchor.seq} written to {out}; keep it outside the gateway", err=True)
    typer.echo(text, nl=False)


retention_app = typer.Typer(
    help="Retention of raw payloads (the configuration's retention.payload_days).", no_args_is_help=True
)
app.add_typer(retention_app, name="retention")


@retention_app.command("purge")
def retention_purge(
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing"),
    by: str = BY,
) -> None:
    """Delete raw payloads older than the retention period (the configuration's
    retention.payload_days, or GATEWAY_RETENTION_PAYLOAD_DAYS). Orders, intercepts and the audit
    chain stay; the run is recorded in the audit log."""
    from gateway.commands import purge_retention
    from gateway.errors import ConfigError
    from gateway.mappings_cli import actor_of

    settings = load_settings()
    try:
        with _purge_progress(enabled=not dry_run) as progress:
            report = asyncio.run(purge_retention(settings, dry_run=dry_run, actor=actor_of(by), progress=progress))
    except ConfigError as exc:
        raise fail(f"{exc.code}: {exc.message_en}" + (f"\n{exc.hint}" if exc.hint else "")) from None
    if report.cutoff is None:
        typer.echo("retention is off (payload_days = 0): nothing purged")
        raise typer.Exit(0)
    what = (
        f"{report.payloads} raw payloads ({_size(report.bytes)}) first received before {report.cutoff}"
        f" ({report.payload_days} days)"
    )
    if report.dry_run:
        oldest = f"; the oldest from {report.oldest_received_at}" if report.oldest_received_at else ""
        typer.echo(f"dry run: would purge {what}{oldest}; nothing deleted")
        raise typer.Exit(0)
    batches = f"{report.batches} batch" + ("es" if report.batches != 1 else "")
    typer.echo(
        f"purged {what} in {batches}; orders, intercepts and the audit chain are kept; "
        f"recorded as audit entry {report.audit_seq}"
    )


@contextmanager
def _purge_progress(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on standard error, fed with (deleted, to delete) after each batch."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("purging raw payloads"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("purge", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    size = float(n)
    for unit in ("KiB", "MiB"):
        size /= 1024
        if size < 1024:
            return f"{size:.1f} {unit}"
    return f"{size / 1024:.1f} GiB"


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
