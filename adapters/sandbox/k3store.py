"""The account set (账套) behind the simulated K3 WISE WebAPI: reference/erp-protocols.md §3.1
(tokens), §3.3 (the SO bill), §3.4 (lists, details), §4 (shipments) and §5 "K3 WISE WebAPI".

``K3Store`` holds the seeded base data (customers, departments, employees, materials, units,
stocks), the one live session per account set, the sales orders (SO, DB ``SEOrder``) and the
shipments recorded against them (发货通知 ``Delivery_Notice``, 销售出库 ``Sales_Delivery``).
Field keys are matched case-insensitively (``Fdate`` vs ``FDate1``, §3.3); the HTTP shapes are
``k3webapi.py``'s job. Messages are Chinese, as K3 writes them; their texts are not public (§3.4,
§6), so every one here is inferred.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from adapters.sandbox.k3filter import FilterError, compile_filter

SHIPMENT_OBJECTS = {"delivery_notice": ("Delivery_Notice", "SEOUT"), "sales_delivery": ("Sales_Delivery", "XOUT")}
NUMERIC_ENTRY = ("fauxqty", "fauxprice", "fauxtaxprice", "famount", "fallamount", "fcess", "ftaxamount")
MAX_BILLNO = 50
MAX_PAGE_SIZE = 2000  # K1's comment on GetList
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S")
_CHINA = ZoneInfo("Asia/Shanghai")
TOKEN_REJECTED = 401  # StatusCode of a refused token or authority code (a third-party mock's; §3.4)
REJECTED = 400  # StatusCode of a business refusal (inferred: K3's catalogue is not public, §6)


class K3Rejected(Exception):
    """K3 answered ``StatusCode ≠ 200`` with ``message``; nothing was written."""

    def __init__(self, message: str, status: int = REJECTED) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class Session:
    token: str
    account_set: str
    expires_at: float  # time.monotonic()
    created: str


@dataclass
class Bill:
    """One stored bill: Page1 header and Page2 entries as sent (keys as the client spelled them)."""

    object: str
    bill_no: str
    inter_id: int
    header: dict[str, Any]
    entries: list[dict[str, Any]]
    created_at: str
    status: str = "0"  # FStatus: 0 saved, 1 audited (CheckBill direction 2)
    extra: dict[str, Any] = field(default_factory=dict)


def ci(obj: Any) -> dict[str, Any]:
    """A JSON object with case-folded keys (K3 matches field keys case-insensitively)."""
    return {str(k).casefold(): v for k, v in obj.items()} if isinstance(obj, Mapping) else {}


def _number(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if isinstance(value, bool) or not number.is_finite():
        raise K3Rejected(f"{what}的值[{value}]不是有效的数字")
    return number


def _date(value: Any, what: str) -> None:
    text = str(value or "").strip()
    for fmt in _DATE_FORMATS:
        try:
            datetime.strptime(text, fmt)  # noqa: DTZ007 - K3 keeps local dates without a zone
        except ValueError:
            continue
        return
    raise K3Rejected(f"{what}[{text}]不是有效的日期")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _local_now() -> str:
    """K3 keeps dates in the site's local time without a zone: China Standard Time."""
    return datetime.now(_CHINA).strftime("%Y-%m-%d %H:%M:%S")


