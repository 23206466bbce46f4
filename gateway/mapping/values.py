"""Value tables: data files IT edits (shop → ERP customer, SKU → inventory code, fee names → fee
kinds, platform carrier codes → the gateway's carriers), looked up by dictionaries' ``lookup``.

A file holds TOML tables of plain values. Nested tables are named with dots, so
``[carriers.taobao]`` is the table ``carriers.taobao``. Several files merge, later ones winning.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError


def bundled_mappings() -> Path:
    """The ``mappings/`` folder shipped with the gateway."""
    return Path(str(resources.files("mappings")))


def _flatten(name: str, table: dict[str, Any], out: dict[str, dict[str, Any]], path: Path) -> None:
    leaves = {str(k): v for k, v in table.items() if not isinstance(v, dict)}
    if leaves:
        out.setdefault(name, {}).update(leaves)
    for k, v in table.items():
        if isinstance(v, dict):
            _flatten(f"{name}.{k}", v, out, path)


def read_value_files(base: Path, rels: list[str]) -> dict[str, dict[str, Any]]:
    """The tables of the files ``rels`` (relative to the mappings folder ``base``), merged.

    Raises:
        ConfigError: a file is missing, is not TOML, or has a value outside a table.
    """
    tables: dict[str, dict[str, Any]] = {}
    for rel in rels:
        path = base / rel
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"value table {path}: {exc}", f"值表 {path} 无法读取：{exc}") from None
        for name, table in raw.items():
            if not isinstance(table, dict):
                raise ConfigError(
                    f"value table {path}: {name!r} must be a [table]", f"值表 {path}：{name!r} 必须是一个表"
                )
            _flatten(name, table, tables, path)
    return tables
