"""Dictionaries and rule sets as governed data: every version in the database, and the one way a
change goes live.

    bundled file ─(the name has no published version)──────► published      actor "seed"
    bundled file ─(its text differs from every stored one)─► draft          proposed by "files"
    TOML text ──propose──► draft ──dry run──► draft ──approve (not the proposer)──► approved
    draft, approved ──reject──► rejected
    approved ──publish──► published ──(another version of the name published)──► superseded
    superseded ──rollback (one it/admin person)──► published

A draft compiles, or it is refused (422 ``DICTIONARY_INVALID``). Approval needs a dry run against
the version published now, and a person other than the proposer. Publishing and rolling back are
one transaction each: the old version superseded, the new one published, the publication
generation moved on, an audit entry; a failure anywhere leaves the old version published. Every
process watches the generation (``gateway.publication``) and switches within about a second.
Each step is in the audit log with the people involved.

Rule sets (``mappings/rules/*.toml``) are versions of kind ``ruleset`` in the same table, named by
their ``[ruleset] name``, under the same states, the same publication generation and the same
steps; their drafts are refused with ``RULESET_INVALID``, their dry run re-evaluates the recorded
orders' verdicts (``gateway.dryrun.compare_rulesets``), and their audit entries are ``ruleset.*``.
The configuration's parameter overrides (``[rules.params]``) apply on top of the configured rule set.
"""

from __future__ import annotations

import asyncio
import difflib
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from gateway.clock import Clock
from gateway.dryrun import (
    DEFAULT_LIMIT,
    CorpusItem,
    compare,
    compare_rulesets,
    recorded_orders_corpus,
    ruleset_samples,
    sample_corpus,
    targets_using,
)
from gateway.errors import ConfigError, Conflict, Forbidden, NotFound, RequestError
from gateway.mapping.dictionary import CompiledDictionary, compile_dictionary
from gateway.ports import DictionaryState, DictionaryVersion, UnitOfWork, UnitOfWorkFactory
from gateway.rules.catalog import Ruleset, ruleset_from_text
from gateway.runtime import DictionaryFile, RulesetFile, Runtime, dictionary_platform, with_dictionaries
from schemas.order import PLATFORMS

SEED_ACTOR = "seed"
FILES_ACTOR = "files"
RULESET_KIND = "ruleset"
"""The ``kind`` of a rule set's versions (a dictionary's is order, refund or document)."""


# ----------------------------------------------------------------------------- errors


class DictionaryInvalid(RequestError):
    code = "DICTIONARY_INVALID"
    status_code = 422
    message_zh = "字典无法编译"
    message_en = "The dictionary does not compile"


class RulesetInvalid(DictionaryInvalid):
    code = "RULESET_INVALID"
    message_zh = "规则集无效"
    message_en = "The rule set is invalid"


class DictionaryUnchanged(Conflict):
    code = "DICTIONARY_UNCHANGED"
    message_zh = "该字典文本已存在"
    message_en = "This dictionary text is already stored"


class VersionStateConflict(Conflict):
    code = "VERSION_STATE_CONFLICT"
    message_zh = "该字典版本当前状态不允许此操作"
    message_en = "The dictionary version is not in a state that allows this"


class DryRunRequired(Conflict):
    code = "DRY_RUN_REQUIRED"
    message_zh = "需要先对当前已发布版本做试运行"
    message_en = "A dry run against the version published now is needed first"


class ApproverIsProposer(Forbidden):
    code = "APPROVER_IS_PROPOSER"
    message_zh = "提议人不能批准自己的字典版本"
    message_en = "The proposer cannot approve their own dictionary version"


# ----------------------------------------------------------------------------- compiling


