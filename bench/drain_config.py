"""What a drain run needs to know about a transport, the configuration it writes for the gateway,
the orders it sends, and the sandbox's controls (capacity, faults): shared by ``drain.py``,
``drain_direct.py`` and ``drain_phase.py``.

The transports and their targets are those of the bundled demo configuration
(``gateway/demo_config.toml``): each sample shop is routed to one target, each target speaks one
transport to one simulated system of the sandbox.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
from ingest import build_bodies
from rich.console import Console
from servers import Server, free_port

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent
DEMO_CONFIG = REPO / "gateway" / "demo_config.toml"
SAMPLES = REPO / "mappings" / "samples"

TARGET_CLEAN = 0.95  # share of capacity without faults
TARGET_FAULTS = 0.85  # share of capacity with faults
INGEST_CONNECTIONS = 32
FAULT_SEED = 20261123
RETRY_DELAY_S = 0.2  # first retry and look-up delay after an HTTP 500
CIRCUIT_THRESHOLD = 10  # consecutive failures that open the target's circuit
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@dataclass(frozen=True)
class Transport:
    """One transport as the demo configuration routes it.

    Attributes:
        name: the transport (``adapters.erp.TRANSPORTS``).
        target: the demo target that speaks it.
        system: the sandbox's simulated system behind it (``/_sandbox/{system}/...``).
        platform: the platform whose sample shop is routed to that target; its orders feed the run.
        code_field: the field of ``/_sandbox/{system}/documents`` that holds the document code.
        id_base: the fixed start of the order ids given to the platform's sample (Taobao's are
            built by ``bench/ingest.py``); a zero-padded number fills the rest of the sample id's
            length.
    """

    name: str
    target: str
    system: str
    platform: str
    code_field: str
    id_base: str


TRANSPORTS: dict[str, Transport] = {
    t.name: t
    for t in (
        Transport("u8_eai", "u8-demo", "u8", "taobao", "code", ""),
        Transport("u8_openapi", "u8-cloud-demo", "u8openapi", "pinduoduo", "code", "240619-9"),
        Transport("k3_webapi", "k3-demo", "k3", "douyin", "FBillNo", "69218"),
        Transport("k3_soap", "k3soap-demo", "k3soap", "jd", "BillNO", "29"),
    )
}
SAMPLE = "02_multi_line_coupons.json"  # the multi-line sample with coupons, as bench/ingest.py sends for Taobao


def code_prefix(transport: Transport) -> str:
    """The target's ``code_prefix`` in the demo configuration: the gateway's documents among the
    sandbox's seeded ones."""
    demo = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    return str(demo["targets"][transport.target]["code_prefix"])


# --------------------------------------------------------------------------- orders


def _order_id_path(platform: str) -> list[str | int]:
    return {
        "pinduoduo": ["order_info_get_response", "order_info", "order_sn"],
        "douyin": ["data", "shop_order_detail", "order_id"],
        "jd": ["jingdong_pop_order_get_responce", "orderDetailInfo", "orderInfo", "orderId"],
        "wechat_channels": ["order", "order_id"],
    }[platform]


def build_orders(transport: Transport, count: int, *, first: int) -> list[bytes]:
    """``count`` copies of the platform's sample 02, each its own order: Taobao exactly as
    ``bench/ingest.py`` builds them (today's figures stay comparable); the others with the order id
    replaced by one of the same length, and every line id the platform derives from it by adding
    to it (Douyin's sub-orders: ``order_id + k``) moved along, so lines stay unique too."""
    if transport.platform == "taobao":
        return build_bodies(count, first=first)
    # One line per body (the load generator reads JSON lines): the sample re-encoded compact.
    payload = msgspec.json.decode((SAMPLES / transport.platform / SAMPLE).read_bytes())
    text = msgspec.json.encode(payload).decode()
    node = payload
    for key in _order_id_path(transport.platform):
        node = node[key]
    orig = str(node)
    width = len(orig) - len(transport.id_base)
    numeric = orig.isdigit()
    # The quoted ids: the order's own and (numeric ones) the line ids orig + 1 .. orig + 9.
    related = {k: f'"{int(orig) + k}"' for k in range(10)} if numeric else {0: f'"{orig}"'}
    present = {k: q for k, q in related.items() if q in text}
    pattern = re.compile("|".join(re.escape(q) for q in present.values()))
    offset = {q: k for k, q in present.items()}
    out = []
    for n in range(first, first + count):
        base = n * 10
        if base + 9 >= 10**width:
            raise SystemExit(f"{transport.platform}: order number {n} does not fit the sample's id width")
        out.append(
            pattern.sub(lambda m, b=base: f'"{transport.id_base}{b + offset[m.group(0)]:0{width}d}"', text).encode()
        )
    return out


# --------------------------------------------------------------------------- configuration


def _section(text: str, header: str) -> tuple[int, int]:
    """Start and end (next table header) of ``[header]`` in a TOML text; (-1, -1) when absent."""
    m = re.search(rf"^\[{re.escape(header)}\]\s*$", text, flags=re.M)
    if m is None:
        return -1, -1
    nxt = re.search(r"^\[", text[m.end() :], flags=re.M)
    return m.start(), m.end() + nxt.start() if nxt else len(text)


