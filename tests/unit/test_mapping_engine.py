"""The dictionary language's list features: several blocks into one list, scratch lists, ``index``,
largest-remainder allocation, ``table(...)`` in expressions and parent child lists."""

from __future__ import annotations

import pytest

from gateway.errors import ConfigError, MappingError
from gateway.mapping.dictionary import compile_dictionary
from gateway.mapping.helpers import allocate

DOC = """
[dictionary]
name = "t"
kind = "document"
"""


def _compile(body: str):
    return compile_dictionary(DOC + body)


@pytest.mark.parametrize(
    ("total", "weights", "expected"),
    [
        # reference/canonical.md §5, JD sample 02: 4200 fen over the lines after line-level coupons.
        (4200, [29900, 9980, 4500], [2830, 944, 426]),
        (1500, [14970], [1500]),
        (1000, [5980, 5980], [500, 500]),
        (1, [1, 1, 1], [1, 0, 0]),  # a tie goes to the earlier line
        (2, [1, 1, 1], [1, 1, 0]),
        (10, [0, 0], [5, 5]),  # all weights zero: evenly
        (0, [3, 4], [0, 0]),
        (None, [3, 4], [0, 0]),
        (7, [], []),
        (7, [None, 5], [0, 7]),
    ],
)
def test_allocate_largest_remainder_sums_exactly(total, weights, expected):
    shares = allocate(total, weights)
    assert shares == expected
    assert sum(shares) == (total or 0 if weights else 0)


def test_allocate_refuses_negative_values():
    from gateway.mapping.transforms import TransformError

    with pytest.raises(TransformError):
        allocate(-5, [1, 2])
    with pytest.raises(TransformError):
        allocate(5, [1, -2])


def test_blocks_into_one_list_keep_the_written_order_and_their_own_fields():
    d = _compile(
        """
[children.lines]
path = "items"
[children.lines.fields]
sku = { path = "sku" }
gift = { default = false }
[children.gifts]
path = "gifts"
into = "lines"
[children.gifts.fields]
sku = { path = "sku" }
gift = { default = true }
[fields]
n = { expr = "len(lines)" }
"""
    )
    out = d.translate_object({"items": [{"sku": "A"}, {"sku": "B"}], "gifts": [{"sku": "G"}]})
    assert out["lines"] == [{"sku": "A", "gift": False}, {"sku": "B", "gift": False}, {"sku": "G", "gift": True}]
    assert out["n"] == 3
    assert "gifts" not in out
    assert d.unknown_fields({"items": [{"sku": "A", "x": 1}], "gifts": [{"sku": "G", "y": 2}]}) == [
        "gifts[].y",
        "items[].x",
    ]


def test_scratch_list_index_and_allocation_across_scopes():
    """Order-level discount spread over lines by their net value, coupons tied to lines by SKU."""
    d = _compile(
        """
[fields]
_order_discount = { path = "discount" }
_line_level = { expr = "sum_of(_coupons, 'amount')" }
_shares = { expr = "allocate(_order_discount - _line_level, values_of(_bases, 'net'))" }

[children._coupons]
path = "coupons"
where = "sku"
[children._coupons.fields]
sku = { path = "sku", transform = "text" }
amount = { path = "amount", transform = "int" }

[children._bases]
path = "lines"
[children._bases.fields]
net = { expr = "_total - sum_where(parent._coupons, 'amount', 'sku', _sku)" }
_sku = { path = "sku" }
_total = { path = "total", transform = "int" }

[children.lines]
path = "lines"
[children.lines.fields]
sku = { path = "sku" }
position = { expr = "index" }
_total = { path = "total", transform = "int" }
_own = { expr = "sum_where(parent._coupons, 'amount', 'sku', sku)" }
discount = { expr = "_own + nth(parent._shares, index)" }
paid = { expr = "_total - discount" }
"""
    )
    src = {
        "discount": 6200,
        "coupons": [{"sku": "B", "amount": 2000}, {"sku": "", "amount": 3000}, {"sku": None, "amount": 1200}],
        "lines": [{"sku": "A", "total": 29900}, {"sku": "B", "total": 11980}, {"sku": "C", "total": 4500}],
    }
    out = d.translate_object(src)
    assert [ln["discount"] for ln in out["lines"]] == [2830, 2944, 426]
    assert [ln["paid"] for ln in out["lines"]] == [27070, 9036, 4074]
    assert [ln["position"] for ln in out["lines"]] == [0, 1, 2]
    assert set(out) == {"lines"}  # scratch lists and fields are not output


