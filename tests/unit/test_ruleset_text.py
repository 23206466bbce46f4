"""Rule sets compiled from text (``gateway.rules.catalog.ruleset_from_text``), as governance stores
them: the version orders record, the configuration's overrides on top, and the refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gateway import governance as gov
from gateway.errors import ConfigError
from gateway.rules.catalog import load_ruleset, ruleset_from_text

UNKNOWN_RULE = '\n[rules.NO_SUCH_RULE]\nseverity = "reject"\nmessage_zh = "无"\nmessage_en = "none"\n'
TEXT = (Path(__file__).resolve().parents[2] / "mappings" / "rules" / "default.toml").read_text(encoding="utf-8")


def test_without_overrides_the_version_is_the_stored_version() -> None:
    r = ruleset_from_text(TEXT)
    digest = hashlib.sha256(TEXT.encode()).hexdigest()
    assert r.name == "default" and r.digest == digest and r.version == f"{r.declared}+{digest[:12]}"
    assert r.rules["COUPON_STACK_LIMIT"].params == {"max_coupons": 2}


def test_overrides_apply_on_top_and_are_part_of_the_version() -> None:
    plain = ruleset_from_text(TEXT)
    r = ruleset_from_text(TEXT, {"COUPON_STACK_LIMIT": {"max_coupons": 3}})
    assert r.rules["COUPON_STACK_LIMIT"].params == {"max_coupons": 3}
    assert r.digest == plain.digest and r.version != plain.version and r.version.startswith(f"{r.declared}+")
    with pytest.raises(ConfigError, match="NO_SUCH_RULE"):
        ruleset_from_text(TEXT, {"NO_SUCH_RULE": {"x": 1}})


def test_load_ruleset_is_the_file_s_text(tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text(TEXT, encoding="utf-8")
    assert load_ruleset(tmp_path / "r.toml").version == ruleset_from_text(TEXT).version


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (TEXT + UNKNOWN_RULE, "NO_SUCH_RULE"),
        (TEXT.replace('severity = "reject"', 'severity = "block"', 1), "severity"),
        (TEXT.replace("上限 {max_coupons} 张", "上限 {max_coupons 张"), "COUPON_STACK_LIMIT.message_zh"),
        (TEXT.replace("[ruleset]", "[ruleset\n"), "draft"),
    ],
)
def test_refusals_name_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(gov.RulesetInvalid) as info:
        gov.check_ruleset(text)
    assert info.value.code == "RULESET_INVALID" and needle in info.value.message_en


def test_a_rule_set_text_is_told_from_a_dictionary() -> None:
    assert gov.is_ruleset_text(TEXT)
    assert gov.is_ruleset_text(TEXT.replace("[ruleset]", "[ruleset", 1))  # broken, but meant as a rule set
    assert not gov.is_ruleset_text('[dictionary]\nname = "taobao"\n')
