"""Masking of buyer names, phones and addresses (gateway/pii.py, CONTRACT §5)."""

from __future__ import annotations

import pytest

from gateway.pii import (
    ENCRYPTED,
    mask_address,
    mask_name,
    mask_order,
    mask_phone,
    mask_receiver,
    redact,
    scrub_text,
)


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("王小明", "王**"),
        ("王", "王*"),
        ("欧阳娜娜", "欧***"),
        ("  李雷 ", "李*"),
        ("\u00a0韩梅梅\u3000", "韩**"),
        ("王**", "王**"),  # already masked by the platform: unchanged
        ("~SAMPLE_CIPHERTEXT_NAME~", ENCRYPTED),
        ("##SAMPLE_CIPHER_NAME##", ENCRYPTED),
        ("", ""),
        ("   ", ""),
        (None, None),
    ],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812341234", "138****1234"),
        (13812341234, "138****1234"),
        ("138 1234 1234", "138****1234"),
        ("138-1234-1234", "138****1234"),
        ("138\u00a01234\u00a01234", "138****1234"),  # NBSP from a copy-paste
        ("１３８１２３４１２３４", "138****1234"),  # full-width digits
        ("+86 138 1234 1234", "138****1234"),
        ("138****1234", "138****1234"),  # idempotent
        ("0755-12345678", "**********78"),
        ("13812341234-5678", "*************78"),  # virtual number with extension
        ("12345", "*****"),
        ("无", "***"),
        ("$SAMPLE_CIPHER_PHONE$", ENCRYPTED),
        ("", ""),
        (None, None),
    ],
)
def test_mask_phone(phone, masked):
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    ("detail", "masked"),
    [
        ("3栋", "***(short)"),
        ("科技园南区深南大道10000号", "***(medium)"),
        ("广东省深圳市南山区粤海街道科技园南区深南大道10000号腾讯大厦", "***(long)"),
        ("##SAMPLE_CIPHER_DETAIL##", ENCRYPTED),
        ("", ""),
        (None, None),
    ],
)
def test_mask_address_keeps_only_a_length_class(detail, masked):
    assert mask_address(detail) == masked


def test_scrub_text_masks_phones_and_id_numbers_and_keeps_the_words():
    text = (
        "请打13812341234或＋86 139 1234 5678，座机0755-12345678，"
        "身份证110101199003071234，旧证110101900307123，收到请回复"
    )
    assert scrub_text(text) == (
        "请打138****1234或＋86 139****5678，座机**********78，身份证****************34，旧证*************23，收到请回复"
    )


@pytest.mark.parametrize(
    "text",
    [
        "订单 3456789012345678901 已付款",  # 19-digit Taobao/Douyin order id
        "拼多多 240618-123456789012345",  # Pinduoduo order number
        "京东 301234567890",
        "运单 SF1234567890123",
        "数量 2，单价 29.90",
        "2024-06-18T20:15:41+08:00",
        "",
    ],
)
def test_scrub_text_leaves_order_numbers_and_times_alone(text):
    assert scrub_text(text) == text


def test_scrub_text_masks_full_width_and_nbsp_mobiles():
    assert scrub_text("电话：１３８\u00a01234\u00a01234") == "电话：138****1234"


RECEIVER = {
    "name": "王小明",
    "phone": "13812341234",
    "pii_state": "plain",
    "country": "CN",
    "province": "广东省",
    "city": "深圳市",
    "district": "南山区",
    "street": "粤海街道",
    "detail": "科技园南区深南大道10000号",
    "postal_code": "518057",
    "region_codes": {"district": "440305"},
}


def test_mask_receiver_keeps_the_region_and_masks_the_person():
    masked = mask_receiver(RECEIVER)
    assert masked == {
        **RECEIVER,
        "name": "王**",
        "phone": "138****1234",
        "detail": "***(medium)",
    }
    assert RECEIVER["name"] == "王小明"  # the input is not touched
    assert masked["region_codes"] is not RECEIVER["region_codes"]


def test_mask_receiver_with_ciphertext_and_missing_fields():
    masked = mask_receiver({"name": "~SAMPLE_CIPHERTEXT_NAME~", "phone": None, "pii_state": "encrypted"})
    assert masked == {"name": ENCRYPTED, "phone": None, "pii_state": "encrypted"}


def test_mask_order_masks_receiver_nick_and_numbers_in_messages():
    order = {
        "platform": "taobao",
        "order_id": "3456789012345678901",
        "buyer": {"platform_uid": "u1", "nick": "tb_buyer", "message": "到了打13812341234，谢谢"},
        "seller_memo": "买家电话 13912345678",
        "receiver": dict(RECEIVER),
        "lines": [{"line_id": "1", "title": "T恤"}],
    }
    masked = mask_order(order)
    assert masked["buyer"] == {"platform_uid": "u1", "nick": "t*******", "message": "到了打138****1234，谢谢"}
    assert masked["seller_memo"] == "买家电话 139****5678"
    assert masked["receiver"]["name"] == "王**"
    assert masked["order_id"] == order["order_id"]
    masked["lines"][0]["title"] = "changed"
    assert order["lines"][0]["title"] == "T恤"  # a deep copy
    assert order["buyer"]["nick"] == "tb_buyer"


def test_mask_order_without_buyer_or_receiver():
    assert mask_order({"order_id": "1", "receiver": None}) == {"order_id": "1", "receiver": None}


def test_redact_masks_pii_keys_by_name_at_any_depth():
    value = {
        "event": "x",
        "orders": [{"receiverName": "王小明", "receiver_mobile": 13812341234}],
        "address": {"province": "广东省", "detail": "科技园1号"},
        "fullname": {"first": "小明", "last": "王"},
        "note": "tel 13812341234",
        "count": 3,
    }
    assert redact(value) == {
        "event": "x",
        "orders": [{"receiverName": "王**", "receiver_mobile": "138****1234"}],
        "address": {"province": "广东省", "detail": "***(short)"},
        "fullname": {"first": "小*", "last": "王*"},
        "note": "tel 138****1234",
        "count": 3,
    }
