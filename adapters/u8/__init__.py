"""Yonyou U8 EAI (XML over HTTP) adapter, following erp-protocols.md §1 and §5.

``eai_xml`` and ``amounts`` are pure translation; ``eai`` holds the only I/O.
"""

from adapters.u8.eai import U8EaiAdapter

__all__ = ["U8EaiAdapter"]
