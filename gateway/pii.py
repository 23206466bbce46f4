"""Masking of buyer names, phones and addresses (CONTRACT §5).

Clear buyer data may reach the gateway (some platforms send it while an order waits to ship), but
it never leaves in clear through a log line, the audit log or, by default, an API answer. Every
function here is pure and cheap, so callers can mask on every write without thinking about cost.

Masks are idempotent: masking ``王**`` or ``138****1234`` again gives the same text, so data the
platform already masked (``reference/canonical.md``) passes through unchanged. Platform ciphertext
(``~…~``, ``##…##``) becomes ``[encrypted]``: it is not clear text, but it is the platform's secret
and says nothing useful to a reader.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

ENCRYPTED = "[encrypted]"

# Same shapes as ``gateway.mapping.transforms.pii_state``; no whitespace inside, because real
# ciphertext is base64-like and a free-text name or address rarely is.
_CIPHER = re.compile(r"^(?:~\S+~(?:\|\|)?|##?\S+##?|\$\S+\$)$")

# A digit slot: ASCII or full-width digit, or a mask asterisk (full-width too).
_SLOTS = str.maketrans("０１２３４５６７８９＊", "0123456789*")
_D = "[0-9０-９]"
_SEP = r"[ \u00a0\u3000\-‐‑–—]"
# Mainland mobile numbers, optionally after +86, with at most one separator between digits
# ("138 1234 1234", NBSP from copy-paste). Bounded by non-digits so that a 19-digit order id
# that happens to contain such a run is left alone.
_MOBILE = re.compile(
    rf"(?<![0-9０-９])(?P<cc>(?:\+|＋)?86{_SEP}?)?(?P<num>[1１]{_SEP}?[3-9３-９](?:{_SEP}?{_D}){{9}})(?![0-9０-９])"
)
_ANY_DIGIT = re.compile(r"[0-9０-９]")
# Landlines with an area code and a separator (0755-12345678). The separator keeps order ids out.
_LANDLINE = re.compile(rf"(?<![0-9０-９])[0０]{_D}{{2,3}}[\-－ ]{_D}{{7,8}}(?![0-9０-９])")
# Resident ID numbers: 18 digits (last may be X) or the old 15. Checked further in _is_id_card so
# that order and waybill numbers of the same length are not masked.
# A leading "-" is excluded for Pinduoduo order numbers (240618-123456789012345).
_ID_RUN = re.compile(r"(?<![0-9０-９\-])(?:[0-9０-９]{17}[0-9０-９XxＸｘ]|[0-9０-９]{15})(?![0-9０-９])")
# First two digits of a resident ID: the province-level region (GB/T 2260).
_PROVINCES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82".split()
)


def is_ciphertext(value: str) -> bool:
    """Whether ``value`` is platform ciphertext such as ``~…~`` or ``##…##``."""
    return bool(_CIPHER.match(value.strip()))


def _masker(mask: Callable[[str], str]) -> Callable[[Any], Any]:
    # The cases every mask shares: nothing to hide stays as it is, ciphertext says so.
    @functools.wraps(mask)
    def masked(value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip()
        if not text:
            return ""
        return ENCRYPTED if _CIPHER.match(text) else mask(text)

    return masked


@_masker
def mask_name(text: str) -> str:
    """Mask a name or nick: ``王小明`` → ``王**`` (first character, one ``*`` per other, at least one).

    ``None`` and blank stay as they are, ciphertext becomes ``[encrypted]``; so for every mask.
    """
    return text[0] + "*" * max(1, len(text) - 1)


@_masker
def mask_phone(text: str) -> str:
    """Mask a phone number: ``13812341234`` → ``138****1234``; other numbers keep their last two.

    Full-width digits, spaces, NBSP, dashes and ``+86`` are tolerated, so a number pasted by a
    buyer masks like a clean one. Numbers under six digits become all ``*``.
    """
    slots = "".join(ch for ch in text.translate(_SLOTS) if ch in "0123456789*")
    if len(slots) == 13 and slots.startswith("86"):
        slots = slots[2:]
    if not any(ch.isdigit() for ch in slots):
        return "***"
    if len(slots) == 11 and slots[0] == "1":
        return slots[:3] + "****" + slots[-4:]
    if len(slots) < 6:  # two digits of a very short number would be most of it
        return "*" * len(slots)
    return "*" * (len(slots) - 2) + slots[-2:]


@_masker
def mask_address(text: str) -> str:
    """Mask a detail address to ``***`` and a length class: ``***(short|medium|long)``.

    The class (under 6, up to 20, more characters) tells an operator whether an address was there
    and roughly how complete, which is what an address question needs, without any of its words.
    """
    size = len(text)
    return "***(short)" if size < 6 else "***(medium)" if size <= 20 else "***(long)"


def _mask_id_match(match: re.Match[str]) -> str:
    run = match.group(0)
    return "*" * (len(run) - 2) + run[-2:] if _is_id_card(unicodedata.normalize("NFKC", run)) else run


def _is_id_card(digits: str) -> bool:
    # Province code plus a plausible birth date: random 15/18-digit ids (order, waybill) almost
    # never pass both, while a real ID number always does.
    if digits[:2] not in _PROVINCES:
        return False
    if len(digits) == 18:
        if digits[6:8] not in ("19", "20"):
            return False
        month, day = digits[10:12], digits[12:14]
    else:
        month, day = digits[8:10], digits[10:12]
    return "01" <= month <= "12" and "01" <= day <= "31"


def scrub_text(text: str) -> str:
    """Mask phone numbers (as :func:`mask_phone`) and resident ID numbers in free text.

    Args:
        text: A buyer message, an error message, a log event.

    Returns:
        The same text; mobiles (``1[3-9]`` and nine digits), landlines with an area code, and
        15/18-digit ID-like runs keep only what their mask keeps.
    """
    if not text or not _ANY_DIGIT.search(text):
        return text
    text = _MOBILE.sub(lambda m: (m.group("cc") or "") + mask_phone(m.group("num")), text)
    text = _LANDLINE.sub(lambda m: mask_phone(m.group(0)), text)
    return _ID_RUN.sub(_mask_id_match, text)


def _mask_place(value: Any) -> Any:
    # An address given as a structure keeps its region and loses its detail; as text it is masked.
    if isinstance(value, Mapping):
        return mask_receiver(value)
    if isinstance(value, list | tuple):
        return [_mask_place(v) for v in value]
    return mask_address(value)


_PLACE = _mask_place
_NAME_KEYS = "name receiver_name buyer_nick nick fullname user_name consignee post_receiver"
_PHONE_KEYS = "phone mobile receiver_phone receiver_mobile telephone tel_number tel post_tel desen_mobile"
_PLACE_KEYS = "address detail receiver_address receiver detail_info full_address post_addr address_info"
PII_KEYS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(_NAME_KEYS.split(), mask_name),
    **dict.fromkeys(_PHONE_KEYS.split(), mask_phone),
    **dict.fromkeys(_PLACE_KEYS.split(), _PLACE),
    # Raw platform fields, should a payload be logged (platforms.md: Douyin, JD).
    **dict.fromkeys("encrypt_post_receiver mask_post_receiver".split(), mask_name),
    **dict.fromkeys("encrypt_post_tel mask_post_tel encrypt_mobile".split(), mask_phone),
    **dict.fromkeys("encrypt_detail mask_post_addr encrypt_address".split(), _PLACE),
}
"""Keys (compared lower-case, without ``_``/``-``) whose values are masked wherever they appear."""

