"""``gateway mappings validate | test | diff``: check dictionaries before they meet real orders."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import track

from gateway.errors import GatewayError
from gateway.mapping.dictionary import CompiledDictionary, load_dictionary

console = Console(stderr=False)


def _bundled() -> Path:
    return Path(str(resources.files("mappings")))


def _default_samples() -> Path | None:
    env = os.environ.get("GATEWAY_SAMPLES")
    for cand in ([Path(env)] if env else []) + [_bundled() / "samples"]:
        if cand.is_dir():
            return cand
    return None


def sample_files(folder: Path) -> list[Path]:
    """Order payloads in a platform folder: ``NN_name.json``; companions (``NN_name.kind.json``) are not orders."""
    return sorted(p for p in folder.glob("*.json") if "." not in p.stem)


def validate(path: Path | None) -> int:
    if path is None:
        files = [f for sub in ("platforms", "refunds", "erp") for f in sorted((_bundled() / sub).glob("*.toml"))]
    elif path.is_dir():
        files = sorted(path.rglob("*.toml"))
    else:
        files = [path]
    failures = 0
    for f in files:
        try:
            d = load_dictionary(f)
        except GatewayError as exc:
            failures += 1
            console.print(f"[red]FAIL[/red] {f}: {exc.message_en}")
            continue
        console.print(f"[green]ok[/green]   {f}  {d.name} {d.version}")
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


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def changes(a: CompiledDictionary, b: CompiledDictionary, payload: Any) -> list[tuple[str, Any, Any]]:
    """Paths whose canonical value differs between two dictionaries for one payload."""

    def run(d: CompiledDictionary) -> dict[str, Any]:
        try:
            return _flatten(msgspec.to_builtins(d.translate(payload)))
        except GatewayError as exc:
            return {"(error)": exc.message_en}

    left, right = run(a), run(b)
    return [(k, left.get(k), right.get(k)) for k in sorted(set(left) | set(right)) if left.get(k) != right.get(k)]


def diff(a_path: Path, b_path: Path, samples: Path | None) -> int:
    a, b = load_dictionary(a_path), load_dictionary(b_path)
    platform = a.spec.dictionary.platform or a.name
    samples = samples or ((_default_samples() or Path(".")) / platform)
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
