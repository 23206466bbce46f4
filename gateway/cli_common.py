"""What the ``gateway`` command's modules share."""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` in red on standard error; the ``Exit`` to raise with ``code``."""
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


BY = typer.Option(None, "--by", help="Your name as the audit log records it (default: $GATEWAY_ACTOR, or your login)")