class K3Store:
    """One K3 WISE deployment: authority codes bound to account sets, and one account set's data."""

    def __init__(self, seed: Mapping[str, Any]) -> None:
        self.authority_codes: dict[str, str] = {str(k): str(v) for k, v in seed.get("authority_codes", {}).items()}
        self.validity_s = float(seed.get("token_validity_s", 3600))
        self.customers: dict[str, str] = dict(seed.get("customers", {}))
        self.departments: dict[str, str] = dict(seed.get("departments", {}))
        self.employees: dict[str, str] = dict(seed.get("employees", {}))
        self.materials: dict[str, str] = dict(seed.get("materials", {}))
        self.units: dict[str, str] = dict(seed.get("units", {}))
        self.stocks: dict[str, str] = dict(seed.get("stocks", {}))
        self.sessions: dict[str, Session] = {}  # account set → its one live session
        self.logins: Counter[str] = Counter()  # account set → Token/Create calls that succeeded
        self.rejected_tokens: Counter[str] = Counter()  # expired (per account set) / superseded tokens refused
        self.bills: dict[str, dict[str, Bill]] = {"so": {}, "delivery_notice": {}, "sales_delivery": {}}
        self._inter_id = 1000
        self._numbers: Counter[str] = Counter()

    # -- sessions (§3.1) -------------------------------------------------------------------------

    def login(self, authority_code: str) -> Session:
        """A new token for the code's account set; the previous one of that set stops working."""
        account_set = self.authority_codes.get(authority_code)
        if not authority_code or account_set is None:
            raise K3Rejected("授权码无效(invalid authority code)", TOKEN_REJECTED)
        session = Session(secrets.token_hex(16).upper(), account_set, time.monotonic() + self.validity_s, _now())
        self.sessions[account_set] = session
        self.logins[account_set] += 1
        return session

    def check_token(self, token: str) -> Session:
        if not token:
            raise K3Rejected("缺少token参数，请先调用Token/Create获取token", TOKEN_REJECTED)
        for session in self.sessions.values():
            if session.token == token:
                if time.monotonic() >= session.expires_at:
                    self.rejected_tokens[f"expired:{session.account_set}"] += 1
                    raise K3Rejected("token已过期，请重新获取token", TOKEN_REJECTED)
                return session
        self.rejected_tokens["superseded"] += 1
        raise K3Rejected("token无效或已失效（该账套已重新登录），请重新获取token", TOKEN_REJECTED)

    def expire(self, account_set: str | None = None) -> int:
        """Control: end the live sessions now (all, or one account set's); how many ended."""
        ended = 0
        for name, session in self.sessions.items():
            if account_set is None or name == account_set:
                session.expires_at = time.monotonic() - 1
                ended += 1
        return ended

    def sessions_view(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "validity_s": self.validity_s,
            "logins": dict(self.logins),
            "rejected_tokens": dict(self.rejected_tokens),
            "sessions": {
                name: {"created": s.created, "expires_in_s": round(s.expires_at - now, 3)}
                for name, s in self.sessions.items()
            },
        }

    # -- sales orders (§3.3) ----------------------------------------------------------------------

    def save(self, body: Any) -> Bill:
        header, entries = self._pages(body)
        self._validate(header, entries)
        bill_no = str(ci(header).get("fbillno") or "").strip()
        if bill_no:
            if len(bill_no) > MAX_BILLNO:
                raise K3Rejected(f"单据编号[{bill_no}]超过{MAX_BILLNO}个字符")
            if bill_no.casefold() in self.bills["so"]:
                raise K3Rejected(f"单据编号[{bill_no}]已存在，不能重复保存")
        else:
            bill_no = self._next_number("so", "SEORD")
        self._inter_id += 1
        stored = {k: v for k, v in header.items() if k.casefold() != "fbillno"}
        bill = Bill("SO", bill_no, self._inter_id, {"FBillNo": bill_no, **stored}, entries, _now())
        self.bills["so"][bill_no.casefold()] = bill
        return bill

    def update(self, body: Any) -> Bill:
        bill = self.existing(str(ci(body).get("fbillno") or ""))
        if bill.status != "0":
            raise K3Rejected(f"单据[{bill.bill_no}]已审核，不能修改")
        header, entries = self._pages(body)
        self._validate(header, entries)
        stored = {k: v for k, v in header.items() if k.casefold() != "fbillno"}
        bill.header, bill.entries = {"FBillNo": bill.bill_no, **stored}, entries
        return bill

    def delete(self, bill_no: str) -> Bill:
        bill = self.existing(bill_no)
        if bill.status != "0":
            raise K3Rejected(f"单据[{bill.bill_no}]已审核，不能删除")
        if any(s.extra.get("order") == bill.bill_no for name in SHIPMENT_OBJECTS for s in self.bills[name].values()):
            raise K3Rejected(f"单据[{bill.bill_no}]已生成下游单据，不能删除")
        del self.bills["so"][bill.bill_no.casefold()]
        return bill

    def check(self, bill_no: str, direction: str) -> Bill:
        """CheckBill: direction 2 audits, 4 rejects back to saved (§3.4)."""
        bill = self.existing(bill_no)
        if direction not in ("1", "2", "4"):
            raise K3Rejected(f"审核方向[{direction}]无效")
        bill.status = "1" if direction == "2" else "0"
        return bill

    def existing(self, bill_no: str, kind: str = "so") -> Bill:
        if not bill_no.strip():
            raise K3Rejected("单据编号FBillNo不能为空")
        bill = self.bills[kind].get(bill_no.strip().casefold())
        if bill is None:
            raise K3Rejected(f"单据[{bill_no}]不存在")
        return bill

    # -- shipments (§4), recorded through the sandbox control plane --------------------------------

    def record_shipment(self, spec: Mapping[str, Any]) -> Bill:
        """A 发货通知 or 销售出库 against an SO: ``{"object", "order", "lines"?: [{"item", "qty"}],
        "date"?, "header"?: {custom fields, e.g. a waybill number}}``; every line when none given."""
        kind = str(spec.get("object", "Sales_Delivery")).casefold()
        if kind not in SHIPMENT_OBJECTS:
            raise K3Rejected(f"不支持的单据类型[{spec.get('object')}]")
        order = self.existing(str(spec.get("order", "")))
        ordered = {ci(ci(e).get("fitemid")).get("fnumber"): (row, e) for row, e in enumerate(order.entries, 1)}
        wanted = spec.get("lines") or [{"item": item, "qty": ci(e).get("fauxqty")} for item, (_, e) in ordered.items()]
        entries = []
        for line in wanted:
            if line.get("item") not in ordered:
                raise K3Rejected(f"物料[{line.get('item')}]不在订单[{order.bill_no}]中")
            qty = _number(line.get("qty"), "数量")
            if qty <= 0:
                raise K3Rejected("数量必须大于0")
            row, entry = ordered[line["item"]]
            entries.append(
                {
                    "FItemID": ci(entry).get("fitemid"),
                    "Fauxqty": str(qty),
                    "FOrderBillNo": order.bill_no,
                    "FOrderInterID": order.inter_id,
                    "FOrderEntryID": row,
                    "FSourceBillNo": order.bill_no,
                }
            )
        name, prefix = SHIPMENT_OBJECTS[kind]
        date = str(spec.get("date") or _local_now())
        _date(date, "单据日期")
        bill_no = self._next_number(kind, prefix)
        self._inter_id += 1
        header = {"FBillNo": bill_no, "Fdate": date, "FCustID": ci(order.header).get("fcustid")}
        header.update(spec.get("header") or {})
        bill = Bill(name, bill_no, self._inter_id, header, entries, _now(), extra={"order": order.bill_no})
        self.bills[kind][bill_no.casefold()] = bill
        return bill

    # -- reads (§3.4) -------------------------------------------------------------------------------

    def detail(self, kind: str, bill_no: str) -> dict[str, Any]:
        bill = self.existing(bill_no, kind)
        return {"Page1": [{**bill.header, "FInterID": bill.inter_id, "FStatus": bill.status}], "Page2": bill.entries}

    def get_list(self, kind: str, query: Mapping[str, Any]) -> dict[str, Any]:
        """GetList: one row per entry (header columns repeated), filtered, paged."""
        q = ci(query)
        size = int(_number(q.get("pagesize") or 10, "PageSize"))
        index = int(_number(q.get("pageindex") or 1, "PageIndex"))
        top = int(_number(q.get("top") or 0, "Top"))
        if not 1 <= size <= MAX_PAGE_SIZE or index < 1 or top < 0:
            raise K3Rejected(f"分页参数无效：PageSize须在1~{MAX_PAGE_SIZE}之间，PageIndex从1开始")
        rows = [(row, ci(row)) for bill in self.bills[kind].values() for row in _rows(bill)]
        known = _COLUMNS[kind] | {key for _, folded in rows for key in folded}
        try:
            keep = compile_filter(str(q.get("filter") or ""), lambda n: n.casefold() if n.casefold() in known else None)
        except FilterError as exc:
            raise K3Rejected(f"查询条件错误：{exc}") from exc
        rows = [(row, folded) for row, folded in rows if keep(folded)]
        if top:
            rows = rows[:top]
        fields = [f.strip() for f in str(q.get("fields") or "").split(",") if f.strip()]
        for name in fields:
            if name.casefold() not in known:
                raise K3Rejected(f"查询字段错误：列名 '{name}' 无效。")
        chosen = rows[(index - 1) * size : index * size]
        page = [{n: folded.get(n.casefold()) for n in fields} if fields else row for row, folded in chosen]
        return {"ROWCOUNT": len(rows), "PAGESIZE": size, "PAGEINDEX": index, "DATA": page}

    def documents(self) -> list[dict[str, Any]]:
        """``GET /_sandbox/k3/documents``: the SOs in K3's field names, their shipments, and the
        session counters (logins per account set: token thrash shows here)."""
        shipped: dict[str, list[dict[str, Any]]] = {}
        for name in SHIPMENT_OBJECTS:
            for s in self.bills[name].values():
                shipped.setdefault(s.extra["order"], []).append({"object": s.object, "FBillNo": s.bill_no})
        return [
            {
                **bill.header,
                "FInterID": bill.inter_id,
                "FStatus": bill.status,
                "created_at": bill.created_at,
                "lines": bill.entries,
                "shipments": shipped.get(bill.bill_no, []),
            }
            for bill in self.bills["so"].values()
        ]

    # -- rules (§3.3, §5) -----------------------------------------------------------------------------

    @staticmethod
    def _pages(body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        data = ci(ci(body).get("data"))
        page1, page2 = data.get("page1"), data.get("page2")
        if not isinstance(page1, list) or len(page1) != 1 or not isinstance(page1[0], Mapping):
            raise K3Rejected("Data.Page1必须是只含一个表头对象的数组")
        if not isinstance(page2, list) or not page2:
            raise K3Rejected("Data.Page2(表体)不能为空，至少需要一行物料")
        if not all(isinstance(e, Mapping) for e in page2):
            raise K3Rejected("Data.Page2的每一行必须是对象")
        return dict(page1[0]), [dict(e) for e in page2]

    def _validate(self, header: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        h = ci(header)
        if "fdate" not in h:
            raise K3Rejected("表头字段[Fdate]单据日期不能为空")
        _date(h["fdate"], "单据日期Fdate")
        self._base(h, "fcustid", self.customers, "购货单位FCustID", required=True)
        self._base(h, "fdeptid", self.departments, "部门FDeptID")
        self._base(h, "fempid", self.employees, "业务员FEmpID")
        for row, entry in enumerate(entries, start=1):
            e = ci(entry)
            self._base(e, "fitemid", self.materials, f"第{row}行物料FItemID", required=True)
            self._base(e, "funitid", self.units, f"第{row}行单位FUnitID")
            self._base(e, "fstockid", self.stocks, f"第{row}行仓库FStockID")
            if e.get("fauxqty") in (None, ""):
                raise K3Rejected(f"第{row}行数量Fauxqty不能为空")
            for key in NUMERIC_ENTRY:
                if e.get(key) not in (None, ""):
                    _number(e[key], f"第{row}行{key}")
            if _number(e["fauxqty"], f"第{row}行数量Fauxqty") <= 0:
                raise K3Rejected(f"第{row}行数量Fauxqty[{e['fauxqty']}]必须大于0")

    @staticmethod
    def _base(
        fields: dict[str, Any], key: str, archive: Mapping[str, str], what: str, *, required: bool = False
    ) -> None:
        """A base-data reference is ``{FNumber, FName}`` (§3.3) naming a seeded code."""
        value = fields.get(key)
        if value is None or value == "":
            if required:
                raise K3Rejected(f"{what}不能为空")
            return
        number = ci(value).get("fnumber")
        if not isinstance(value, Mapping) or not number:
            raise K3Rejected(f"{what}必须是包含FNumber的对象")
        if str(number) not in archive:
            raise K3Rejected(f"{what}代码[{number}]在基础资料中不存在")

    def _next_number(self, kind: str, prefix: str) -> str:
        while True:
            self._numbers[kind] += 1
            bill_no = f"{prefix}{self._numbers[kind]:06d}"
            if bill_no.casefold() not in self.bills[kind]:
                return bill_no


# Columns every list has even while it holds no rows (a filter on them finds nothing, no error).
_BASE_COLUMNS = frozenset(c.casefold() for c in ("FBillNo", "FInterID", "Fdate", "FCustID", "FStatus", "FEntryID"))
_LINK_COLUMNS = frozenset(c.casefold() for c in ("FItemID", "Fauxqty", "FOrderBillNo", "FSourceBillNo"))
_COLUMNS = {"so": _BASE_COLUMNS | {"fitemid", "fauxqty"}, "delivery_notice": _BASE_COLUMNS | _LINK_COLUMNS}
_COLUMNS["sales_delivery"] = _COLUMNS["delivery_notice"]


def _rows(bill: Bill) -> list[dict[str, Any]]:
    head = {**bill.header, "FInterID": bill.inter_id, "FStatus": bill.status}
    return [{**head, **entry, "FEntryID": row} for row, entry in enumerate(bill.entries, start=1)]