def check_text(text: str, *, origin: str = "draft", base: Path | None = None) -> CompiledDictionary:
    """Compile a proposed text; ``DictionaryInvalid`` (422) with the compiler's message if it fails.
    ``base``: the mappings folder the value tables it declares are read from (default: bundled)."""
    try:
        d = compile_dictionary(text, origin=origin, base=base)
    except ConfigError as exc:
        raise DictionaryInvalid(
            exc.message_en, exc.message_zh, hint="Fix the file and check it with `gateway mappings validate FILE`"
        ) from None
    platform = dictionary_platform(d)
    if platform is not None and platform not in PLATFORMS:
        raise DictionaryInvalid(
            f"{origin}: unknown platform {platform!r}; one of {', '.join(PLATFORMS)}",
            f"{origin}：未知平台 {platform!r}",
        )
    return d


def compiled(
    version: DictionaryVersion, cache: dict[str, CompiledDictionary], *, base: Path | None = None
) -> CompiledDictionary:
    """The compiled dictionary of a stored version, compiling each text once (``cache`` by digest);
    ``base`` as for ``check_text``."""
    d = cache.get(version.digest)
    if d is None:
        origin = f"{version.name} #{version.id}"
        d = cache[version.digest] = compile_dictionary(version.text, origin=origin, base=base)
    return d


def _cache_of(runtime: Runtime) -> dict[str, CompiledDictionary]:
    return {d.digest: d for d in runtime.dictionaries()}


_RULESET_HEADER = re.compile(r"^\s*\[\s*ruleset\b", re.MULTILINE)


def is_ruleset_text(text: str) -> bool:
    """Whether a proposed text is a rule set (a ``[ruleset]`` table) rather than a dictionary."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return _RULESET_HEADER.search(text) is not None and "[dictionary]" not in text
    return "ruleset" in doc and "dictionary" not in doc


def overrides_for(runtime: Runtime | None, name: str) -> dict[str, dict[str, Any]] | None:
    """The configuration's parameter overrides when ``name`` is the configured rule set."""
    if runtime is None or name != runtime.ruleset.name:
        return None
    return runtime.config.rules.params or None


def check_ruleset(text: str, *, origin: str = "draft", runtime: Runtime | None = None) -> Ruleset:
    """Compile a proposed rule set (with the configuration's overrides when it is the configured
    one); ``RulesetInvalid`` (422) naming what is wrong: not TOML, a bad severity, an unknown key,
    a rule code no check implements, an unknown platform, braces that do not pair."""
    try:
        name = str(tomllib.loads(text).get("ruleset", {}).get("name", ""))
    except (tomllib.TOMLDecodeError, AttributeError):
        name = ""
    try:
        r = ruleset_from_text(text, overrides_for(runtime, name), origin=origin)
    except ConfigError as exc:
        raise RulesetInvalid(
            exc.message_en, exc.message_zh, hint="Fix the rule set and check it with `gateway mappings validate FILE`"
        ) from None
    for code, rule in r.rules.items():
        wrong = [p for p in rule.platforms if p not in PLATFORMS]
        if wrong:
            raise RulesetInvalid(
                f"{origin}: rules.{code}.platforms: unknown platform {wrong[0]!r}; one of {', '.join(PLATFORMS)}",
                f"{origin}：rules.{code}.platforms：未知平台 {wrong[0]!r}",
            )
    return r


def compiled_ruleset(version: DictionaryVersion, runtime: Runtime | None) -> Ruleset:
    """The rule set of a stored version, with the configuration's overrides when it is the
    configured one. Raises ``ConfigError`` when it does not compile here."""
    return ruleset_from_text(version.text, overrides_for(runtime, version.name), origin=f"{version.name} #{version.id}")


# ----------------------------------------------------------------------------- reading


async def load_published(uow_factory: UnitOfWorkFactory) -> tuple[int, list[DictionaryVersion]]:
    """The publication generation and the published versions, as of that generation or later."""
    async with uow_factory(write=False) as uow:
        # The generation first: a publish committed between the two reads makes the versions newer
        # than the generation, and the next check loads them again; never the other way round.
        generation = await uow.dictionaries.generation()
        return generation, await uow.dictionaries.published()


async def get_version(uow_factory: UnitOfWorkFactory, version_id: int) -> DictionaryVersion:
    async with uow_factory(write=False) as uow:
        return await _get(uow, version_id)


