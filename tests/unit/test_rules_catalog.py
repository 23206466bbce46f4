"""The default rule set (mappings/rules/default.toml) over the recorded samples: every sample of every
platform passes every rule, and each rule has an order that passes and one that fails, with its
exact code, severity, both messages (formatted, with the values) and path.

Orders come from the samples in mappings/samples/, mutated as the platform would send them, through
the platform's real dictionary; only what no dictionary maps today (a buyer's member tier, member
discounts) is set on the canonical order after translation. Shops and SKUs are looked up in the
demo U8 target's value tables (mappings/values/demo-u8.toml), as the demo configuration does.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.mapping.dictionary import CompiledDictionary, load_dictionary
from gateway.mapping.values import read_value_files
from gateway.rules.catalog import RuleContext, Ruleset, Violation, load_ruleset
from gateway.rules.checks import threshold_needed
from schemas.order import CanonicalOrder, Promotion

REPO = Path(__file__).resolve().parents[2]
PLATFORMS = ("taobao", "pinduoduo", "douyin", "jd", "wechat_channels")
RULESET: Ruleset = load_ruleset(REPO / "mappings" / "rules" / "default.toml")
TABLES = read_value_files(REPO / "mappings", ["values/demo-u8.toml"])
_DICTIONARIES: dict[str, CompiledDictionary] = {}

Mutate = Callable[[dict[str, Any]], Any]


def _dictionary(platform: str) -> CompiledDictionary:
    if platform not in _DICTIONARIES:
        _DICTIONARIES[platform] = load_dictionary(REPO / "mappings" / "platforms" / f"{platform}.toml")
    return _DICTIONARIES[platform]


def _samples(platform: str) -> list[str]:
    folder = REPO / "mappings" / "samples" / platform
    return sorted(f.name for f in folder.glob("0?_*.json") if f.name.count(".") == 1)


_ROOTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "taobao": lambda p: p["trade_fullinfo_get_response"]["trade"],
    "pinduoduo": lambda p: p["order_info_get_response"]["order_info"],
    "douyin": lambda p: p["data"]["shop_order_detail"],
    "jd": lambda p: p["jingdong_pop_order_get_responce"]["orderDetailInfo"]["orderInfo"],
    "wechat_channels": lambda p: p["order"],
}


def order(platform: str, sample: str, mutate: Mutate | None = None) -> CanonicalOrder:
    """A sample through the platform's dictionary, with ``mutate`` applied to its order object first."""
    payload = msgspec.json.decode((REPO / "mappings" / "samples" / platform / sample).read_bytes())
    if mutate is not None:
        mutate(_ROOTS[platform](payload))
    return _dictionary(platform).translate(payload)


def evaluate(o: CanonicalOrder, *, shop: str | None = None, tables: dict[str, Any] | None = None) -> list[Violation]:
    ctx = RuleContext(
        shop_id=shop or f"demo-{o.platform}", target="demo-u8", tables=TABLES if tables is None else tables
    )
    return RULESET.evaluate(o, ctx)


def of(violations: list[Violation], code: str) -> list[Violation]:
    return [v for v in violations if v.rule == code]


def setting(**values: Any) -> Mutate:
    def mutate(o: dict[str, Any]) -> None:
        o.update(values)

    return mutate


# --------------------------------------------------------------------------- the samples


@pytest.mark.parametrize(("platform", "sample"), [(p, s) for p in PLATFORMS for s in _samples(p)], ids=lambda v: str(v))
def test_every_sample_passes_every_rule(platform: str, sample: str) -> None:
    assert evaluate(order(platform, sample)) == []


def test_the_rule_set_has_every_rule_with_both_messages() -> None:
    assert list(RULESET.rules) == [
        "UNKNOWN_SHOP",
        "UNKNOWN_SKU",
        "AMOUNT_MISMATCH",
        "PAID_HOLD",
        "COUPON_STACK_LIMIT",
        "FULL_REDUCTION_THRESHOLD",
        "MEMBER_DISCOUNT_LIMIT",
        "NOT_PAID",
        "PRESALE_BALANCE_UNPAID",
        "ADDRESS_CHANGE_REPEATED",
        "ADDRESS_FREIGHT_DIFF",
        "CROSS_CHANNEL_DUPLICATE",
        "OVERSELL",
    ]
    assert all(spec.message_zh and spec.message_en and spec.enabled for spec in RULESET.rules.values())
    for code in ("FULL_REDUCTION_THRESHOLD", "MEMBER_DISCOUNT_LIMIT", "NOT_PAID", "PRESALE_BALANCE_UNPAID"):
        assert RULESET.rules[code].hint


