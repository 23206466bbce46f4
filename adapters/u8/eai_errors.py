"""How the U8 EAI adapter words its errors: operator hints for U8's ``dsc`` texts (§1.6) and the
"outcome unknown" error. Kept apart from the transport so ``eai.py`` stays about the protocol.

U8's sale-order texts are not public (§1.6); the patterns are deliberately loose and every
unmatched text still gets a generic hint. Only U8's own words travel, as ``partner_message``:
request and reply bodies never enter an error.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import UnknownOutcomeError

DUPLICATE = "已经存在"  # "…编码已经存在，不可重复！" (§1.5, §1.6)
# "存货编码[030199]不存在", "客户 010009 不存在", "部门编码(9999)在部门档案中不存在"…: the sale-order
# texts are not public (§1.6), so the pattern is loose: subject, a code, then 不存在.
_MISSING = re.compile(
    r"(存货|客户|部门|销售类型|业务员|人员|职员)[^0-9A-Za-z\[【(（]*?[\[【(（\"“']?\s*"
    r"([0-9A-Za-z][0-9A-Za-z._\-]*)\s*[\]】)）\"”']?[^，,。;；]*?不存在"
)
_HINTS = {
    "存货": "Add inventory code {0} to the SKU value table or create it in U8, then replay the dead letter",
    "客户": "Map the shop to an existing U8 customer in the shop value table or create customer {0} "
    "in U8, then replay the dead letter",
    "部门": "Set an existing U8 department code in the outbound dictionary or create department {0} "
    "in U8, then replay the dead letter",
    "销售类型": "Set an existing U8 sales type code in the outbound dictionary or create sales type {0} "
    "in U8, then replay the dead letter",
    "人员": "Set an existing U8 person code in the outbound dictionary or create person {0} in U8, "
    "then replay the dead letter",
}
GENERIC_HINT = "Read U8's message, correct the document data or the U8 archives, then replay the dead letter"
DICTIONARY_HINT = (
    "U8 accepted the request but wrote nothing: check the outbound dictionary uses lower-case "
    "U8 EAI tag names (§1.3), then replay the dead letter"
)
WIDTH_HINT = (
    "Shorten the value in the outbound dictionary or the value tables (or map it to a wider U8 "
    "field), then replay the dead letter"
)
# Why U8 refuses to edit or delete an order it holds (texts inferred, §1.6): it is audited, a
# 发货单 (or another downstream document) refers to it, or it is closed.
_SHIPPED = ("发货单", "下游", "参照", "已发货", "已执行")
_AUDITED = ("审核",)
_CLOSED = ("关闭",)
SHIPPED_HINT = (
    "U8 already has a 发货单 (or another document) against this sale order: make the change in U8 by "
    "hand (delete the downstream document first if it must go), then resolve the dead letter"
)
AUDITED_HINT = (
    "The sale order is audited (审核) in U8: have it unaudited (弃审) in U8 or make the change there "
    "by hand, then replay or resolve the dead letter"
)
CLOSED_HINT = "The sale order is closed in U8: reopen it there or make the change by hand, then resolve"
GONE_HINT = "The sale order is no longer in U8: check whether it was deleted there, then resolve the dead letter"


def unknown(code: str, reason: str, **details: Any) -> UnknownOutcomeError:
    """The request may have been written: the core looks the document up before anything else."""
    return UnknownOutcomeError(
        f"Outcome of U8 sale order {code} unknown: {reason}",
        f"U8 销售订单 {code} 结果未知，需先查询",
        document_code=code,
        **details,
    )


def hint(dsc: str) -> str:
    """An operator hint for U8's rejection text of an add (sale-order texts are inferred, §1.6)."""
    match = _MISSING.search(dsc)
    if match:
        subject = "人员" if match.group(1) in ("业务员", "职员") else match.group(1)
        return _HINTS[subject].format(match.group(2))
    if "数据库没有提供的字段" in dsc:
        return "A tag is not a U8 EAI name: fix the outbound dictionary, then replay the dead letter"
    if "发送方" in dsc:
        return "Register the sender code in U8 EAI (外部系统注册) or fix the sender setting, then replay"
    if "月结" in dsc or "结账" in dsc:
        return "The period of the order date is closed in U8: reopen it or change the date rule, then replay"
    if "截断" in dsc or "超长" in dsc:
        return WIDTH_HINT
    return GENERIC_HINT


def edit_hint(dsc: str) -> str:
    """An operator hint for U8's refusal to edit or delete an order it holds."""
    if any(word in dsc for word in _SHIPPED):
        return SHIPPED_HINT
    if any(word in dsc for word in _AUDITED):
        return AUDITED_HINT
    if any(word in dsc for word in _CLOSED):
        return CLOSED_HINT
    if "销售订单" in dsc and "不存在" in dsc:
        return GONE_HINT
    return hint(dsc)
