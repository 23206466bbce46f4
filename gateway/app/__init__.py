"""The HTTP API and console (Litestar). ``create_app(container)`` is the app factory."""

from gateway.app.factory import create_app

__all__ = ["create_app"]
