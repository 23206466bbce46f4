"""The direct-drive baseline of a drain: the sandbox driven with no gateway in front, at exactly
``concurrency`` calls in flight, so the gateway's figure can be read against what this machine's
sandbox really serves.

* ``u8_eai``: a minimal asyncio HTTP/1.1 client (``loadgen.RawConnection``) sends U8 EAI sale
  orders rendered beforehand by the gateway's own code: the ERP's cost alone, as before.
* the other transports: the documents go through the transport's own adapter (``make_adapter``
  with a real ``httpx.AsyncClient``), so the baseline **includes the adapter's client-side cost**:
  rendering, K3's login and session, zeep's envelopes for K3 SOAP, and for U8+ OpenAPI the token
  and one ``/system/tradeid`` call per document, its trade id stored (as the adapter requires) in
  a temporary SQLite database through the gateway's own ``SqlUnitOfWorkFactory``.

With faults, both follow the gateway's exactly-once protocol: after an HTTP 500 the outcome is
unknown, so look the code up and re-send only if it is absent (the adapter's ``lookup``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from drain_config import (
    Transport,
    capacity,
    capacity_view,
    documents,
    loadavg,
    sandbox_server,
    set_capacity,
    set_faults,
)
from loadgen import RawConnection
from machine import machine_busy_seconds

DIRECT_PREFIX = "DD"  # the baseline's document codes, apart from the gateway's


@dataclass
class DirectDocs:
    """The baseline's documents (``ErpDocument``) and, for U8 EAI, their XML and look-up query."""

    docs: list[Any]
    submits: list[bytes] = field(default_factory=list)
    queries: list[bytes] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.docs]


def _load(config_file: Path, sandbox_url: str) -> Any:
    from gateway.config import load_config

    return load_config(str(config_file), env={"GATEWAY_SANDBOX_URL": sandbox_url})


def direct_documents(transport: Transport, bodies: list[bytes], config_file: Path) -> DirectDocs:
    """The orders of ``bodies`` rendered by the gateway's own code (platform dictionary, the
    target's ERP dictionary and value tables), each with its own ``DD`` code."""
    from gateway.document import build_document
    from gateway.intake import translate
    from gateway.ports import OrderRecord
    from gateway.runtime import load_runtime

    cfg = _load(config_file, "http://127.0.0.1:9")
    name = transport.target
    target = msgspec.structs.replace(cfg.targets[name], code_prefix=DIRECT_PREFIX)
    runtime = load_runtime(msgspec.structs.replace(cfg, targets={**cfg.targets, name: target}))
    out = DirectDocs([])
    for n, body in enumerate(bodies, start=1):
        order, _ = translate(transport.platform, msgspec.json.decode(body), runtime, shop_header=None)
        record = OrderRecord(
            id=f"direct-{n}",
            seq=n,
            platform=transport.platform,
            shop_id=order.shop_id,
            platform_order_id=str(n),
            platform_version=None,
            state="accepted",
            canonical=msgspec.to_builtins(order),
            mapping_version="",
            rules_version="",
            payload_sha256="",
        )
        out.docs.append(build_document(record, name, target, runtime))
    if transport.name == "u8_eai":
        from adapters.u8.eai_xml import build_query, build_request

        assert target.sender
        out.submits = [build_request(d, sender=target.sender) for d in out.docs]
        out.queries = [build_query(d.code, sender=target.sender) for d in out.docs]
    return out


