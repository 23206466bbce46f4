"""XML parsing that trusts nobody: no entity resolution, no DTD loading, no network access.

Every XML reply from a partner, and every XML request the sandbox receives, goes through here,
so an external entity cannot read a file or reach the network and an entity-expansion bomb
cannot blow up memory.
"""

from __future__ import annotations

from lxml import etree


class UnsafeXmlError(ValueError):
    """The document declares a DTD or entities; it is refused, not parsed."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=True,
    )


def parse(data: bytes) -> etree._Element:
    """Parse ``data`` (bytes, honouring its encoding declaration) into an element.

    Raises:
        UnsafeXmlError: the document carries a DOCTYPE (the only way to declare entities).
        etree.XMLSyntaxError: it is not well-formed XML.
    """
    root = etree.fromstring(data, parser=_parser())  # noqa: S320 - parser above disables entities/network
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise UnsafeXmlError("XML with a DOCTYPE is refused")
    return root
