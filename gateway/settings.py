"""Process settings, read once from the environment and passed down (``create_app(settings)``).

Secrets never live in files: the configuration TOML names environment variables with
``${NAME}`` / ``${NAME:-default}`` and they are resolved here, at load time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/gateway.db"


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    config_path: str | None = None  # None: the bundled demo configuration
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 4 * 1024 * 1024
    sqlite_synchronous: str = "FULL"
    log_level: str = "INFO"
    log_json: bool = True
    worker_concurrency: int = 8  # deliveries in flight per process, across targets
    lease_seconds: float = 60.0
    # The HMAC key of the cross-channel duplicate fingerprints (receiver phone + address + SKUs):
    # without it the stored hashes could be reversed by trying every phone number. Unset: a
    # built-in key, and a warning at start-up.
    fingerprint_key: str | None = None

    @property
    def fingerprint_key_bytes(self) -> bytes:
        from gateway.order_facts import DEV_FINGERPRINT_KEY

        return self.fingerprint_key.encode("utf-8") if self.fingerprint_key else DEV_FINGERPRINT_KEY

    @property
    def embedded_queue(self) -> bool:
        return not self.redis_url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _bool(v: str) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``GATEWAY_*`` environment variables; unset ones take defaults."""
    env = os.environ if env is None else env
    kw: dict[str, object] = {}
    mapping = {
        "GATEWAY_DATABASE_URL": ("database_url", str),
        "GATEWAY_REDIS_URL": ("redis_url", str),
        "GATEWAY_CONFIG": ("config_path", str),
        "GATEWAY_HOST": ("host", str),
        "GATEWAY_PORT": ("port", int),
        "GATEWAY_MAX_BODY_BYTES": ("max_body_bytes", int),
        "GATEWAY_SQLITE_SYNCHRONOUS": ("sqlite_synchronous", str),
        "GATEWAY_LOG_LEVEL": ("log_level", str),
        "GATEWAY_LOG_JSON": ("log_json", _bool),
        "GATEWAY_WORKER_CONCURRENCY": ("worker_concurrency", int),
        "GATEWAY_LEASE_SECONDS": ("lease_seconds", float),
        "GATEWAY_FINGERPRINT_KEY": ("fingerprint_key", str),
    }
    for var, (field, conv) in mapping.items():
        raw = env.get(var)
        if raw is not None and raw.strip() != "":
            try:
                kw[field] = conv(raw.strip())
            except ValueError:
                raise SystemExit(f"{var}={raw!r} is not a valid value; fix or unset it") from None
    settings = Settings(**kw)  # type: ignore[arg-type]
    if settings.is_sqlite:
        _ensure_sqlite_dir(settings.database_url)
    return settings


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1].split("?", 1)[0]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