async def _get(uow: UnitOfWork, version_id: int) -> DictionaryVersion:
    v = await uow.dictionaries.get(version_id)
    if v is None:
        raise NotFound(
            f"no dictionary version {version_id}",
            f"字典版本 {version_id} 不存在",
            hint="List them with GET /v1/mappings/versions or `gateway mappings versions`",
        )
    return v


async def find_version(uow_factory: UnitOfWorkFactory, name: str, ref: str) -> DictionaryVersion:
    """A version of ``name`` by its id (``#7``), its full version (``2+1a2b3c4d5e6f``), or its
    declared version when one version of the name (superseded ones first) declares it; bare
    digits that are no declared version are taken as an id."""
    async with uow_factory(write=False) as uow:
        versions = await uow.dictionaries.list(name=name)
    if not versions:
        raise NotFound(f"no dictionary named {name!r}", f"没有名为 {name!r} 的字典")
    if ref.startswith("#"):
        hits = [v for v in versions if str(v.id) == ref[1:]]
    else:
        hits = [v for v in versions if v.mapping_version == ref]
        if not hits:
            declared = [v for v in versions if v.version == ref and v.state != "rejected"]
            hits = [v for v in declared if v.state == "superseded"] or declared
        if not hits:
            hits = [v for v in versions if str(v.id) == ref]
    if len(hits) != 1:
        found = ", ".join(f"#{v.id} {v.mapping_version} ({v.state})" for v in versions)
        raise NotFound(
            f"{'no' if not hits else 'more than one'} version {ref!r} of {name}; versions: {found}",
            f"{name} 的版本 {ref!r} {'不存在' if not hits else '不唯一'}；已有版本：{found}",
            hint="Name the version by its id (#N) or its full version (declared+digest)",
        )
    return hits[0]


def text_diff(a: DictionaryVersion, b: DictionaryVersion) -> str:
    """A unified diff of two versions' TOML texts."""
    return "".join(
        difflib.unified_diff(
            a.text.splitlines(keepends=True),
            b.text.splitlines(keepends=True),
            fromfile=f"#{a.id} {a.name} {a.mapping_version}",
            tofile=f"#{b.id} {b.name} {b.mapping_version}",
        )
    )


def describe(v: DictionaryVersion, *, text: bool = False, dry_run: bool = False) -> dict[str, Any]:
    """A version as the API and the CLI show it."""
    body: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "kind": v.kind,
        "platform": v.platform,
        "version": v.version,
        "mapping_version": v.mapping_version,
        "digest": v.digest,
        "state": v.state,
        "proposed_by": v.proposed_by,
        "proposed_at": _iso(v.proposed_at),
        "approved_by": v.approved_by,
        "approved_at": _iso(v.approved_at),
        "published_by": v.published_by,
        "published_at": _iso(v.published_at),
        "superseded_at": _iso(v.superseded_at),
        "rejected_by": v.rejected_by,
        "rejected_at": _iso(v.rejected_at),
        "note": v.note,
        "dry_run_done": v.has_dry_run,
    }
    if text:
        body["text"] = v.text
    if dry_run:
        body["dry_run"] = v.dry_run
    return body


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# ----------------------------------------------------------------------------- seeding


Bundled = DictionaryFile | RulesetFile


def _identity(f: Bundled) -> tuple[str, str, str | None, str]:
    """``(name, kind, platform, declared version)`` of a bundled file."""
    c = f.compiled
    if isinstance(c, Ruleset):
        return c.name, RULESET_KIND, None, c.declared
    return c.name, c.spec.dictionary.kind, dictionary_platform(c), c.spec.dictionary.version


def _file_name(f: Bundled) -> str:
    return f"{f.path.parent.name}/{f.path.name}"


