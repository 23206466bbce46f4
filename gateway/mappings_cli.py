"""``gateway mappings …``: check dictionaries and rule sets before they meet real orders
(``validate``, ``test``, ``diff``), and govern the versions in the database from the shell
(``versions``, ``show``, ``draft``, ``dry-run``, ``approve``, ``reject``, ``publish``, ``rollback``;
``gateway.governance``): a rule-set file (``[ruleset]``, ``mappings/rules/``) goes the same way as a
dictionary. The governance commands take the database and the Runtime from the caller (``gateway.cli``)."""

from __future__ import annotations

import getpass
import os
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import track
from rich.syntax import Syntax
from rich.table import Table

from gateway import governance as gov
from gateway.clock import SystemClock
from gateway.dryrun import changed_paths, flatten, sample_files, samples_folder
from gateway.errors import GatewayError
from gateway.mapping.dictionary import CompiledDictionary, load_dictionary
from gateway.ports import UnitOfWorkFactory
from gateway.rules.catalog import ruleset_from_text
from gateway.runtime import Runtime

console = Console(stderr=False)


def _bundled() -> Path:
    return Path(str(resources.files("mappings")))


def _default_samples() -> Path | None:
    env = os.environ.get("GATEWAY_SAMPLES")
    for cand in ([Path(env)] if env else []) + [_bundled() / "samples"]:
        if cand.is_dir():
            return cand
    return None


def validate(path: Path | None) -> int:
    if path is None:
        folders = ("platforms", "refunds", "erp", "rules")
        files = [f for sub in folders for f in sorted((_bundled() / sub).glob("*.toml"))]
    elif path.is_dir():
        files = sorted(path.rglob("*.toml"))
    else:
        files = [path]
    failures = 0
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
            if gov.is_ruleset_text(text):
                r = ruleset_from_text(text, origin=str(f))
                what = f"rule set {r.name} {r.declared}+{r.digest[:12]} ({len(r.rules)} rules)"
            else:
                d = load_dictionary(f)
                what = f"{d.name} {d.version}"
        except GatewayError as exc:
            failures += 1
            console.print(f"[red]FAIL[/red] {f}: {exc.message_en}")
            continue
        except (OSError, UnicodeDecodeError) as exc:
            failures += 1
            console.print(f"[red]FAIL[/red] {f}: {exc}")
            continue
        console.print(f"[green]ok[/green]   {f}  {what}")
    console.print(f"{len(files) - failures} valid, {failures} invalid")
    return 1 if failures else 0


def run_tests(samples: Path | None, path: Path | None) -> int:
    samples = samples or _default_samples()
    if samples is None or not samples.is_dir():
        console.print(
            "[red]no samples folder[/red]: pass --samples DIR (one subfolder per platform) or set GATEWAY_SAMPLES"
        )
        return 2
    folder = path or _bundled() / "platforms"
    dictionaries = {
        d.spec.dictionary.platform or d.name: d for d in map(load_dictionary, sorted(folder.glob("*.toml")))
    }
    jobs = [
        (platform, f)
        for platform in sorted(dictionaries)
        if (samples / platform).is_dir()
        for f in sample_files(samples / platform)
    ]
    failures = 0
    unknown_total = 0
    for platform, f in track(jobs, description="mapping samples", console=console, transient=True):
        d = dictionaries[platform]
        try:
            payload = msgspec.json.decode(f.read_bytes())
            order = d.translate(payload)
        except (GatewayError, msgspec.DecodeError) as exc:
            failures += 1
            console.print(f"[red]FAIL[/red] {platform}/{f.name}: {getattr(exc, 'message_en', exc)}")
            continue
        unknown = d.unknown_fields(payload)
        unknown_total += len(unknown)
        note = f"  unknown fields: {', '.join(unknown)}" if unknown else ""
        console.print(
            f"[green]ok[/green]   {platform}/{f.name}: {order.status}, paid {order.totals.paid_fen} fen, "
            f"{len(order.lines)} lines{note}"
        )
    console.print(f"{len(jobs) - failures} mapped, {failures} failed, {unknown_total} unknown fields")
    return 1 if failures else 0


def changes(a: CompiledDictionary, b: CompiledDictionary, payload: Any) -> list[tuple[str, Any, Any]]:
    """Paths whose canonical value differs between two dictionaries for one payload."""

    def run(d: CompiledDictionary) -> dict[str, Any]:
        try:
            return flatten(msgspec.to_builtins(d.translate(payload)))
        except GatewayError as exc:
            return {"(error)": exc.message_en}

    left, right = run(a), run(b)
    return [(k, left.get(k), right.get(k)) for k in changed_paths(left, right)]


