"""Dictionary and rule-set governance for IT (role ``it``, and ``admin``): versions, drafts, dry
runs, approval, publishing and rollback (``gateway.governance``); a rule set's text (``[ruleset]``)
goes the same way as a dictionary's. Every change names the caller's API key in the audit log; the
proposer of a version cannot approve it. ``GET /v1/rules``: the published rule catalog.

The single-payload ``POST /v1/mappings/{platform}/dry-run`` lives with the orders (``orders.py``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, QueryParameter

from gateway import field_review
from gateway import governance as gov
from gateway.app.security import caller_of, requires
from gateway.dryrun import DEFAULT_LIMIT, compare, compare_rulesets, ruleset_samples, sample_corpus, samples_folder
from gateway.errors import ConfigError, NotFound, PayloadInvalid
from gateway.ports import DictionaryVersion
from gateway.rules.actions import describe as describe_actions

_STATES = ("draft", "approved", "published", "superseded", "rejected")
_KINDS = ("order", "refund", "document", gov.RULESET_KIND)


class DraftRequest(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    note: str | None = None


class NoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    note: str | None = None


class ConfirmRequest(msgspec.Struct, forbid_unknown_fields=True):
    target: Literal["channel_fee", "platform_fee", "service_fee", "ignore"] | None = None


def _decode(raw: bytes, kind: type[Any], example: str) -> Any:
    try:
        return msgspec.json.decode(raw, type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        en, zh = f"the request is invalid: {exc}; send {example}", f"请求无效：{exc}；请发送 {example}"
        raise PayloadInvalid(en, zh) from None


async def _note(request: Request) -> str | None:
    raw = await request.body()
    return _decode(raw, NoteRequest, '{"note": "why"}').note if raw.strip() else None


async def _draft(request: Request) -> DraftRequest:
    """The body of a new draft: ``{"text", "note"}`` as JSON, or the TOML text itself."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        return _decode(raw, DraftRequest, '{"text": "<the TOML text>", "note": "why"}')
    try:
        return DraftRequest(text=raw.decode("utf-8"), note=request.headers.get("x-note"))
    except UnicodeDecodeError:
        raise PayloadInvalid("the dictionary is not UTF-8 text", "字典不是 UTF-8 文本") from None


def _summary(v: DictionaryVersion) -> dict[str, Any]:
    return {"id": v.id, "version": v.mapping_version, "state": v.state}


