"""The processes a benchmark starts: servers on free loopback ports, each with its log, stopped
gracefully; a throwaway PostgreSQL server with chosen settings; and py-spy attached to one of them."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.support: the throwaway PostgreSQL and Redis servers

from tests.support.postgres import PostgresServer, _os_user_prefix, find_bin_dir  # noqa: E402

PROFILE_RATE = 250  # py-spy samples per second

# The benchmark's PostgreSQL: durable (the server's defaults: fsync, synchronous_commit and
# full_page_writes on), unlike the test suite's throwaway server. ``--pg-setting`` overrides these.
PG_SETTINGS = {
    "shared_buffers": "256MB",
    "max_connections": "200",
    "max_wal_size": "4GB",  # no checkpoint forced by WAL volume during a run
    "checkpoint_timeout": "15min",
}
# Reported with every PostgreSQL run, whatever was set.
PG_REPORTED = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "commit_delay",
    "commit_siblings",
    "wal_sync_method",
    "wal_level",
    "wal_buffers",
    "wal_writer_delay",
    "shared_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "server_version",
)


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One subprocess we started, its log file, and how to wait for it and stop it."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(url, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{self.name} did not answer {url} within {timeout:.0f} s; see {self.log}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown: lifespan ends, worker stops
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def proc_cpu_seconds(pid: int, *, reaped: bool = True) -> float:
    """User + system CPU of one process; with ``reaped`` also that of its children it has waited
    for (Linux /proc; 0 when gone or elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if reaped else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU of ``root`` and every live descendant, plus what exited children had used."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += proc_cpu_seconds(pid)
        todo.extend(children.get(pid, ()))
    return total


class BenchPostgres(PostgresServer):
    """``tests.support.postgres.PostgresServer`` with the benchmark's settings (``PG_SETTINGS``)."""

    settings: dict[str, str]

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        self.port = free_port()
        argv = ["-D", str(self.data_dir), "-l", str(self.root / "server.log"), "-w", "-t", "60"]
        options = f"-c port={self.port} -c listen_addresses=127.0.0.1 -k {self.socket_dir} {options}"
        self._run("pg_ctl", *argv, "-o", options, "start")

    @property
    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def cpu_seconds(self) -> float:
        """CPU of the postmaster and all its backends and helpers, exited ones included."""
        return tree_cpu_seconds(self.postmaster_pid)

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


def start_bench_postgres(overrides: dict[str, str]) -> BenchPostgres:
    """A durable throwaway PostgreSQL (``PG_SETTINGS`` updated with ``overrides``); ``stop()`` it."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="gw-bench-pg-"))
    (root / "sock").mkdir()
    server = BenchPostgres(bin_dir=find_bin_dir(), root=root, _as_user=_os_user_prefix(root))
    server.settings = PG_SETTINGS | overrides
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def profile_start(pid: int, out: Path, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """py-spy on the gateway for the whole load (stopped with SIGINT, which makes it write)."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        print("  --profile: py-spy is not on PATH (pip install py-spy); no profile taken", file=sys.stderr)
        return None
    argv = [py_spy, "record", "--pid", str(pid), "--rate", str(PROFILE_RATE), "--format", "raw"]
    argv += ["--duration", str(int(2 * args.duration + 60)), "--output", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach before the load starts
    return proc


def profile_stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