async def seed(uow_factory: UnitOfWorkFactory, files: Sequence[Bundled], *, clock: Clock) -> list[str]:
    """Bring the bundled files (dictionaries and rule sets) into the database; return what was
    done (``published taobao 1+…``).

    A name with no published version gets its file published (actor ``seed``); a file whose text
    differs from every stored version of its name becomes a draft proposed by ``files``, for IT
    to dry-run and approve: an upgrade never replaces a published dictionary by itself.
    Idempotent, and safe when several processes start at once (they take turns on the lock).
    """
    async with uow_factory(write=False) as uow:
        if not _seed_plan(await uow.dictionaries.list(), files):
            return []
    done: list[str] = []
    async with uow_factory() as uow:
        generation = await uow.dictionaries.lock()
        now = clock.now()
        stored = await uow.dictionaries.list()
        plan = _seed_plan(stored, files)
        for f, publish in plan:
            d = f.compiled
            name, kind, platform, declared = _identity(f)
            same = next((v for v in stored if v.name == d.name and v.digest == d.digest), None)
            if publish and same is not None:
                await uow.dictionaries.update(
                    same.id or 0, expect=same.state, state="published", published_by=SEED_ACTOR, published_at=now
                )
                v = msgspec.structs.replace(same, state="published")
            else:
                v = await uow.dictionaries.add(
                    DictionaryVersion(
                        name=name,
                        kind=kind,
                        platform=platform,
                        version=declared,
                        digest=d.digest,
                        text=f.text,
                        state="published" if publish else "draft",
                        proposed_by=SEED_ACTOR if publish else FILES_ACTOR,
                        proposed_at=now,
                        published_by=SEED_ACTOR if publish else None,
                        published_at=now if publish else None,
                        note=f"bundled file {_file_name(f)}"
                        + ("" if publish else ": differs from every stored version"),
                    )
                )
            actor = SEED_ACTOR if publish else FILES_ACTOR
            await _audit(uow, actor, "seeded" if publish else "proposed", v, {"file": _file_name(f)})
            what = "rule set " if kind == RULESET_KIND else ""
            done.append(f"{'published' if publish else 'proposed'} {what}{v.name} {v.mapping_version} (#{v.id})")
        if any(publish for _, publish in plan):
            await uow.dictionaries.set_generation(generation + 1, by=SEED_ACTOR, now=now)
        await uow.commit()
    return done


def _seed_plan(stored: Sequence[DictionaryVersion], files: Iterable[Bundled]) -> list[tuple[Bundled, bool]]:
    """``(file, publish?)`` for each file that needs something: published, or proposed as a draft.

    Raises:
        ConfigError: a rule set and a dictionary share a name (they share one namespace).
    """
    plan: list[tuple[Bundled, bool]] = []
    kinds: dict[str, str] = {v.name: v.kind for v in stored}
    for f in files:
        name, kind, _, _ = _identity(f)
        other = kinds.setdefault(name, kind)
        if (other == RULESET_KIND) != (kind == RULESET_KIND):
            raise ConfigError(
                f"{_file_name(f)}: the name {name!r} is taken by a {other} version; "
                "rule sets and dictionaries need different names",
                f"{_file_name(f)}：名称 {name!r} 已被 {other} 版本占用；规则集与字典须使用不同名称",
            )
        mine = [v for v in stored if v.name == f.compiled.name]
        if not any(v.state == "published" for v in mine):
            plan.append((f, True))
        elif f.compiled.digest not in {v.digest for v in mine}:
            plan.append((f, False))
    return plan


# ----------------------------------------------------------------------------- proposing