class MappingsController(Controller):
    path = "/v1/mappings"
    tags = ["dictionaries"]
    guards = [requires("it")]

    @get("/dictionaries")
    async def dictionaries(self, request: Request) -> dict[str, Any]:
        """Every dictionary: its published version, the one this process uses, and pending ones."""
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            versions = await uow.dictionaries.list()
        in_use = {d.name: d.version for d in c.runtime.dictionaries()}
        in_use[c.runtime.ruleset.name] = c.runtime.ruleset.version
        by_name: dict[str, list[DictionaryVersion]] = {}
        for v in versions:
            by_name.setdefault(v.name, []).append(v)
        items = []
        for name, mine in sorted(by_name.items()):
            published = next((v for v in mine if v.state == "published"), None)
            items.append(
                {
                    "name": name,
                    "kind": mine[0].kind,
                    "platform": mine[0].platform,
                    "published": gov.describe(published) if published else None,
                    "in_use_here": in_use.get(name),
                    "pending": [_summary(v) for v in mine if v.state in ("draft", "approved")],
                }
            )
        generation = c.dictionaries.generation if c.dictionaries is not None else None
        return {"items": items, "generation_here": generation}

    @get("/versions")
    async def versions(
        self,
        request: Request,
        name: FromQuery[str | None] = None,
        # ``state`` is Litestar's reserved name for the app state: the query parameter is renamed.
        in_state: Annotated[str | None, QueryParameter(name="state")] = None,
        kind: FromQuery[str | None] = None,
    ) -> dict[str, Any]:
        """Versions, newest first, by ``name``, ``state`` and ``kind`` (``ruleset`` for the rule
        sets); without their texts."""
        state = in_state
        if state is not None and state not in _STATES:
            raise PayloadInvalid(f"state must be one of {', '.join(_STATES)}", f"state 须为 {'、'.join(_STATES)} 之一")
        if kind is not None and kind not in _KINDS:
            raise PayloadInvalid(f"kind must be one of {', '.join(_KINDS)}", f"kind 须为 {'、'.join(_KINDS)} 之一")
        c = request.app.state.container
        async with c.uow_factory(write=False) as uow:
            versions = await uow.dictionaries.list(name=name, state=state)
        return {"items": [gov.describe(v) for v in versions if kind is None or v.kind == kind]}

    @get("/versions/{version_id:int}")
    async def show(self, request: Request, version_id: FromPath[int]) -> dict[str, Any]:
        """One version with its TOML text and its dry run."""
        v = await gov.get_version(request.app.state.container.uow_factory, version_id)
        return gov.describe(v, text=True, dry_run=True)

    @post("/validate", status_code=200)
    async def validate(self, request: Request) -> dict[str, Any]:
        """Compile a dictionary or a rule set without storing it: 200 with what it is, or 422
        ``DICTIONARY_INVALID`` / ``RULESET_INVALID``."""
        c = request.app.state.container
        text = (await _draft(request)).text
        if gov.is_ruleset_text(text):
            r = gov.check_ruleset(text, runtime=c.runtime)
            return {
                "ok": True,
                "name": r.name,
                "kind": gov.RULESET_KIND,
                "platform": None,
                "version": r.declared,
                "mapping_version": f"{r.declared}+{r.digest[:12]}",
                "rules_version": r.version,
                "digest": r.digest,
                "rules": sorted(r.rules),
            }
        d = gov.check_text(text, base=c.config.mappings_path())
        return {
            "ok": True,
            "name": d.name,
            "kind": d.spec.dictionary.kind,
            "platform": d.spec.dictionary.platform,
            "version": d.spec.dictionary.version,
            "mapping_version": d.version,
            "digest": d.digest,
        }

    @post("/versions", status_code=201)
    async def create_draft(self, request: Request) -> dict[str, Any]:
        """A new draft from a TOML text (the body, or ``{"text", "note"}``); compiled at once."""
        c = request.app.state.container
        body = await _draft(request)
        v = await gov.propose(
            c.uow_factory,
            body.text,
            actor=caller_of(request).actor,
            clock=c.clock,
            note=body.note,
            base=c.config.mappings_path(),
            runtime=c.runtime,
        )
        return gov.describe(v) | {"next": f"POST /v1/mappings/versions/{v.id}/dry-run"}

    @post("/versions/{version_id:int}/dry-run", status_code=200)
    async def dry_run(
        self,
        request: Request,
        version_id: FromPath[int],
        limit: Annotated[int, QueryParameter(ge=1, le=5000)] = DEFAULT_LIMIT,
    ) -> dict[str, Any]:
        """Run the draft and the published version over the newest ``limit`` recorded payloads and
        the samples; store and return the summary."""
        c = request.app.state.container
        v = await gov.dry_run(
            c.uow_factory,
            version_id,
            actor=caller_of(request).actor,
            runtime=c.runtime,
            clock=c.clock,
            samples=samples_folder(c.config),
            limit=limit,
        )
        return v.dry_run or {}

    @get("/versions/{version_id:int}/dry-run")
    async def dry_run_result(self, request: Request, version_id: FromPath[int]) -> dict[str, Any]:
        """The stored dry run of a version (404 ``NOT_FOUND`` before there is one)."""
        v = await gov.get_version(request.app.state.container.uow_factory, version_id)
        if v.dry_run is None:
            raise NotFound(
                f"version #{version_id} has no dry run yet",
                f"版本 #{version_id} 尚未试运行",
                hint=f"POST /v1/mappings/versions/{version_id}/dry-run",
            )
        return v.dry_run

    @post("/versions/{version_id:int}/approve", status_code=200)
    async def approve(self, request: Request, version_id: FromPath[int]) -> dict[str, Any]:
        """Approve a dry-run draft; the proposer may not (403 ``APPROVER_IS_PROPOSER``)."""
        c = request.app.state.container
        note = await _note(request)
        v = await gov.approve(c.uow_factory, version_id, actor=caller_of(request).actor, clock=c.clock, note=note)
        return gov.describe(v) | {"next": f"POST /v1/mappings/versions/{v.id}/publish"}

    @post("/versions/{version_id:int}/reject", status_code=200)
    async def reject(self, request: Request, version_id: FromPath[int]) -> dict[str, Any]:
        """Reject a draft or an approved version (body ``{"note": "why"}``)."""
        c = request.app.state.container
        note = await _note(request)
        v = await gov.reject(c.uow_factory, version_id, actor=caller_of(request).actor, clock=c.clock, note=note)
        return gov.describe(v)

    @post("/versions/{version_id:int}/publish", status_code=200)
    async def publish(self, request: Request, version_id: FromPath[int]) -> dict[str, Any]:
        """Publish an approved version; every process uses it within about a second."""
        return await self._switch(request, version_id, gov.publish)

    @post("/versions/{version_id:int}/rollback", status_code=200)
    async def rollback(self, request: Request, version_id: FromPath[int]) -> dict[str, Any]:
        """Publish again a version that was published before (one person may, in an emergency)."""
        return await self._switch(request, version_id, gov.rollback)

    async def _switch(self, request: Request, version_id: int, action: Any) -> dict[str, Any]:
        c = request.app.state.container
        note = await _note(request)
        done = await action(
            c.uow_factory, version_id, actor=caller_of(request).actor, runtime=c.runtime, clock=c.clock, note=note
        )
        if c.dictionaries is not None:
            await c.dictionaries.check()  # this process at once; the others within a second
        return gov.describe(done.version) | {
            "previous": _summary(done.previous) if done.previous else None,
            "generation": done.generation,
        }

    @get("/versions/{a:int}/diff/{b:int}")
    async def diff(self, request: Request, a: FromPath[int], b: FromPath[int]) -> dict[str, Any]:
        """Two versions: the unified diff of their texts and, for two versions of one dictionary,
        what ``b`` changes against ``a`` on the bundled samples."""
        c = request.app.state.container
        va, vb = await gov.get_version(c.uow_factory, a), await gov.get_version(c.uow_factory, b)
        body: dict[str, Any] = {"a": gov.describe(va), "b": gov.describe(vb), "text_diff": gov.text_diff(va, vb)}
        if va.name == vb.name and va.kind == gov.RULESET_KIND:
            try:
                ra, rb = gov.compiled_ruleset(va, c.runtime), gov.compiled_ruleset(vb, c.runtime)
            except ConfigError as exc:
                raise gov.RulesetInvalid(exc.message_en, exc.message_zh) from None
            corpus = ruleset_samples(c.runtime, samples_folder(c.config))
            body["samples"] = await asyncio.to_thread(compare_rulesets, rb, ra, corpus, c.runtime)
        elif va.name == vb.name:
            cache: dict[str, Any] = {}
            base = c.config.mappings_path()
            da, db = gov.compiled(va, cache, base=base), gov.compiled(vb, cache, base=base)
            corpus = sample_corpus(db, da, c.runtime, samples_folder(c.config))
            body["samples"] = await asyncio.to_thread(compare, db, da, corpus, c.runtime)
        return body

    # -- unknown fields: what the platforms send that no dictionary maps -----------------------

    @get("/unknown-fields")
    async def unknown_fields(
        self,
        request: Request,
        platform: Annotated[str | None, QueryParameter()] = None,
        field_state: Annotated[str | None, QueryParameter(name="state")] = None,
    ) -> dict[str, Any]:
        """Unknown source fields per platform: counts, first and last sighting, a masked sample and,
        for numbers, a suggested target (``suggestion``) from their relation to the paid amount."""
        c = request.app.state.container
        if c.unknown_fields is not None:
            await c.unknown_fields.flush()  # this process's latest sightings too
        return {"items": await field_review.list_fields(c.uow_factory, platform, field_state)}

    @post("/unknown-fields/{field_id:int}/confirm", status_code=201)
    async def confirm_unknown_field(self, request: Request, field_id: FromPath[int]) -> dict[str, Any]:
        """Map the field (body ``{"target": "channel_fee"}``, default the suggestion): drafts a
        dictionary version that still needs its dry run and a second person's approval."""
        c = request.app.state.container
        raw = await request.body()
        target = _decode(raw, ConfirmRequest, '{"target": "channel_fee"}').target if raw.strip() else None
        return await field_review.confirm(
            c.uow_factory,
            field_id,
            target=target,
            actor=caller_of(request).actor,
            clock=c.clock,
            base=c.config.mappings_path(),
        )

    @post("/unknown-fields/{field_id:int}/dismiss", status_code=200)
    async def dismiss_unknown_field(self, request: Request, field_id: FromPath[int]) -> dict[str, Any]:
        """Keep the field unmapped and stop suggesting it."""
        c = request.app.state.container
        return await field_review.dismiss(c.uow_factory, field_id, actor=caller_of(request).actor, clock=c.clock)


