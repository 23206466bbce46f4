"""Every process on the published dictionaries and rule set: ``gateway serve`` replicas and
``gateway worker``s.

A publish or rollback moves the publication generation (one row, ``dictionary_publication``) in
its own transaction. Each process reads that one number every ``interval_s`` (a second by
default) in the background; when it moved, it reads the published versions, compiles the ones it
has not compiled before (off the event loop), builds a new ``Runtime`` and swaps it in whole. So
every process uses a newly published version within about ``interval_s`` plus a compile (tens of
milliseconds per dictionary) of its commit; the process that published switches at once. A
request or a delivery already running finishes with the Runtime it started with, and each order
records the versions that mapped and judged it. The rule set in the Runtime is the published
version of the configured one (``[rules] ruleset``), with the configuration's parameter overrides.

If the published set does not build here (a process of an older release that cannot compile a
newer text), the process logs it once per generation and keeps its Runtime; it tries again at the
next generation or restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from gateway.errors import ConfigError
from gateway.governance import RULESET_KIND, compiled, compiled_ruleset, load_published
from gateway.logging import get_logger
from gateway.mapping.dictionary import CompiledDictionary
from gateway.ports import DictionaryVersion, UnitOfWorkFactory
from gateway.rules.catalog import Ruleset
from gateway.runtime import Runtime, build_runtime

log = get_logger("gateway.publication")

POLL_INTERVAL_S = 1.0
"""How often each process reads the publication generation."""


class DictionaryWatcher:
    """Keeps one process's Runtime on the published dictionaries; ``on_change`` gets each new one."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        runtime: Runtime,
        *,
        on_change: Callable[[Runtime], None] | None = None,
        interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.uow_factory = uow_factory
        self.runtime = runtime  # the value tables come from here; the dictionaries and the rule set are replaced
        self.ruleset_name = runtime.ruleset.name  # the configured rule set's ``[ruleset] name``
        self.on_change = on_change
        self.interval_s = interval_s
        self.generation = -1  # loaded; -1: nothing loaded from the database yet
        self._failed_generation: int | None = None
        self._cache: dict[str, CompiledDictionary] = {d.digest: d for d in runtime.dictionaries()}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def remember(self, dictionaries: list[CompiledDictionary]) -> None:
        """Compiled dictionaries to reuse by digest (the bundled files, compiled at start)."""
        self._cache.update({d.digest: d for d in dictionaries})

    async def load(self) -> Runtime:
        """Load the published versions now, whatever the generation; return the new Runtime.

        Raises:
            ConfigError: the published versions do not make a Runtime here.
        """
        async with self._lock:
            return await self._load()

    async def _load(self) -> Runtime:
        generation, published = await load_published(self.uow_factory)
        versions = [v for v in published if v.kind != RULESET_KIND]
        base = self.runtime.config.mappings_path()  # where the value tables dictionaries declare are
        missing = [v for v in versions if v.digest not in self._cache]
        if missing:
            # Compiling is CPU work of some milliseconds per dictionary: off the event loop.
            await asyncio.to_thread(lambda: [compiled(v, self._cache, base=base) for v in missing])
        mine = (v for v in published if v.kind == RULESET_KIND and v.name == self.ruleset_name)
        ruleset = self._ruleset(next(mine, None))
        runtime = build_runtime(
            self.runtime.config,
            [compiled(v, self._cache, base=base) for v in versions],
            ruleset=ruleset,
            tables=self.runtime.tables,
        )
        previous, self.runtime, self.generation = self.generation, runtime, generation
        if previous != -1:
            log.info(
                "published dictionaries switched",
                generation=generation,
                versions={v.name: v.mapping_version for v in versions},
                rules_version=ruleset.version,
            )
        if self.on_change is not None:
            self.on_change(runtime)
        return runtime

    def _ruleset(self, version: DictionaryVersion | None) -> Ruleset:
        """The configured rule set as published (the one in use when nothing is published of it)."""
        if version is None:
            return self.runtime.ruleset
        if version.digest == self.runtime.ruleset.digest:
            return self.runtime.ruleset  # compiled with the same text and the same configuration
        return compiled_ruleset(version, self.runtime)

    async def check(self) -> bool:
        """Read the generation; when it moved, load and switch. True when this call switched."""
        async with self.uow_factory(write=False) as uow:
            generation = await uow.dictionaries.generation()
        if generation in (self.generation, self._failed_generation):
            return False
        async with self._lock:
            if generation == self.generation:  # another caller switched meanwhile
                return False
            try:
                await self._load()
            except ConfigError as exc:
                if self._failed_generation != generation:
                    self._failed_generation = generation
                    log.error(
                        "the published dictionaries do not build in this process; keeping the previous ones",
                        generation=generation,
                        error=exc.message_en,
                    )
                return False
        return True

    # ------------------------------------------------------------------ the background loop

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dictionary-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # the database may be briefly away: the next tick tries again
                log.exception("reading the dictionary publication failed")
