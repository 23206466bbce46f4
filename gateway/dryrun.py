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

The dry run of a proposed *rule set* (``compare_rulesets``) keeps the orders as they were mapped:
the draft and the published rule set judge the newest stored canonical orders of every platform
and the masked snapshots of the rejected orders' intercepts, plus the bundled samples as the
published dictionaries map them. Per order it shows the verdict (accept, warn, hold, reject)
before and after and which rule codes appear or disappear.
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
from gateway.ports import OrderRecord, RecordedOrder
from gateway.rules.catalog import RuleContext, Ruleset
from gateway.runtime import Runtime, dictionary_platform
from schemas.order import CanonicalOrder

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


# ----------------------------------------------------------------------------- rule sets


_RANK = {"reject": 0, "hold": 1, "warn": 2}


class Judgement(NamedTuple):
    """What one rule set makes of one recorded order."""

    verdict: str | None  # accept | warn | hold | reject; None when it could not be judged
    findings: dict[str, str]  # rule code → the most severe severity it reported
    error: str | None = None

    @property
    def fails(self) -> bool:
        return self.error is not None or self.verdict == "reject"

    def label(self) -> str:
        """``reject: COUPON_STACK_LIMIT``: the verdict and the rules that decided it."""
        if self.verdict is None:
            return f"error: {self.error}"
        codes = sorted(code for code, severity in self.findings.items() if severity == self.verdict)
        return self.verdict + (f": {', '.join(codes)}" if codes else "")

    def brief(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": not self.fails}
        if self.error is not None:
            body["error"] = self.error
        if self.verdict is not None:
            body["verdict"] = self.verdict
        if self.findings:
            body["rules"] = sorted(self.findings)
            body["findings"] = [{"rule": code, "severity": sev} for code, sev in sorted(self.findings.items())]
        return body


def recorded_orders_corpus(rows: Iterable[RecordedOrder]) -> list[CorpusItem]:
    """The recorded orders and intercepts a rule set's dry run reads, as corpus items."""
    return [CorpusItem(r.source, r.ref, r.platform_order_id, r.shop_id, r) for r in rows]


def judge(ruleset: Ruleset | None, item: CorpusItem, runtime: Runtime) -> Judgement:
    """What ``ruleset`` says of one recorded order (its stored canonical form, its shop as stored)."""
    if ruleset is None:
        return Judgement(None, {}, error="no published version")
    rec: RecordedOrder = item.payload
    try:
        order = msgspec.convert(rec.canonical, CanonicalOrder)
    except msgspec.ValidationError as exc:
        return Judgement(None, {}, error=scrub_text(f"the recorded order cannot be read: {exc}"))
    shop_id = rec.shop_id or order.shop_id or ""
    shop = runtime.config.shops.get(shop_id)
    if shop is None:
        return Judgement(None, {}, error=f"shop {shop_id!r} is not configured")
    ctx = RuleContext(shop_id=shop_id, target=shop.target, tables=runtime.tables.get(shop.target, {}))
    try:
        violations = ruleset.judge(order, ctx)[1]  # the actions first: gift SKUs meet UNKNOWN_SKU
    except (GatewayError, KeyError, ValueError, TypeError, AttributeError) as exc:
        return _judgement_failed(exc)
    findings: dict[str, str] = {}
    for v in violations:
        if v.rule not in findings or _RANK[v.severity] < _RANK[findings[v.rule]]:
            findings[v.rule] = v.severity
    severities = set(findings.values())
    verdict = next((s for s in ("reject", "hold", "warn") if s in severities), "accept")
    return Judgement(verdict, findings)


def _judgement_failed(exc: Exception) -> Judgement:
    message = exc.message_en if isinstance(exc, GatewayError) else f"{type(exc).__name__}: {exc}"
    return Judgement(None, {}, error=scrub_text(message))


def compare_rulesets(
    draft: Ruleset, published: Ruleset | None, corpus: Iterable[CorpusItem], runtime: Runtime
) -> dict[str, Any]:
    """Judge every recorded order by both rule sets; the summary: counts (as a dictionary's dry
    run counts them: a rejected order *fails*), the verdict transitions (``reject → accept``), per
    rule code how many orders it newly flags or stops flagging, and the orders that differ."""
    counts = dict.fromkeys(("checked", "unchanged", "changed", "newly_failing", "newly_passing", "failing"), 0)
    transitions: dict[str, int] = {}
    by_rule: dict[str, dict[str, int]] = {}
    listed: list[dict[str, Any]] = []
    for item in corpus:
        before, after = judge(published, item, runtime), judge(draft, item, runtime)
        counts["checked"] += 1
        same = (before.verdict, before.findings, before.error) == (after.verdict, after.findings, after.error)
        if same:
            counts["failing" if after.fails else "unchanged"] += 1
            continue
        # Failing either way but for other reasons (other rules reject it): listed as a change.
        status = (
            "newly_failing"
            if after.fails and not before.fails
            else "newly_passing"
            if before.fails and not after.fails
            else "changed"
        )
        counts[status] += 1
        if before.verdict != after.verdict:
            key = f"{before.verdict or 'error'} → {after.verdict or 'error'}"
            transitions[key] = transitions.get(key, 0) + 1
        added = sorted(set(after.findings) - set(before.findings))
        removed = sorted(set(before.findings) - set(after.findings))
        changes = []
        if before.label() != after.label():
            changes.append({"path": "(verdict)", "before": before.label(), "after": after.label()})
        for code in sorted(set(before.findings) | set(after.findings)):
            old, new = before.findings.get(code), after.findings.get(code)
            if old != new:
                changes.append({"path": f"rules.{code}", "before": old, "after": new})
                tally = by_rule.setdefault(code, {"added": 0, "removed": 0, "severity_changed": 0})
                tally["added" if old is None else "removed" if new is None else "severity_changed"] += 1
        rec: RecordedOrder = item.payload
        listed.append(
            {
                "status": status,
                "source": item.source,
                "ref": item.ref,
                "order_id": item.platform_order_id,
                "platform": rec.platform,
                "shop_id": rec.shop_id,
                "recorded": {"state": rec.recorded, "rules_version": rec.rules_version},
                "before": before.brief(),
                "after": after.brief(),
                "rules_added": added,
                "rules_removed": removed,
                "changes": changes,
            }
        )
    order = {"newly_failing": 0, "newly_passing": 1, "changed": 2}
    listed.sort(key=lambda e: order[e["status"]])
    return {
        "counts": counts,
        "verdicts": dict(sorted(transitions.items())),
        "rules": dict(sorted(by_rule.items())),
        "orders": listed[:MAX_LISTED_ORDERS],
        "orders_not_listed": max(0, len(listed) - MAX_LISTED_ORDERS),
    }


def ruleset_samples(runtime: Runtime, folder: Path | None) -> list[CorpusItem]:
    """The bundled order samples of every platform as the published dictionaries map them, with
    the shop they resolve to: what a rule set's dry run reads besides the recorded orders."""
    if folder is None:
        return []
    items = []
    for platform, d in sorted(runtime.platform_dictionaries.items()):
        for path in sample_files(folder / platform) if (folder / platform).is_dir() else []:
            payload = _decoded(path)
            try:
                order = d.translate(payload)
                shop_id = runtime.config.resolve_shop(platform, header=None, alias=d.shop_alias(payload))
            except GatewayError:
                continue
            ref = f"{platform}/{path.name}"
            rec = RecordedOrder(
                source="sample",
                ref=ref,
                platform=platform,
                shop_id=shop_id,
                platform_order_id=order.order_id,
                canonical=msgspec.to_builtins(msgspec.structs.replace(order, shop_id=shop_id)),
                rules_version=None,
                recorded="sample",
            )
            items.append(CorpusItem("sample", ref, order.order_id, shop_id, rec))
    return items
