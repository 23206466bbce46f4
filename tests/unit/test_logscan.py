"""The session's log scan itself (tests/support/logscan.py): what it looks for, and what it finds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support.logscan import CLEAR_NAMES, MOBILE, _walk, clear_buyer_data, scan_logs


def test_it_collects_clear_receiver_names_and_phones_not_masked_ones_or_places() -> None:
    names: set[str] = set()
    phones: set[str] = set()
    sample = {
        "trade": {
            "receiver_name": "周杰",
            "receiver_mobile": "15900001111",
            "buyer_nick": "t**1",
            "receiver_phone": "~CIPHER~",
            "address": {"name": "孙丽", "province": {"name": "浙江省"}},
            "sku": [{"name": "颜色", "value": "灰色"}],
        }
    }
    _walk(sample, "", names, phones)
    assert (names, phones) == ({"周杰", "孙丽"}, {"15900001111"})
    bundled_names, _ = clear_buyer_data()
    assert set(CLEAR_NAMES) <= bundled_names and not any("*" in n for n in bundled_names)


def test_mobile_numbers_are_found_but_not_masked_ones_or_digest_fragments() -> None:
    assert [m.group("num") for m in MOBILE.finditer('"phone": "13812341234", "tel": "+8613912345678"')] == [
        "13812341234",
        "13912345678",
    ]
    assert not MOBILE.search('"phone": "138****1234" "order": "3958201746231589372" "sha": "ab13812341234cd"')


def test_scan_names_file_line_and_what() -> None:
    with tempfile.TemporaryDirectory() as folder:  # outside pytest's temp folder, which the session scans
        root = Path(folder)
        (root / "w").mkdir()
        (root / "w" / "worker1.log").write_text(
            '{"event": "delivered", "receiver": {"name": "王**"}}\n{"event": "call 13812341234 for 王小明"}\n',
            encoding="utf-8",
        )
        (root / "server.log").write_text("postgres: 13812341234\n", encoding="utf-8")  # not the gateway's
        (offence,) = scan_logs(root)
    assert offence.startswith("w/worker1.log:2: ['13812341234', '王小明']")
