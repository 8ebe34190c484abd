"""A bounded aiomysql pool that reports its usage and never needs MariaDB to be up at start-up.

`minsize=0` matters: the process must start (and answer `/readyz` with 503) while MariaDB is down, and
recover without a restart once it is back. Connections that died with the server are discarded on first use
(aiomysql closes a connection whose query failed, and the pool then drops it on release).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql

from multinic_ctrl.metrics import ACTIVE_DB_CONNECTIONS, DATABASE_OPERATION_DURATION
from multinic_ctrl.settings import DatabaseSettings

# Errors meaning "the server is unreachable or went away", as opposed to a bad statement.
_CONNECTION_ERRNOS = {2002, 2003, 2006, 2013, 2055, 1040, 1053}


class DatabaseError(Exception):
    """Base of the errors this package raises on purpose. Messages name host:port, never the password."""


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """MariaDB cannot be reached (or refuses the login, which also heals only from outside); retry later."""


# Login refused, no such database, no privilege: the server is up but will not serve us until fixed.
_ACCESS_ERRNOS = {1044, 1045, 1049, 1698}


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, OSError, TimeoutError)):
        return True
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        code = exc.args[0] if exc.args else None
        return code in _CONNECTION_ERRNOS | _ACCESS_ERRNOS or isinstance(exc, pymysql.err.InterfaceError)
    return False


class Database:
    def __init__(self, settings: DatabaseSettings, *, database: str | None = None) -> None:
        self.settings = settings
        self.name = database or settings.name
        self._pool: aiomysql.Pool | None = None
        self._active = 0

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    async def _get_pool(self) -> aiomysql.Pool:
        if self._pool is None:
            self._pool = await aiomysql.create_pool(
                host=self.settings.host,
                port=self.settings.port,
                user=self.settings.user,
                password=self.settings.password,
                db=self.name,
                minsize=0,
                maxsize=self.settings.pool_size,
                connect_timeout=self.settings.connect_timeout,
                autocommit=False,
                charset="utf8mb4",
                pool_recycle=300,
            )
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiomysql.Connection]:
        try:
            pool = await self._get_pool()
            conn = await pool.acquire()
            try:
                # Pooled connections may have died with a restarted server; one round trip revives them
                # here instead of failing the caller's first statement.
                await conn.ping(reconnect=True)
            except BaseException:
                conn.close()
                pool.release(conn)
                raise
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(f"cannot connect to MariaDB at {self.address}: {_describe(exc)}") from None
            raise
        self._active += 1
        ACTIVE_DB_CONNECTIONS.inc()
        try:
            yield conn
        except BaseException:
            # A connection in an unknown state (failed mid-transaction, cancelled) is not worth reusing.
            conn.close()
            raise
        finally:
            self._active -= 1
            ACTIVE_DB_CONNECTIONS.dec()
            pool.release(conn)

    @asynccontextmanager
    async def transaction(self, operation: str) -> AsyncIterator[aiomysql.Cursor]:
        """One transaction, observed as `operation`; rolled back on any exception (including cancellation)."""
        started = time.perf_counter()
        result = "error"
        try:
            async with self.connection() as conn:
                await conn.begin()
                try:
                    async with conn.cursor(aiomysql.DictCursor) as cur:
                        yield cur
                    await conn.commit()
                    result = "success"
                except BaseException:
                    with contextlib.suppress(Exception):  # the connection is closed below anyway
                        await conn.rollback()
                    raise
        except Exception as exc:
            if is_connection_error(exc) and not isinstance(exc, DatabaseUnavailable):
                raise DatabaseUnavailable(f"lost connection to MariaDB at {self.address}: {_describe(exc)}") from None
            raise
        finally:
            DATABASE_OPERATION_DURATION.labels(operation=operation, result=result).observe(
                time.perf_counter() - started
            )

    async def ping(self) -> None:
        """Readiness check: raises DatabaseUnavailable with a short reason when MariaDB does not answer."""
        async with self.transaction("ping") as cur:
            await cur.execute("SELECT 1")

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"({exc.args[0]}) {exc.args[1]}"
    return str(exc) or type(exc).__name__


async def connect_raw(settings: DatabaseSettings, *, database: str | None = None, **kwargs: Any) -> aiomysql.Connection:
    """A single connection outside the pool (migrations take a named lock on it; it may need no database)."""
    try:
        return await aiomysql.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            db=database,
            connect_timeout=settings.connect_timeout,
            autocommit=True,
            charset="utf8mb4",
            **kwargs,
        )
    except Exception as exc:
        if is_connection_error(exc):
            raise DatabaseUnavailable(
                f"cannot connect to MariaDB at {settings.host}:{settings.port}: {_describe(exc)}"
            ) from None
        raise
