"""Yonyou U8 EAI (XML over HTTP) adapter, following erp-protocols.md §1, §4 and §5.

``eai_xml``, ``eai_consignment``, ``fields`` and ``amounts`` are pure translation and checks;
``eai`` holds the only I/O; ``eai_errors`` words what U8 says for operators.
"""

from adapters.u8.eai import U8EaiAdapter

__all__ = ["U8EaiAdapter"]
