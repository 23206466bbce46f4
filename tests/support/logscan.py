"""The test run's log scan (CONTRACT §5: buyer names and phones are masked in every log line).

``capture_gateway_logs`` sends everything the in-process gateways and sandboxes log during the
session through the gateway's own masking handler (``gateway.logging.masking_handler``) into one
file under pytest's base temporary folder, the same place where the gateways the end-to-end tests
start as processes write theirs (``gateway.log``, ``serve.log``, ``worker*.log``). ``scan_logs``
then reads every ``*.log`` there for

* an 11-digit mainland mobile number (``1[3-9]`` and nine digits), which a masked line never holds
  (``138****1234``), and
* the receiver and buyer names and phones the tests send in clear: those of the recorded samples
  that are not masked already (today all are: ``王**``) and those the tests' own payloads use.

A few megabytes of text, read once at the end of the session: cheap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from gateway.logging import masking_handler, route_structlog
from gateway.pii import is_ciphertext

REPO = Path(__file__).resolve().parents[2]
SESSION_LOG = "gateway-session.log"

# Names and phones tests send in clear (tests/unit/test_logging.py, test_pii.py, the PII tests of
# tests/integration/test_pii_unmask.py, the conformance suite).
CLEAR_NAMES = ("王小明", "张三", "李秀英", "tb_buyer_nick")
CLEAR_PHONES = ("13812341234", "13912345678", "13700001111", "13812345678")

_NAME_KEYS = frozenset(
    "receiver_name receiver_name_mask fullname user_name consignee post_receiver mask_post_receiver buyer_nick".split()
)
_PHONE_KEYS = frozenset(
    "receiver_mobile receiver_phone receiver_phone_mask mobile phone tel_number telephone desen_mobile "
    "post_tel mask_post_tel".split()
)
# Bounded by anything but letters and digits, so a hex digest that happens to hold such a run
# (``…a13812341234f…``) is not taken for a phone number.
# ``+86`` may precede it.
MOBILE = re.compile(r"(?<![0-9A-Za-z])(?:\+?86)?(?P<num>1[3-9][0-9]{9})(?![0-9A-Za-z])")
_LEVELS = ("gateway", "adapters")
_SKIP = frozenset({"server.log", "redis.log"})  # PostgreSQL's and Redis's own, not the gateway's


def _walk(value: Any, parent: str, names: set[str], phones: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                clear = item.strip()
                if not clear or "*" in clear or is_ciphertext(clear):
                    continue
                is_receiver_name = key == "name" and ("receiver" in parent or "address" in parent)
                if key in _NAME_KEYS or is_receiver_name:
                    names.add(clear)
                elif key in _PHONE_KEYS and sum(ch.isdigit() for ch in clear) >= 7:
                    phones.add(clear)
            else:
                _walk(item, str(key).lower(), names, phones)
    elif isinstance(value, list):
        for item in value:
            _walk(item, parent, names, phones)


def clear_buyer_data() -> tuple[set[str], set[str]]:
    """The names and phone numbers that must never appear in a log line."""
    names, phones = set(CLEAR_NAMES), set(CLEAR_PHONES)
    for sample in sorted((REPO / "mappings" / "samples").glob("*/*.json")):
        _walk(msgspec.json.decode(sample.read_bytes()), "", names, phones)
    return names, phones


@contextmanager
def capture_gateway_logs(path: Path) -> Iterator[None]:
    """Log the session's gateway lines, masked as in production, into ``path``."""
    route_structlog()  # else structlog prints to stdout by itself, past every handler
    previous = {name: logging.getLogger(name).level for name in _LEVELS}
    with path.open("a", encoding="utf-8") as stream:
        handler = masking_handler(stream)
        root = logging.getLogger()
        root.addHandler(handler)
        for name in _LEVELS:  # INFO whatever a test does to the root logger's level
            logging.getLogger(name).setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            for name, level in previous.items():
                logging.getLogger(name).setLevel(level)


def scan_logs(folder: Path) -> list[str]:
    """Every log line under ``folder`` holding a mobile number or a clear name: ``file:line: what``."""
    names, phones = clear_buyer_data()
    needles = sorted(names | phones)
    offences = []
    for path in sorted(folder.rglob("*.log")):
        if path.name in _SKIP or not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            for n, line in enumerate(lines, 1):
                found = [m.group("num") for m in MOBILE.finditer(line)] + [s for s in needles if s in line]
                if found:
                    offences.append(f"{path.relative_to(folder)}:{n}: {sorted(set(found))} in {line.strip()[:300]}")
    return offences
