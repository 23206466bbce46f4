"""``docker-compose.yml`` cannot be brought up here (no Docker), so its shape is checked instead:
PostgreSQL, Redis, a one-shot migration, two API replicas, two arq workers and the sandbox; every
gateway process on PostgreSQL and Redis; and every command it runs is one the CLI accepts."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from gateway.cli import app

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]


def _gateway_services() -> dict[str, dict]:
    return {n: s for n, s in SERVICES.items() if (s.get("command") or [""])[0] == "gateway"}


def test_the_distributed_layout_is_complete() -> None:
    commands = {n: s["command"][1] for n, s in _gateway_services().items()}
    assert sorted(n for n, c in commands.items() if c == "serve") == ["gateway-1", "gateway-2"]
    assert sorted(n for n, c in commands.items() if c == "worker") == ["worker-1", "worker-2"]
    assert commands["migrate"] == "db" and commands["sandbox"] == "sandbox"
    assert {"postgres", "redis"} <= SERVICES.keys()


def test_every_gateway_process_uses_postgresql_and_redis_and_waits_for_the_migration() -> None:
    for name, service in _gateway_services().items():
        if name == "sandbox":
            continue
        env = service["environment"]
        assert env["GATEWAY_DATABASE_URL"].startswith("postgresql+asyncpg://"), name
        assert env["GATEWAY_REDIS_URL"].startswith("redis://"), name
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_workers_serve_metrics_and_have_their_own_health_check() -> None:
    for name in ("worker-1", "worker-2"):
        service = SERVICES[name]
        assert service["environment"]["GATEWAY_WORKER_METRICS_PORT"] == "9100"
        assert service["healthcheck"]["test"] == ["CMD", "gateway", "worker", "--check"]


def test_every_command_in_the_file_is_accepted_by_the_cli() -> None:
    runs = [s["command"][1:] for s in _gateway_services().values()]
    runs += [
        s["healthcheck"]["test"][2:]
        for s in SERVICES.values()
        if s.get("healthcheck", {}).get("test", [""])[1:2] == ["gateway"]
    ]
    assert ["worker", "--check"] in runs
    runner = CliRunner()
    for argv in runs:
        # --help after the arguments: click parses them all (an unknown command or option is a
        # usage error, exit 2) and then prints help instead of running the command.
        result = runner.invoke(app, [*argv, "--help"])
        assert result.exit_code == 0, (argv, result.output)
    assert runner.invoke(app, ["worker", "--no-such-option", "--help"]).exit_code == 2
