"""Source fields no dictionary maps: recorded per platform, with a suggestion for IT.

Platforms add fields without notice. Each unknown source path is counted per platform with its
first and last sighting and a masked sample. For a numeric field the tracker also keeps how the
value relates to the order: its ratio to what the buyer paid (in the platform's own unit, read
from the path the dictionary takes ``totals.paid_fen`` from) and whether it always equals an
amount the dictionary already maps. From that, :func:`suggest` proposes a canonical target —
a new 直播坑位费 that is always a small, steady share of the paid amount is a channel fee — for
IT to confirm or dismiss; confirming drafts a dictionary change (:func:`draft_change`) that
goes through the usual dry-run and second-person approval.

Observing is in memory and cheap (only orders that have unknown fields pay anything); the
aggregates are flushed to the database every few seconds by the serving process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.errors import ConfigError
from gateway.logging import get_logger
from gateway.mapping.dictionary import CompiledDictionary, compile_dictionary

log = get_logger("gateway.unknown_fields")

MIN_OBSERVATIONS = 5
SMALL_SHARE = 0.3  # a fee is a small part of the order …
STEADY_CV = 0.25  # … and a steady one: standard deviation / mean of the ratio at most this

Target = Literal["channel_fee", "platform_fee", "service_fee", "ignore"]
TARGETS: tuple[str, ...] = ("channel_fee", "platform_fee", "service_fee", "ignore")


@dataclass
class FieldStats:
    """What was seen of one unknown path of one platform since the last flush (or in total)."""

    platform: str
    path: str
    count: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    sample: str | None = None
    numeric: int = 0  # observations with a numeric value and a paid amount to compare with
    zero: int = 0
    ratio_sum: float = 0.0
    ratio_sq_sum: float = 0.0
    equal_to: dict[str, int] = field(default_factory=dict)  # mapped amount path → times equal

    def merge(self, other: FieldStats) -> None:
        self.count += other.count
        self.first_seen = min(filter(None, (self.first_seen, other.first_seen)), default=None)
        self.last_seen = max(filter(None, (self.last_seen, other.last_seen)), default=None)
        self.sample = other.sample or self.sample
        self.numeric += other.numeric
        self.zero += other.zero
        self.ratio_sum += other.ratio_sum
        self.ratio_sq_sum += other.ratio_sq_sum
        for k, v in other.equal_to.items():
            self.equal_to[k] = self.equal_to.get(k, 0) + v


@dataclass(frozen=True)
class Suggestion:
    target: Target | None  # None: nothing to suggest yet, or nothing clear
    reason_en: str
    reason_zh: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        return float(value)
    return None


def mask_sample(value: Any) -> str:
    """A sample that shows the kind of value, never a person: text keeps its first and last
    character, long digit runs (phones, ids) their ends, structures only their shape."""
    if isinstance(value, dict):
        return "{" + ", ".join(sorted(map(str, value)))[:80] + "}"
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, bool) or value is None:
        return repr(value)
    text = str(value)
    if _number(value) is not None:
        digits = text.strip().lstrip("-").split(".")[0]
        return text if len(digits) < 7 else text[:3] + "*" * (len(text) - 5) + text[-2:]
    if len(text) <= 2:
        return text[:1] + "*"
    return f"{text[0]}{'*' * min(len(text) - 2, 8)}{text[-1]}"


def _values_at(root: Any, path: str) -> list[Any]:
    """Every value at ``a.b[].c`` inside ``root``."""
    nodes = [root]
    for part in path.split("."):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        nxt: list[Any] = []
        for n in nodes:
            if isinstance(n, dict) and key in n:
                v = n[key]
                if many and isinstance(v, list):
                    nxt.extend(v)
                elif not many:
                    nxt.append(v)
        nodes = nxt
    return nodes


def _first_path(spec_path: str | list[str] | None) -> str | None:
    if spec_path is None:
        return None
    return spec_path if isinstance(spec_path, str) else (spec_path[0] if spec_path else None)


class UnknownFieldTracker:
    """In-memory aggregates of unknown fields, per (platform, path), until :meth:`drain`."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], FieldStats] = {}

    def observe(self, dictionary: CompiledDictionary, payload: Any, unknown: list[str], seen_at: str) -> None:
        if not unknown:
            return
        platform = dictionary.spec.dictionary.platform or dictionary.name
        try:
            root = dictionary.root_of(payload)
        except Exception:  # noqa: BLE001 - an order that got this far has a root; be safe anyway
            return
        paid = self._mapped_amounts(dictionary, root)
        paid_raw = paid.get("totals.paid_fen")
        for path in unknown:
            st = self._stats.get((platform, path))
            if st is None:
                st = self._stats[(platform, path)] = FieldStats(platform, path, first_seen=seen_at)
            st.count += 1
            st.last_seen = seen_at
            values = _values_at(root, path)
            if values:
                st.sample = mask_sample(values[0])
            if "[]" in path:
                continue  # numeric relations are judged on order-level fields only
            number = _number(values[0]) if values else None
            if number is None or not paid_raw:
                continue
            st.numeric += 1
            if number == 0:
                st.zero += 1
            ratio = number / paid_raw
            st.ratio_sum += ratio
            st.ratio_sq_sum += ratio * ratio
            for target_path, amount in paid.items():
                if amount is not None and number == amount:
                    st.equal_to[target_path] = st.equal_to.get(target_path, 0) + 1

    @staticmethod
    def _mapped_amounts(dictionary: CompiledDictionary, root: dict[str, Any]) -> dict[str, float | None]:
        """The raw values of the order-level amounts the dictionary maps straight from a path."""
        out: dict[str, float | None] = {}
        for name, fs in dictionary.spec.fields.items():
            src = _first_path(fs.path)
            if src is None or not (name.endswith("_fen") or name.startswith("_")):
                continue
            values = _values_at(root, src)
            out[name] = _number(values[0]) if values else None
        return out

    def drain(self) -> list[FieldStats]:
        """The aggregates since the last drain; the tracker starts empty again."""
        out = list(self._stats.values())
        self._stats = {}
        return out