class RulesController(Controller):
    """The rule catalog in force: the published version of a rule set (default: the configured one,
    with the configuration's parameter overrides applied)."""

    path = "/v1/rules"
    tags = ["rules"]
    guards = [requires("it", "auditor")]

    @get("")
    async def catalog(self, request: Request, name: FromQuery[str | None] = None) -> dict[str, Any]:
        """Every rule of the published rule set: code, severity, params, messages, platforms,
        shops, enabled; with the version orders and intercepts record (``rules_version``)."""
        c = request.app.state.container
        name = name or c.runtime.ruleset.name
        async with c.uow_factory(write=False) as uow:
            published = next(
                (v for v in await uow.dictionaries.published() if v.name == name and v.kind == gov.RULESET_KIND), None
            )
        if published is None:
            raise NotFound(
                f"no rule set named {name!r} is published",
                f"没有已发布的规则集 {name!r}",
                hint="List the rule sets with GET /v1/mappings/versions?kind=ruleset",
            )
        try:
            r = gov.compiled_ruleset(published, c.runtime)
        except ConfigError as exc:
            raise gov.RulesetInvalid(exc.message_en, exc.message_zh) from None
        configured = name == c.runtime.ruleset.name
        return {
            "ruleset": r.name,
            "rules_version": r.version,
            "configured": configured,
            "in_use_here": c.runtime.ruleset.version if configured else None,
            "config_overrides": gov.overrides_for(c.runtime, name) or {},
            "published": gov.describe(published),
            "rules": r.catalog(),
            "actions": describe_actions(r.actions),
        }
