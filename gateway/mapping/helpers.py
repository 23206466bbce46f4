"""Small functions the generated mappers call. Paths for error messages are built only when an
error is raised, so the happy path never formats a string."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import MappingError
from gateway.mapping import transforms as T


def base_path(base: str, idx: int | None) -> str:
    return base if idx is None else f"{base}[{idx}]."


def dig(obj: Any, keys: tuple[str, ...], base: str, idx: int | None) -> Any:
    """Walk nested objects; None when a step is missing, an error when a step is not an object."""
    for i, k in enumerate(keys):
        if obj is None:
            return None
        if obj.__class__ is not dict:
            raise MappingError(base_path(base, idx) + ".".join(keys[:i]), "expected an object", "应为对象")
        obj = obj.get(k)
    return obj


def as_list(obj: Any, base: str, idx: int | None, path: str) -> list[Any]:
    if obj is None or obj == "":
        return []
    if obj.__class__ is list:
        return obj
    raise MappingError(base_path(base, idx) + path, "expected a list", "应为列表")


def which(src: Any, alternatives: tuple[tuple[str, ...], ...]) -> str:
    """The alternative path that supplied a value (for an error message)."""
    for keys in alternatives:
        obj = src
        for k in keys:
            obj = obj.get(k) if isinstance(obj, dict) else None
        if obj is not None and obj != "":
            return ".".join(keys)
    return ".".join(alternatives[0])


def merr(base: str, idx: int | None, path: str, exc: Exception) -> MappingError:
    if isinstance(exc, T.TransformError):
        return MappingError(base_path(base, idx) + path, str(exc), exc.reason_zh)
    return MappingError(base_path(base, idx) + path, f"cannot compute: {exc}", f"无法计算：{exc}")


def not_object(base: str, idx: int | None) -> MappingError:
    return MappingError(base_path(base, idx).rstrip(".") or "$", "expected an object", "应为对象")


def group(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Merge items with the same ``key``: lists concatenate, other values keep the first non-None."""
    out: dict[Any, dict[str, Any]] = {}
    for it in items:
        k = it.get(key)
        cur = out.get(k)
        if cur is None:
            out[k] = dict(it)
            continue
        for f, v in it.items():
            if isinstance(v, list) and isinstance(cur.get(f), list):
                cur[f] = cur[f] + v
            elif cur.get(f) is None:
                cur[f] = v
    return list(out.values())


def sum_of(items: list[Any], attr: str) -> int:
    total = 0
    for it in items:
        v = it.get(attr) if isinstance(it, dict) else getattr(it, attr)
        if v is not None:
            total += v
    return total


def first(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


EXPR_FUNCTIONS: dict[str, Callable[..., Any]] = {**T.EXPR_FUNCTIONS, "sum_of": sum_of, "first": first}