async def propose(
    uow_factory: UnitOfWorkFactory,
    text: str,
    *,
    actor: str,
    clock: Clock,
    note: str | None = None,
    base: Path | None = None,
    runtime: Runtime | None = None,
) -> DictionaryVersion:
    """Store a new draft of a dictionary or a rule set (a ``[ruleset]`` text). Raises
    ``DictionaryInvalid`` / ``RulesetInvalid`` (does not compile, or does not fit the dictionary or
    rule set it is a version of) and ``DictionaryUnchanged`` (the same text is stored already).
    ``base``: the configured mappings folder (``config.mappings_path()``; default: ``runtime``'s);
    ``runtime``: whose configuration's rule parameters a draft of the configured rule set must take."""
    if base is None and runtime is not None:
        base = runtime.config.mappings_path()
    d: CompiledDictionary | Ruleset
    if is_ruleset_text(text):
        d = check_ruleset(text, runtime=runtime)
        kind, platform, declared, invalid = RULESET_KIND, None, d.declared, RulesetInvalid
    else:
        d = check_text(text, base=base)
        kind, platform = d.spec.dictionary.kind, dictionary_platform(d)
        declared, invalid = d.spec.dictionary.version, DictionaryInvalid
    async with uow_factory() as uow:
        await uow.dictionaries.lock()
        stored = await uow.dictionaries.list()
        mine = [v for v in stored if v.name == d.name]
        if mine and (mine[0].kind, mine[0].platform) != (kind, platform):
            raise invalid(
                f"{d.name} is {_what(mine[0].kind, mine[0].platform)}; this text declares {_what(kind, platform)}",
                f"{d.name} 是{_what_zh(mine[0].kind, mine[0].platform)}；此文本声明的是{_what_zh(kind, platform)}",
            )
        if platform is not None:
            others = (v.name for v in stored if (v.kind, v.platform) == (kind, platform) and v.name != d.name)
            other = next(others, None)
            if other is not None:
                raise DictionaryInvalid(
                    f"{platform} already has the {kind} dictionary {other!r}; propose a version of it "
                    f'([dictionary] name = "{other}")',
                    f"{platform} 已有 {kind} 字典 {other!r}；请提交它的新版本",
                )
        same = next((v for v in mine if v.digest == d.digest and v.state != "rejected"), None)
        if same is not None:
            raise DictionaryUnchanged(
                f"this text is already version #{same.id} of {d.name} ({same.state})",
                f"此文本已是 {d.name} 的版本 #{same.id}（{same.state}）",
                version_id=same.id,
                state=same.state,
            )
        v = await uow.dictionaries.add(
            DictionaryVersion(
                name=d.name,
                kind=kind,
                platform=platform,
                version=declared,
                digest=d.digest,
                text=text,
                state="draft",
                proposed_by=actor,
                proposed_at=clock.now(),
                note=note,
            )
        )
        await _audit(uow, actor, "proposed", v, {"note": note})
        await uow.commit()
    return v


def _what(kind: str, platform: str | None) -> str:
    if kind == RULESET_KIND:
        return "a rule set"
    return f"the {kind} dictionary of {platform or 'ERP documents'}"


def _what_zh(kind: str, platform: str | None) -> str:
    if kind == RULESET_KIND:
        return "规则集"
    return f" {platform or 'ERP 单据'} 的 {kind} 字典"


# ----------------------------------------------------------------------------- the dry run


