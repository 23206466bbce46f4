"""The HTTP side of the K3 SOAP adapter (``adapters.k3.soap``): zeep's parser settings and a zeep
transport on the gateway's shared httpx client that screens every reply before zeep reads it.

Replies come from a partner's service and are untrusted: zeep parses them with DTDs, entity
declarations and external references forbidden (``zeep_settings``), and ``adapters.xmlsafe``
refuses the same things first, so a hostile reply (an XML external entity naming
``file:///etc/passwd``, an entity-expansion bomb) is never expanded nor fetched.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from lxml import etree
from zeep import Settings
from zeep import exceptions as zeep_errors
from zeep.transports import AsyncTransport

from adapters.xmlsafe import UnsafeXmlError
from adapters.xmlsafe import parse as safe_parse

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def zeep_settings() -> Settings:
    """zeep's parser options for untrusted replies: strict XML, no DTD, no entities, no fetching
    of anything the document references, no huge trees."""
    return Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=False)


class BadReply(Exception):
    """The HTTP reply cannot be a SOAP answer to trust: a status without SOAP, garbage, or
    hostile XML. Raised inside zeep's call and sorted by the adapter."""

    def __init__(self, reason: str, *, http_status: int, unsafe: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status
        self.unsafe = unsafe


class SharedClientTransport(AsyncTransport):
    """zeep's ``AsyncTransport`` on the gateway's shared httpx client, without its side effects.

    zeep's constructor replaces the given client's headers, opens a second (sync) client for WSDL
    downloads and logs request and reply bodies at DEBUG. This one leaves the shared client as it
    is, loads only local files (the WSDL is read from disk, never fetched), logs nothing, and
    screens each reply before zeep parses it: a status other than 200, or 500 carrying XML (WCF's
    faults), is a ``BadReply``; so is a body ``adapters.xmlsafe`` refuses.
    """

    def __init__(self, client: httpx.AsyncClient, timeout: httpx.Timeout) -> None:
        # AsyncTransport.__init__ is skipped on purpose (see the class docstring).
        self._close_session = False  # read by zeep's Transport.__del__
        self.client = client
        self.cache = None
        self.wsdl_client = None
        self.logger = logging.getLogger(__name__)
        self._timeout = timeout

    def load(self, url: str) -> bytes:
        if urlparse(url).scheme in ("http", "https", "file", "ftp"):
            raise zeep_errors.ExternalReferenceForbidden(url)
        return Path(url).expanduser().read_bytes()

    async def post(self, address: str, message: bytes, headers: dict[str, str]) -> httpx.Response:
        response = await self.client.post(address, content=message, headers=headers, timeout=self._timeout)
        screen(response)
        return response

    async def get(self, address: str, params: Any, headers: Any) -> Any:
        raise zeep_errors.ExternalReferenceForbidden(address)

    async def aclose(self) -> None:
        """The shared client belongs to the process, not to this transport."""


def screen(response: httpx.Response) -> None:
    status = response.status_code
    media = response.headers.get("content-type", "").split(";")[0].strip().lower()
    is_xml = media in ("text/xml", "application/xml", "application/soap+xml")
    if status != 200 and not (status == 500 and is_xml and response.content):
        raise BadReply(f"HTTP {status} without a SOAP envelope", http_status=status)
    try:
        safe_parse(response.content)
    except UnsafeXmlError:
        reason = "the reply declares a DTD or entities; refused unread"
        raise BadReply(reason, http_status=status, unsafe=True) from None
    except etree.XMLSyntaxError:
        # libxml2 stops an entity-expansion bomb as a syntax error before xmlsafe sees the DTD.
        if _DECLARATION.search(response.content):
            reason = "the reply declares a DTD or entities; refused unread"
            raise BadReply(reason, http_status=status, unsafe=True) from None
        raise BadReply("the reply is not XML", http_status=status) from None