def suggest(st: FieldStats) -> Suggestion:
    """A canonical target for a numeric unknown field, from how it relates to the order."""
    if st.numeric < MIN_OBSERVATIONS:
        return Suggestion(
            None,
            f"seen with a number {st.numeric} times; a suggestion needs {MIN_OBSERVATIONS}",
            f"出现数值 {st.numeric} 次，至少 {MIN_OBSERVATIONS} 次后给出建议",
        )
    for target_path, times in sorted(st.equal_to.items(), key=lambda kv: -kv[1]):
        if times == st.numeric:
            return Suggestion(
                "ignore",
                f"always equal to the value already mapped to {target_path}: a duplicate",
                f"总是等于已映射的 {target_path}：重复字段，建议忽略",
            )
    if st.zero == st.numeric:
        return Suggestion("ignore", "always zero so far", "迄今总为 0，建议暂时忽略")
    mean = st.ratio_sum / st.numeric
    var = max(0.0, st.ratio_sq_sum / st.numeric - mean * mean)
    cv = math.sqrt(var) / mean if mean > 0 else math.inf
    if 0 < mean <= SMALL_SHARE and cv <= STEADY_CV:
        return Suggestion(
            "channel_fee",
            f"a small, steady share of the paid amount ({mean:.1%} on average, variation {cv:.0%}): a channel fee",
            f"稳定地占实付金额的一小部分（平均 {mean:.1%}，波动 {cv:.0%}）：建议归为渠道费用",
        )
    return Suggestion(
        None,
        f"no clear relation to the order (share of paid {mean:.1%}, variation {cv:.0%}); map it by hand",
        f"与订单金额无明显关系（占实付 {mean:.1%}，波动 {cv:.0%}），请人工确定",
    )


