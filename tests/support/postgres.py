"""A throw-away PostgreSQL server for tests and benchmarks: Debian's binaries, a data directory in /tmp,
loopback only.

`./dev test` installs Debian's postgresql package when its binaries are missing (`ensure_postgres`); this
module only finds them, runs initdb into a fresh directory and starts the server on a free loopback
port with its unix socket in that directory, so nothing of the machine's own clusters is touched.
initdb refuses to run as root (CI runs as root), so as root the server runs as the `postgres` user,
which owns the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

# Set to 1 to skip the PostgreSQL tests on purpose; otherwise a missing server fails them loudly.
SKIP_ENV = "CLUSTER_MONITOR_NO_POSTGRES"


class PostgresUnavailable(RuntimeError):
    pass


def find_bindir() -> Path:
    """The directory of initdb and pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise PostgresUnavailable(
        "PostgreSQL's initdb/pg_ctl were not found (PATH, /usr/lib/postgresql/*/bin): run `./dev test`, which "
        f"installs Debian's postgresql package, or set {SKIP_ENV}=1 to skip the PostgreSQL tests on purpose")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One server process for the test session; each test gets its own database in it."""

    USER = "monitor"

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="cluster-monitor-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._as: list[str] = []
        self._databases = 0
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root and there is no `postgres` user to run the server as "
                                          "(initdb refuses root)") from exc
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"{' '.join(args[:2])} failed ({proc.returncode}): "
                                      f"{proc.stderr.strip()[-2000:]}\n{tail}")

    def start(self) -> PostgresServer:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.USER, "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        for attempt in range(3):
            self.port = _free_port()
            opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off")
            try:
                self._run(str(self.bindir / "pg_ctl"), "start", "-D", str(self.data), "-w", "-t", "60",
                          "-l", str(self.root / "server.log"), "-o", opts)
                return self
            except PostgresUnavailable:
                if attempt == 2:  # the port may have been taken between picking and binding it
                    raise
        return self

    def restart(self) -> None:
        """A fast restart on the same port and data: every session is cut (as in a database failover or an
        upgrade), then the server accepts connections again."""
        self._run(str(self.bindir / "pg_ctl"), "restart", "-D", str(self.data), "-m", "fast", "-w", "-t", "60",
                  "-l", str(self.root / "server.log"))

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([*self._as, str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate",
                            "-w"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        self._databases += 1
        name = f"t{os.getpid()}_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
