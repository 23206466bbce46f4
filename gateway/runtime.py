"""What translation and rules need at run time, loaded once at start: the configuration, the
compiled platform and ERP dictionaries, the rule set and each target's value tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import GatewayConfig, load_value_tables
from gateway.errors import ConfigError
from gateway.mapping.dictionary import CompiledDictionary, load_dictionary
from gateway.rules.catalog import Ruleset, load_ruleset
from schemas.order import PLATFORMS


@dataclass(frozen=True)
class Runtime:
    config: GatewayConfig
    platform_dictionaries: dict[str, CompiledDictionary]  # by platform
    erp_dictionaries: dict[str, CompiledDictionary]  # by dictionary name
    ruleset: Ruleset
    tables: dict[str, dict[str, dict[str, object]]]  # by target

    def dictionary_for(self, platform: str) -> CompiledDictionary | None:
        return self.platform_dictionaries.get(platform)


def load_runtime(config: GatewayConfig) -> Runtime:
    """Compile every dictionary under the mappings folder and load the configured rule set.

    Raises:
        ConfigError: a dictionary, value table or rule set is wrong; the message names the file.
    """
    base = config.mappings_path()
    platform_dicts: dict[str, CompiledDictionary] = {}
    for path in sorted((base / "platforms").glob("*.toml")):
        d = load_dictionary(path)
        platform = d.spec.dictionary.platform or d.name
        if platform not in PLATFORMS:
            raise ConfigError(f"{path}: unknown platform {platform!r}", f"{path}：未知平台 {platform!r}")
        platform_dicts[platform] = d
    erp_dicts = {d.name: d for d in (load_dictionary(p) for p in sorted((base / "erp").glob("*.toml")))}
    for name, target in config.targets.items():
        if target.dictionary not in erp_dicts:
            raise ConfigError(
                f"target {name} uses dictionary {target.dictionary!r}, which is not in {base / 'erp'}",
                f"目标 {name} 使用的字典 {target.dictionary!r} 不存在",
            )
    ruleset_path = Path(base / "rules" / f"{config.rules.ruleset}.toml")
    if not ruleset_path.is_file():
        raise ConfigError(f"rule set {ruleset_path} does not exist", f"规则集 {ruleset_path} 不存在")
    ruleset = load_ruleset(ruleset_path, config.rules.params)
    tables = {name: load_value_tables(config, name) for name in config.targets}
    return Runtime(
        config=config,
        platform_dictionaries=platform_dicts,
        erp_dictionaries=erp_dicts,
        ruleset=ruleset,
        tables=tables,
    )
