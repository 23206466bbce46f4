"""The gateway configuration (``GATEWAY_CONFIG``, a TOML file): shops, ERP targets, routes, value
tables and rule parameters. The bundled demo configuration points at the sandbox.

String values may name environment variables, ``${NAME}`` or ``${NAME:-default}``, so secrets and
addresses come from the environment and never from the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from gateway.circuit import CircuitConfig
from gateway.errors import ConfigError, UnknownShop
from gateway.limits import LimitsConfig
from gateway.mapping.values import read_value_files
from gateway.stopline import StopLineConfig

_ENV_REF = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


class RetryPolicy(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    first_delay_s: float = 2.0
    factor: float = 2.0
    cap_s: float = 600.0
    max_attempts: int = 10
    jitter: float = 0.5  # the share of each delay that is random ("equal jitter")
    unknown_outcome_delay_s: float = 3.0  # before the look-up that follows an unknown outcome


class ReadbackConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[targets.X.readback]``: read the target's shipments back from the ERP (``gateway.readback``)
    for sites whose WMS does not report them to the gateway. Off unless enabled."""

    enabled: bool = False
    interval_s: Annotated[float, msgspec.Meta(ge=1)] = 300.0  # between two polls of the target
    lookback_days: Annotated[int, msgspec.Meta(ge=1)] = 14  # orders delivered longer ago are not asked about
    batch: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50  # document codes per call to the ERP


class TargetConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One ERP account set reached through one transport."""

    transport: Literal["u8_eai", "u8_openapi", "k3_webapi", "k3_soap"]
    url: str  # U8 EAI: the import.asp URL; U8+ OpenAPI, K3 WebAPI: the root; K3 SOAP: the endpoint
    sender: str | None = None  # U8 EAI: the registered external-system code (外部系统注册)
    # Credentials of the transport (U8+ OpenAPI app_key/app_secret/from_account/to_account, K3
    # WebAPI authority_code, …): name environment variables here (`${K3_AUTHORITY_CODE}`), never
    # the secrets themselves.
    auth: dict[str, str] = msgspec.field(default_factory=dict)
    account_set: str | None = None  # the ERP account set (账套) the credentials are bound to
    options: dict[str, Any] = msgspec.field(default_factory=dict)  # transport options (docs/erp.md)
    dictionary: str = "u8_saleorder"  # an outbound dictionary in mappings/erp/
    values: list[str] = msgspec.field(default_factory=list)  # value-table files under mappings/
    code_prefix: str = "GW"
    code_width: int = 10  # U8 cSOCode is varchar(10) in the EAI template (erp-protocols.md §1.3)
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    concurrency: int = 2  # documents in flight at once towards this ERP: the default of limits.concurrency
    params: dict[str, Any] = msgspec.field(default_factory=dict)  # department, sales type, maker, …
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    limits: LimitsConfig = msgspec.field(default_factory=LimitsConfig)  # [targets.X.limits]
    circuit: CircuitConfig = msgspec.field(default_factory=CircuitConfig)  # [targets.X.circuit]
    stop_line: StopLineConfig = msgspec.field(default_factory=StopLineConfig)  # [targets.X.stop_line]
    readback: ReadbackConfig = msgspec.field(default_factory=ReadbackConfig)  # [targets.X.readback]


class ShopConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    platform: str
    name: str | None = None
    aliases: list[str] = msgspec.field(default_factory=list)
    default: bool = False  # the platform's default shop
    target: str


class RulesConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    ruleset: str = "default"  # mappings/rules/<ruleset>.toml
    params: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)  # per rule code


class RetentionConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """``[retention]``: how long raw payloads are kept (``gateway retention purge``). 0 keeps them
    forever. ``GATEWAY_RETENTION_PAYLOAD_DAYS`` overrides the file (``gateway.retention``)."""

    payload_days: Annotated[int, msgspec.Meta(ge=0)] = 180


class GatewayConfig(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str = "gateway"
    mappings_dir: str | None = None  # None: the bundled mappings/
    shops: dict[str, ShopConfig] = msgspec.field(default_factory=dict)
    targets: dict[str, TargetConfig] = msgspec.field(default_factory=dict)
    rules: RulesConfig = msgspec.field(default_factory=RulesConfig)
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)

    def mappings_path(self) -> Path:
        if self.mappings_dir:
            return Path(self.mappings_dir)
        return Path(str(resources.files("mappings")))

    def resolve_shop(self, platform: str, *, header: str | None, alias: str | None) -> str:
        """The shop of an incoming order: header, else the alias in the payload, else the default."""
        if header:
            shop = self.shops.get(header)
            if shop is None or shop.platform != platform:
                raise UnknownShop(
                    f"shop {header!r} is not configured for {platform}",
                    f"店铺 {header!r} 未在 {platform} 下配置",
                    hint="Add the shop to the configuration file (GATEWAY_CONFIG) or fix the X-Shop-Id header",
                    shop=header,
                )
            return header
        if alias:
            for sid, shop in self.shops.items():
                if shop.platform == platform and alias in shop.aliases:
                    return sid
        for sid, shop in self.shops.items():
            if shop.platform == platform and shop.default:
                return sid
        raise UnknownShop(
            f"no shop given (X-Shop-Id), none matches {alias!r}, and {platform} has no default shop",
            f"未指定店铺（X-Shop-Id），没有匹配 {alias!r} 的店铺，且 {platform} 未配置默认店铺",
            hint="Send X-Shop-Id, add the seller name to a shop's aliases, or mark a default shop",
        )


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set",
                f"环境变量 {name} 未设置",
                hint=f"export {name}=… before starting the gateway",
            )

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    return value


def parse_config(text: str, *, origin: str, env: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}", f"{origin}：TOML 格式错误") from None
    raw = _interpolate(raw, os.environ if env is None else env)
    for target in (raw.get("targets") or {}).values():
        # The older flat `concurrency` stays the default of `[limits] concurrency`.
        if isinstance(target, dict) and isinstance(target.setdefault("limits", {}), dict):
            target["limits"].setdefault("concurrency", target.get("concurrency", 2))
    try:
        cfg = msgspec.convert(raw, GatewayConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{origin}: {exc}", f"{origin}：配置结构错误：{exc}") from None
    for sid, shop in cfg.shops.items():
        if shop.target not in cfg.targets:
            raise ConfigError(f"{origin}: shop {sid} routes to unknown target {shop.target!r}")
    return cfg


def load_config(path: str | None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Load ``path``, or the bundled demo configuration when it is None."""
    if path is None:
        res = resources.files("gateway").joinpath("demo_config.toml")
        return parse_config(res.read_text(encoding="utf-8"), origin="bundled demo_config.toml", env=env)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"GATEWAY_CONFIG={path} does not exist", f"GATEWAY_CONFIG={path} 不存在")
    return parse_config(p.read_text(encoding="utf-8"), origin=str(p), env=env)


def load_value_tables(cfg: GatewayConfig, target: str) -> dict[str, dict[str, Any]]:
    """The value tables of a target (shop → customer code, SKU → inventory code, …), merged."""
    return read_value_files(cfg.mappings_path(), list(cfg.targets[target].values))