async def dry_run(
    uow_factory: UnitOfWorkFactory,
    version_id: int,
    *,
    actor: str,
    runtime: Runtime,
    clock: Clock,
    samples: Path | None,
    limit: int = DEFAULT_LIMIT,
) -> DictionaryVersion:
    """Run a draft and the published version of its name over the recorded payloads and the
    samples (a rule set: over the recorded orders and intercepts, and the samples as the published
    dictionaries map them); store the summary with the draft (and the version it compared against)."""
    async with uow_factory(write=False) as uow:
        v = await _get(uow, version_id)
        _expect(v, ("draft",), "dry-run")
        current = _published(await uow.dictionaries.published(), v.name)
        if v.kind == RULESET_KIND:
            recorded = recorded_orders_corpus(await uow.dictionaries.recorded_verdicts(limit=limit))
        elif v.kind == "document":
            orders = await uow.dictionaries.recorded_orders(targets_using(runtime, v.name), limit=limit)
            recorded = [CorpusItem("order", o.id, o.platform_order_id, o.shop_id, o) for o in orders]
        else:
            rows = await uow.dictionaries.recorded_payloads(v.platform or "", refunds=v.kind == "refund", limit=limit)
            recorded = [
                CorpusItem(r.source, r.ref, r.platform_order_id, r.shop_id, payload)
                for r in rows
                if (payload := _decode(r.body)) is not None
            ]
    summary: dict[str, Any]
    # CPU work of up to a few hundred milliseconds: off the event loop, which serves intake.
    if v.kind == RULESET_KIND:
        try:
            rules_draft = compiled_ruleset(v, runtime)
            rules_published = compiled_ruleset(current, runtime) if current is not None else None
        except ConfigError as exc:  # e.g. the configuration overrides a rule the draft lacks
            raise RulesetInvalid(exc.message_en, exc.message_zh) from None
        from_samples = ruleset_samples(runtime, samples)
        corpus = [*recorded, *from_samples]
        summary = await asyncio.to_thread(compare_rulesets, rules_draft, rules_published, corpus, runtime)
        overridden = overrides_for(runtime, v.name)
        if overridden:
            summary["config_overrides"] = overridden
    else:
        cache, base = _cache_of(runtime), runtime.config.mappings_path()
        draft = compiled(v, cache, base=base)
        published = compiled(current, cache, base=base) if current is not None else None
        from_samples = sample_corpus(draft, published, runtime, samples)
        summary = await asyncio.to_thread(compare, draft, published, [*recorded, *from_samples], runtime)
    summary = {
        "at": clock.now().isoformat(),
        "by": actor,
        "kind": v.kind,
        "dictionary": v.name,
        "draft": {"id": v.id, "version": v.mapping_version},
        "against": {"id": current.id, "version": current.mapping_version} if current else None,
        "corpus": {"recorded": len(recorded), "samples": len(from_samples), "limit": limit},
    } | summary
    async with uow_factory() as uow:
        await uow.dictionaries.lock()
        if not await uow.dictionaries.update(
            version_id, expect="draft", dry_run=summary, base_id=current.id if current else None
        ):
            raise VersionStateConflict(
                f"version #{version_id} stopped being a draft during the dry run",
                f"试运行期间版本 #{version_id} 已不再是草稿",
            )
        await _audit(uow, actor, "dry_run", v, {"against": summary["against"], "counts": summary["counts"]})
        await uow.commit()
    return msgspec.structs.replace(v, dry_run=summary, has_dry_run=True, base_id=current.id if current else None)


