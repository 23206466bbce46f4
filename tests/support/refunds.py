"""The orders the refund samples belong to (``mappings/samples/<platform>/03_partial_refund.json``),
as their platform's order dictionary maps them."""

from __future__ import annotations

import msgspec

from gateway.mapping.dictionary import load_dictionary
from schemas.order import CanonicalOrder
from tests.support.gateway import REPO, SAMPLES


def sample_order(platform: str) -> CanonicalOrder:
    """The canonical order of ``<platform>/03_partial_refund.json``."""
    d = load_dictionary(REPO / "mappings" / "platforms" / f"{platform}.toml")
    return d.translate(msgspec.json.decode((SAMPLES / platform / "03_partial_refund.json").read_bytes()))
