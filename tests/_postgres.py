"""A real PostgreSQL server for the tests, started in a temporary folder and stopped afterwards.

The server comes from the machine's PostgreSQL binaries (``pg_config
--bindir``, else the newest ``/usr/lib/postgresql/*/bin``): ``initdb`` makes a
cluster in a fresh folder, ``pg_ctl`` starts it listening on a Unix socket in
that folder only (``listen_addresses=''``: no TCP port, nothing reachable from
another machine). PostgreSQL refuses to run as root, so when the tests run as
root the cluster belongs to ``nobody`` and the binaries run through
``runuser``. Trust authentication on the socket: the folder is private to the
test run.

Without binaries (or without psycopg) the PostgreSQL tests skip, saying why;
with ``STATESTORE_REQUIRE_POSTGRES=1`` (CI) that is a failure instead, so CI
always runs them. This module imports nothing from pytest, so the children of
the many-process tests may import it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

REQUIRE_VARIABLE = "STATESTORE_REQUIRE_POSTGRES"


def required() -> bool:
    """True when the environment says the PostgreSQL tests must run (CI)."""
    return os.environ.get(REQUIRE_VARIABLE, "") not in ("", "0")


def find_bindir() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres; None if this machine has none."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True)
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _version_key(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (0,)


def why_unavailable() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None if they can."""
    try:
        import psycopg  # noqa: F401 - imported to see whether it can be
    except ImportError:
        return "psycopg is not installed (pip install 'statestore[postgres]')"
    if find_bindir() is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) on this machine (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, reachable on a Unix socket there.

    ``start()`` runs initdb and pg_ctl; ``stop()`` stops the server and removes
    the folder (it is idempotent). ``url(schema)`` is a location for a store.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="statestore-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self.user = "statestore"
        self.database = "statestore_test"
        self.port = 5432  # only names the socket file inside socket_dir: no TCP port is opened
        self.running = False
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "nobody", "--"]

    def _run(self, *args: str, timeout: float = 120) -> None:
        cmd = [*self._as, *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr}{result.stdout}{log}"
            )

    def start(self) -> None:
        """initdb, then start the server and wait until it accepts connections; create the test database."""
        self.socket_dir.mkdir()
        self.root.chmod(0o755)  # the server's user must reach its folders (they hold nothing secret)
        if self._as:
            import pwd

            nobody = pwd.getpwnam("nobody")
            for path in (self.root, self.socket_dir):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-c listen_addresses='' -k {self.socket_dir} -p {self.port} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {self.database}")

    def conninfo(self, database: str | None = None) -> str:
        """A libpq connection string to ``database`` (default: the test database)."""
        return f"host={self.socket_dir} port={self.port} user={self.user} dbname={database or self.database}"

    def url(self, schema: str | None = None) -> str:
        """A store location on this server: ``postgresql://…?schema=NAME`` (a fresh schema name by default)."""
        schema = schema or new_schema_name()
        return f"postgresql://{self.user}@/{self.database}?host={self.socket_dir}&port={self.port}&schema={schema}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if self.running:
            self.running = False
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def new_schema_name() -> str:
    """A schema name no other test uses (short: backups add a suffix within PostgreSQL's 63 bytes)."""
    return "t" + uuid.uuid4().hex[:12]
