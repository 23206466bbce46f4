"""Simulated partner systems (ERPs, platforms, WeCom) for the demo, the tests and load runs.

CONTRACT §4; the protocols follow reference/erp-protocols.md and reference/platforms.md.
"""

from adapters.sandbox.app import SYSTEMS, create_sandbox_app, run_sandbox
from adapters.sandbox.state import SandboxState

__all__ = ["SYSTEMS", "SandboxState", "create_sandbox_app", "run_sandbox"]