def diff(a_path: Path, b_path: Path, samples: Path | None) -> int:
    a, b = load_dictionary(a_path), load_dictionary(b_path)
    platform = a.spec.dictionary.platform or a.name
    return _diff_payloads(a, b, samples or ((_default_samples() or Path(".")) / platform))


def _diff_payloads(a: CompiledDictionary, b: CompiledDictionary, samples: Path) -> int:
    files = sample_files(samples) if samples.is_dir() else []
    if not files:
        console.print(f"[red]no recorded payloads[/red] in {samples}: pass --samples DIR")
        return 2
    changed = 0
    for f in files:
        delta = changes(a, b, msgspec.json.decode(f.read_bytes()))
        if not delta:
            continue
        changed += 1
        console.print(f"[bold]{f.name}[/bold]")
        for path, old, new in delta:
            console.print(f"  {path}: {old!r} → {new!r}")
    console.print(f"{changed} of {len(files)} payloads change ({a.version} → {b.version})")
    return 0


# ----------------------------------------------------------------------------- governance commands


def actor_of(by: str | None) -> str:
    """How the audit log names a person at the shell: ``--by``, else ``GATEWAY_ACTOR``, else the login."""
    name = (by or os.environ.get("GATEWAY_ACTOR") or getpass.getuser()).strip()
    return f"{name[:80]} (cli)"


def report_error(exc: GatewayError) -> int:
    """Print a gateway error with its code, both languages and the next step; the exit status."""
    console.print(f"[red]{exc.code}[/red] {exc.message_en}")
    if exc.message_zh and exc.message_zh != exc.message_en:
        console.print(f"  {exc.message_zh}")
    if exc.hint:
        console.print(f"  [bold]next:[/bold] {exc.hint}")
    return 1


_STYLE = {"draft": "yellow", "approved": "cyan", "published": "green", "superseded": "dim", "rejected": "red"}


def _when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else ""


def _state(state: str) -> str:
    return f"[{_STYLE.get(state, 'white')}]{state}[/]"


async def list_versions(uow_factory: UnitOfWorkFactory, name: str | None, state: str | None) -> int:
    async with uow_factory(write=False) as uow:
        versions = await uow.dictionaries.list(name=name, state=state)
    if not versions:
        console.print("no dictionary versions" + (f" named {name}" if name else ""))
        return 0
    table = Table(title="dictionary versions (newest first)")
    for column in ("id", "name", "version", "state", "proposed", "approved", "published", "dry run"):
        table.add_column(column, overflow="fold")
    for v in map(gov.describe, versions):
        table.add_row(
            str(v["id"]),
            v["name"],
            v["mapping_version"],
            _state(v["state"]),
            f"{v['proposed_by']}\n{_when(v['proposed_at'])}",
            f"{v['approved_by'] or ''}\n{_when(v['approved_at'])}",
            f"{v['published_by'] or ''}\n{_when(v['published_at'])}",
            "yes" if v["dry_run_done"] else "",
        )
    console.print(table)
    return 0


async def show_version(uow_factory: UnitOfWorkFactory, version_id: int) -> int:
    v = gov.describe(await gov.get_version(uow_factory, version_id), text=True, dry_run=True)
    console.print(f"[bold]#{v['id']} {v['name']} {v['mapping_version']}[/bold] {_state(v['state'])}")
    for key in ("kind", "platform", "proposed_by", "approved_by", "published_by", "rejected_by", "note"):
        if v[key]:
            console.print(f"  {key.replace('_', ' ')}: {v[key]}")
    if v["dry_run"]:
        print_dry_run(v["dry_run"], brief=True)
    console.print(Syntax(v["text"], "toml", line_numbers=True))
    return 0


