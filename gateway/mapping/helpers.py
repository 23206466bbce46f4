"""Small functions the generated mappers call. Paths for error messages are built only when an
error is raised, so the happy path never formats a string."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway import regions
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
        v = _value(it, attr)
        if v is not None:
            total += v
    return total


def first(*values: Any) -> Any:
    for v in values:
        if v is not None and v != "":
            return v
    return None


def _value(it: Any, attr: str) -> Any:
    return it.get(attr) if isinstance(it, dict) else getattr(it, attr)


_NO_ENTRY = object()


def table_value(table: dict[str, Any], v: Any, name: str) -> Any:
    """``table("NAME", v)`` in an expression: the same rules as a field's ``table``."""
    if v is None or v == "":
        return None
    r = table.get(v if v.__class__ is str else str(v), _NO_ENTRY)
    if r is _NO_ENTRY:
        r = table.get("*", _NO_ENTRY)
    if r is _NO_ENTRY:
        raise T.TransformError(f"value {v!r} is not in table {name}", f"值 {v!r} 不在码表 {name} 中")
    return None if r == "" else r


def values_of(items: list[Any], attr: str) -> list[Any]:
    """One field of every element: ``values_of(_bases, "net")``."""
    return [_value(it, attr) for it in items]


def sum_where(items: list[Any], attr: str, key: str, value: Any) -> int:
    """Σ ``attr`` over the elements whose ``key`` equals ``value`` (a line's own coupons)."""
    total = 0
    for it in items:
        if _value(it, key) == value:
            v = _value(it, attr)
            if v is not None:
                total += v
    return total


def allocate(total: int | None, weights: list[int | None]) -> list[int]:
    """Spread ``total`` fen over ``weights`` by largest remainder: the shares sum to ``total`` exactly.

    Each share is ``total * w / Σw`` rounded down; the fen left over go one each to the largest
    remainders, earlier elements first on a tie. With every weight zero the total is spread
    evenly. A negative weight or total is refused: allocating a refund or a surcharge is not the
    same operation and must be written out.
    """
    n = len(weights)
    if n == 0 or not total:
        return [0] * n
    ws = [w or 0 for w in weights]
    if total < 0 or any(w < 0 for w in ws):
        raise T.TransformError(
            f"cannot allocate {total} over weights {ws}: negative values", f"无法按 {ws} 分摊 {total}：存在负数"
        )
    whole = sum(ws)
    if whole == 0:
        ws, whole = [1] * n, n
    shares = [total * w // whole for w in ws]
    left = total - sum(shares)
    by_remainder = sorted(range(n), key=lambda i: (-(total * ws[i] % whole), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def nth(values: list[Any] | None, i: int | None) -> Any:
    """``values[i]``, or None when there is no such element."""
    if values is None or i is None or not 0 <= i < len(values):
        return None
    return values[i]


def get(obj: Any, key: str) -> Any:
    """A key of an object-valued field (``get(_region, "city")``); None when absent."""
    if obj is None:
        return None
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def dict_of(*pairs: Any) -> dict[str, Any] | None:
    """``dict_of("province", a, "city", b)``: an object of the non-empty values; None if all are empty."""
    if len(pairs) % 2:
        raise T.TransformError("dict_of takes name, value pairs", "dict_of 需要成对的名称和值")
    out = {str(pairs[i]): pairs[i + 1] for i in range(0, len(pairs), 2) if pairs[i + 1] not in (None, "")}
    return out or None


def strip_prefixes(text: Any, *prefixes: Any) -> Any:
    """``text`` without the given prefixes at its start, in order, each at most once: an address
    without the province / city / district it begins with (JD ``fullAddress``)."""
    if not isinstance(text, str):
        return text
    out = text
    for p in prefixes:
        if isinstance(p, str) and p and out.startswith(p):
            out = out[len(p) :]
    return out.strip() or None


EXPR_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **T.EXPR_FUNCTIONS,
    "sum_of": sum_of,
    "first": first,
    "values_of": values_of,
    "sum_where": sum_where,
    "allocate": allocate,
    "nth": nth,
    "get": get,
    "dict_of": dict_of,
    "strip_prefixes": strip_prefixes,
    # Province / city / district names normalised, with GB/T 2260 codes (gateway/regions.py).
    "region": regions.normalise,
}