# --------------------------------------------------------------------------- UNKNOWN_SHOP


def test_unknown_shop() -> None:
    o = order("taobao", "01_single_line_paid.json")
    assert evaluate(o, shop="demo-taobao") == []
    assert evaluate(o, shop="tb-elsewhere") == [
        Violation(
            rule="UNKNOWN_SHOP",
            severity="reject",
            message_zh="店铺 tb-elsewhere 没有对应的 ERP 客户编码",
            message_en="Shop tb-elsewhere has no ERP customer code",
            path="shop_id",
        )
    ]


# --------------------------------------------------------------------------- UNKNOWN_SKU


def test_unknown_sku() -> None:
    def rename(o: dict[str, Any]) -> None:
        o["orders"]["order"][0]["outer_sku_id"] = "NOT-IN-U8"

    assert evaluate(order("taobao", "01_single_line_paid.json")) == []
    assert evaluate(order("taobao", "01_single_line_paid.json", rename)) == [
        Violation(
            rule="UNKNOWN_SKU",
            severity="reject",
            message_zh="商品 NOT-IN-U8 在 ERP 存货对照表中不存在（行 3958201746231589372）",
            message_en="SKU NOT-IN-U8 has no ERP inventory code (line 3958201746231589372)",
            path="lines[0].merchant_sku",
        )
    ]


# --------------------------------------------------------------------------- AMOUNT_MISMATCH


def test_amount_mismatch() -> None:
    # Douyin sends every figure itself: a pay_amount one fen off no longer reconciles with goods −
    # discount + freight, nor with what the lines paid.
    assert evaluate(order("douyin", "01_single_paid.json")) == []
    assert evaluate(order("douyin", "01_single_paid.json", setting(pay_amount=6901))) == [
        Violation(
            rule="AMOUNT_MISMATCH",
            severity="reject",
            message_zh="金额不平：商品 − 优惠 + 运费 + 买家服务费 ≠ 实付，应为 6900 分，实为 6901 分",
            message_en=(
                "Amounts do not reconcile: goods − discounts + freight + buyer fees ≠ paid, "
                "expected 6900 fen, got 6901 fen"
            ),
            path="totals.paid_fen",
        ),
        Violation(
            rule="AMOUNT_MISMATCH",
            severity="reject",
            message_zh="金额不平：各行实付 + 运费 + 买家服务费 ≠ 实付，应为 6900 分，实为 6901 分",
            message_en=(
                "Amounts do not reconcile: lines paid + freight + buyer fees ≠ paid, expected 6900 fen, got 6901 fen"
            ),
            path="totals.paid_fen",
        ),
    ]


# --------------------------------------------------------------------------- PAID_HOLD


def test_paid_hold() -> None:
    assert evaluate(order("taobao", "01_single_line_paid.json")) == []
    assert evaluate(order("taobao", "01_single_line_paid.json", setting(status="PAID_FORBID_CONSIGN"))) == [
        Violation(
            rule="PAID_HOLD",
            severity="hold",
            message_zh="订单已付款但平台要求暂不发货（PAID_FORBID_CONSIGN）",
            message_en="Paid, but the platform says it must not ship yet (PAID_FORBID_CONSIGN)",
            path="status",
        )
    ]


# --------------------------------------------------------------------------- COUPON_STACK_LIMIT


def test_coupon_stack_limit() -> None:
    # Sample 02 stacks one shop coupon (and a 满减 and a 限时折扣, which are not coupons).
    def two_more(o: dict[str, Any]) -> None:
        o["promotion_details"]["promotion_detail"] += [
            {"id": int(o["tid_str"]), "promotion_name": "天猫购物券", "discount_fee": "5.00",
             "promotion_id": "Tmall$tmallCoupon-3_1"},
            {"id": int(o["tid_str"]), "promotion_name": "店铺优惠券", "discount_fee": "5.00",
             "promotion_id": "shopbonus-1987654_2"},
        ]  # fmt: skip

    def one_more(o: dict[str, Any]) -> None:
        two_more(o)
        o["promotion_details"]["promotion_detail"].pop()

    assert evaluate(order("taobao", "02_multi_line_coupons.json")) == []
    assert evaluate(order("taobao", "02_multi_line_coupons.json", one_more)) == []  # 2 coupons: the limit
    assert evaluate(order("taobao", "02_multi_line_coupons.json", two_more)) == [
        Violation(
            rule="COUPON_STACK_LIMIT",
            severity="reject",
            message_zh="叠加了 3 张优惠券，超过上限 2 张",
            message_en="3 coupons stacked, more than the limit of 2",
            path="promotions",
        )
    ]


