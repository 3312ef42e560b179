"""Backups of the service's database: the ``backup`` and ``restore`` commands.

PostgreSQL is dumped by pg_dump, in its custom format, and restored by pg_restore: the
PostgreSQL client tools, of the server's major version or newer, must be on PATH. A
SQLite database is copied with SQLite's backup API, which gives a consistent copy even
while the service writes to it. docs/BACKUP.md says how often, where, and how to test
a restore.
"""

import argparse
import asyncio
import math
import os
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Protocol

from sqlalchemy import exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from .feature import Commands, Service, echo
from .settings import Settings

# How a backup file starts, for each kind of database.
HEADERS = {"PostgreSQL": b"PGDMP", "SQLite": b"SQLite format 3\x00"}
# Where restore connects to create a database, as createdb does.
MAINTENANCE_DATABASE = "postgres"
LIVE_FLAG = "--into-live-database"


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is the line to print."""


class Backend(Protocol):
    """How one kind of database is backed up and restored."""

    @property
    def kind(self) -> str:
        """The key in HEADERS of the backups it writes."""

    @property
    def live_database(self) -> str:
        """The database of DATABASE_URL, as ``restore --database`` would name it."""

    def default_output(self) -> Path:
        """Where ``backup`` writes without ``--output``."""

    def is_live(self, database: str) -> bool:
        """Whether ``restore --database`` names the live database."""

    def back_up(self, output: Path) -> None:
        """Write a backup of the live database to ``output``, an empty file."""

    def restore(self, backup: Path, database: str, *, clean: bool) -> None:
        """Restore ``backup`` into ``database``; a database with tables only if
        ``clean``, which replaces them."""


def add_commands(commands: Commands) -> None:
    """Add ``backup`` and ``restore`` to the command line."""
    backup = commands.add(
        "backup", "write a backup of the database of DATABASE_URL", run_backup
    )
    backup.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write it (default: <database>-<UTC time>.dump, or .db for "
        "SQLite, in the working directory); an existing file is refused",
    )
    restore = commands.add(
        "restore",
        f"restore a backup into another database (the live one only with {LIVE_FLAG})",
        run_restore,
    )
    restore.add_argument("file", type=Path, help="a file that `backup` wrote")
    restore.add_argument(
        "--database",
        required=True,
        metavar="NAME",
        help="the database to restore into: on PostgreSQL a database of DATABASE_URL's "
        "server, created if absent; on SQLite a file",
    )
    restore.add_argument(
        "--clean",
        action="store_true",
        help="replace the tables of a database that has some (refused without it)",
    )
    restore.add_argument(
        LIVE_FLAG,
        action="store_true",
        help="allow NAME to be the database of DATABASE_URL, which the running "
        "service uses; refused without it, so that no restore replaces it by accident",
    )


def run_backup(args: argparse.Namespace, service: Service) -> int:
    """The ``backup`` command."""
    try:
        backend = backend_of(service.settings)
        output: Path = args.output or backend.default_output()
        with written_whole(output) as partial:
            backend.back_up(partial)
    except BackupError as error:
        echo(str(error), error=True)
        return 1
    size = readable_size(output.stat().st_size)
    echo(f"Backed up {backend.live_database} to {output} ({size}).")
    return 0


def run_restore(args: argparse.Namespace, service: Service) -> int:
    """The ``restore`` command."""
    try:
        backend = backend_of(service.settings)
        check_backup(args.file, backend.kind)
        if backend.is_live(args.database) and not args.into_live_database:
            raise BackupError(
                f"{args.database} is the live database (DATABASE_URL): restore into "
                f"another one, or pass {LIVE_FLAG} to replace it"
            )
        backend.restore(args.file, args.database, clean=args.clean)
    except BackupError as error:
        echo(str(error), error=True)
        return 1
    echo(f"Restored {args.file} into {args.database}.")
    return 0


def backend_of(settings: Settings) -> Backend:
    url = make_url(settings.database_url)
    if not url.database or url.database == ":memory:":
        raise BackupError("DATABASE_URL names no database to back up or restore into")
    if settings.uses_sqlite:
        return SqliteBackend(Path(url.database))
    return PostgresBackend(url, settings.db_connect_timeout)


def check_backup(path: Path, kind: str) -> None:
    """Refuse a file that is not a backup of this kind of database."""
    try:
        with path.open("rb") as file:
            start = file.read(max(map(len, HEADERS.values())))
    except OSError as error:
        raise BackupError(f"Cannot read {path}: {error.strerror}") from None
    found = next((k for k, header in HEADERS.items() if start.startswith(header)), None)
    if found is None:
        raise BackupError(
            f"{path} is not a backup: neither a pg_dump archive (custom format) "
            "nor a SQLite database"
        )
    if found != kind:
        raise BackupError(f"{path} is a {found} backup; DATABASE_URL is {kind}")


@contextmanager
def written_whole(output: Path) -> Iterator[Path]:
    """An empty file beside ``output``, renamed to it once written.

    A backup that fails leaves nothing that could pass for a backup. The file is
    readable by its owner only: it holds every row of the database.
    """
    if output.exists():
        raise BackupError(f"{output} already exists: choose another --output")
    partial = output.with_name(f".{output.name}.partial")
    try:
        os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    except OSError as error:
        raise BackupError(f"Cannot write {output}: {error.strerror}") from None
    try:
        yield partial
        partial.rename(output)
    finally:
        partial.unlink(missing_ok=True)


def timestamped(name: str, suffix: str) -> Path:
    """``name-20250314T021500Z.suffix``: a file name that sorts by time, in UTC."""
    return Path(f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}{suffix}")


def readable_size(size: float) -> str:
    """The size in bytes, kB, MB, GB or TB (powers of 1000)."""
    for unit in ("bytes", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@dataclass(frozen=True)
class SqliteBackend:
    """A SQLite file: a backup is another SQLite file, restored by copying it back."""

    path: Path
    kind: ClassVar[str] = "SQLite"

    @property
    def live_database(self) -> str:
        return str(self.path)

    def default_output(self) -> Path:
        return timestamped(self.path.stem, ".db")

    def is_live(self, database: str) -> bool:
        return Path(database).resolve() == self.path.resolve()

    def back_up(self, output: Path) -> None:
        if not self.path.is_file():
            raise BackupError(f"{self.path} does not exist: nothing to back up")
        copy_sqlite(self.path, output)

    def restore(self, backup: Path, database: str, *, clean: bool) -> None:
        target = Path(database)
        if target.is_file() and not clean and sqlite_has_tables(target):
            raise BackupError(
                f"{target} has tables: restore into a new file, or pass --clean to "
                "replace them"
            )
        copy_sqlite(backup, target)


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite database over ``target``, consistent while others write to it."""
    try:
        with (
            closing(sqlite3.connect(read_only(source), uri=True)) as reader,
            closing(sqlite3.connect(target)) as writer,
        ):
            reader.backup(writer)
    except sqlite3.Error as error:
        raise BackupError(f"Copying {source} to {target} failed: {error}") from None