def bench_config(args: argparse.Namespace, transport: Transport, mode: str) -> str:
    """The gateway configuration of the run: the bundled demo one, with the transport's target
    given the limits, retry policy and circuit of an ERP of ``args.concurrency`` slots and random
    HTTP 500s (the other targets stay as bundled: they receive nothing)."""
    target = transport.target
    demo = DEMO_CONFIG.read_text(encoding="utf-8")
    start, end = _section(demo, f"targets.{target}.retry")
    if start >= 0:
        demo = demo[:start] + demo[end:]
    if getattr(args, "no_readback", False):
        # What-if: the target's shipment read-back off, so only deliveries call the ERP.
        start, end = _section(demo, f"targets.{target}.readback")
        if start >= 0:
            block = re.sub(r"^enabled = true$", "enabled = false", demo[start:end], flags=re.M)
            demo = demo[:start] + block + demo[end:]
    start, end = _section(demo, f"targets.{target}")
    head = re.sub(r"^concurrency = \d+$", f"concurrency = {args.concurrency}", demo[start:end], flags=re.M)
    demo = demo[:start] + head + demo[end:]
    stop_line = (
        f"""# The run stops and resumes the line by hand (POST /v1/targets/{target}/stop, /resume); the backlog
# never stops it by itself. The arq workers read the line's state every check_interval_s: how soon
# they see the resume. (The embedded worker shares a process with the API: it sees it at once.)
[targets.{target}.stop_line]
max_backlog = 1000000000
check_interval_s = 0.5

"""
        if mode == "arq"
        else ""
    )
    overrides = f"""# The gateway never has more calls open at the ERP than the ERP serves at once: with the
# same number as the sandbox's concurrency, no call ever waits in the ERP's own queue.
[targets.{target}.limits]
concurrency = {args.concurrency}
permit_ttl_s = 30

# The ERP answers HTTP 500 when it fails mid-request, so a 500 is an unknown outcome: the next
# attempt first looks the code up, then re-sends. Its delay is unknown_outcome_delay_s (the look-up
# does not wait for backoff); other retryable failures start at first_delay_s. Both are short: with
# 10% random 500s the ERP is up, and a slot left idle is capacity lost. 12 attempts: an attempt
# after a 500 is a look-up and a send, failing 19% of the time, so a dead letter from random 10%
# faults takes 0.1 x 0.19^11, about 1e-9 per document.
[targets.{target}.retry]
first_delay_s = {RETRY_DELAY_S}
factor = 2.0
cap_s = 10.0
max_attempts = 12
unknown_outcome_delay_s = {RETRY_DELAY_S}

{stop_line}# The circuit opens after this many consecutive failures. With independent 10% faults a run of
# k failures among N calls has a chance of about N * 0.9 * 0.1^k: for ~25,000 calls that is 2e-1
# for k = 5 (the default would trip now and then), 2e-4 for 8, 2e-6 for 10. A real outage
# still opens it after 10 failures, which at 200 calls/s is 50 ms.
[targets.{target}.circuit]
failure_threshold = {CIRCUIT_THRESHOLD}
open_seconds = 5.0

"""
    start, _ = _section(demo, "rules")
    return demo[:start] + overrides + demo[start:]


# --------------------------------------------------------------------------- sandbox


@dataclass
class Sandbox:
    server: Server
    url: str


def gateway_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


@contextlib.contextmanager
def sandbox_server(log: Path) -> Iterator[Sandbox]:
    port = free_port()
    server = Server("sandbox", [str(BIN / "gateway"), "sandbox", "--port", str(port)], gateway_env(), log)
    try:
        server.wait_http(f"http://127.0.0.1:{port}/_sandbox/capacity")
        yield Sandbox(server, f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def capacity(args: argparse.Namespace) -> float:
    return args.concurrency / (args.service_ms / 1000)


def set_capacity(sandbox: Sandbox, system: str, args: argparse.Namespace) -> None:
    body = {"system": system, "concurrency": args.concurrency, "service_ms": args.service_ms}
    httpx.post(f"{sandbox.url}/_sandbox/capacity", json=body, timeout=30).raise_for_status()


def set_faults(sandbox: Sandbox, system: str, rate: float) -> None:
    body = {"system": system, "mode": "http500", "rate": rate, "seed": FAULT_SEED}
    httpx.post(f"{sandbox.url}/_sandbox/faults", json=body, timeout=30).raise_for_status()


def capacity_view(sandbox: Sandbox, system: str) -> dict[str, int]:
    return httpx.get(f"{sandbox.url}/_sandbox/capacity", timeout=30).json()[system]


def documents(sandbox: Sandbox, transport: Transport, prefix: str) -> tuple[int, int]:
    """How many documents whose code starts with ``prefix`` the system holds, and under how many
    distinct codes (casefolded: the ERPs compare codes without case)."""
    docs = httpx.get(f"{sandbox.url}/_sandbox/{transport.system}/documents", timeout=120).json()["documents"]
    codes = [str(d.get(transport.code_field) or "").strip() for d in docs]
    ours = [c for c in codes if c.startswith(prefix)]
    return len(ours), len({c.casefold() for c in ours})


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"
