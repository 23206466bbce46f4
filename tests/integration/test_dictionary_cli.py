"""``gateway mappings versions | draft | dry-run | approve | publish | rollback`` against a real
SQLite database: the same governance as the API, from the shell, with next steps in errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.integration.test_dictionary_governance import MEMO

pytestmark = pytest.mark.integration


def test_governance_from_the_shell(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GATEWAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def gateway(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, ["mappings", *args])
        assert result.exit_code == code, result.output
        return result.output

    assert re.search(r"taobao\s+│\s+1\+\w+\s+│\s+published", gateway("versions", "taobao"))
    (tmp_path / "taobao.toml").write_text(MEMO, encoding="utf-8")
    out = gateway("draft", str(tmp_path / "taobao.toml"), "--by", "ann", "--note", "memo from default")
    draft = re.search(r"draft #(\d+) taobao 3\+", out).group(1)
    assert f"next: gateway mappings dry-run {draft}" in out
    out = gateway("approve", draft, "--by", "bob", code=1)
    assert "DRY_RUN_REQUIRED" in out and f"gateway mappings dry-run {draft}" in out
    out = gateway("dry-run", draft, "--by", "ann")
    assert "3 changed" in out and "seller_memo: '赠品已备注' → 'v3'" in out
    out = gateway("approve", draft, "--by", "ann", code=1)
    assert "APPROVER_IS_PROPOSER" in out and "须由另一人批准" in out and "next:" in out
    out = gateway("publish", draft, "--by", "ann", code=1)
    assert "VERSION_STATE_CONFLICT" in out
    assert "approved" in gateway("approve", draft, "--by", "bob")
    out = gateway("publish", draft, "--by", "ann")
    assert re.search(rf"published #{draft} taobao 3\+\w+ \(was #\d+ 1\+", out) and "within about a second" in out
    out = gateway("rollback", "taobao", "1", "--by", "cat", "--note", "emergency")
    assert "rolled back to" in out
    listed = gateway("versions", "taobao")
    assert re.search(rf"{draft}\s+│\s+taobao\s+│\s+3\+\w+\s+│\s+superseded\s+│\s+ann \(cli\)\s+│\s+bob \(cli\)", listed)
    assert "NOT_FOUND" in gateway("rollback", "taobao", "9", code=1)
    assert "DICTIONARY_INVALID" in gateway("draft", str(Path(__file__)), code=1)
    audit = runner.invoke(app, ["audit", "verify"])
    assert audit.exit_code == 0, audit.output
