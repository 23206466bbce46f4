"""U8 EAI sale-order line amounts (erp-protocols.md §1.3, §1.4).

U8 does not recalculate what an EAI client sends (§1.3: public clients send consistent
``money = unitprice*qty``, ``sum = taxunitprice*qty``, ``tax = sum - money``), so the gateway
derives every amount tag of a line from one number it trusts: the tax-inclusive line amount in
fen. Everything is ``Decimal``; a float never touches money.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

_CENT = Decimal("0.01")
# Unit prices keep up to ten places (the E6 sample sends 23734.5132743363) so that
# price × quantity lands back on the line amount to within a fen even for 100.00 / 3.
_UNIT_PRICE_PLACES = Decimal("1E-10")
_RATE_PLACES = Decimal("1E-6")
_HUNDRED = Decimal(100)


def line_amounts(
    sum_fen: int, quantity: int | Decimal, taxrate: Decimal | int, *, quoted_fen: int | None
) -> dict[str, str]:
    """Every amount tag of one U8 ``<entry>``, as decimal strings consistent to the fen.

    Args:
        sum_fen: The tax-inclusive line amount (价税合计) in fen; 0 for a gift line.
        quantity: The line quantity in the main unit; must be positive.
        taxrate: The line tax rate in percent, e.g. 13.
        quoted_fen: The tax-inclusive list price (报价) per unit in fen, or None when the
            platform gives none (then the quoted price is the selling price, no discount).

    Returns:
        ``taxunitprice, unitprice, money, tax, sum, natunitprice, natmoney, nattax, natsum,
        quotedprice, discountrate``. Local-currency (``nat*``) amounts equal the original ones:
        orders are in 人民币 at currency rate 1.

    Raises:
        ValueError: a negative amount or rate, a non-positive quantity, or a float argument.
    """
    for name, value in (("sum_fen", sum_fen), ("quoted_fen", quoted_fen)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an int number of fen, not {type(value).__name__}")
    if isinstance(quantity, float) or isinstance(taxrate, float):
        raise ValueError("quantity and taxrate must be int or Decimal, never float")
    qty = Decimal(quantity)
    rate = Decimal(taxrate)
    if sum_fen < 0 or (quoted_fen is not None and quoted_fen < 0):
        raise ValueError("line amounts must not be negative")
    if not qty.is_finite() or qty <= 0:
        raise ValueError("quantity must be positive (U8 requires quantity > 0)")
    if not rate.is_finite() or rate < 0:
        raise ValueError("taxrate must be zero or positive")

    # A private context: the caller's Decimal precision or traps must not change our amounts.
    with localcontext() as ctx:
        ctx.prec = 40
        total = (Decimal(sum_fen) / _HUNDRED).quantize(_CENT)
        money = (total / (1 + rate / _HUNDRED)).quantize(_CENT, rounding=ROUND_HALF_UP)
        tax = total - money
        taxunitprice = _unit_price(total / qty)
        unitprice = _unit_price(money / qty)
        quoted = taxunitprice if quoted_fen is None else _unit_price(Decimal(quoted_fen) / _HUNDRED)
        # 扣率 (KL) in percent of the list price; U8 treats empty as 100 and so do we when no
        # list price is known or it is 0 (a gift quoted at nothing is not "discounted").
        if quoted_fen is None or quoted == 0:
            discountrate = _HUNDRED
        else:
            discountrate = (taxunitprice / quoted * _HUNDRED).quantize(_RATE_PLACES, rounding=ROUND_HALF_UP)

    return {
        "taxunitprice": _plain(taxunitprice),
        "unitprice": _plain(unitprice),
        "money": _fixed(money),
        "tax": _fixed(tax),
        "sum": _fixed(total),
        "natunitprice": _plain(unitprice),
        "natmoney": _fixed(money),
        "nattax": _fixed(tax),
        "natsum": _fixed(total),
        "quotedprice": _plain(quoted),
        "discountrate": _plain(discountrate),
    }


def _unit_price(value: Decimal) -> Decimal:
    return value.quantize(_UNIT_PRICE_PLACES, rounding=ROUND_HALF_UP)


def _fixed(value: Decimal) -> str:
    return format(value.quantize(_CENT), "f")


def _plain(value: Decimal) -> str:
    """Trailing zeros stripped, never exponent notation (``normalize`` alone gives ``1E+2``)."""
    return format(value.normalize(), "f")


def entry_amounts(row: int, entry: Mapping[str, Any], qty: Any) -> dict[str, str] | None:
    """``line_amounts`` of an outbound dictionary's entry that gives ``sum_fen`` (with ``taxrate``
    and optionally ``quoted_fen``), for any ERP's document; None when it gives no ``sum_fen``.

    Raises:
        ValueError: ``sum_fen`` without a whole-number ``taxrate``.
    """
    if "sum_fen" not in entry:
        return None
    taxrate = entry.get("taxrate")
    if taxrate is None or isinstance(taxrate, float):
        raise ValueError(f"entry {row}: sum_fen given without an int taxrate")
    return line_amounts(entry["sum_fen"], Decimal(str(qty)), Decimal(str(taxrate)), quoted_fen=entry.get("quoted_fen"))
