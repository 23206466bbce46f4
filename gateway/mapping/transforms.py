"""Named transforms that dictionaries may use, each a plain function ``(value, **args) -> value``.

A transform receives the raw JSON value (already decoded by msgspec, which keeps integers of any
size exact) and either returns the canonical value or raises ``TransformError``; the compiled
dictionary turns that into a ``MappingError`` naming the source path. ``None`` means "absent".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import msgspec

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # China has had no DST since 1991
_UNSET_DATES = ("0001-01-01", "1970-01-01", "0000-00-00")
_HUNDRED = Decimal(100)


class TransformError(ValueError):
    """A value could not be converted; ``reason_zh`` is shown to people with the English text."""

    def __init__(self, reason: str, reason_zh: str | None = None) -> None:
        super().__init__(reason)
        self.reason_zh = reason_zh or reason


# --------------------------------------------------------------------------- money


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TransformError(f"expected a number, got {value!r}", f"应为数字，实际为 {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr() is the shortest text that reads back as the same float: for JSON amounts such as
        # 11.01 it is the token the platform sent.
        return Decimal(repr(value))
    if isinstance(value, str):
        text = normalize_text(value)
        if text is None:
            raise TransformError("empty amount", "金额为空")
        try:
            d = Decimal(text.replace(",", ""))
        except InvalidOperation:
            raise TransformError(f"not an amount: {value!r}", f"不是金额：{value!r}") from None
        if not d.is_finite():
            raise TransformError(f"not an amount: {value!r}", f"不是金额：{value!r}")
        return d
    raise TransformError(f"expected an amount, got {type(value).__name__}", "应为金额")


def yuan(value: Any) -> int | None:
    """Yuan as string or number → integer fen, exactly; more than two decimals is an error."""
    if value.__class__ is str:
        # Fast path for what platforms send almost always: plain ASCII digits, up to two decimals.
        whole, dot, frac = value.partition(".")
        if whole.isascii() and whole.isdigit() and len(frac) <= 2 and (not frac or (frac.isascii() and frac.isdigit())):
            return int(whole) * 100 + (int(frac) * (10 if len(frac) == 1 else 1) if frac else 0)
    elif value.__class__ is int:
        return value * 100
    if value is None or value == "":
        return None
    fen = _decimal(value) * _HUNDRED
    if fen != fen.to_integral_value():
        raise TransformError(f"amount {value!r} has fractions of a fen", f"金额 {value!r} 精度超过分")
    return int(fen)


def fen(value: Any) -> int | None:
    """Integer fen (or a numeric string of it) → int. Text with a decimal point is refused: a
    platform that sends fen sends whole numbers, and "6.00" is far more likely yuan than 6 fen."""
    if value.__class__ is int:
        return value
    if value is None or value == "":
        return None
    if value.__class__ is str:
        if value.isascii() and value.isdigit():
            return int(value)
        if "." in value:
            raise TransformError(
                f"fen amount {value!r} has a decimal point (is it yuan?)", f"分金额 {value!r} 含小数点（是否为元？）"
            )
    d = _decimal(value)
    if d != d.to_integral_value():
        raise TransformError(f"fen amount {value!r} is not whole", f"分金额 {value!r} 不是整数")
    return int(d)


def integer(value: Any) -> int | None:
    """A whole number given as number or string."""
    return fen(value)


def round_half_up(value: Decimal | int | float) -> int:
    return int(Decimal(str(value)).to_integral_value(ROUND_HALF_UP))


# --------------------------------------------------------------------------- text and ids

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
_SPACES = re.compile(r"\s+")


def normalize_text(value: Any) -> str | None:
    """NFKC (full-width → half-width, NBSP → space), zero-width characters dropped, runs of white
    space folded, trimmed; empty → None."""
    if value is None:
        return None
    if not isinstance(value, str):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TransformError(f"expected text, got {type(value).__name__}", "应为文本")
        value = str(value)
    if value.isascii():
        text = value.strip()
        if " " in text or "\t" in text or "\n" in text:
            text = _SPACES.sub(" ", text)
    else:
        text = _SPACES.sub(" ", unicodedata.normalize("NFKC", value).translate(_ZERO_WIDTH)).strip()
    return text or None


def text(value: Any) -> str | None:
    return normalize_text(value)


def raw_text(value: Any) -> str | None:
    """Text kept as sent (only trimmed): names of things people typed, where NFKC would alter them."""
    if value is None:
        return None
    if not isinstance(value, str):
        return normalize_text(value)
    return value.strip() or None


def identifier(value: Any) -> str | None:
    """An id from a string or an integer token, exactly (msgspec decodes big integers exactly)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TransformError("an id cannot be a boolean", "编号不能是布尔值")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # A float id has already lost digits above 2**53 in whoever produced it.
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        raise TransformError(
            f"id {value!r} is a float and may have lost digits", f"编号 {value!r} 为浮点数，可能已丢失精度"
        )
    if isinstance(value, str):
        v = value.strip()
        return v or None
    raise TransformError(f"expected an id, got {type(value).__name__}", "应为编号")