# --------------------------------------------------------------------------- FULL_REDUCTION_THRESHOLD


def _rename_promotion(index: int, name: str) -> Mutate:
    def mutate(o: dict[str, Any]) -> None:
        o["promotion_details"]["promotion_detail"][index]["promotion_name"] = name

    return mutate


def test_full_reduction_threshold_taobao() -> None:
    # Sample 02: 满300减30 on 377.60 of goods, 20.00 of which a 限时折扣 took off first: 357.60 ≥ 300.
    assert evaluate(order("taobao", "02_multi_line_coupons.json")) == []
    assert evaluate(order("taobao", "02_multi_line_coupons.json", _rename_promotion(1, "满350减30"))) == []
    assert evaluate(order("taobao", "02_multi_line_coupons.json", _rename_promotion(1, "满400减30"))) == [
        Violation(
            rule="FULL_REDUCTION_THRESHOLD",
            severity="reject",
            message_zh="满减“满400减30”需满 40000 分，但适用商品（扣除之前的优惠后）只有 35760 分，却减了 3000 分",
            message_en=(
                'Full reduction "满400减30" needs 40000 fen of goods, but only 35760 fen qualify '
                "(after the discounts before it), and it took 3000 fen off"
            ),
            path="promotions[1]",
        )
    ]


def test_full_reduction_threshold_counts_the_discounts_before_it() -> None:
    # 满370减30: the goods are 377.60, but only 357.60 after the 限时折扣 — below the threshold.
    found = evaluate(order("taobao", "02_multi_line_coupons.json", _rename_promotion(1, "满370减30")))
    assert [(v.rule, v.path) for v in found] == [("FULL_REDUCTION_THRESHOLD", "promotions[1]")]
    assert "35760" in found[0].message_en and "37000" in found[0].message_en


def test_full_reduction_threshold_below_goods_on_a_smaller_order() -> None:
    # The same 满300减30, but the buyer took one pack of wipes instead of two: 377.60 − 129.00 of
    # goods, 20.00 of 限时折扣 → 228.60 < 300.
    def one_pack(o: dict[str, Any]) -> None:
        line = o["orders"]["order"][0]
        line.update(num=1, total_fee="109.00", payment="109.00", divide_order_fee="97.31", part_mjz_discount="11.69")
        o.update(total_fee="248.60", payment="188.60")

    found = of(evaluate(order("taobao", "02_multi_line_coupons.json", one_pack)), "FULL_REDUCTION_THRESHOLD")
    assert found == [
        Violation(
            rule="FULL_REDUCTION_THRESHOLD",
            severity="reject",
            message_zh="满减“满300减30”需满 30000 分，但适用商品（扣除之前的优惠后）只有 22860 分，却减了 3000 分",
            message_en=(
                'Full reduction "满300减30" needs 30000 fen of goods, but only 22860 fen qualify '
                "(after the discounts before it), and it took 3000 fen off"
            ),
            path="promotions[1]",
        )
    ]


def _douyin_full(name: str, amount: int) -> Mutate:
    def mutate(o: dict[str, Any]) -> None:
        info = o["promotion_detail"]["platform_discount_detail"]["full_discount_info"][0]
        info.update(campaign_name=name, campaign_amount=amount)

    return mutate


def test_full_reduction_threshold_per_each_and_cross_shop_douyin() -> None:
    # Sample 02: 平台跨店每满200减5 on 208.80 of goods. A cross-shop reduction counts goods in other
    # shops too, so it is never checked on one order — even where this order alone falls short.
    assert evaluate(order("douyin", "02_multi_line_coupons.json")) == []
    assert evaluate(order("douyin", "02_multi_line_coupons.json", _douyin_full("平台跨店每满200减5", 1000))) == []
    # The shop's own 每满200减5: 5.00 off needs 200, 10.00 off needs 400.
    assert evaluate(order("douyin", "02_multi_line_coupons.json", _douyin_full("店铺每满200减5", 500))) == []
    assert evaluate(order("douyin", "02_multi_line_coupons.json", _douyin_full("店铺每满200减5", 1000))) == [
        Violation(
            rule="FULL_REDUCTION_THRESHOLD",
            severity="reject",
            message_zh="满减“店铺每满200减5”需满 40000 分，但适用商品（扣除之前的优惠后）只有 20880 分，却减了 1000 分",
            message_en=(
                'Full reduction "店铺每满200减5" needs 40000 fen of goods, but only 20880 fen qualify '
                "(after the discounts before it), and it took 1000 fen off"
            ),
            path="promotions[1]",
        )
    ]


