"""What the hand-written twins ``bench/handwritten_<platform>.py`` have in common.

The small readers every twin needs the same way: ids, whole numbers, yuan → fen, times, the first
value present, required values, the receiver's ``pii_state``, platform region ids, largest-remainder
allocation and the carrier value tables. Each is what the twins used to write out one by one, with
the same checks and the same fast paths; they are plain module functions, so a twin calling one
through its import pays what it paid for its own. What differs between platforms (status tables,
specs, promotions, how lines and shipments are built) stays in the twins.

Yuan platforms (Taobao, Pinduoduo, JD) send money as yuan and times as local text; fen platforms
(Douyin, WeChat Channels) send whole fen and Unix seconds: the helpers below say which they serve.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

# Text is normalised as everywhere in the gateway (NFKC, zero-width characters, white space).
from gateway.mapping.transforms import normalize_text

CST = timezone(timedelta(hours=8), "Asia/Shanghai")
_HUNDRED = Decimal(100)
_CIPHER = re.compile(r"^(~.*~|##.*##|\$.*\$)$", re.S)

# The same value tables the dictionaries look carriers and fee kinds up in, read once.
VALUES: dict[str, Any] = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "mappings" / "values" / "platforms.toml").read_text(encoding="utf-8")
)


def raw(v: Any) -> str | None:
    """Free text (names, messages, memos) as sent, only trimmed; anything else normalised."""
    return (v.strip() or None) if isinstance(v, str) else normalize_text(v)


def ident(v: Any) -> str | None:
    """An id as text: an int kept exact (above 2^53 too), text trimmed, empty → None."""
    if v is None or v == "":
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, str):
        return v.strip() or None
    raise ValueError(f"not an id: {v!r}")


def fen(v: Any, default: int | None = None) -> int | None:
    """Yuan (text or number) → fen, exactly (yuan platforms)."""
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ValueError(f"not an amount: {v!r}")
    d = Decimal(v.strip().replace(",", "") if isinstance(v, str) else repr(v) if isinstance(v, float) else v)
    f = d * _HUNDRED
    if f != f.to_integral_value():
        raise ValueError(f"amount {v!r} has fractions of a fen")
    return int(f)


def count(v: Any) -> int | None:
    """A count as an int or as the text of one; nothing else (yuan platforms)."""
    if v is None or v == "":
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        return int(v.strip())
    raise ValueError(f"not a whole number: {v!r}")


def integer(v: Any) -> int | None:
    """Fen and counts: a whole number, as a number or as text (fen platforms)."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"not a number: {v!r}")
    if isinstance(v, int):
        return v
    d = Decimal(v.strip() if isinstance(v, str) else repr(v))
    if d != d.to_integral_value():
        raise ValueError(f"not a whole number: {v!r}")
    return int(d)


def nonneg(v: int | None, name: str) -> int | None:
    if v is not None and v < 0:
        raise ValueError(f"{name} is negative: {v}")
    return v


def local_time(v: Any) -> str | None:
    """Local date-time text (zone-less is Asia/Shanghai; 0001-01-01 and the like are unset) → ISO-8601."""
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"not a time: {v!r}")
    v = v.strip()
    if not v or v.startswith(("0001-01-01", "1970-01-01", "0000-00-00")):
        return None
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=CST)
    return dt.isoformat(timespec="seconds")


def unix_time(v: Any) -> str | None:
    """Unix seconds (0 = unset) → ISO-8601 in +08:00."""
    if v is None or v == "" or v == 0 or v == "0":
        return None
    seconds = float(v)
    if seconds > 1e11:  # milliseconds
        seconds /= 1000
    return datetime.fromtimestamp(int(seconds), tz=UTC).astimezone(CST).isoformat(timespec="seconds")


def first(d: dict[str, Any], *keys: str) -> Any:
    """The value of the first key that is neither null nor empty text (a 0 counts)."""
    for k in keys:
        v = d.get(k)
        if v is not None and v != "":
            return v
    return None


def either(*values: Any) -> Any:
    """The first value that is neither null nor empty text (a 0 counts)."""
    for v in values:
        if v is not None and v != "":
            return v
    return None


def required(v: Any, name: str) -> Any:
    if v is None:
        raise ValueError(f"{name} is missing")
    return v


def pii_state(*values: str | None) -> str:
    """How the receiver's details came: absent, encrypted (platform ciphertext), masked or plain."""
    present = [v.strip() for v in values if v and v.strip()]
    if not present:
        return "absent"
    if any(_CIPHER.match(v) for v in present):
        return "encrypted"
    return "masked" if any("*" in v for v in present) else "plain"


def region_id(v: Any) -> str | None:
    """A platform region id; "0" means none."""
    i = ident(v)
    return None if i == "0" else i


def allocate(total: int, weights: list[int]) -> list[int]:
    """Largest remainder: shares rounded down, the fen left over to the largest remainders (the
    earlier line on a tie); all weights zero → evenly."""
    n = len(weights)
    if n == 0 or not total:
        return [0] * n
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError(f"cannot allocate {total} over {weights}")
    whole = sum(weights)
    if whole == 0:
        weights, whole = [1] * n, n
    shares = [total * w // whole for w in weights]
    order = sorted(range(n), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def carrier_lookup(platform: str) -> Callable[[str | None], str | None]:
    """The look-up in value table ``carriers.<platform>``: a carrier name or code → its code; the
    table's "*" entry for the rest, where an empty code means none."""
    table: dict[str, str] = VALUES["carriers"][platform]

    def carrier(key: str | None) -> str | None:
        if key is None:
            return None
        code = table.get(key, table.get("*"))
        if code is None:
            raise ValueError(f"no entry for {key!r} in value table carriers.{platform}")
        return code or None

    return carrier