def read_text(path: Path) -> str | None:
    """A dictionary file's text, or None after saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        console.print(f"[red]cannot read {path}[/red]: {exc}")
        return None


async def draft_text(
    uow_factory: UnitOfWorkFactory, runtime: Runtime, text: str, *, by: str | None, note: str | None
) -> int:
    base = runtime.config.mappings_path()
    v = await gov.propose(
        uow_factory, text, actor=actor_of(by), clock=SystemClock(), note=note, base=base, runtime=runtime
    )
    console.print(f"draft [bold]#{v.id}[/bold] {v.name} {v.mapping_version} proposed by {v.proposed_by}")
    console.print(f"  [bold]next:[/bold] gateway mappings dry-run {v.id}")
    return 0


async def dry_run_version(
    uow_factory: UnitOfWorkFactory, runtime: Runtime, version_id: int, *, by: str | None, limit: int
) -> int:
    v = await gov.dry_run(
        uow_factory,
        version_id,
        actor=actor_of(by),
        runtime=runtime,
        clock=SystemClock(),
        samples=samples_folder(runtime.config),
        limit=limit,
    )
    print_dry_run(v.dry_run or {})
    console.print(f"  [bold]next:[/bold] another person approves it: gateway mappings approve {v.id} --by NAME")
    return 0


def print_dry_run(summary: dict[str, Any], *, brief: bool = False) -> None:
    """A dry run's counts and, unless ``brief``, each order that differs with its changes."""
    against = summary.get("against") or {}
    c, corpus = summary.get("counts", {}), summary.get("corpus", {})
    console.print(
        f"dry run {summary.get('draft', {}).get('version')} against {against.get('version', 'nothing published')}: "
        f"{c.get('checked', 0)} orders ({corpus.get('recorded', 0)} recorded, {corpus.get('samples', 0)} samples), "
        f"[yellow]{c.get('changed', 0)} changed[/], [red]{c.get('newly_failing', 0)} newly failing[/], "
        f"[green]{c.get('newly_passing', 0)} newly passing[/], {c.get('unchanged', 0)} unchanged, "
        f"{c.get('failing', 0)} failing either way"
    )
    if summary.get("verdicts"):
        moves = ", ".join(f"{k}: {n}" for k, n in summary["verdicts"].items())
        console.print(f"verdicts: {moves}")
    if summary.get("config_overrides"):
        console.print(f"[yellow]the configuration overrides[/] {summary['config_overrides']} (it wins over the text)")
    if brief:
        return
    for order in summary.get("orders", []):
        style = {"newly_failing": "red", "newly_passing": "green"}.get(order["status"], "yellow")
        who = f"{order['source']} {order['ref']}"
        if order["order_id"]:
            who += f" (platform order {order['order_id']})"
        console.print(f"[{style}]{order['status']}[/] {who}")
        for side in ("before", "after"):
            if order[side].get("error"):
                console.print(f"    {side}: {order[side]['error']}")
        for change in order["changes"]:
            console.print(f"    {change['path']}: {change['before']!r} → {change['after']!r}")
    if summary.get("orders_not_listed"):
        console.print(f"… and {summary['orders_not_listed']} more orders (see GET /v1/mappings/versions/ID/dry-run)")


async def decide(
    uow_factory: UnitOfWorkFactory, action: str, version_id: int, *, by: str | None, note: str | None
) -> int:
    """``approve`` or ``reject`` a version."""
    act = gov.approve if action == "approve" else gov.reject
    v = await act(uow_factory, version_id, actor=actor_of(by), clock=SystemClock(), note=note)
    console.print(f"#{v.id} {v.name} {v.mapping_version} is {_state(v.state)} (by {actor_of(by)})")
    if v.state == "approved":
        console.print(f"  [bold]next:[/bold] gateway mappings publish {v.id}")
    return 0


async def switch(
    uow_factory: UnitOfWorkFactory,
    runtime: Runtime,
    version_id: int,
    *,
    rollback: bool,
    by: str | None,
    note: str | None,
) -> int:
    """Publish an approved version, or roll back to one published before."""
    act = gov.rollback if rollback else gov.publish
    done = await act(uow_factory, version_id, actor=actor_of(by), runtime=runtime, clock=SystemClock(), note=note)
    v, previous = done.version, done.previous
    was = f" (was #{previous.id} {previous.mapping_version})" if previous else ""
    done_what = "rolled back to" if rollback else "published"
    console.print(f"[green]{done_what}[/] #{v.id} {v.name} {v.mapping_version}{was}")
    console.print(
        f"  publication generation {done.generation}: every `gateway serve` and `gateway worker` on this "
        "database switches within about a second"
    )
    return 0


async def rollback_named(
    uow_factory: UnitOfWorkFactory, runtime: Runtime, name: str, ref: str, *, by: str | None, note: str | None
) -> int:
    v = await gov.find_version(uow_factory, name, ref)
    return await switch(uow_factory, runtime, v.id or 0, rollback=True, by=by, note=note)


async def diff_versions(uow_factory: UnitOfWorkFactory, runtime: Runtime, a: int, b: int) -> int:
    """Two stored versions: their text diff and, for one dictionary, what changes on the samples."""
    va, vb = await gov.get_version(uow_factory, a), await gov.get_version(uow_factory, b)
    console.print(Syntax(gov.text_diff(va, vb) or "(same text)\n", "diff"))
    folder = samples_folder(runtime.config)
    if va.name != vb.name or va.kind != "order" or folder is None:
        return 0
    cache: dict[str, CompiledDictionary] = {}
    base = runtime.config.mappings_path()
    da, db = gov.compiled(va, cache, base=base), gov.compiled(vb, cache, base=base)
    return _diff_payloads(da, db, folder / (va.platform or ""))