def test_full_reduction_threshold_from_the_dictionary_wins_over_the_name() -> None:
    o = order("taobao", "02_multi_line_coupons.json")
    promos = list(o.promotions)
    promos[1] = msgspec.structs.replace(promos[1], threshold_fen=36000)
    found = of(evaluate(msgspec.structs.replace(o, promotions=promos)), "FULL_REDUCTION_THRESHOLD")
    assert [(v.path, "36000" in v.message_zh) for v in found] == [("promotions[1]", True)]


def test_full_reduction_threshold_on_a_line() -> None:
    # A line-level 满减 is measured on its line: line B (59.90) cannot reach 满100减10.
    o = order("taobao", "02_multi_line_coupons.json")
    line_b = o.lines[1].line_id
    promos = [
        *o.promotions,
        Promotion(name="满100减10", kind="full_reduction", amount_fen=1000, scope="line", line_id=line_b),
    ]
    found = of(evaluate(msgspec.structs.replace(o, promotions=promos)), "FULL_REDUCTION_THRESHOLD")
    assert [(v.path, v.severity) for v in found] == [("promotions[3]", "reject")]
    assert "只有 5990 分" in found[0].message_zh


@pytest.mark.parametrize(
    ("name", "amount", "needed"),
    [
        ("满300减30", 3000, 30000),
        ("满300元减30元", 3000, 30000),
        ("店铺满200减10元券", 1000, 20000),
        ("满199.9立减20", 2000, 19990),
        ("满300-30", 3000, 30000),
        ("满200减20,满300减40", 4000, 30000),  # the tier whose reduction was given
        ("满200减20,满300减40", 2000, 20000),
        ("满200减20,满300减40", 3000, 20000),  # no tier took that much: the lowest threshold
        ("每满200减5", 1500, 60000),
        ("满2件减10", 1000, None),  # a quantity threshold
        ("满99包邮", 600, None),
        ("满300享9折", 3000, None),
        ("限时折扣", 2000, None),
        (None, 2000, None),
    ],
)
def test_thresholds_read_from_promotion_names(name: str | None, amount: int, needed: int | None) -> None:
    assert threshold_needed(Promotion(name=name, kind="full_reduction", amount_fen=amount)) == needed


# --------------------------------------------------------------------------- MEMBER_DISCOUNT_LIMIT


def _member(o: CanonicalOrder, level: str | None, *promos: Promotion) -> CanonicalOrder:
    """No dictionary maps a member tier or a member discount today: set them on the translated order."""
    return msgspec.structs.replace(
        o, buyer=msgspec.structs.replace(o.buyer, member_level=level), promotions=[*o.promotions, *promos]
    )


def test_member_discount_limit() -> None:
    o = order("taobao", "02_multi_line_coupons.json")  # 377.60 of goods
    member_price = Promotion(name="会员价", kind="member", funded_by="seller", amount_fen=2000)  # 5.30%
    assert evaluate(_member(o, "银卡", member_price)) == []  # 8%
    assert evaluate(_member(o, "普通会员", member_price)) == [
        Violation(
            rule="MEMBER_DISCOUNT_LIMIT",
            severity="hold",
            message_zh="会员等级 普通会员 的会员优惠上限为 5%，订单会员优惠 2000 分，占商品 37760 分的 5.30%",
            message_en=(
                "Member tier 普通会员 allows at most 5% member discount; the order has 2000 fen off "
                "37760 fen of goods (5.30%)"
            ),
            path="promotions[3]",
        )
    ]


def test_member_discount_limit_on_a_line_and_with_several_promotions() -> None:
    o = order("taobao", "02_multi_line_coupons.json")
    line_a = o.lines[0].line_id  # 2 × 129.00
    on_line = Promotion(name="会员价", kind="member", amount_fen=3200, scope="line", line_id=line_a)  # 12.40%
    assert evaluate(_member(o, "钻石", on_line)) == []
    assert evaluate(_member(o, "金卡", on_line)) == [
        Violation(
            rule="MEMBER_DISCOUNT_LIMIT",
            severity="hold",
            message_zh=f"会员等级 金卡 的会员优惠上限为 12%，行 {line_a} 会员优惠 3200 分，占商品 25800 分的 12.40%",
            message_en=(
                f"Member tier 金卡 allows at most 12% member discount; line {line_a} has 3200 fen off "
                "25800 fen of goods (12.40%)"
            ),
            path="promotions[3]",
        )
    ]
    two = [
        Promotion(name="会员折扣", kind="member", amount_fen=1000),
        Promotion(name="会员券", kind="member", amount_fen=1000),
    ]
    assert [v.path for v in evaluate(_member(o, "普通会员", *two))] == ["promotions"]