def sqlite_has_tables(path: Path) -> bool:
    try:
        with closing(sqlite3.connect(read_only(path), uri=True)) as connection:
            query = "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
            tables: int = connection.execute(query).fetchone()[0]
    except sqlite3.Error as error:
        raise BackupError(f"Cannot read {path}: {error}") from None
    return tables > 0


def read_only(path: Path) -> str:
    """A URI that opens the SQLite file read-only, and never creates it."""
    return f"{path.resolve().as_uri()}?mode=ro"


@dataclass(frozen=True)
class PostgresBackend:
    """The PostgreSQL server of DATABASE_URL, reached by its client tools as the
    service reaches it: the same host, port, user, password and TLS mode."""

    url: URL
    connect_timeout: float
    kind: ClassVar[str] = "PostgreSQL"

    @property
    def live_database(self) -> str:
        return self.url.database or ""

    def default_output(self) -> Path:
        return timestamped(self.live_database, ".dump")

    def is_live(self, database: str) -> bool:
        return database == self.live_database

    def back_up(self, output: Path) -> None:
        pg_dump = client_tool("pg_dump")
        database = f"--dbname={self.live_database}"
        self.run(pg_dump, "--format=custom", f"--file={output}", database)

    def restore(self, backup: Path, database: str, *, clean: bool) -> None:
        pg_restore = client_tool("pg_restore")
        try:
            asyncio.run(self.prepare(database, clean=clean))
        except (OSError, exc.SQLAlchemyError) as error:
            raise BackupError(f"Cannot prepare {database}: {describe(error)}") from None
        # One transaction: a restore that fails half-way leaves the database as it was.
        options = ["--clean", "--if-exists"] if clean else []
        self.run(
            pg_restore,
            "--no-owner",
            "--single-transaction",
            *options,
            f"--dbname={database}",
            str(backup),
        )

    async def prepare(self, database: str, *, clean: bool) -> None:
        """Create ``database`` if it is absent; refuse one with tables unless
        ``clean``."""
        async with self.connect(MAINTENANCE_DATABASE) as connection:
            exists = await connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": database},
            )
            if not exists:
                quoted = connection.dialect.identifier_preparer.quote_identifier
                await connection.execute(text(f"CREATE DATABASE {quoted(database)}"))
                return
        if clean:
            return
        async with self.connect(database) as connection:
            tables = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_tables"
                    " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
                )
            )
        if tables:
            raise BackupError(
                f"{database} has {tables} tables: restore into another database, or "
                "pass --clean to replace them"
            )

    @asynccontextmanager
    async def connect(self, database: str) -> AsyncIterator[AsyncConnection]:
        # Outside a transaction, which CREATE DATABASE refuses.
        engine = create_async_engine(
            self.url.set(database=database),
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"timeout": self.connect_timeout},
        )
        try:
            async with engine.connect() as connection:
                yield connection
        finally:
            await engine.dispose()

    def run(self, tool: str, *args: str) -> None:
        """Run a client tool; a failure is a BackupError with the tool's error."""
        name = Path(tool).name
        result = subprocess.run(  # noqa: S603 (the client tools, with our arguments)
            [tool, "--no-password", *args],
            env=self.client_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise BackupError(f"{name} failed: {first_error(name, result.stderr)}")

    def client_environment(self) -> dict[str, str]:
        """libpq's settings for the client tools: in their environment rather than
        their arguments, which ``ps`` shows to every user of the machine."""
        ssl_mode = self.url.query.get("ssl", self.url.query.get("sslmode"))
        settings = {
            "PGHOST": self.url.host,
            "PGPORT": str(self.url.port) if self.url.port else None,
            "PGUSER": self.url.username,
            "PGPASSWORD": self.url.password,
            "PGSSLMODE": ssl_mode if isinstance(ssl_mode, str) else None,
            # Whole seconds, and libpq takes no fewer than 2.
            "PGCONNECT_TIMEOUT": str(max(2, math.ceil(self.connect_timeout))),
        }
        given = {name: value for name, value in settings.items() if value is not None}
        return {**os.environ, **given}


def client_tool(name: str) -> str:
    """The path of a PostgreSQL client tool."""
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not on PATH: install the PostgreSQL client tools, of the "
            "server's major version or newer (docs/BACKUP.md)"
        )
    return path


def first_error(tool: str, output: str) -> str:
    """The first error a client tool reports (it may add hints on later lines)."""
    prefix = f"{tool}: error: "
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    return next(iter(errors or lines), "no output")


def describe(error: Exception) -> str:
    """The database's or the network's own words, on one line."""
    if isinstance(error, exc.DBAPIError):
        words = str(error.orig)
    elif isinstance(error, OSError) and error.strerror:
        words = error.strerror
    else:
        words = str(error)
    lines = words.splitlines()
    return lines[0] if lines else type(error).__name__