def test_table_in_an_expression_with_fallback_and_a_named_error():
    d = _compile(
        """
[fields]
status = { expr = "table('status', str(_a) + '/' + str(_b))" }
_a = { path = "a" }
_b = { path = "b" }
[tables.status]
"4/21" = "CLOSED_REFUNDED"
"4/*" = "CANCELLED"
"""
    )
    assert d.translate_object({"a": 4, "b": 21})["status"] == "CLOSED_REFUNDED"
    with pytest.raises(MappingError) as exc:
        d.translate_object({"a": 4, "b": 1})
    assert "status" in exc.value.path and "not in table status" in exc.value.message_en


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("[fields]\nx = { expr = \"table('nope', 1)\" }", "unknown table"),
        ('[fields]\nx = { expr = "table(y, 1)" }\ny = { default = 1 }', "table("),
        ("[fields]\nindex = { default = 1 }", "reserved"),
        ('[fields]\nx = { expr = "index" }', "unknown name"),  # no index at the root
        ('[fields]\nlines = { default = 1 }\n[children.lines]\npath = "l"', "both a field and a child list"),
        ('[children.l]\npath = "l"\n[children.l.fields]\nx = { expr = "parent.nothing" }', "do not exist"),
    ],
)
def test_mistakes_are_refused_at_compile_time(body, words):
    with pytest.raises(ConfigError) as exc:
        _compile(body)
    assert words in exc.value.message_en


def test_dict_of_and_strip_prefixes():
    d = _compile(
        """
[fields]
codes = { expr = "dict_of('province', _p, 'city', _c, 'street', _s)" }
none = { expr = "dict_of('a', _s)" }
detail = { expr = "strip_prefixes(_full, '江苏', _city_name, '鼓楼区')" }
_p = { path = "p" }
_c = { path = "c" }
_s = { path = "s" }
_full = { path = "full" }
_city_name = { default = "南京市" }
"""
    )
    out = d.translate_object({"p": "12", "c": "904", "s": "", "full": "江苏南京市鼓楼区北京西路1号"})
    assert out == {"codes": {"province": "12", "city": "904"}, "none": None, "detail": "北京西路1号"}
    # Prefixes are stripped in order and only where they are.
    assert d.translate_object({"full": "南京市鼓楼区x"})["detail"] == "x"
    assert d.translate_object({"full": "上海市x"})["detail"] == "上海市x"


def test_deep_paths_share_prefix_reads_and_still_name_wrong_types():
    d = _compile(
        """
[fields]
a = { path = "price.a", transform = "fen" }
b = { path = "price.b", transform = "fen" }
c = { path = ["price.x", "price.b"], transform = "fen" }
"""
    )
    assert d.source_code.count("src.get('price')") == 1
    assert d.translate_object({"price": {"a": 1, "b": "2"}}) == {"a": 1, "b": 2, "c": 2}
    assert d.translate_object({}) == {"a": None, "b": None, "c": None}
    with pytest.raises(MappingError) as exc:
        d.translate_object({"price": [1]})
    assert exc.value.path == "price"


def test_fen_refuses_text_with_a_decimal_point():
    from gateway.mapping.transforms import TransformError, fen

    assert (fen(600), fen("600"), fen(600.0), fen(None)) == (600, 600, 600, None)
    with pytest.raises(TransformError, match="yuan"):
        fen("6.00")