def test_member_discount_limit_does_not_apply_without_a_tier_or_a_known_one() -> None:
    o = order("taobao", "02_multi_line_coupons.json")
    big = Promotion(name="会员价", kind="member", amount_fen=10000)  # 26%
    assert evaluate(_member(o, None, big)) == []  # the platforms send no tier today
    assert evaluate(_member(o, "黑卡", big)) == []  # a tier the table does not name
    assert evaluate(_member(o, "钻石", Promotion(name="会员价", kind="coupon", amount_fen=10000))) == []


def test_member_tiers_come_from_the_targets_value_table_when_it_has_one() -> None:
    o = _member(order("taobao", "02_multi_line_coupons.json"), "普通会员", Promotion(kind="member", amount_fen=2000))
    with_table = {**TABLES, **read_value_files(REPO / "mappings", ["values/member_tiers.toml"])}
    assert [v.rule for v in evaluate(o, tables=with_table)] == ["MEMBER_DISCOUNT_LIMIT"]
    assert evaluate(o, tables={**TABLES, "member_tiers": {"普通会员": 6}}) == []
    assert evaluate(o, tables={**TABLES, "member_tiers": {"普通会员": "n/a"}}) == []  # not a number: not checked
    assert [v.rule for v in evaluate(o, tables={**TABLES, "member_tiers": {"*": 5}})] == ["MEMBER_DISCOUNT_LIMIT"]
    assert [v.rule for v in evaluate(_member(o, "黑卡"), tables={**TABLES, "member_tiers": {"*": 5}})] == [
        "MEMBER_DISCOUNT_LIMIT"
    ]


def test_the_member_tiers_file_and_the_rules_fallback_agree() -> None:
    made_up = tomllib.loads((REPO / "mappings" / "values" / "member_tiers.toml").read_text(encoding="utf-8"))
    assert made_up["member_tiers"] == RULESET.rules["MEMBER_DISCOUNT_LIMIT"].params["tiers"]


# --------------------------------------------------------------------------- NOT_PAID


def test_not_paid_taobao() -> None:
    assert evaluate(order("taobao", "01_single_line_paid.json")) == []
    assert evaluate(order("taobao", "01_single_line_paid.json", setting(status="WAIT_BUYER_PAY", pay_time=""))) == [
        Violation(
            rule="NOT_PAID",
            severity="hold",
            message_zh="订单待付款（WAIT_BUYER_PAY），不下发 ERP",
            message_en="The order is awaiting payment (WAIT_BUYER_PAY); it is not delivered to the ERP",
            path="status",
        )
    ]
    assert evaluate(order("taobao", "01_single_line_paid.json", setting(status="TRADE_CLOSED_BY_TAOBAO"))) == [
        Violation(
            rule="NOT_PAID",
            severity="hold",
            message_zh="订单付款前已关闭（TRADE_CLOSED_BY_TAOBAO），不下发 ERP",
            message_en="The order is closed before payment (TRADE_CLOSED_BY_TAOBAO); it is not delivered to the ERP",
            path="status",
        )
    ]


def test_not_paid_douyin_and_pinduoduo() -> None:
    pending = evaluate(order("douyin", "01_single_paid.json", setting(order_status=1, main_status=103)))
    assert [(v.rule, v.severity, v.path, v.message_en) for v in pending] == [
        (
            "NOT_PAID",
            "hold",
            "status",
            "The order is awaiting payment (order_status=1/main_status=103); it is not delivered to the ERP",
        )
    ]
    cancelled = evaluate(order("pinduoduo", "01_single_paid.json", setting(confirm_status=2)))
    assert [(v.rule, v.severity, v.message_zh) for v in cancelled] == [
        (
            "NOT_PAID",
            "hold",
            "订单付款前已关闭（order_status=1/confirm_status=2/group_status=1/risk_control_status=0"
            "/refund_status=1/after_sales_status=0），不下发 ERP",
        )
    ]


