"""``gateway demo``: the sandbox, the gateway and a feed of sample orders in one process, so a
newcomer sees documents arrive in the simulated U8 and one order intercepted."""

from __future__ import annotations

import asyncio
import copy
import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvicorn

from gateway.mappings_cli import sample_files

DEMO_DB = Path("var/demo.db")


def _start_sandbox(port: int) -> uvicorn.Server:
    from adapters.sandbox.app import create_sandbox_app

    server = uvicorn.Server(
        uvicorn.Config(create_sandbox_app(), host="127.0.0.1", port=port, log_config=None, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit(f"the sandbox did not start on port {port}: is the port free? (try --sandbox-port)")
        time.sleep(0.05)
    return server


def rule_breaking_order(samples: Path) -> bytes:
    """A Taobao order with three stacked coupons: COUPON_STACK_LIMIT (2 by default) rejects it."""
    payload: dict[str, Any] = msgspec.json.decode((samples / "taobao" / "02_multi_line_coupons.json").read_bytes())
    trade = payload["trade_fullinfo_get_response"]["trade"]
    trade["tid"] = trade["tid"] + 7
    trade["tid_str"] = str(trade["tid"])
    promos = trade["promotion_details"]["promotion_detail"]
    coupon = promos[-1]
    # Split the shop coupon into three coupons that still add up: the amounts reconcile, the stacking does not.
    parts = [("3.00", "a"), ("3.00", "b"), ("4.00", "c")]
    promos[-1:] = [
        dict(copy.deepcopy(coupon), discount_fee=fee, promotion_id=f"shopbonus-demo-{tag}") for fee, tag in parts
    ]
    return msgspec.json.encode(payload)


def _feed_list(samples: Path, known: set[str]) -> list[tuple[str, str, bytes]]:
    feed = [
        (platform_dir.name, f.name, f.read_bytes())
        for platform_dir in sorted(p for p in samples.iterdir() if p.is_dir() and p.name in known)
        for f in sample_files(platform_dir)
    ]
    feed.append(("taobao", "rule-breaking order (3 coupons)", rule_breaking_order(samples)))
    return feed


async def _feed(base: str, keys: dict[str, str], samples: Path) -> None:
    headers = {"Authorization": f"Bearer {keys['platform']}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        status = (await client.get("/v1/status", headers={"Authorization": f"Bearer {keys['auditor']}"})).json()
        known = set(status.get("mapping_versions", {}))
        feed = _feed_list(samples, known)
        print("\nFeeding sample orders:")
        for platform, name, body in feed:
            r = await client.post(f"/v1/orders/{platform}", content=body, headers=headers)
            answer = r.json()
            what = answer.get("status") or answer.get("code")
            extra = ""
            if r.status_code == 422:
                extra = " — " + "; ".join(v["rule"] for v in answer.get("violations", []))
            elif r.status_code >= 400:
                extra = f" — {answer.get('message_en')}"
            print(f"  {platform:16} {name:38} → {r.status_code} {what}{extra}")
        await asyncio.sleep(3)
        status = (await client.get("/v1/status", headers={"Authorization": f"Bearer {keys['auditor']}"})).json()
        print(
            f"\nOrders by state: {status.get('orders')}; intercepts: {status.get('intercepts')}; "
            f"pending deliveries: {status.get('pending_deliveries')}"
        )


def run_demo(*, port: int, sandbox_port: int, samples: Path | None) -> None:
    from gateway.app import create_app
    from gateway.commands import ROLES, create_key
    from gateway.logging import configure_logging
    from gateway.settings import load_settings

    samples = samples or Path(str(resources.files("mappings"))) / "samples"
    os.environ.setdefault("GATEWAY_SANDBOX_URL", f"http://127.0.0.1:{sandbox_port}")
    if "GATEWAY_DATABASE_URL" not in os.environ:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
        os.environ["GATEWAY_DATABASE_URL"] = f"sqlite+aiosqlite:///./{DEMO_DB}"
    settings = load_settings()
    configure_logging("WARNING", json=False)
    sandbox = _start_sandbox(sandbox_port)
    keys = {role: asyncio.run(create_key(settings, role=role, label="demo")) for role in ROLES}
    base = f"http://127.0.0.1:{port}"
    print(
        f"Sandbox partner systems: http://127.0.0.1:{sandbox_port}/  (documents each ERP holds: "
        "/_sandbox/u8/documents, /_sandbox/u8openapi/documents, /_sandbox/k3/documents, /_sandbox/k3soap/documents)"
    )
    print(f"Console: {base}/   API: {base}/v1/…   OpenAPI: {base}/schema")
    print("API keys (shown once; only their hashes are stored):")
    for role, key in keys.items():
        print(f"  {role:9} {key}")

    async def main() -> None:
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                raise SystemExit(f"the gateway did not start on port {port}: is the port free? (try --port)")
            await asyncio.sleep(0.05)
        await _feed(base, keys, samples)
        print(f"\nRunning. Open {base}/ and sign in with a key above. Ctrl-C stops.")
        await serving

    try:
        asyncio.run(main())
    finally:
        sandbox.should_exit = True
