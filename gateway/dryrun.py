"""The dry run of a proposed dictionary: it and the published version of the same name translate
the same recorded payloads, and the summary says, per order, what would change in the output
(path, before, after; buyer names, phones and addresses masked), and which orders would newly fail
or newly pass. Pure: the caller reads the corpus and stores the summary.

The corpus of an order or refund dictionary is the newest raw payloads the gateway stored for its
platform (accepted, held and intercepted orders; or refunds) plus the bundled samples
(``mappings/samples/<platform>/``). An ERP document dictionary runs over the newest stored orders
routed to a target that uses it, plus the samples mapped by the published platform dictionaries.

An order *fails* when the dictionary cannot translate it, its shop cannot be resolved, or the
rules would reject it (the 422 of intake); a change of the rules' verdict (accepted ↔ held) shows
as a change of the path ``(verdict)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from gateway.config import GatewayConfig
from gateway.document import build_document
from gateway.errors import GatewayError
from gateway.intake import evaluate
from gateway.mapping.dictionary import CompiledDictionary
from gateway.pii import mask_order, redact, scrub_text
from gateway.ports import OrderRecord
from gateway.runtime import Runtime, dictionary_platform

DEFAULT_LIMIT = 500
"""Recorded payloads a dry run reads by default (the newest)."""
MAX_LISTED_ORDERS = 200  # orders listed in a summary; the counts cover every order
MAX_LISTED_CHANGES = 50  # changed paths listed per order
MAX_VALUE_CHARS = 200


class CorpusItem(NamedTuple):
    source: str  # order | intercept | refund | sample
    ref: str  # gateway order id, intercept id, refund id, or the sample's file
    platform_order_id: str | None
    shop_id: str | None  # as stored; None: resolved from the payload
    payload: Any  # the decoded payload; for an ERP document dictionary the OrderRecord


class Outcome(NamedTuple):
    output: dict[str, Any] | None  # flattened, as produced
    shown: dict[str, Any] | None  # flattened, buyer data masked
    error: str | None = None
    verdict: str | None = None  # accept | hold | reject (orders only)
    rules: tuple[str, ...] = ()

    @property
    def fails(self) -> bool:
        return self.error is not None or self.verdict == "reject"

    def brief(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": not self.fails}
        if self.error is not None:
            body["error"] = self.error
        if self.verdict is not None:
            body["verdict"] = self.verdict
        if self.rules:
            body["rules"] = list(self.rules)
        return body


ABSENT = Outcome(None, None, error="no published version")


# ----------------------------------------------------------------------------- flattening


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"lines[0].qty": 2, ...}``: every leaf of a JSON-like value by its path."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out or {prefix: []}
    return {prefix: value}


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Paths of two flattened values whose leaves differ (present on one side only included)."""
    return [k for k in sorted(before.keys() | after.keys()) if before.get(k, _NONE) != after.get(k, _NONE)]


_NONE = object()


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + "…"
    return value


# ----------------------------------------------------------------------------- one payload


def _failed(exc: Exception) -> Outcome:
    message = exc.message_en if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
    return Outcome(None, None, error=scrub_text(message))


def outcome(d: CompiledDictionary | None, item: CorpusItem, runtime: Runtime) -> Outcome:
    """What ``d`` makes of one corpus item."""
    if d is None:
        return ABSENT
    kind = d.spec.dictionary.kind
    try:
        if kind == "order":
            return _order_outcome(d, item, runtime)
        if kind == "refund":
            out = msgspec.to_builtins(d.translate(item.payload))
            return Outcome(flatten(out), flatten(redact(out)))
        rt = dataclasses.replace(runtime, erp_dictionaries={**runtime.erp_dictionaries, d.name: d})
        order: OrderRecord = item.payload
        target = runtime.config.targets[order.erp_target or ""]
        doc = msgspec.to_builtins(build_document(order, order.erp_target or "", target, rt))
        out = {"header": doc["header"], "entries": doc["entries"]}
        return Outcome(flatten(out), flatten(redact(out)))
    except (GatewayError, KeyError, ValueError, TypeError) as exc:
        return _failed(exc)


def _order_outcome(d: CompiledDictionary, item: CorpusItem, runtime: Runtime) -> Outcome:
    order = d.translate(item.payload)
    shop_id = item.shop_id or runtime.config.resolve_shop(order.platform, header=None, alias=d.shop_alias(item.payload))
    order = msgspec.structs.replace(order, shop_id=shop_id)
    violations = evaluate(order, runtime)
    severities = {v.severity for v in violations}
    verdict = "reject" if "reject" in severities else "hold" if "hold" in severities else "accept"
    rules = tuple(sorted({v.rule for v in violations if v.severity in ("reject", "hold")}))
    canonical = msgspec.to_builtins(order)
    mark = {"(verdict)": verdict + (f": {', '.join(rules)}" if rules else "")}
    return Outcome(flatten(canonical) | mark, flatten(mask_order(canonical)) | mark, verdict=verdict, rules=rules)


# ----------------------------------------------------------------------------- the whole corpus