# --------------------------------------------------------------------------- time


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def local_time(value: Any) -> str | None:
    """``yyyy-MM-dd HH:mm:ss`` without a zone is Asia/Shanghai; unset markers → None."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return unix_time(value)
    if not isinstance(value, str):
        raise TransformError(f"expected a time, got {type(value).__name__}", "应为时间")
    v = value.strip()
    if not v or v.startswith(_UNSET_DATES):
        return None
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise TransformError(f"not a time: {value!r}", f"不是时间：{value!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=SHANGHAI)
    return _iso(dt)


def unix_time(value: Any) -> str | None:
    """Unix seconds (number or numeric string; 0 = unset) → ISO-8601 in +08:00."""
    if value is None or value == "" or value == 0 or value == "0":
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise TransformError(f"not a Unix time: {value!r}", f"不是 Unix 时间：{value!r}") from None
    if seconds > 1e11:  # milliseconds
        seconds /= 1000
    return _iso(datetime.fromtimestamp(int(seconds), tz=UTC).astimezone(SHANGHAI))


def strftime(value: Any, *, format: str) -> str | None:  # noqa: A002
    """An ISO-8601 time (as the canonical order holds it) → text in ``format``, in its own offset."""
    if value is None or value == "":
        return None
    try:
        return datetime.fromisoformat(str(value)).strftime(format)
    except ValueError:
        raise TransformError(f"not an ISO time: {value!r}", f"不是 ISO 时间：{value!r}") from None


# --------------------------------------------------------------------------- structure

_json_decoder = msgspec.json.Decoder()


def json_value(value: Any) -> Any:
    """A JSON object sent either as an object or as a JSON string of it."""
    if isinstance(value, str):
        v = value.strip()
        if not v:
            return None
        try:
            return _json_decoder.decode(v)
        except msgspec.DecodeError as exc:
            raise TransformError(f"not a JSON string: {exc}", "不是合法的 JSON 字符串") from None
    return value


def kv_spec(value: Any, *, pair_sep: str = ";", kv_sep: str = ":") -> list[dict[str, Any]]:
    """``"颜色:灰色;尺寸:L"`` → ``[{"name": "颜色", "value": "灰色"}, …]``."""
    t = normalize_text(value)
    if t is None:
        return []
    out = []
    for part in t.split(pair_sep):
        if not part.strip():
            continue
        name, sep, val = part.partition(kv_sep)
        if sep:
            out.append({"name": name.strip() or None, "value": val.strip()})
        else:
            out.append({"name": None, "value": name.strip()})
    return out


def values_spec(value: Any, *, sep: str = ",") -> list[dict[str, Any]]:
    """``"v1,v2"`` (values only) → ``[{"name": None, "value": "v1"}, …]``."""
    t = normalize_text(value)
    if t is None:
        return []
    return [{"name": None, "value": v.strip()} for v in t.split(sep) if v.strip()]


def as_bool(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("1", "true", "yes", "y"):
            return True
        if v in ("0", "false", "no", "n"):
            return False
    raise TransformError(f"not a boolean: {value!r}", f"不是布尔值：{value!r}")


def prefix_map(value: Any, *, map: dict[str, Any], default: Any = None) -> Any:  # noqa: A002
    """The value of the longest key that ``value`` starts with (promotion ids such as ``mjs-…``)."""
    t = normalize_text(value)
    if t is None:
        return default
    best = None
    for prefix in map:
        if t.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return map[best] if best is not None else default


_CIPHER = re.compile(r"^(~.*~|##.*##|\$.*\$)$", re.S)


def join(value: Any, *, sep: str = ",") -> str | None:
    """A list of texts → one text (``["VIP", "GIFT"]`` → ``"VIP,GIFT"``); empty or None → None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    items = [str(v) for v in value if v is not None and v != ""]
    return sep.join(items) if items else None


def pii_state(*values: Any) -> str:
    """``plain``, ``masked`` (asterisks), ``encrypted`` (platform ciphertext) or ``absent``."""
    present = [v for v in values if isinstance(v, str) and v.strip()]
    if not present:
        return "absent"
    if any(_CIPHER.match(v.strip()) for v in present):
        return "encrypted"
    if any("*" in v for v in present):
        return "masked"
    return "plain"


# --------------------------------------------------------------------------- registry

TRANSFORMS: dict[str, Callable[..., Any]] = {
    "yuan": yuan,
    "fen": fen,
    "int": integer,
    "text": text,
    "raw_text": raw_text,
    "id": identifier,
    "local_time": local_time,
    "unix_time": unix_time,
    "json": json_value,
    "kv_spec": kv_spec,
    "values_spec": values_spec,
    "bool": as_bool,
    "prefix_map": prefix_map,
    "strftime": strftime,
    "join": join,
}
"""Transforms a dictionary may name. ``enum`` is built in: it looks the value up in a table."""

# Functions an expression may call.
EXPR_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "pii_state": pii_state,
    "round_half_up": round_half_up,
    "min": min,
    "max": max,
    "abs": abs,
    "len": len,
    "str": str,
    "int": int,
}
