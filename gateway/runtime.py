"""What translation and rules need at run time: the configuration, the compiled platform, refund and
ERP dictionaries, the rule set and each target's value tables.

A ``Runtime`` is frozen. The dictionaries and the configured rule set in it are the *published*
versions in the database (``gateway.governance``); when another version is published, each process
builds a new Runtime and swaps it in whole (``gateway.publication``), so a request or a delivery
never sees half of a change. ``load_runtime`` compiles the bundled files instead: the seed of a new
database, and tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import GatewayConfig, load_value_tables
from gateway.errors import ConfigError
from gateway.mapping.dictionary import CompiledDictionary, compile_dictionary
from gateway.rules.catalog import Ruleset, load_ruleset, ruleset_from_text
from schemas.order import PLATFORMS

DICTIONARY_FOLDERS = ("platforms", "refunds", "erp")
"""The folders of ``mappings/`` that hold dictionaries (the value tables are not versioned)."""
RULES_FOLDER = "rules"
"""The folder of ``mappings/`` that holds the rule sets (governed like the dictionaries)."""


@dataclass(frozen=True)
class Runtime:
    config: GatewayConfig
    platform_dictionaries: dict[str, CompiledDictionary]  # by platform
    erp_dictionaries: dict[str, CompiledDictionary]  # by dictionary name
    ruleset: Ruleset
    tables: dict[str, dict[str, dict[str, object]]]  # by target
    refund_dictionaries: dict[str, CompiledDictionary] = field(default_factory=dict)  # by platform

    def dictionary_for(self, platform: str) -> CompiledDictionary | None:
        return self.platform_dictionaries.get(platform)

    def dictionaries(self) -> list[CompiledDictionary]:
        """Every dictionary in use, platform, refund and ERP."""
        kinds = (self.platform_dictionaries, self.refund_dictionaries, self.erp_dictionaries)
        return [d for by_key in kinds for d in by_key.values()]


@dataclass(frozen=True)
class DictionaryFile:
    """A bundled dictionary file, compiled."""

    path: Path
    text: str
    compiled: CompiledDictionary


def bundled_dictionaries(config: GatewayConfig) -> list[DictionaryFile]:
    """Compile every dictionary file under the mappings folder.

    Raises:
        ConfigError: a file does not compile; the message names it.
    """
    base = config.mappings_path()
    out = []
    for folder in DICTIONARY_FOLDERS:
        for path in sorted((base / folder).glob("*.toml")):
            text = path.read_text(encoding="utf-8")
            out.append(DictionaryFile(path, text, compile_dictionary(text, origin=str(path), base=base)))
    return out


@dataclass(frozen=True)
class RulesetFile:
    """A bundled rule-set file, compiled without the configuration's parameter overrides."""

    path: Path
    text: str
    compiled: Ruleset


def bundled_rulesets(config: GatewayConfig) -> list[RulesetFile]:
    """Compile every rule-set file under ``mappings/rules/``.

    Raises:
        ConfigError: a file does not compile, or two files declare one ``[ruleset] name``.
    """
    out: list[RulesetFile] = []
    for path in sorted((config.mappings_path() / RULES_FOLDER).glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        r = ruleset_from_text(text, origin=str(path))
        twin = next((f for f in out if f.compiled.name == r.name), None)
        if twin is not None:
            raise ConfigError(
                f"{path} and {twin.path} both declare the rule set {r.name!r}",
                f"{path} 与 {twin.path} 声明了同名规则集 {r.name!r}",
            )
        out.append(RulesetFile(path, text, r))
    return out


def dictionary_platform(d: CompiledDictionary) -> str | None:
    """The platform an order or refund dictionary reads (None for an ERP document dictionary)."""
    if d.spec.dictionary.kind == "document":
        return None
    return d.spec.dictionary.platform or d.name


def load_rules(config: GatewayConfig) -> Ruleset:
    ruleset_path = Path(config.mappings_path() / "rules" / f"{config.rules.ruleset}.toml")
    if not ruleset_path.is_file():
        raise ConfigError(f"rule set {ruleset_path} does not exist", f"规则集 {ruleset_path} 不存在")
    return load_ruleset(ruleset_path, config.rules.params)


def build_runtime(
    config: GatewayConfig,
    dictionaries: Iterable[CompiledDictionary],
    *,
    ruleset: Ruleset | None = None,
    tables: dict[str, dict[str, dict[str, object]]] | None = None,
) -> Runtime:
    """A Runtime of these dictionaries (the rule set and value tables loaded unless given).

    Raises:
        ConfigError: two dictionaries for one platform, an unknown platform, or a target whose
            ERP dictionary is missing.
    """
    by_kind: dict[str, dict[str, CompiledDictionary]] = {"order": {}, "refund": {}, "document": {}}
    for d in dictionaries:
        kind = d.spec.dictionary.kind
        key = dictionary_platform(d) or d.name
        if kind != "document" and key not in PLATFORMS:
            raise ConfigError(f"dictionary {d.name}: unknown platform {key!r}", f"字典 {d.name}：未知平台 {key!r}")
        if key in by_kind[kind]:
            raise ConfigError(
                f"two {kind} dictionaries for {key}: {by_kind[kind][key].name} and {d.name}",
                f"{key} 有两个 {kind} 字典：{by_kind[kind][key].name} 与 {d.name}",
            )
        by_kind[kind][key] = d
    erp_dicts = by_kind["document"]
    for name, target in config.targets.items():
        if target.dictionary not in erp_dicts:
            raise ConfigError(
                f"target {name} uses dictionary {target.dictionary!r}, which is not published",
                f"目标 {name} 使用的字典 {target.dictionary!r} 尚未发布",
            )
    return Runtime(
        config=config,
        platform_dictionaries=by_kind["order"],
        erp_dictionaries=erp_dicts,
        ruleset=ruleset if ruleset is not None else load_rules(config),
        tables=tables if tables is not None else {name: load_value_tables(config, name) for name in config.targets},
        refund_dictionaries=by_kind["refund"],
    )


def with_dictionaries(runtime: Runtime, dictionaries: Iterable[CompiledDictionary]) -> Runtime:
    """``runtime`` with other dictionaries, the same configuration, rules and value tables."""
    return build_runtime(runtime.config, dictionaries, ruleset=runtime.ruleset, tables=runtime.tables)


def load_runtime(config: GatewayConfig) -> Runtime:
    """Compile every dictionary under the mappings folder and load the configured rule set.

    Raises:
        ConfigError: a dictionary, value table or rule set is wrong; the message names the file.
    """
    return build_runtime(config, [f.compiled for f in bundled_dictionaries(config)])