def _slug(path: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", path).strip("_").lower() or "field"


def draft_change(text: str, dictionary: CompiledDictionary, path: str, target: str) -> str:
    """The dictionary's TOML with ``path`` mapped to ``target`` (a fee kind, or ``ignore``).

    The result compiles, or a ``ConfigError`` says why. It is a draft: it still goes through the
    dry-run over recorded orders and a second person's approval before anything uses it.
    """
    if target not in TARGETS:
        raise ConfigError(
            f"unknown target {target!r}; one of {', '.join(TARGETS)}", f"未知目标 {target!r}；可选 {'、'.join(TARGETS)}"
        )
    if "[]" in path:
        raise ConfigError(
            f"{path} is inside a list: add it to that list's ignore (or map it) by hand",
            f"{path} 位于列表中：请在该列表的 ignore 中手工添加或映射",
        )
    text = _bump_version(text)
    if target == "ignore":
        return _add_ignore(text, path)
    paid = dictionary.spec.fields.get("totals.paid_fen")
    unit = (paid.transform if paid and paid.transform in ("yuan", "fen") else "yuan") if paid else "yuan"
    payer = "buyer" if target == "service_fee" else "seller"
    name = f"fee_{_slug(path)}"
    block = (
        f"\n# {path} → fees[] ({target}), confirmed from the unknown-fields list.\n"
        f"[children.{name}]\n"
        f'path = "."\n'
        f'into = "fees"\n'
        f'where = "amount_fen"\n'
        f"[children.{name}.fields]\n"
        f'name = {{ default = "{path}" }}\n'
        f'kind = {{ default = "{target}" }}\n'
        f'payer = {{ default = "{payer}" }}\n'
        f'amount_fen = {{ path = "{path}", transform = "{unit}" }}\n'
    )
    new = text.rstrip("\n") + "\n" + block
    compile_dictionary(new, origin=f"{dictionary.name} + {path}")
    return new


def _bump_version(text: str) -> str:
    """The declared version moved on: "1" → "2", "1.4" → "1.5", anything else gets ".1"."""

    def bump(m: re.Match[str]) -> str:
        old = m.group(2)
        head, _, last = old.rpartition(".")
        new = (
            f"{head}.{int(last) + 1}" if head and last.isdigit() else str(int(old) + 1) if old.isdigit() else f"{old}.1"
        )
        return f'{m.group(1)}"{new}"'

    head = re.search(r"(?ms)^\[dictionary\][ \t]*\n.*?(?=^\[|\Z)", text)
    if head is None:
        return text
    part = re.sub(r'(?m)^(version\s*=\s*)"([^"]*)"', bump, head.group(0), count=1)
    return text[: head.start()] + part + text[head.end() :]


def _add_ignore(text: str, path: str) -> str:
    """``path`` added to the ``ignore`` list of the ``[dictionary]`` header."""
    head = re.search(r"(?ms)^\[dictionary\][ \t]*\n(.*?)(?=^\[)", text)
    if head is None:
        raise ConfigError("the dictionary has no [dictionary] header", "字典缺少 [dictionary] 头部")
    body = head.group(1)
    entry = '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if re.search(r"(?m)^ignore\s*=\s*\[", body):
        body = re.sub(r"(?m)^ignore\s*=\s*\[", lambda m: m.group(0) + entry + ", ", body, count=1)
    else:
        body = body.rstrip("\n") + f"\nignore = [{entry}]\n\n"
    new = text[: head.start(1)] + body + text[head.end(1) :]
    compile_dictionary(new, origin=f"ignore {path}")
    return new


class UnknownFieldRecorder:
    """The serving process's recorder: observes orders in memory and flushes the aggregates to
    the registry every ``interval_s`` seconds (and on stop). A failed flush keeps its aggregates
    for the next one; nothing is counted twice, at worst a sighting waits a little longer."""

    def __init__(self, uow_factory: Any, clock: Any, interval_s: float = 5.0) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._interval = interval_s
        self.tracker = UnknownFieldTracker()
        self._task: asyncio.Task[None] | None = None

    def observe(self, dictionary: CompiledDictionary, payload: Any, unknown: list[str]) -> None:
        if unknown:
            self.tracker.observe(dictionary, payload, unknown, self._clock.now().isoformat(timespec="seconds"))

    async def flush(self) -> int:
        batch = self.tracker.drain()
        if not batch:
            return 0
        try:
            async with self._uow_factory() as uow:
                await uow.unknown_fields.add(batch)
                await uow.commit()
        except Exception:
            for st in batch:  # back into the tracker, merged with what arrived meanwhile
                key = (st.platform, st.path)
                cur = self.tracker._stats.get(key)
                if cur is None:
                    self.tracker._stats[key] = st
                else:
                    st.merge(cur)
                    self.tracker._stats[key] = st
            log.warning("unknown fields not recorded; kept for the next flush", exc_info=True)
            return 0
        return len(batch)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="unknown-fields")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