async def drive_raw(url: str, docs: DirectDocs, lanes: int, limit_s: float) -> dict[str, Any]:
    """U8 EAI: each document once, over exactly ``lanes`` keep-alive connections, each with one
    call in flight. After an HTTP 500 the outcome is unknown: query the code, then re-send if absent."""
    from adapters.u8.eai_xml import parse_query_reply, parse_reply

    calls = faults = done = 0
    it = iter(range(len(docs.docs)))
    codes = docs.codes
    deadline = time.monotonic() + limit_s

    async def lane(conn: RawConnection) -> None:
        nonlocal calls, faults, done
        for i in it:
            unknown = False
            while time.monotonic() < deadline:
                if unknown:
                    status, answer = await conn.send(docs.queries[i])
                    calls += 1
                    if status >= 500:
                        faults += 1
                        continue
                    if [o for o in parse_query_reply(answer) if str(o.get("code", "")).strip() == codes[i]]:
                        break
                status, answer = await conn.send(docs.submits[i])
                calls += 1
                if status >= 500:
                    faults += 1
                    unknown = True
                    continue
                items = parse_reply(answer)
                if status != 200 or len(items) != 1 or items[0].succeed != "0":
                    raise SystemExit(f"direct drive: U8 refused {codes[i]}: {status} {answer[:300]!r}")
                break
            else:
                return
            done += 1

    headers = {"Content-Type": "application/xml; charset=utf-8"}
    conns = [RawConnection(url, headers, 30.0) for _ in range(lanes)]
    started = time.perf_counter()
    try:
        await asyncio.gather(*(lane(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    elapsed = time.perf_counter() - started
    return {"documents": done, "calls": calls, "faults": faults, "seconds": elapsed, "per_s": done / elapsed}


async def drive_adapter(
    transport: Transport, target: Any, docs: DirectDocs, lanes: int, limit_s: float, db_url: str
) -> dict[str, Any]:
    """Any transport: each document through the adapter's ``submit`` with ``lanes`` in flight.
    ``UnknownOutcomeError`` → ``lookup``, re-submit only if absent; ``RetryableError`` → again
    (nothing was written); ``PermanentError`` stops the run (the sandbox refused a document)."""
    from adapters.db.engine import create_engine
    from adapters.db.uow import SqlUnitOfWorkFactory
    from adapters.erp import AdapterContext, make_adapter
    from gateway.errors import PermanentError, RetryableError, UnknownOutcomeError

    db = create_engine(db_url)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
    ctx = AdapterContext(name=transport.target, target=target, http=http, uow_factory=SqlUnitOfWorkFactory(db))
    adapter = make_adapter(ctx)
    errors: dict[str, int] = {}
    done = 0
    it = iter(docs.docs)
    deadline = time.monotonic() + limit_s

    async def lane() -> None:
        nonlocal done
        for doc in it:
            unknown = False
            while time.monotonic() < deadline:
                try:
                    if unknown and await adapter.lookup(doc) is not None:
                        break
                    await adapter.submit(doc)
                    break
                except UnknownOutcomeError:
                    errors["unknown"] = errors.get("unknown", 0) + 1
                    unknown = True
                except RetryableError:
                    errors["retryable"] = errors.get("retryable", 0) + 1
                except PermanentError as exc:
                    raise SystemExit(f"direct drive: {transport.name} refused {doc.code}: {exc}") from exc
            else:
                return
            done += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(lane() for _ in range(lanes)))
    finally:
        await adapter.aclose()
        await http.aclose()
        await db.dispose()
    elapsed = time.perf_counter() - started
    faults = sum(errors.values())
    return {"documents": done, "faults": faults, "errors": errors, "seconds": elapsed, "per_s": done / elapsed}


def run_direct(
    name: str,
    transport: Transport,
    docs: DirectDocs,
    fault_rate: float,
    tmp: Path,
    config_file: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One baseline on a fresh sandbox with the transport's system at the run's capacity (and
    faults): documents per second, ERP calls, and the CPU of this client and of the sandbox."""
    from adapters.db.migrate import upgrade

    try:
        from uvloop import run as run_loop
    except ImportError:
        run_loop = asyncio.run
    with sandbox_server(tmp / f"sandbox-{transport.name}-{name}.log") as sandbox:
        set_capacity(sandbox, transport.system, args)
        if fault_rate:
            set_faults(sandbox, transport.system, fault_rate)
        limit = max(60.0, 10 * len(docs.docs) / capacity(args))
        busy0, cpu0, sandbox0 = machine_busy_seconds(), time.process_time(), sandbox.server.cpu_seconds()
        if transport.name == "u8_eai":
            result = run_loop(drive_raw(sandbox.url + "/U8EAI/import.asp", docs, args.concurrency, limit))
            result["client"] = "raw HTTP/1.1, pre-rendered XML"
        else:
            db_url = f"sqlite+aiosqlite:///{tmp / f'direct-{transport.name}-{name}.db'}"
            (tmp / f"direct-{transport.name}-{name}.db").unlink(missing_ok=True)  # trade ids of this sandbox only
            upgrade(db_url)
            target = _load(config_file, sandbox.url).targets[transport.target]
            target = msgspec.structs.replace(target, code_prefix=DIRECT_PREFIX)
            result = run_loop(drive_adapter(transport, target, docs, args.concurrency, limit, db_url))
            extra = ", trade ids in SQLite" if transport.name == "u8_openapi" else ""
            result["client"] = f"the {transport.name} adapter over httpx{extra}"
        result["client_cpu_s"] = time.process_time() - cpu0
        result["machine_cpu_s"] = machine_busy_seconds() - busy0
        result["sandbox_cpu_s"] = sandbox.server.cpu_seconds() - sandbox0
        ours = result["client_cpu_s"] + result["sandbox_cpu_s"]
        result["others_share"] = max(0.0, result["machine_cpu_s"] - ours) / (result["seconds"] * (os.cpu_count() or 1))
        cap = capacity_view(sandbox, transport.system)
        result["calls"], result["served"], result["peak_open"] = cap["served"], cap["served"], cap["peak_open"]
        result["held"], result["distinct_codes"] = documents(sandbox, transport, DIRECT_PREFIX)
    result.update(name=name, transport=transport.name, fault_rate=fault_rate, load=loadavg())
    return result
