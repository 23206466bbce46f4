"""U8 EAI line amounts (erp-protocols.md §1.3): consistent to the fen, Decimal only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.u8.amounts import line_amounts

TAGS = set("taxunitprice unitprice money tax sum natunitprice natmoney nattax natsum quotedprice discountrate".split())


def test_gives_exactly_the_section_1_3_amount_tags():
    # nattaxunitprice is not in the §1.3 table, so it is not sent.
    assert set(line_amounts(10000, 3, 13, quoted_fen=None)) == TAGS


def test_hundred_yuan_over_three_at_13_percent():
    a = line_amounts(10000, 3, 13, quoted_fen=None)
    assert a["sum"] == "100.00"
    assert a["money"] == "88.50"  # 100 / 1.13 = 88.4955… → 88.50
    assert a["tax"] == "11.50"
    assert a["taxunitprice"] == "33.3333333333"
    assert a["unitprice"] == "29.5"
    assert abs(Decimal(a["taxunitprice"]) * 3 - Decimal("100.00")) <= Decimal("0.01")
    assert abs(Decimal(a["unitprice"]) * 3 - Decimal("88.50")) <= Decimal("0.01")


def test_the_e6_sample_line():
    a = line_amounts(2682000, 1, 13, quoted_fen=2682000)
    assert (a["money"], a["tax"], a["sum"]) == ("23734.51", "3085.49", "26820.00")
    assert a["taxunitprice"] == "26820"
    assert a["quotedprice"] == "26820"
    assert a["discountrate"] == "100"


def test_zero_fen_gift_line():
    a = line_amounts(0, 2, 13, quoted_fen=1990)
    assert (a["sum"], a["money"], a["tax"]) == ("0.00", "0.00", "0.00")
    assert a["taxunitprice"] == "0" and a["unitprice"] == "0"
    assert a["quotedprice"] == "19.9"
    assert a["discountrate"] == "0"


def test_gift_without_list_price_is_not_discounted():
    assert line_amounts(0, 1, 13, quoted_fen=None)["discountrate"] == "100"
    assert line_amounts(0, 1, 13, quoted_fen=0)["discountrate"] == "100"


def test_discount_rate_against_list_price():
    a = line_amounts(8000, 1, 13, quoted_fen=10000)
    assert a["quotedprice"] == "100"
    assert a["discountrate"] == "80"


def test_local_currency_amounts_equal_original_ones():
    a = line_amounts(12345, Decimal("2.5"), Decimal("6"), quoted_fen=None)
    assert a["natsum"] == a["sum"] and a["natmoney"] == a["money"]
    assert a["nattax"] == a["tax"] and a["natunitprice"] == a["unitprice"]


def test_zero_rate_means_money_is_sum():
    a = line_amounts(999, 7, 0, quoted_fen=None)
    assert a["money"] == a["sum"] == "9.99"
    assert a["tax"] == "0.00"


def test_no_exponent_notation():
    a = line_amounts(100000000, 1, 13, quoted_fen=None)
    assert a["taxunitprice"] == "1000000"
    assert "E" not in "".join(a.values())


@pytest.mark.parametrize(
    ("sum_fen", "quantity", "taxrate"),
    [(-1, 1, 13), (100, 0, 13), (100, -2, 13), (100, 1, -1), (100, 1.5, 13), (100, 1, 13.0), (1.0, 1, 13)],
)
def test_refuses_bad_inputs(sum_fen, quantity, taxrate):
    with pytest.raises(ValueError):
        line_amounts(sum_fen, quantity, taxrate, quoted_fen=None)


@given(
    sum_fen=st.integers(min_value=0, max_value=10**11),
    quantity=st.one_of(
        st.integers(min_value=1, max_value=100_000),
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10_000), places=3),
    ),
    rate=st.sampled_from([0, 1, 3, 6, 9, 13, Decimal("16.5")]),
)
def test_consistent_to_the_fen(sum_fen, quantity, rate):
    a = line_amounts(sum_fen, quantity, rate, quoted_fen=None)
    total, money, tax = Decimal(a["sum"]), Decimal(a["money"]), Decimal(a["tax"])
    assert total == Decimal(sum_fen) / 100
    assert money + tax == total
    assert money == (total / (1 + Decimal(rate) / 100)).quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert abs(Decimal(a["taxunitprice"]) * Decimal(quantity) - total) <= Decimal("0.01")
    assert abs(Decimal(a["unitprice"]) * Decimal(quantity) - money) <= Decimal("0.01")
    assert all(-Decimal(a[t]).as_tuple().exponent <= 10 for t in ("taxunitprice", "unitprice"))


# --------------------------------------------------------------------------- awkward cases (§1.3 relations)

CENT = Decimal("0.01")


@pytest.mark.parametrize(
    ("sum_fen", "qty", "rate", "money", "tax"),
    [
        (1, 1, 13, "0.01", "0.00"),  # 0.01 / 1.13 = 0.00885 → 0.01: all of a fen is money
        (3, 3, 9, "0.03", "0.00"),  # 0.0275 → 0.03
        (7, 3, 6, "0.07", "0.00"),  # 0.0660 → 0.07
        (113, 1, 13, "1.00", "0.13"),
        (10001, 3, 13, "88.50", "11.51"),  # 100.01 / 1.13 = 88.5044
        (10001, 3, 9, "91.75", "8.26"),  # 100.01 / 1.09 = 91.7523
        (10001, 3, 6, "94.35", "5.66"),  # 100.01 / 1.06 = 94.3490
        (10001, 3, 0, "100.01", "0.00"),
        (99999, 3, 13, "884.95", "115.04"),  # 999.99 / 1.13 = 884.9469 → 884.95
    ],
)
def test_odd_fen_at_every_rate(sum_fen, qty, rate, money, tax):
    a = line_amounts(sum_fen, qty, rate, quoted_fen=None)
    assert (a["money"], a["tax"]) == (money, tax)
    assert Decimal(a["money"]) + Decimal(a["tax"]) == Decimal(a["sum"]) == Decimal(sum_fen) / 100
    # price × qty rounds back to the line amounts exactly (ten-place unit prices)
    assert (Decimal(a["taxunitprice"]) * qty).quantize(CENT) == Decimal(a["sum"])
    assert (Decimal(a["unitprice"]) * qty).quantize(CENT) == Decimal(a["money"])


@given(
    sum_fen=st.integers(min_value=0, max_value=10**9).map(lambda n: 2 * n + 1),  # odd fen
    quantity=st.sampled_from([1, 2, 3, 7, 9, 11, 999]),
    rate=st.sampled_from([13, 9, 6, 0]),
    quoted_extra=st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)),
)
def test_every_relation_holds_to_the_fen(sum_fen, quantity, rate, quoted_extra):
    unit_fen = -(-sum_fen // quantity)  # a list price at or above the selling price
    quoted = None if quoted_extra is None else unit_fen + quoted_extra
    a = line_amounts(sum_fen, quantity, rate, quoted_fen=quoted)
    total, money, tax = Decimal(a["sum"]), Decimal(a["money"]), Decimal(a["tax"])
    assert total == Decimal(sum_fen) / 100
    assert tax == total - money and tax >= 0 and money >= 0
    assert money == (total / (1 + Decimal(rate) / 100)).quantize(CENT, rounding="ROUND_HALF_UP")
    assert all(-Decimal(a[t]).as_tuple().exponent <= 2 for t in ("sum", "money", "tax", "natsum", "natmoney", "nattax"))
    assert (Decimal(a["taxunitprice"]) * quantity).quantize(CENT) == total
    assert (Decimal(a["unitprice"]) * quantity).quantize(CENT) == money
    assert (a["natsum"], a["natmoney"], a["nattax"]) == (a["sum"], a["money"], a["tax"])
    discount = Decimal(a["discountrate"])
    assert Decimal(0) <= discount <= 100
    if quoted:
        expected = Decimal(a["taxunitprice"]) / (Decimal(quoted) / 100) * 100
        assert abs(discount - expected) <= Decimal("0.000001")


@pytest.mark.parametrize("rate", [13, 9, 6, 0])
@pytest.mark.parametrize("quantity", [1, 3])
def test_gift_lines_at_zero(rate, quantity):
    a = line_amounts(0, quantity, rate, quoted_fen=2990)
    assert {a[t] for t in ("sum", "money", "tax", "natsum", "natmoney", "nattax")} == {"0.00"}
    assert a["taxunitprice"] == a["unitprice"] == "0"
    assert (a["quotedprice"], a["discountrate"]) == ("29.9", "0")


@given(
    lines=st.lists(
        st.tuples(st.integers(min_value=0, max_value=10**7), st.integers(min_value=1, max_value=50)),
        min_size=1,
        max_size=8,
    ),
    rate=st.sampled_from([13, 9, 6, 0]),
)
def test_a_document_adds_up_to_what_was_paid(lines, rate):
    """The rendered document: every entry consistent, and the entries together carry exactly the
    paid fen (U8 sums the lines; there is no header total to disagree with)."""
    from lxml import etree

    from adapters.u8.eai_xml import build_request
    from tests.unit.test_u8_eai_xml import make_doc

    entries = [{"inventorycode": "030101", "quantity": q, "sum_fen": s, "taxrate": rate} for s, q in lines]
    root = etree.fromstring(build_request(make_doc(entries=entries), sender="101"))
    rendered = root.findall("saleorder/body/entry")
    assert sum(Decimal(e.findtext("sum")) for e in rendered) == Decimal(sum(s for s, _ in lines)) / 100
    for e in rendered:
        assert Decimal(e.findtext("money")) + Decimal(e.findtext("tax")) == Decimal(e.findtext("sum"))
        assert e.findtext("taxrate") == str(rate)
    assert root.find("saleorder/header/sum") is None and root.find("saleorder/header/money") is None
