"""The U8 EAI XML generated from every platform sample, through the real dictionaries and value
tables of the demo target, checked against the field table of erp-protocols.md §1.3 (held here as
data, apart from adapters/u8/fields.py): lower-case EAI tag names and never a DB column name,
required tags present and non-empty, widths, and the amount relations to the fen."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from lxml import etree

from adapters.u8.eai_xml import build_request
from gateway.config import load_config
from gateway.document import build_document
from gateway.ports import OrderRecord
from gateway.runtime import load_runtime
from tests.unit.mapping_support import platform_dictionary, read_sample, sample_names

# §1.3: EAI tag → (DB column, width or None, required). Widths from the template comment (T).
HEADER = {
    "code": ("cSOCode", 10, True),
    "date": ("dDate", None, True),
    "typecode": ("cSTCode", 2, True),
    "custcode": ("cCusCode", 20, True),
    "deptcode": ("cDepCode", 12, True),
    "personcode": ("cPersonCode", 8, False),
    "currency": ("cexch_name", 8, True),
    "currencyrate": ("iExchRate", None, False),
    "taxrate": ("iTaxRate", None, False),
    "maker": ("cMaker", 20, True),
    "businesstype": ("cBusType", 8, False),
    "memo": ("cMemo", 60, False),
    "cusname": ("cCusName", 120, False),
    "dpredatebt": ("dPreDateBT", None, False),
    "dpremodatebt": ("dPreMoDateBT", None, False),
    "disflag": ("bDisFlag", None, False),
    **{f"define{i}": (f"cDefine{i}", w, False) for i, w in ((1, 20), (2, 20), (3, 20), (8, 4), (9, 8), (10, 60))},
    **{f"define{i}": (f"cDefine{i}", 120, False) for i in range(11, 15)},
    **{f"define{i}": (f"cDefine{i}", None, False) for i in (4, 5, 6, 7, 15, 16)},
}
ENTRY = {
    "inventorycode": ("cInvCode", 20, True),
    "quantity": ("iQuantity", None, True),
    "num": ("iNum", None, False),
    "quotedprice": ("iQuotedPrice", None, False),
    "unitprice": ("iUnitPrice", None, False),
    "taxunitprice": ("iTaxUnitPrice", None, False),
    "money": ("iMoney", None, False),
    "tax": ("iTax", None, False),
    "sum": ("iSum", None, False),
    "natunitprice": ("iNatUnitPrice", None, False),
    "natmoney": ("iNatMoney", None, False),
    "nattax": ("iNatTax", None, False),
    "natsum": ("iNatSum", None, False),
    "natdiscount": ("iNatDisCount", None, False),
    "taxrate": ("iTaxRate", None, False),
    "discountrate": ("KL", None, False),
    "discountrate2": ("KL2", None, False),
    "dpredate": ("dPreDate", None, False),
    "dpremodate": ("dPreMoDate", None, False),
    "preparedate": ("dPreDate", None, False),
    "irowno": ("iRowNo", None, False),
    "bgift": ("bGift", None, False),  # sent by E6 (§1.4), not in the template list
    "bsaleprice": ("bSalePrice", None, False),
}
DB_COLUMNS = {column.lower() for column, _, _ in (*HEADER.values(), *ENTRY.values())}
DB_COLUMNS |= {"cwhcode", "csocode", "ccuscode", "cinvcode", "isum", "imoney", "itax"}
TAG = re.compile(r"^[a-z][a-z0-9_]*$")
CENT = Decimal("0.01")
PLATFORMS = ["taobao", "pinduoduo", "douyin", "jd", "wechat_channels"]
U8_TARGET = "u8-demo"  # the demo's U8 EAI target: dictionary u8_saleorder, values demo-u8
SAMPLES = [(p, name) for p in PLATFORMS for name in sample_names(p)]


@pytest.fixture(scope="module")
def demo() -> tuple[Any, Any]:
    config = load_config(None, env={})
    return config, load_runtime(config)


def generated(platform: str, name: str, demo: tuple[Any, Any], seq: int) -> tuple[Any, etree._Element]:
    """The canonical order of a sample and the U8 XML the demo target sends for it."""
    config, runtime = demo
    dictionary = platform_dictionary(platform)
    payload = read_sample(platform, name)
    order = dictionary.translate(payload)
    shop = config.resolve_shop(platform, header=None, alias=dictionary.shop_alias(payload))
    order = msgspec.structs.replace(order, shop_id=shop)
    record = OrderRecord(
        id=f"01TEST{seq:020d}",
        seq=seq,
        platform=platform,
        shop_id=shop,
        platform_order_id=order.order_id,
        platform_version=order.platform_version,
        state="accepted",
        canonical=msgspec.to_builtins(order),
        mapping_version="test",
        rules_version="test",
        payload_sha256="0" * 64,
        erp_target=U8_TARGET,
    )
    # Every sample through the U8 target, whichever ERP the demo routes its shop to.
    target = config.targets[U8_TARGET]
    doc = build_document(record, U8_TARGET, target, runtime)
    return order, etree.fromstring(build_request(doc, sender=target.sender or "101"))


def test_every_platform_has_samples_and_the_target_is_u8_eai(demo):
    assert {p for p, _ in SAMPLES} == set(PLATFORMS)
    target = demo[0].targets[U8_TARGET]
    assert (target.transport, target.dictionary) == ("u8_eai", "u8_saleorder")


@pytest.mark.parametrize(("platform", "name"), SAMPLES)
def test_generated_xml_follows_the_field_table(platform, name, demo):
    order, root = generated(platform, name, demo, seq=SAMPLES.index((platform, name)) + 1)
    assert root.tag == "ufinterface" and root.get("roottag") == "saleorder" and root.get("proc") == "add"
    [saleorder] = root.findall("saleorder")
    header = {el.tag: el.text or "" for el in saleorder.find("header")}
    entries = [{el.tag: el.text or "" for el in entry} for entry in saleorder.findall("body/entry")]

    check_tags(header, HEADER, "header")
    for entry in entries:
        check_tags(entry, ENTRY, "entry")
    datetime.strptime(header["date"], "%Y-%m-%d %H:%M:%S")  # noqa: DTZ007 - a U8 calendar date
    assert header["code"] == f"GW{SAMPLES.index((platform, name)) + 1:08d}"
    assert not {"money", "tax", "sum"} & header.keys()  # no header totals: U8 sums the lines

    assert len(entries) == len(order.lines) >= 1
    for entry, line in zip(entries, order.lines, strict=True):
        check_amounts(entry)
        assert Decimal(entry["sum"]) == Decimal(line.paid_fen) / 100
        assert Decimal(entry["quantity"]) == line.qty
    assert [int(e["irowno"]) for e in entries] == list(range(1, len(entries) + 1))
    paid = sum(line.paid_fen for line in order.lines)
    assert sum(Decimal(e["sum"]) for e in entries) == Decimal(paid) / 100


def check_tags(tags: dict[str, str], table: dict[str, tuple[str, int | None, bool]], where: str) -> None:
    for tag, text in tags.items():
        assert TAG.match(tag), f"{where}.{tag} is not a lower-case EAI name"
        assert tag in table, f"{where}.{tag} is not in the §1.3 table"
        assert tag not in DB_COLUMNS - {t.lower() for t in table}, f"{where}.{tag} is a DB column name"
        column, width, _ = table[tag]
        if width is not None:
            assert len(text.encode("gb18030")) <= width, f"{where}.{tag} exceeds {column} varchar({width})"
    for tag, (_, _, required) in table.items():
        if required:
            assert tags.get(tag, "").strip(), f"{where}.{tag} is required and empty"


def check_amounts(entry: dict[str, str]) -> None:
    qty = Decimal(entry["quantity"])
    assert qty > 0
    money, tax, total = Decimal(entry["money"]), Decimal(entry["tax"]), Decimal(entry["sum"])
    rate = Decimal(entry["taxrate"])
    assert all(-v.as_tuple().exponent <= 2 for v in (money, tax, total))  # to the fen
    assert tax == total - money
    assert money == (total / (1 + rate / 100)).quantize(CENT, rounding="ROUND_HALF_UP")
    assert abs(Decimal(entry["taxunitprice"]) * qty - total) <= CENT
    assert abs(Decimal(entry["unitprice"]) * qty - money) <= CENT
    assert (entry["natmoney"], entry["nattax"], entry["natsum"]) == (entry["money"], entry["tax"], entry["sum"])
    assert entry["natunitprice"] == entry["unitprice"]


# --------------------------------------------------------------------------- the adapter's own width table


def test_the_adapter_table_agrees_with_the_section_1_3_table():
    from adapters.u8.fields import ENTRY_FIELDS, HEADER_FIELDS, REQUIRED_ENTRY, REQUIRED_HEADER

    for tag, (column, width) in HEADER_FIELDS.items():
        assert HEADER[tag][:2] == (column, width)
    assert ENTRY_FIELDS["inventorycode"] == ENTRY["inventorycode"][:2]
    assert set(REQUIRED_HEADER) == {t for t, (_, _, req) in HEADER.items() if req}
    assert set(REQUIRED_ENTRY) == {t for t, (_, _, req) in ENTRY.items() if req}


@pytest.mark.parametrize(
    ("change", "field", "length"),
    [
        (lambda d: d.header.update(custcode="0" * 21), "header.custcode", 21),
        (lambda d: d.header.update(define1="淘宝店铺活动满减优惠券"), "header.define1", 22),  # 11 characters, 22 bytes
        (lambda d: d.header.update(businesstype="普通销售A"), "header.businesstype", 9),
        (lambda d: d.entries[1].update(inventorycode="X" * 21), "entry 2.inventorycode", 21),
    ],
)
def test_a_value_wider_than_its_column_names_the_field_not_the_value(change, field, length):
    from adapters.u8.fields import FieldWidthError
    from tests.unit.test_u8_eai_xml import make_doc

    doc = make_doc()
    change(doc)
    with pytest.raises(FieldWidthError) as info:
        build_request(doc, sender="101")
    assert (info.value.field, info.value.length) == (field, length)
    assert "淘宝" not in str(info.value)


def test_values_at_the_width_pass():
    from tests.unit.test_u8_eai_xml import make_doc

    doc = make_doc()
    doc.header.update(custcode="0" * 20, define1="淘宝" * 5, businesstype="普通销售")
    assert b"<define1>" in build_request(doc, sender="101")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"money": "1.00", "tax": "0.13", "sum": "1.14"}, "money \\+ tax"),
        ({"taxunitprice": "1.13", "money": "2.00", "tax": "0.26", "sum": "2.26", "quantity": 3}, "taxunitprice"),
        ({"quantity": 0}, "quantity must be greater than 0"),
        ({"quantity": "-1"}, "quantity must be greater than 0"),
        ({"quantity": "NaN"}, "not a number"),
    ],
)
def test_explicit_amounts_that_disagree_are_refused(entry, message):
    from tests.unit.test_u8_eai_xml import make_doc

    line = {"inventorycode": "030101", "quantity": 2, "taxrate": 13, **entry}
    with pytest.raises(ValueError, match=message):
        build_request(make_doc(entries=[line]), sender="101")


def test_the_code_tables_book_a_shop_by_its_row_and_the_others_by_the_targets_params(demo):
    """sales_types / departments / persons (values/demo-u8.toml) are code tables by shop: the
    Pinduoduo shop has a row (sales type 02), the others fall back ("*") to the target's params."""
    config = demo[0]
    params = config.targets[U8_TARGET].params
    for seq, (platform, name) in enumerate(SAMPLES[:1] + [s for s in SAMPLES if s[0] == "pinduoduo"][:1], start=900):
        _, xml = generated(platform, name, demo, seq)
        header = {el.tag: el.text for el in xml.find("saleorder/header")}
        expected_type = "02" if platform == "pinduoduo" else str(params["sales_type"])
        assert header["typecode"] == expected_type, platform
        assert (header["deptcode"], header["personcode"]) == (str(params["department"]), str(params["person"]))
