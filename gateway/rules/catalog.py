"""The rule catalog: stable codes, severities, parameters and bilingual messages, loaded from a
rule-set TOML file (``mappings/rules/``); the checks themselves live in ``gateway.rules.checks``.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec

from gateway.errors import ConfigError
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
    """What checks may know besides the order: the shop and its target's value tables."""

    shop_id: str
    target: str
    tables: dict[str, dict[str, Any]]


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
    version: str  # "<declared>+<digest of the file and the configured parameters>"
    rules: dict[str, RuleSpec]

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


def load_ruleset(path: Path, overrides: dict[str, dict[str, Any]] | None = None) -> Ruleset:
    """Load a rule set and apply the configuration's parameter overrides."""
    from gateway.rules import checks  # noqa: F401 - registers the checks

    text = path.read_text(encoding="utf-8")
    try:
        spec = msgspec.convert(tomllib.loads(text), RulesetSpec)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ConfigError(f"{path}: {exc}", f"{path}：规则集格式错误：{exc}") from None
    rules = dict(spec.rules)
    for code, params in (overrides or {}).items():
        if code not in rules:
            raise ConfigError(f"rule parameters given for unknown rule {code}", f"未知规则 {code} 的参数")
        rules[code] = msgspec.structs.replace(rules[code], params={**rules[code].params, **params})
    unknown = set(rules) - set(CHECKS)
    if unknown:
        raise ConfigError(f"{path}: no check implements {sorted(unknown)}", f"{path}：规则 {sorted(unknown)} 没有实现")
    digest = hashlib.sha256(text.encode() + msgspec.json.encode(overrides or {}, order="sorted")).hexdigest()
    return Ruleset(name=spec.ruleset.name, version=f"{spec.ruleset.version}+{digest[:12]}", rules=rules)
