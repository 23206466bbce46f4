"""The rule catalog: stable codes, severities, parameters and bilingual messages, loaded from a
rule-set TOML text (the files under ``mappings/rules/`` seed the governed versions in the database,
``gateway.governance``); the checks themselves live in ``gateway.rules.checks``.
"""

from __future__ import annotations

import hashlib
import string
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from gateway.errors import ConfigError
from gateway.rules.actions import Action, ActionSpec, apply_actions, compile_actions
from gateway.rules.facts import NO_FACTS, Facts
from schemas.order import CanonicalOrder

Severity = Literal["reject", "hold", "warn"]


class RuleSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    severity: Severity
    message_zh: str
    message_en: str
    hint: str | None = None
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    platforms: list[str] = msgspec.field(default_factory=list)
    shops: list[str] = msgspec.field(default_factory=list)
    enabled: bool = True


class RulesetMeta(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str
    version: str = "1"


class RulesetSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    ruleset: RulesetMeta
    rules: dict[str, RuleSpec]
    actions: list[ActionSpec] = msgspec.field(default_factory=list)


class Violation(msgspec.Struct, kw_only=True, frozen=True):
    """One rule's finding about one order, as the API and the intercept log show it."""

    rule: str
    severity: Severity
    message_zh: str
    message_en: str
    path: str | None = None


@dataclass(frozen=True)
class Finding:
    """What a check reports: where, and the values its messages are formatted with."""

    path: str | None = None
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleContext:
    """What checks may know besides the order: the shop, its target's value tables, and what the
    database knows of the order (``facts``: none in a dry run without history)."""

    shop_id: str
    target: str
    tables: dict[str, dict[str, Any]]
    facts: Facts = NO_FACTS


Check = Callable[[CanonicalOrder, RuleContext, dict[str, Any]], Iterable[Finding]]
CHECKS: dict[str, Check] = {}


def check(code: str) -> Callable[[Check], Check]:
    """Register the check behind a rule code."""

    def register(fn: Check) -> Check:
        CHECKS[code] = fn
        return fn

    return register


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class Ruleset:
    name: str
    version: str  # "<declared>+<digest of the text and the configured parameter overrides>"
    rules: dict[str, RuleSpec]
    declared: str = "1"  # ``[ruleset] version``
    digest: str = ""  # sha256 of the text alone: what identifies a stored version of the rule set
    actions: tuple[Action, ...] = ()

    def active(self, code: str) -> bool:
        spec = self.rules.get(code)
        return spec is not None and spec.enabled

    def judge(self, order: CanonicalOrder, ctx: RuleContext) -> tuple[CanonicalOrder, list[Violation]]:
        """Run the actions, then the checks on what they made: the order as it will be stored and
        delivered, and its violations, most severe first."""
        acted = apply_actions(self.actions, order, ctx)
        return acted, self.evaluate(acted, ctx)

    def evaluate(self, order: CanonicalOrder, ctx: RuleContext) -> list[Violation]:
        """Run every applicable rule; return the violations, most severe first."""
        out: list[Violation] = []
        for code, spec in self.rules.items():
            if not spec.enabled:
                continue
            if spec.platforms and order.platform not in spec.platforms:
                continue
            if spec.shops and ctx.shop_id not in spec.shops:
                continue
            fn = CHECKS[code]
            for f in fn(order, ctx, spec.params):
                values = _SafeDict(spec.params)
                values.update(f.values)
                out.append(
                    Violation(
                        rule=code,
                        severity=spec.severity,
                        message_zh=spec.message_zh.format_map(values),
                        message_en=spec.message_en.format_map(values),
                        path=f.path,
                    )
                )
        rank = {"reject": 0, "hold": 1, "warn": 2}
        out.sort(key=lambda v: rank[v.severity])
        return out

    def catalog(self) -> list[dict[str, Any]]:
        """Every rule as ``GET /v1/rules`` lists it: code, severity, parameters (the configuration's
        overrides applied), messages, where it applies (empty: everywhere) and whether it runs."""
        return [
            {
                "code": code,
                "severity": spec.severity,
                "params": spec.params,
                "message_zh": spec.message_zh,
                "message_en": spec.message_en,
                "hint": spec.hint,
                "platforms": spec.platforms,
                "shops": spec.shops,
                "enabled": spec.enabled,
            }
            for code, spec in self.rules.items()
        ]


def load_ruleset(path: Path, overrides: dict[str, dict[str, Any]] | None = None) -> Ruleset:
    """Load a rule-set file and apply the configuration's parameter overrides."""
    return ruleset_from_text(path.read_text(encoding="utf-8"), overrides, origin=str(path))


def ruleset_from_text(
    text: str, overrides: dict[str, dict[str, Any]] | None = None, *, origin: str = "rule set"
) -> Ruleset:
    """Compile a rule-set TOML text and apply the configuration's parameter overrides on top.

    The version is ``<declared>+<12 hex>``: the digest of the text alone when there are no
    overrides (so it equals the stored version's), else of the text and the overrides.

    Raises:
        ConfigError: not TOML, not a rule set (a bad severity, an unknown key), a rule code no
            check implements, an override for a rule the text lacks, or a message whose braces
            do not pair; the message names ``origin``.
    """
    from gateway.rules import checks, stateful  # noqa: F401 - registers the checks

    try:
        spec = msgspec.convert(tomllib.loads(text), RulesetSpec)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{origin}: {exc}", f"{origin}：规则集格式错误：{exc}") from None
    rules = dict(spec.rules)
    for code, params in (overrides or {}).items():
        if code not in rules:
            raise ConfigError(
                f"{origin}: the configuration gives parameters for rule {code}, which this rule set lacks",
                f"{origin}：配置为规则 {code} 提供了参数，但该规则集没有此规则",
            )
        rules[code] = msgspec.structs.replace(rules[code], params={**rules[code].params, **params})
    unknown = set(rules) - set(CHECKS)
    if unknown:
        raise ConfigError(
            f"{origin}: no check implements {sorted(unknown)}; known rule codes: {', '.join(sorted(CHECKS))}",
            f"{origin}：规则 {sorted(unknown)} 没有实现；已有规则代码：{', '.join(sorted(CHECKS))}",
        )
    for code, rule in rules.items():
        for which, message in (("message_zh", rule.message_zh), ("message_en", rule.message_en)):
            try:
                list(string.Formatter().parse(message))
            except ValueError as exc:
                raise ConfigError(
                    f"{origin}: rules.{code}.{which}: {exc}", f"{origin}：rules.{code}.{which} 的花括号不成对：{exc}"
                ) from None
    actions = compile_actions(spec.actions, origin)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    effective = digest
    if overrides:
        effective = hashlib.sha256(text.encode("utf-8") + msgspec.json.encode(overrides, order="sorted")).hexdigest()
    return Ruleset(
        name=spec.ruleset.name,
        version=f"{spec.ruleset.version}+{effective[:12]}",
        rules=rules,
        declared=spec.ruleset.version,
        digest=digest,
        actions=actions,
    )
