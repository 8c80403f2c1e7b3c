"""The store engine both stateful services use: SQLite (WAL) by default, PostgreSQL to
share between replicas. Each service owns its own tables; only the engine is shared.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")
SQLITE_SCHEME = "sqlite:///"  # SQLAlchemy's form: sqlite:///relative, sqlite:////absolute
READ_ONLY = "premium_support_read_only"  # execution option: BEGIN DEFERRED on SQLite


class StoreUrlError(ValueError):
    """A store URL that names no store this project can open; the message says why."""


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(POSTGRES_SCHEMES)


def sqlite_path(url: str | None, default: str = "sla_timer.db") -> Path | None:
    """The file of a SQLite store (a plain path or `sqlite:///path`); None for PostgreSQL."""
    if is_postgres_url(url):
        return None
    given = url or default
    if given.startswith("sqlite:"):
        if not given.startswith(SQLITE_SCHEME) or given == SQLITE_SCHEME:
            raise StoreUrlError(
                f"{given!r}: write sqlite:///relative/path or sqlite:////absolute/path"
            )
        given = given.removeprefix(SQLITE_SCHEME).partition("?")[0]
    elif "://" in given:
        scheme = given.partition("://")[0]
        raise StoreUrlError(
            f"unsupported store URL scheme {scheme!r}: use a SQLite path, sqlite:///path, "
            "postgresql:// or postgres://"
        )
    return Path(given).expanduser()


def engine_for(url: str | None, default: str = "sla_timer.db", read_only: bool = False) -> Engine:
    """`postgresql://...` (or `postgres://`) as given; anything else is a SQLite file
    (a path or `sqlite:///path`; `default` when unset), opened in WAL mode.

    `read_only` (the operator's reads): a SQLite file is opened with `mode=ro`, so a
    mistyped path is reported (StoreUrlError) instead of created as an empty store."""
    path = sqlite_path(url, default)
    if path is None:
        rest = str(url).partition("://")[2]
        options = {"postgresql_readonly": True} if read_only else {}
        return sa.create_engine(
            f"postgresql+psycopg://{rest}",
            pool_pre_ping=True,
            pool_size=5,
            execution_options=options,
        )
    if read_only:
        return _read_only_sqlite(path)
    engine = sa.create_engine(
        f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
    )

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_conn: Any, _: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # NOTE: pysqlite starts a transaction only at the first write, so a read-then-
        # write (scheduler vs consume loop on one clock) could act on a stale copy.
        # Take the write lock when the transaction begins instead.
        dbapi_conn.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        # A reader (`reading`) under WAL neither takes nor waits for the write lock.
        deferred = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine


def _read_only_sqlite(path: Path) -> Engine:
    if not path.is_file():
        raise StoreUrlError(f"no SQLite store at {path}: the file does not exist")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    engine = sa.create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30),
    )

    @sa.event.listens_for(engine, "connect")
    def _autocommit(dbapi_conn: Any, _: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions begun by `_begin` below

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # NOTE: a read-only connection can take no write lock: never BEGIN IMMEDIATE.
        conn.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction: on SQLite it never holds the write lock, so a reader
    (an outbox relay, a status probe) never makes a writer wait."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn


def fetch(engine: Engine, sql: str) -> list[Any]:
    """Rows of one raw statement, outside SQLAlchemy's transaction handling (autocommit on
    SQLite: under WAL a reader neither blocks nor waits for the writer)."""
    conn = engine.raw_connection()  # PostgreSQL: pool_pre_ping reconnects or raises
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            return list(cursor.fetchall())
        finally:
            cursor.close()
    finally:
        conn.close()  # back to the pool, which rolls back whatever was begun


def ping(engine: Engine) -> None:
    """Raise unless the store answers a query."""
    fetch(engine, "SELECT 1")


def utc(value: datetime | None) -> datetime | None:
    # NOTE: SQLite hands back naive datetimes; everything stored is UTC.
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class LeaderLock:
    """Whether this process holds `key` among the processes sharing a PostgreSQL store: a
    session advisory lock on a connection of its own, released when the process (or its
    connection) dies, so another replica takes over. Always held on SQLite, where one
    process owns the file."""

    RECHECK_S = 1.0

    def __init__(self, engine: Engine, key: int) -> None:
        self.engine = engine
        self.key = key
        self._conn: Connection | None = None
        self._checked = 0.0

    def __call__(self) -> bool:
        if engine_is_sqlite(self.engine):
            return True
        now = time.monotonic()
        if self._conn is not None and now - self._checked < self.RECHECK_S:
            return True
        self._checked = now
        try:
            if self._conn is None:
                conn = self.engine.connect()
                # NOTE: advisory locks are database-wide: key them by schema too, so
                # deployments in other schemas of one database elect their own.
                held = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key, hashtext(current_schema()))"),
                    {"key": self.key},
                ).scalar()
                conn.commit()
                if not held:
                    conn.close()
                    return False
                self._conn = conn
            else:
                self._conn.execute(sa.text("SELECT 1"))
                self._conn.commit()
            return True
        except sa.exc.SQLAlchemyError:
            self.release()
            raise

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._conn.invalidate()  # ends the session, and the lock with it
                self._conn.close()
            self._conn = None


def engine_is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