def compare(
    draft: CompiledDictionary,
    published: CompiledDictionary | None,
    corpus: Iterable[CorpusItem],
    runtime: Runtime,
) -> dict[str, Any]:
    """Run both dictionaries over the corpus; the summary (counts and the orders that differ)."""
    counts = dict.fromkeys(("checked", "unchanged", "changed", "newly_failing", "newly_passing", "failing"), 0)
    listed: list[dict[str, Any]] = []
    for item in corpus:
        before, after = outcome(published, item, runtime), outcome(draft, item, runtime)
        counts["checked"] += 1
        status = _status(before, after)
        counts[status] += 1
        if status in ("unchanged", "failing"):
            continue
        entry: dict[str, Any] = {
            "status": status,
            "source": item.source,
            "ref": item.ref,
            "order_id": item.platform_order_id,
            "before": before.brief(),
            "after": after.brief(),
            "changes": [],
        }
        if before.output is not None and after.output is not None:
            paths = changed_paths(before.output, after.output)
            entry["changes"] = [
                {"path": p, "before": _short(before.shown.get(p)), "after": _short(after.shown.get(p))}  # type: ignore[union-attr]
                for p in paths[:MAX_LISTED_CHANGES]
            ]
            if len(paths) > MAX_LISTED_CHANGES:
                entry["changes_not_listed"] = len(paths) - MAX_LISTED_CHANGES
        listed.append(entry)
    order = {"newly_failing": 0, "newly_passing": 1, "changed": 2}
    listed.sort(key=lambda e: order[e["status"]])
    return {
        "counts": counts,
        "orders": listed[:MAX_LISTED_ORDERS],
        "orders_not_listed": max(0, len(listed) - MAX_LISTED_ORDERS),
    }


def _status(before: Outcome, after: Outcome) -> str:
    if before.fails and after.fails:
        return "failing"
    if after.fails:
        return "newly_failing"
    if before.fails:
        return "newly_passing"
    assert before.output is not None and after.output is not None  # noqa: S101 - neither fails
    return "changed" if changed_paths(before.output, after.output) else "unchanged"


# ----------------------------------------------------------------------------- the samples


def samples_folder(config: GatewayConfig) -> Path | None:
    """``samples/`` beside the configured dictionaries, else the bundled one."""
    for cand in (config.mappings_path() / "samples", Path(str(resources.files("mappings"))) / "samples"):
        if cand.is_dir():
            return cand
    return None


def sample_files(folder: Path) -> list[Path]:
    """Order payloads in a platform folder: ``NN_name.json``; companions (``NN_name.kind.json``) are not orders."""
    return sorted(p for p in folder.glob("*.json") if "." not in p.stem)


def _decoded(path: Path) -> Any:
    try:
        return msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError):
        return None


def sample_corpus(
    draft: CompiledDictionary, published: CompiledDictionary | None, runtime: Runtime, folder: Path | None
) -> list[CorpusItem]:
    """The bundled samples that concern ``draft``."""
    if folder is None:
        return []
    kind = draft.spec.dictionary.kind
    if kind == "document":
        return _document_samples(draft, runtime, folder)
    platform = dictionary_platform(draft) or ""
    where = folder / platform
    if not where.is_dir():
        return []
    items = []
    if kind == "order":
        for path in sample_files(where):
            payload = _decoded(path)
            if payload is not None:
                items.append(CorpusItem("sample", f"{platform}/{path.name}", None, None, payload))
        return items
    # Refund samples are companions of an order sample; keep those either dictionary can read.
    for path in sorted(p for p in where.glob("*.json") if "." in p.stem):
        payload = _decoded(path)
        if payload is not None and any(_reads(d, payload) for d in (draft, published) if d is not None):
            items.append(CorpusItem("sample", f"{platform}/{path.name}", None, None, payload))
    return items


def _reads(d: CompiledDictionary, payload: Any) -> bool:
    try:
        d.root_of(payload)
    except GatewayError:
        return False
    return True


def _document_samples(draft: CompiledDictionary, runtime: Runtime, folder: Path) -> list[CorpusItem]:
    """Every platform sample mapped by the published platform dictionary, as an order of the
    target its shop routes to, when that target uses ``draft``."""
    items = []
    config = runtime.config
    for platform, d in sorted(runtime.platform_dictionaries.items()):
        for path in sample_files(folder / platform) if (folder / platform).is_dir() else []:
            payload = _decoded(path)
            try:
                order = d.translate(payload)
                shop_id = config.resolve_shop(platform, header=None, alias=d.shop_alias(payload))
            except GatewayError:
                continue
            target = config.shops[shop_id].target
            if config.targets[target].dictionary != draft.name:
                continue
            record = OrderRecord(
                id=f"sample:{platform}/{path.name}",
                seq=0,
                platform=platform,
                shop_id=shop_id,
                platform_order_id=order.order_id,
                platform_version=order.platform_version,
                state="accepted",
                canonical=msgspec.to_builtins(msgspec.structs.replace(order, shop_id=shop_id)),
                mapping_version=d.version,
                rules_version=runtime.ruleset.version,
                payload_sha256="",
                erp_target=target,
            )
            items.append(CorpusItem("sample", f"{platform}/{path.name}", order.order_id, shop_id, record))
    return items


def targets_using(runtime: Runtime, dictionary_name: str) -> Sequence[str]:
    """The ERP targets whose outbound dictionary is ``dictionary_name``."""
    return sorted(name for name, t in runtime.config.targets.items() if t.dictionary == dictionary_name)
