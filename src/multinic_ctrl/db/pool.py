"""A bounded aiomysql pool that reports its usage and never needs MariaDB to be up at start-up.

`minsize=0` matters: the process must start (and answer `/readyz` with 503) while MariaDB is down, and
recover without a restart once it is back. Connections that died with the server are discarded on first use
(aiomysql closes a connection whose query failed, and the pool then drops it on release).

Every connection of the process - pooled, or single ones for migrations - is opened by `_open` here, so TLS
(`DB_SSL_*`) applies to all of them. aiomysql on its own treats `ssl=` as a wish: when the server does not
offer TLS it carries on in plain text and answers an authentication switch to `mysql_clear_password` with
the password itself, so whoever sits between us and the database could downgrade the connection and read
the password. `_Connection` therefore refuses, before anything is sent, a server that does not offer TLS
when TLS was asked for; `_Pool` makes the pool open its connections that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomysql
import pymysql
import structlog
from pymysql.constants import CLIENT, CR

from multinic_ctrl.metrics import ACTIVE_DB_CONNECTIONS, DATABASE_OPERATION_DURATION
from multinic_ctrl.settings import DatabaseSettings

log = structlog.get_logger(__name__)

POOL_RECYCLE_SECONDS = 300

# Errors meaning "the server is unreachable or went away", as opposed to a bad statement.
_CONNECTION_ERRNOS = {2002, 2003, 2006, 2013, 2055, 1040, 1053}


class DatabaseError(Exception):
    """Base of the errors this package raises on purpose. Messages name host:port, never the password."""


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """MariaDB cannot be reached (or refuses the login, which also heals only from outside); retry later."""


# Login refused, no such database, no privilege, TLS refused: the server is up but will not serve us until fixed.
_ACCESS_ERRNOS = {1044, 1045, 1049, 1698, CR.CR_SSL_CONNECTION_ERROR}


class _Connection(aiomysql.Connection):  # type: ignore[misc]  # aiomysql is untyped
    """An aiomysql connection that never falls back to plain text once TLS was asked for.

    The check sits where aiomysql decides between TLS and plain text: after the server's greeting, before
    our login packet. Only private aiomysql names are involved (`_request_authentication`, `_ssl_context`,
    `server_capabilities`); aiomysql is pinned below 0.4 and tests/unit/test_db_tls_downgrade.py fails if
    they change.
    """

    async def _request_authentication(self) -> None:
        if self._ssl_context is not None and not self.server_capabilities & CLIENT.SSL:
            raise pymysql.err.OperationalError(
                CR.CR_SSL_CONNECTION_ERROR,
                "TLS is required (DB_SSL_MODE) but the server does not offer it; nothing was sent",
            )
        await super()._request_authentication()


class _Pool(aiomysql.Pool):  # type: ignore[misc]  # aiomysql is untyped
    """aiomysql's pool (limits, recycling, release), with its connections opened by `_open`.

    Upstream's `_fill_free_pool` prunes dead free connections, then opens new ones with aiomysql's own
    `connect()`, which cannot be told to use another connection class. With `minsize=0` the upstream call
    with `override_min=False` does only the pruning; the one connection an `acquire()` may add is opened
    here, under the same bookkeeping (`_acquiring`, `_cond`) as upstream.
    """

    def __init__(self, settings: DatabaseSettings, database: str) -> None:
        super().__init__(
            minsize=0,
            maxsize=settings.pool_size,
            echo=False,
            pool_recycle=POOL_RECYCLE_SECONDS,
            loop=asyncio.get_running_loop(),
        )
        self._settings = settings
        self._database = database

    async def _fill_free_pool(self, override_min: bool) -> None:
        await super()._fill_free_pool(False)
        if self._free or not override_min or self.size >= self.maxsize:
            return
        self._acquiring += 1
        try:
            self._free.append(await _open(self._settings, self._database, autocommit=False))
            self._cond.notify()
        finally:
            self._acquiring -= 1


async def _open(settings: DatabaseSettings, database: str | None, *, autocommit: bool) -> aiomysql.Connection:
    """One new connection with the configured TLS; raises pymysql/OS errors as aiomysql does."""
    context = settings.ssl_context()
    if settings.ssl_mode == "required":
        _warn_unverified(settings.host, settings.port)
    conn = _Connection(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password,
        db=database,
        connect_timeout=settings.connect_timeout,
        autocommit=autocommit,
        charset="utf8mb4",
        ssl=context,
    )
    await conn._connect()  # what aiomysql.connect() does; it closes the socket itself on failure
    return conn


@functools.cache
def _warn_unverified(host: str, port: int) -> None:
    """Once per server and process: every connection would repeat it, and it is a configuration fact."""
    log.warning(
        "TLS to MariaDB does not verify the server (DB_SSL_MODE=required): encrypted against listeners, "
        "not against impostors; use verify-identity with DB_SSL_CA",
        database=f"{host}:{port}",
    )


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
            self._pool = _Pool(self.settings, self.name)
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
    """A short reason for logs and `/readyz`. aiomysql reports any failed TLS handshake as "(2003) Can't
    connect", hiding the cause in `__cause__`; the cause is what the operator must fix, so it is named."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        text = f"({exc.args[0]}) {exc.args[1]}"
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        text += f": TLS verification of the server failed ({cause.verify_message})"
    elif isinstance(cause, ssl.SSLError):
        text += f": TLS handshake failed ({cause.reason or cause})"
    return text


async def connect_raw(settings: DatabaseSettings, *, database: str | None = None) -> aiomysql.Connection:
    """A single connection outside the pool (migrations take a named lock on it; it may need no database)."""
    try:
        return await _open(settings, database, autocommit=True)
    except Exception as exc:
        if is_connection_error(exc):
            raise DatabaseUnavailable(
                f"cannot connect to MariaDB at {settings.host}:{settings.port}: {_describe(exc)}"
            ) from None
        raise
