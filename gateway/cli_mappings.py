"""``gateway mappings …``: check dictionaries and rule sets, and govern their versions (draft, dry
run, approval by another person, publish, rollback) against GATEWAY_DATABASE_URL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import typer

from gateway.cli_common import BY
from gateway.settings import load_settings

mappings_app = typer.Typer(
    help="Field-translation dictionaries and rule sets: check them, and govern their versions.", no_args_is_help=True
)


@mappings_app.command("validate")
def mappings_validate(
    path: Path = typer.Argument(None, help="A dictionary file or folder (default: all bundled)"),
) -> None:
    """Compile dictionaries and report every mistake with where it is."""
    from gateway.mappings_cli import validate

    raise typer.Exit(validate(path))


@mappings_app.command("test")
def mappings_test(
    samples: Path = typer.Option(None, help="Folder of recorded payloads, one subfolder per platform"),
    path: Path = typer.Option(None, help="Folder of dictionaries (default: bundled mappings/platforms)"),
) -> None:
    """Run dictionaries over recorded payloads; report failures and unknown fields."""
    from gateway.mappings_cli import run_tests

    raise typer.Exit(run_tests(samples, path))


@mappings_app.command("diff")
def mappings_diff(
    a: str = typer.Argument(..., help="The current dictionary: a file, or a stored version's id (#N)"),
    b: str = typer.Argument(..., help="The proposed dictionary: a file, or a stored version's id (#N)"),
    samples: Path = typer.Option(None, help="Folder of recorded payloads for the dictionary's platform"),
) -> None:
    """Show, per recorded payload, what the proposed dictionary changes in the canonical order."""
    from gateway.mappings_cli import diff, diff_versions

    ids = [_version_id(x) for x in (a, b)]
    if ids[0] is not None and ids[1] is not None:
        _governed(lambda uow_factory, runtime: diff_versions(uow_factory, runtime, ids[0], ids[1]))
    raise typer.Exit(diff(Path(a), Path(b), samples))


def _version_id(arg: str) -> int | None:
    """``#12`` or ``12`` when no file of that name exists: a stored version's id."""
    digits = arg.removeprefix("#")
    return int(digits) if digits.isdigit() and not Path(arg).exists() else None


def _governed(action: Callable[[Any, Any], Awaitable[int]]) -> NoReturn:
    """Run a dictionary-governance command against GATEWAY_DATABASE_URL; exit with its status,
    or 1 after printing a gateway error with its next step."""
    from gateway.commands import governed
    from gateway.errors import GatewayError
    from gateway.mappings_cli import report_error

    async def run() -> int:
        async with governed(load_settings()) as (uow_factory, runtime):
            return await action(uow_factory, runtime)

    try:
        code = asyncio.run(run())
    except GatewayError as exc:
        code = report_error(exc)
    raise typer.Exit(code)


_NOTE = typer.Option(None, "--note", help="Why: kept in the audit log")


@mappings_app.command("versions")
def mappings_versions(
    name: str = typer.Argument(None, help="Only this dictionary or rule set (e.g. taobao, default)"),
    state: str = typer.Option(None, help="draft, approved, published, superseded or rejected"),
) -> None:
    """List the dictionary versions in the database, newest first."""
    from gateway.mappings_cli import list_versions

    _governed(lambda uow_factory, _: list_versions(uow_factory, name, state))


@mappings_app.command("show")
def mappings_show(version_id: int = typer.Argument(..., help="The version's id")) -> None:
    """Show one version: who proposed, approved and published it, its dry run and its TOML text."""
    from gateway.mappings_cli import show_version

    _governed(lambda uow_factory, _: show_version(uow_factory, version_id))


@mappings_app.command("draft")
def mappings_draft(
    file: Path = typer.Argument(..., help="The dictionary file (TOML) to propose"),
    by: str = BY,
    note: str = _NOTE,
) -> None:
    """Propose a new version from a file: stored as a draft if it compiles."""
    from gateway.mappings_cli import draft_text, read_text

    text = read_text(file)
    if text is None:
        raise typer.Exit(2)
    _governed(lambda uow_factory, runtime: draft_text(uow_factory, runtime, text, by=by, note=note))


@mappings_app.command("dry-run")
def mappings_dry_run(
    version_id: int = typer.Argument(..., help="The draft's id"),
    by: str = BY,
    limit: int = typer.Option(500, min=1, max=5000, help="Recorded payloads to read, newest first"),
) -> None:
    """Run a draft and the published version over the recorded payloads and samples; show what changes."""
    from gateway.mappings_cli import dry_run_version

    _governed(lambda uow_factory, runtime: dry_run_version(uow_factory, runtime, version_id, by=by, limit=limit))


@mappings_app.command("approve")
def mappings_approve(version_id: int = typer.Argument(...), by: str = BY, note: str = _NOTE) -> None:
    """Approve a dry-run draft (not by its proposer)."""
    from gateway.mappings_cli import decide

    _governed(lambda uow_factory, _: decide(uow_factory, "approve", version_id, by=by, note=note))


@mappings_app.command("reject")
def mappings_reject(version_id: int = typer.Argument(...), by: str = BY, note: str = _NOTE) -> None:
    """Reject a draft or an approved version."""
    from gateway.mappings_cli import decide

    _governed(lambda uow_factory, _: decide(uow_factory, "reject", version_id, by=by, note=note))


@mappings_app.command("publish")
def mappings_publish(version_id: int = typer.Argument(...), by: str = BY, note: str = _NOTE) -> None:
    """Publish an approved version; every serve and worker process switches within about a second."""
    from gateway.mappings_cli import switch

    _governed(lambda uow_factory, runtime: switch(uow_factory, runtime, version_id, rollback=False, by=by, note=note))


@mappings_app.command("rollback")
def mappings_rollback(
    name: str = typer.Argument(..., help="The dictionary, e.g. taobao"),
    version: str = typer.Argument(..., help="A version published before: its id (#N), full or declared version"),
    by: str = BY,
    note: str = _NOTE,
) -> None:
    """Publish again a version that was published before (an emergency; one person may)."""
    from gateway.mappings_cli import rollback_named

    _governed(lambda uow_factory, runtime: rollback_named(uow_factory, runtime, name, version, by=by, note=note))
