"""Hostile U8 EAI replies over loopback: external entities (a local file, an http:// URL), external
DTDs and entity-expansion bombs are refused as "outcome unknown", with nothing read from disk or
the network (adapters/xmlsafe.py). A second loopback server stands where the http:// entities
point and records every hit; a file with a marker stands in for a secret next to /etc/passwd."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.u8 import U8EaiAdapter
from adapters.u8.eai_xml import ReplyShapeError
from gateway.errors import UnknownOutcomeError
from tests.integration.test_u8_eai_adapter import scripted, scripted_server  # noqa: F401 - fixtures
from tests.support.servers import serve_asgi
from tests.unit.test_u8_eai_xml import make_doc

pytestmark = pytest.mark.integration

MARKER = "SECRET-MARKER-7f3a9c"
PASSWD_FIRST_LINE = Path("/etc/passwd").read_text(encoding="utf-8", errors="replace").split("\n", 1)[0] or "root:x:0:0"
LEAK = "LEAKED-FROM-NETWORK"


class Recorder:
    """Counts requests; answers with text that must never show up anywhere."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.url = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.hits.append(scope["path"])
        body = f'<!ENTITY leak "{LEAK}">'.encode() if scope["path"].endswith(".dtd") else LEAK.encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def recorder_server() -> Iterator[Recorder]:
    app = Recorder()
    with serve_asgi(app) as url:
        app.url = url
        yield app


@pytest.fixture
def recorder(recorder_server: Recorder) -> Recorder:
    recorder_server.hits.clear()
    return recorder_server


@pytest.fixture
def secret_file(tmp_path) -> str:
    path = tmp_path / "secret.txt"
    path.write_text(MARKER)
    return path.as_uri()


def hostile(attack: str, doc: str, recorder: Recorder, secret_uri: str) -> bytes:
    """``doc`` (a reply in one of the shapes the adapter reads) carrying one attack; ``&e;`` in
    ``doc`` marks where the entity is used."""
    net = f"{recorder.url}/entity.txt"
    laughs = '<!ENTITY l0 "lol">' + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    subsets = {
        "file-passwd": '<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        "file-secret": f'<!DOCTYPE r [<!ENTITY e SYSTEM "{secret_uri}">]>',
        "http-entity": f'<!DOCTYPE r [<!ENTITY e SYSTEM "{net}">]>',
        "http-dtd": f'<!DOCTYPE r SYSTEM "{recorder.url}/evil.dtd">',
        "parameter-entity": f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{recorder.url}/evil.dtd"> %p;]>',
        "billion-laughs": f"<!DOCTYPE r [{laughs}]>",
        "quadratic-blowup": '<!DOCTYPE r [<!ENTITY a "' + "x" * 50_000 + '">]>',
    }
    use = {"billion-laughs": "&l9;", "quadratic-blowup": "&a;" * 2000, "http-dtd": "&leak;"}
    body = subsets[attack] + doc.replace("&e;", use.get(attack, "&e;"))
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body.encode()


DOCS = {
    "submit": '<ufinterface roottag="return"><item key="&e;" succeed="0" dsc="&e;" u8key="&e;"/></ufinterface>',
    "lookup": '<ufinterface roottag="saleorder" proc="query"><saleorder><header><code>GW00000042</code>'
    "<memo>&e;</memo></header></saleorder></ufinterface>",
    "shipments": '<ufinterface roottag="consignment" proc="query"><consignment><header><code>0000000001</code>'
    "<cebexpresscode>&e;</cebexpresscode></header><body><entry><cordercode>GW00000042</cordercode>"
    "<inventory_code>030101</inventory_code><quantity>1</quantity></entry></body></consignment></ufinterface>",
}
CALLS: dict[str, Callable[[U8EaiAdapter], Awaitable[Any]]] = {
    "submit": lambda u8: u8.submit(make_doc()),
    "lookup": lambda u8: u8.lookup(make_doc()),
    "shipments": lambda u8: u8.shipments(["GW00000042"], since=datetime(2020, 1, 1, tzinfo=UTC)),
}
ATTACKS = ["file-passwd", "file-secret", "http-entity", "http-dtd", "parameter-entity", "billion-laughs"]
ATTACKS.append("quadratic-blowup")


def _everything_said(exc: BaseException) -> str:
    """The error's messages, details and causes, as text, to search for leaked content."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(getattr(seen, "__dict__", {}))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("operation", list(CALLS))
@pytest.mark.parametrize("attack", ATTACKS)
async def test_hostile_reply_is_unknown_and_reads_nothing(scripted, recorder, secret_file, operation, attack):  # noqa: F811
    scripted.replies.append((200, hostile(attack, DOCS[operation], recorder, secret_file)))
    u8 = scripted.adapter()
    started = time.monotonic()
    try:
        with pytest.raises(UnknownOutcomeError) as info:
            await CALLS[operation](u8)
    finally:
        await u8.aclose()
    assert time.monotonic() - started < 5  # refused up front, not expanded
    assert isinstance(info.value.__cause__, ReplyShapeError)
    said = _everything_said(info.value)
    assert "root:" not in said and MARKER not in said and LEAK not in said
    assert PASSWD_FIRST_LINE not in said
    assert recorder.hits == []


async def test_the_recorder_does_record_a_fetch(recorder):
    """Negative control: the recorder sees a request when something really fetches its URL."""
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{recorder.url}/entity.txt")).text == LEAK
    assert recorder.hits == ["/entity.txt"]
