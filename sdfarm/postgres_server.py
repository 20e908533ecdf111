"""A private PostgreSQL server for fault tests and benchmarks: its own data directory and port, restartable at will."""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from sdfarm.redis_server import free_port


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory, if any."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class PostgresServer:
    """initdb + pg_ctl in a temporary directory (as the postgres user when run as root)."""

    def __init__(self, durable: bool = False, options: dict[str, str] | None = None) -> None:
        # Tests skip fsync for speed; a benchmark of the database's own cost keeps it, as in production.
        self.durable = durable
        self.options = options or {}
        self.bin_dir = postgres_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        self.directory = Path(tempfile.mkdtemp(prefix="sdfarm-pg-"))
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.directory, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the server's `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = " ".join(shlex.quote(a) for a in args)
        if self._as_postgres:
            command = f"su postgres -s /bin/sh -c {shlex.quote(command)}"
        subprocess.run(command, shell=True, check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        if not self.durable:
            options += " -c fsync=off"
        for name, value in self.options.items():
            options += f" -c {name}={value}"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.directory / "data"),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            *extra,
            action,
        )

    def start(self) -> PostgresServer:
        """initdb (first time) and start; returns when it accepts connections."""
        if not (self.directory / "data").exists():
            self._run(str(self.bin_dir / "initdb"), "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres")
        self._pg_ctl("start")
        return self

    def postmaster_pid(self) -> int:
        """Process id of the server's postmaster (its backends are its children)."""
        return int((self.directory / "data" / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        """Fast restart: every open connection is cut, as in a database failover."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """Stop and delete the data directory."""
        try:
            self._pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)
