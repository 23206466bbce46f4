"""The ``Filter`` of a simulated K3 WISE ``GetList`` (reference/erp-protocols.md §3.4).

K3 pastes ``Filter`` into the SQL ``WHERE`` of the list query, so a client writes SQL Server
conditions on list columns: ``[FBillNo] = 'GW0001'``, ``[FBillNO] like '%0%'`` (K3),
``[FOrderBillNo] in ('A','B') and [Fdate] >= '2026-01-01 00:00:00'``. This module reads that
subset — ``and``/``or``/``not``, parentheses, ``= <> != < <= > >= like in`` on bracketed or bare
column names, quoted text with ``''`` for a quote, and numbers — and refuses anything else the
way SQL Server would (a syntax error, or ``列名 'X' 无效`` for an unknown column), so an adapter
that forgets to escape a quote fails here as it would on a real site.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]

_TOKEN = re.compile(
    r"\s*(?:(?P<col>\[[^\]]+\])|(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)"
    r"|(?P<op><>|!=|>=|<=|=|<|>)|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_KEYWORDS = frozenset({"and", "or", "not", "like", "in"})


class FilterError(Exception):
    """The filter is not valid SQL for the list query; the text is what K3 passes on."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos, text = 0, text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"'{text[pos : pos + 10]}' 附近有语法错误。")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            kind, value = "kw", value.lower()
        out.append((kind, value))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str, columns: Callable[[str], str | None]) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.columns = columns

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got_kind, got = self.peek()
        if got_kind != kind or (value is not None and got != value):
            raise FilterError(f"'{got or '结尾'}' 附近有语法错误。")
        self.pos += 1
        return got

    def parse(self) -> Predicate:
        predicate = self.disjunction()
        if self.peek()[0] != "end":
            raise FilterError(f"'{self.peek()[1]}' 附近有语法错误。")
        return predicate

    def disjunction(self) -> Predicate:
        parts = [self.conjunction()]
        while self.peek() == ("kw", "or"):
            self.pos += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def conjunction(self) -> Predicate:
        parts = [self.factor()]
        while self.peek() == ("kw", "and"):
            self.pos += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def factor(self) -> Predicate:
        if self.peek() == ("kw", "not"):
            self.pos += 1
            inner = self.factor()
            return lambda row: not inner(row)
        if self.peek() == ("punct", "("):
            self.pos += 1
            inner = self.disjunction()
            self.take("punct", ")")
            return inner
        return self.condition()

    def condition(self) -> Predicate:
        kind, raw = self.peek()
        if kind not in ("col", "word"):
            raise FilterError(f"'{raw or '结尾'}' 附近有语法错误。")
        self.pos += 1
        name = raw[1:-1].strip() if kind == "col" else raw
        column = self.columns(name)
        if column is None:
            raise FilterError(f"列名 '{name}' 无效。")
        negate = False
        if self.peek() == ("kw", "not"):
            self.pos += 1
            negate = True
        kind, op = self.peek()
        if (kind, op) == ("kw", "in"):
            self.pos += 1
            self.take("punct", "(")
            values = [self.value()]
            while self.peek() == ("punct", ","):
                self.pos += 1
                values.append(self.value())
            self.take("punct", ")")
            wanted = {v.casefold() for v in values}
            test: Predicate = lambda row: _text(row.get(column)).casefold() in wanted  # noqa: E731
        elif (kind, op) == ("kw", "like"):
            self.pos += 1
            pattern = _like(self.value())
            test = lambda row: pattern.fullmatch(_text(row.get(column))) is not None  # noqa: E731
        elif kind == "op" and not negate:
            self.pos += 1
            operand = self.value()
            test = lambda row: _compare(_text(row.get(column)), op, operand)  # noqa: E731
        else:
            raise FilterError(f"'{op or '结尾'}' 附近有语法错误。")
        return (lambda row: not test(row)) if negate else test

    def value(self) -> str:
        kind, raw = self.peek()
        if kind == "str":
            self.pos += 1
            return raw[1:-1].replace("''", "'")
        if kind == "num":
            self.pos += 1
            return raw
        raise FilterError(f"'{raw or '结尾'}' 附近有语法错误。")


def _text(value: Any) -> str:
    """A list cell as SQL sees it: base data by its number, nothing as empty text."""
    if isinstance(value, Mapping):
        value = value.get("FNumber")
    return "" if value is None else str(value)


def _like(pattern: str) -> re.Pattern[str]:
    out = []
    for ch in pattern:
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    # SQL Server's default Chinese_PRC_CI_AS collation: comparisons ignore case.
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _compare(left: str, op: str, right: str) -> bool:
    a: Any
    b: Any
    try:
        a, b = Decimal(left), Decimal(right)
    except InvalidOperation:
        a, b = left.casefold(), right.casefold()  # dates as 'yyyy-MM-dd HH:mm:ss' sort as text
    if op == "=":
        return a == b
    if op in ("<>", "!="):
        return a != b
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def compile_filter(text: str, columns: Callable[[str], str | None]) -> Predicate:
    """A predicate over list rows for ``text``; ``columns`` maps a name as written to the row's
    key (None: no such column). An empty filter keeps every row.

    Raises:
        FilterError: not the SQL subset above, or a column the list does not have.
    """
    if not text.strip():
        return lambda row: True
    return _Parser(text, columns).parse()