# --------------------------------------------------------------------------- PRESALE_BALANCE_UNPAID


def test_presale_balance_unpaid_pinduoduo() -> None:
    def deposit(stage: int, paid: str) -> Mutate:
        return setting(
            trade_type=1,
            step_order_info={
                "advanced_paid_fee": "10.00",
                "step_paid_fee": paid,
                "step_discount_amount": "0.00",
                "step_trade_status": stage,
            },
        )

    # PDD lists a deposit order as 待发货 once the deposit is paid: only the stage tells.
    held = order("pinduoduo", "01_single_paid.json", deposit(1, "10.00"))
    assert held.status == "READY_TO_SHIP"
    assert evaluate(held) == [
        Violation(
            rule="PRESALE_BALANCE_UNPAID",
            severity="hold",
            message_zh="预售订单尾款未付（定金已付、尾款未付；定金 1000 分，已付 1000 分，尾款 ? 分），不下发 ERP",
            message_en=(
                "Presale order with the balance unpaid (deposit paid, balance not paid; deposit 1000 fen, "
                "paid 1000 fen, balance ? fen); it is not delivered to the ERP"
            ),
            path="presale.balance_paid",
        )
    ]
    assert evaluate(order("pinduoduo", "01_single_paid.json", deposit(2, "59.80"))) == []
    # A deposit order without its step_order_info: its balance is not known to be paid.
    unknown = evaluate(order("pinduoduo", "01_single_paid.json", setting(trade_type=1)))
    assert [(v.rule, v.message_en) for v in unknown] == [
        (
            "PRESALE_BALANCE_UNPAID",
            "Presale order with the balance unpaid (stage unknown; deposit ? fen, paid ? fen, balance ? fen); "
            "it is not delivered to the ERP",
        )
    ]


def test_presale_balance_unpaid_douyin() -> None:
    def phases(deposit_paid: bool, balance_paid: bool) -> Mutate:
        return setting(
            order_phase_list=[
                {"phase_order_id": "p1", "total_phase": 2, "current_phase": 1, "pay_success": deposit_paid,
                 "phase_pay_amount": 1000, "sku_order_id": "6920000000000000001"},
                {"phase_order_id": "p2", "total_phase": 2, "current_phase": 2, "pay_success": balance_paid,
                 "phase_pay_amount": 5900, "sku_order_id": "6920000000000000001"},
            ]
        )  # fmt: skip

    assert evaluate(order("douyin", "01_single_paid.json", phases(True, True))) == []
    assert evaluate(order("douyin", "01_single_paid.json", phases(True, False))) == [
        Violation(
            rule="PRESALE_BALANCE_UNPAID",
            severity="hold",
            message_zh="预售订单尾款未付（定金已付、尾款未付；定金 1000 分，已付 1000 分，尾款 5900 分），不下发 ERP",
            message_en=(
                "Presale order with the balance unpaid (deposit paid, balance not paid; deposit 1000 fen, "
                "paid 1000 fen, balance 5900 fen); it is not delivered to the ERP"
            ),
            path="presale.balance_paid",
        )
    ]
    unpaid = evaluate(order("douyin", "01_single_paid.json", phases(False, False)))
    assert [v.message_zh for v in unpaid] == [
        "预售订单尾款未付（定金未付；定金 1000 分，已付 0 分，尾款 5900 分），不下发 ERP"
    ]


def test_presale_balance_unpaid_taobao_is_also_not_paid() -> None:
    # Taobao keeps a step trade WAIT_BUYER_PAY until the balance is paid: both rules hold it.
    waiting = setting(
        status="WAIT_BUYER_PAY", type="step", step_trade_status="FRONT_PAID_FINAL_NOPAID", step_paid_fee="20.00"
    )
    found = evaluate(order("taobao", "01_single_line_paid.json", waiting))
    assert [(v.rule, v.severity, v.path) for v in found] == [
        ("NOT_PAID", "hold", "status"),
        ("PRESALE_BALANCE_UNPAID", "hold", "presale.balance_paid"),
    ]
    assert found[1].message_en == (
        "Presale order with the balance unpaid (deposit paid, balance not paid; deposit 2000 fen, paid 2000 fen, "
        "balance ? fen); it is not delivered to the ERP"
    )
    paid = setting(type="step", step_trade_status="FRONT_PAID_FINAL_PAID", step_paid_fee="95.00")
    assert evaluate(order("taobao", "01_single_line_paid.json", paid)) == []
