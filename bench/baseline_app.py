"""The baseline of ``bench/ingest.py``: a bare Litestar endpoint that decodes the order JSON with
msgspec and answers 202 — no auth, mapping, rules or storage. It runs under uvicorn exactly as
``gateway serve`` does (one process, same loop and HTTP implementation, warning log level, no
access log), so the ratio gateway/baseline is the cost of the gateway's own work.

    .venv/bin/python bench/baseline_app.py --port 8181
"""

from __future__ import annotations

import argparse

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, get, post

_decoder = msgspec.json.Decoder()
_ACCEPTED = msgspec.json.encode({"status": "accepted"})


@post("/v1/orders/{platform:str}", status_code=202)
async def submit(request: Request, platform: str) -> Response[bytes]:
    payload = _decoder.decode(await request.body())
    if not isinstance(payload, dict):
        return Response(b'{"code":"PAYLOAD_INVALID"}', status_code=400, media_type="application/json")
    return Response(_ACCEPTED, status_code=202, media_type="application/json")


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar(route_handlers=[submit, live], logging_config=None, debug=False)


def main() -> None:
    ap = argparse.ArgumentParser(description="bare msgspec-decode-and-202 endpoint for bench/ingest.py")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8181)
    args = ap.parse_args()
    # The same uvicorn call as `gateway serve` (gateway/cli.py).
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
