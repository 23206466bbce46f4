"""U8 EAI reply classification for answers the sandbox never gives (502/503/404, empty 200s,
DOCTYPE replies, transport errors), on httpx's mock transport: a unit test of the adapter."""

from __future__ import annotations

import httpx
import pytest

from adapters.u8 import U8EaiAdapter
from gateway.errors import PermanentError, RetryableError, UnknownOutcomeError
from tests.unit.test_u8_eai_xml import make_doc


def mock_adapter(handler) -> U8EaiAdapter:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return U8EaiAdapter(url="http://u8.invalid/U8EAI/import.asp", sender="101", client=client)


def answer(status: int, body: bytes = b""):
    return lambda request: httpx.Response(status, content=body)


def fail(exc: type[httpx.TransportError]):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    return handler


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (answer(502), RetryableError),
        (answer(503), RetryableError),
        (answer(404, b"<html/>"), RetryableError),
        (fail(httpx.ConnectTimeout), RetryableError),
        (fail(httpx.PoolTimeout), RetryableError),
        (answer(504), UnknownOutcomeError),
        (answer(200), UnknownOutcomeError),
        (answer(200, b"<html><body>IIS</body></html>"), UnknownOutcomeError),
        (answer(200, b'<!DOCTYPE x [<!ENTITY e "e">]><ufinterface roottag="return"/>'), UnknownOutcomeError),
        (fail(httpx.WriteTimeout), UnknownOutcomeError),
        (fail(httpx.ReadError), UnknownOutcomeError),
        (fail(httpx.RemoteProtocolError), UnknownOutcomeError),
        (
            answer(
                200, b'<ufinterface roottag="return"><item key="" succeed="0" dsc="" u8key=""/></ufinterface>'
            ),
            PermanentError,
        ),
    ],
)
async def test_classification(handler, expected):
    u8 = mock_adapter(handler)
    with pytest.raises(expected):
        await u8.submit(make_doc())
    await u8.aclose()


async def test_nothing_written_reply_points_at_the_dictionary():
    body = b'<ufinterface roottag="return"><item key="" succeed="0" dsc="" u8key=""/></ufinterface>'
    with pytest.raises(PermanentError) as info:
        await mock_adapter(answer(200, body)).submit(make_doc())
    assert "outbound dictionary" in info.value.hint


async def test_duplicate_not_found_by_query_is_permanent():
    def handler(request: httpx.Request) -> httpx.Response:
        if b'proc="query"' in request.content:
            return httpx.Response(200, content=b'<ufinterface roottag="saleorder" proc="query"/>')
        dsc = "销售订单号[GW00000042]已经存在，不可重复！"
        return httpx.Response(
            200,
            content=f'<ufinterface roottag="return"><item succeed="101" dsc="{dsc}"/></ufinterface>'.encode(),
        )

    with pytest.raises(PermanentError) as info:
        await mock_adapter(handler).submit(make_doc())
    assert "已经存在" in info.value.partner_message


async def test_unrenderable_document_is_permanent_and_sends_nothing():
    sent: list[httpx.Request] = []
    doc = make_doc()
    doc.entries[0]["cInvCode"] = "030101"
    with pytest.raises(PermanentError, match="cInvCode"):
        await mock_adapter(lambda request: sent.append(request) or httpx.Response(200)).submit(doc)
    assert sent == []