_PII_BY_NORMAL = {k.replace("_", ""): f for k, f in PII_KEYS.items()}
# Region-level receiver fields: too coarse to find a person, and what routing and reports need.
_RECEIVER_KEEP = frozenset(
    {"province", "city", "district", "country", "postal_code", "pii_state", "street", "region_codes"}
)


def masker_for(key: Any) -> Callable[[Any], Any] | None:
    """The masking function for a PII key such as ``receiverPhone``, or ``None``."""
    if not isinstance(key, str):
        return None
    return _PII_BY_NORMAL.get(key.lower().replace("_", "").replace("-", ""))


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of JSON-like ``value`` with :data:`PII_KEYS` masked and other strings scrubbed.

    Dicts, lists and tuples are walked; strings go through :func:`scrub_text`; other scalars stay.
    """
    if isinstance(value, str):
        return scrub_text(value)
    if _depth > 32:  # a self-referencing structure must not stop a log line
        return "[too deep]"
    if isinstance(value, Mapping):
        return {key: _redact_item(key, item, _depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, _depth + 1) for v in value]
    return value


def _redact_item(key: Any, item: Any, depth: int) -> Any:
    masker = masker_for(key)
    return redact(item, depth) if masker is None else _apply(masker, item)


def _apply(masker: Callable[[Any], Any], value: Any) -> Any:
    # Everything under a PII key is that kind of PII, however it is nested (a name given as
    # {"first", "last"}, a list of phones); places handle their own structure.
    if masker is _PLACE or not isinstance(value, Mapping | list | tuple):
        return masker(value)
    if isinstance(value, Mapping):
        return {k: _apply(masker, v) for k, v in value.items()}
    return [_apply(masker, v) for v in value]


def mask_receiver(receiver: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a canonical ``receiver`` with name, phone and detail masked.

    Region fields (``province``, ``city``, ``district``, ``street``, ``country``, ``postal_code``,
    ``region_codes``) and ``pii_state`` are kept; any other key is treated as :func:`redact` does.
    """
    return {key: _copy(item) if key in _RECEIVER_KEEP else _redact_item(key, item, 0) for key, item in receiver.items()}


def mask_order(canonical: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a canonical order (as builtins) safe to show or log.

    The receiver is masked (:func:`mask_receiver`), ``buyer.nick`` is masked, and the free-text
    ``buyer.message`` and ``seller_memo`` keep their words but lose phone and ID numbers.
    """
    order = _copy(canonical)
    if isinstance(order.get("receiver"), Mapping):
        order["receiver"] = mask_receiver(order["receiver"])
    buyer = order.get("buyer")
    if isinstance(buyer, dict):
        if "nick" in buyer:
            buyer["nick"] = mask_name(buyer["nick"])
        if isinstance(buyer.get("message"), str):
            buyer["message"] = scrub_text(buyer["message"])
    if isinstance(order.get("seller_memo"), str):
        order["seller_memo"] = scrub_text(order["seller_memo"])
    return order


def _copy(value: Any) -> Any:
    # JSON-shaped data only, so a recursive copy is enough and much faster than copy.deepcopy.
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value