def _decode(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None


# ----------------------------------------------------------------------------- approval


async def approve(
    uow_factory: UnitOfWorkFactory, version_id: int, *, actor: str, clock: Clock, note: str | None = None
) -> DictionaryVersion:
    """A second person approves a dry-run draft. Raises ``ApproverIsProposer`` (403),
    ``DryRunRequired`` and ``VersionStateConflict`` (409)."""
    async with uow_factory() as uow:
        await uow.dictionaries.lock()
        v = await _get(uow, version_id)
        _expect(v, ("draft",), "approve")
        if v.proposed_by == actor:
            raise ApproverIsProposer(
                f"{actor} proposed version #{v.id}; another person must approve it",
                f"版本 #{v.id} 由 {actor} 提议，须由另一人批准",
                hint=f"Another IT person approves it: POST /v1/mappings/versions/{v.id}/approve with their own key, "
                f"or `gateway mappings approve {v.id} --by THEIR_NAME`",
                proposed_by=v.proposed_by,
            )
        current = _published(await uow.dictionaries.published(), v.name)
        _dry_run_is_current(v, current)
        now = clock.now()
        await uow.dictionaries.update(v.id or 0, expect="draft", state="approved", approved_by=actor, approved_at=now)
        v = msgspec.structs.replace(v, state="approved", approved_by=actor, approved_at=now)
        counts = (v.dry_run or {}).get("counts")
        await _audit(uow, actor, "approved", v, {"dry_run": counts, "note": note})
        await uow.commit()
    return v


async def reject(
    uow_factory: UnitOfWorkFactory, version_id: int, *, actor: str, clock: Clock, note: str | None = None
) -> DictionaryVersion:
    """Set a draft or an approved version aside for good (anyone with the role, the proposer too)."""
    async with uow_factory() as uow:
        await uow.dictionaries.lock()
        v = await _get(uow, version_id)
        _expect(v, ("draft", "approved"), "reject")
        now = clock.now()
        await uow.dictionaries.update(v.id or 0, expect=v.state, state="rejected", rejected_by=actor, rejected_at=now)
        v = msgspec.structs.replace(v, state="rejected", rejected_by=actor, rejected_at=now)
        await _audit(uow, actor, "rejected", v, {"note": note})
        await uow.commit()
    return v


def _dry_run_is_current(v: DictionaryVersion, current: DictionaryVersion | None) -> None:
    if v.dry_run is None:
        raise DryRunRequired(
            f"version #{v.id} has no dry run yet",
            f"版本 #{v.id} 尚未试运行",
            hint=f"POST /v1/mappings/versions/{v.id}/dry-run or `gateway mappings dry-run {v.id}`, then approve",
        )
    if (current.id if current else None) != v.base_id:
        raise DryRunRequired(
            f"version #{v.id} was dry-run against #{v.base_id}, but #{current.id if current else None} "
            "is published now",
            f"版本 #{v.id} 的试运行基于 #{v.base_id}，而当前发布的是 #{current.id if current else None}",
            hint=f"Run the dry run of #{v.id} again and have it approved",
        )


# ----------------------------------------------------------------------------- publishing


class Publication(msgspec.Struct, kw_only=True, frozen=True):
    version: DictionaryVersion
    previous: DictionaryVersion | None
    generation: int


async def publish(
    uow_factory: UnitOfWorkFactory,
    version_id: int,
    *,
    actor: str,
    runtime: Runtime,
    clock: Clock,
    note: str | None = None,
) -> Publication:
    """Publish an approved version: atomically superseding the published one of its name.
    Refused when another version was published since its dry run (``DryRunRequired``)."""
    return await _publish(uow_factory, version_id, actor=actor, runtime=runtime, clock=clock, note=note, again=False)


async def rollback(
    uow_factory: UnitOfWorkFactory,
    version_id: int,
    *,
    actor: str,
    runtime: Runtime,
    clock: Clock,
    note: str | None = None,
) -> Publication:
    """Publish again a version that was published before (so approved once): one ``it`` or
    ``admin`` person may do it alone, in an emergency. Audited as ``dictionary.rolled_back``."""
    return await _publish(uow_factory, version_id, actor=actor, runtime=runtime, clock=clock, note=note, again=True)


async def _publish(
    uow_factory: UnitOfWorkFactory,
    version_id: int,
    *,
    actor: str,
    runtime: Runtime,
    clock: Clock,
    note: str | None,
    again: bool,
) -> Publication:
    """One transaction: the published version of the name superseded, ``version_id`` published,
    the generation moved on, the audit entry. ``again``: a rollback to a superseded version."""
    async with uow_factory() as uow:
        generation = await uow.dictionaries.lock()
        v = await _get(uow, version_id)
        if not again and v.state == "superseded":
            raise VersionStateConflict(
                f"version #{v.id} was published before; roll back to it instead",
                f"版本 #{v.id} 曾经发布过，请使用回滚",
                hint=f"POST /v1/mappings/versions/{v.id}/rollback or `gateway mappings rollback {v.name} #{v.id}`",
                state=v.state,
            )
        _expect(v, ("superseded",) if again else ("approved",), "roll back to" if again else "publish")
        published = await uow.dictionaries.published()
        current = _published(published, v.name)
        if not again and (current.id if current else None) != v.base_id:
            raise DryRunRequired(
                f"#{current.id if current else None} was published after version #{v.id} was approved",
                f"版本 #{v.id} 批准后，#{current.id if current else None} 已发布",
                hint=f"Reject #{v.id} and propose its text again, so it is dry-run and approved against the "
                "version published now",
            )
        now = clock.now()
        result = await _switch(uow, v, current, published, actor=actor, runtime=runtime, now=now)
        await uow.dictionaries.set_generation(generation + 1, by=actor, now=now)
        extra = {"previous": _ref(current), "generation": generation + 1, "note": note}
        await _audit(uow, actor, "rolled_back" if again else "published", result, extra)
        await uow.commit()
    return Publication(version=result, previous=current, generation=generation + 1)


async def _switch(
    uow: UnitOfWork,
    v: DictionaryVersion,
    current: DictionaryVersion | None,
    published: Sequence[DictionaryVersion],
    *,
    actor: str,
    runtime: Runtime,
    now: Any,
) -> DictionaryVersion:
    """Supersede ``current`` and publish ``v``, after checking that the dictionaries published
    then still make a Runtime (every target's ERP dictionary, one dictionary per platform), or
    that the rule set compiles here (with the configuration's parameter overrides)."""
    if v.kind == RULESET_KIND:
        try:
            compiled_ruleset(v, runtime)
        except ConfigError as exc:
            raise RulesetInvalid(exc.message_en, exc.message_zh) from None
    else:
        cache, base = _cache_of(runtime), runtime.config.mappings_path()
        try:
            others = [compiled(p, cache, base=base) for p in published if p.name != v.name and p.kind != RULESET_KIND]
            with_dictionaries(runtime, [*others, compiled(v, cache, base=base)])
        except ConfigError as exc:
            raise DictionaryInvalid(exc.message_en, exc.message_zh) from None
    if current is not None:
        await uow.dictionaries.update(current.id or 0, expect="published", state="superseded", superseded_at=now)
    if not await uow.dictionaries.update(
        v.id or 0, expect=v.state, state="published", published_by=actor, published_at=now
    ):
        raise VersionStateConflict(f"version #{v.id} changed meanwhile", f"版本 #{v.id} 已被他人修改")
    return msgspec.structs.replace(v, state="published", published_by=actor, published_at=now)


# ----------------------------------------------------------------------------- helpers


_NEXT_STEP = {
    "draft": "it needs a dry run and a second person's approval",
    "approved": "publish it, or reject it",
    "published": "it is in use already",
    "superseded": "it was published before: roll back to it",
    "rejected": "it was rejected: propose the text again",
}


def _expect(v: DictionaryVersion, states: tuple[DictionaryState, ...], action: str) -> None:
    if v.state not in states:
        raise VersionStateConflict(
            f"cannot {action} version #{v.id}: it is {v.state} ({_NEXT_STEP[v.state]}); "
            f"only a version that is {' or '.join(states)} can be",
            f"无法对版本 #{v.id} 执行此操作：其状态为 {v.state}，仅 {' 或 '.join(states)} 状态可以",
            state=v.state,
            allowed=list(states),
        )


def _published(versions: Iterable[DictionaryVersion], name: str) -> DictionaryVersion | None:
    return next((v for v in versions if v.name == name and v.state == "published"), None)


def _ref(v: DictionaryVersion | None) -> dict[str, Any] | None:
    return {"id": v.id, "version": v.mapping_version} if v is not None else None


async def _audit(uow: UnitOfWork, actor: str, step: str, v: DictionaryVersion, extra: dict[str, Any]) -> None:
    """One audit entry: ``dictionary.<step>`` on a ``dictionary_version``, or ``ruleset.<step>`` on
    a ``ruleset_version``."""
    prefix = "ruleset" if v.kind == RULESET_KIND else "dictionary"
    data = {
        "name": v.name,
        "kind": v.kind,
        "platform": v.platform,
        "version": v.mapping_version,
        "digest": v.digest,
        "state": v.state,
        "proposed_by": v.proposed_by,
        "approved_by": v.approved_by,
    } | extra
    data = {k: val for k, val in data.items() if val is not None}
    await uow.audit.append(
        actor=actor, action=f"{prefix}.{step}", subject_type=f"{prefix}_version", subject_id=str(v.id), data=data
    )
