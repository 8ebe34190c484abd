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

No database I/O waits forever. A server that vanishes without a reset (a host gone behind a Service, a
partition) leaves a socket that never answers, and the kernel retries for a quarter of an hour; aiomysql bounds
only the TCP connect. So, here:

* opening a connection (connect, greeting, TLS, login, session set-up) is bounded by `connect_timeout` plus
  `DB_STATEMENT_TIMEOUT`;
* every round trip of a pooled connection (the ping on check-out of one idle for over a second, each statement,
  COMMIT, ROLLBACK) is bounded by `DB_STATEMENT_TIMEOUT`, and a whole transaction - waiting for a
  pooled connection included - by `DB_TRANSACTION_TIMEOUT`;
* a connection that hit a bound, was cancelled or failed in an unknown state is discarded: closed with a reset
  (SO_LINGER 0, so bytes still queued - a COMMIT, say - are dropped rather than delivered when the network
  heals) and never returned to the pool. The server rolls its transaction back when it sees the disconnect;
  `DatabaseTimeout` (a transient `DatabaseUnavailable`) tells the caller to retry later;
* the server bounds the same things itself, for when it never hears of the disconnect (partition):
  `max_statement_time` stops a statement (a lock wait, say) at `DB_STATEMENT_TIMEOUT`, and
  `idle_transaction_timeout` ends a session idle inside a transaction for `DB_TRANSACTION_TIMEOUT`, which
  releases the row locks of a transaction whose client has gone away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import socket
import ssl
import struct
import time
import weakref
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomysql
import pymysql
import structlog
from pymysql.constants import CLIENT, CR

from multinic_ctrl.metrics import ACTIVE_DB_CONNECTIONS, DATABASE_OPERATION_DURATION
from multinic_ctrl.settings import DatabaseSettings

log = structlog.get_logger(__name__)

T = TypeVar("T")

POOL_RECYCLE_SECONDS = 300

# Errors meaning "the server is unreachable or went away", as opposed to a bad statement.
_CONNECTION_ERRNOS = {2002, 2003, 2006, 2013, 2055, 1040, 1053}
# The server stopped a statement at max_statement_time (our DB_STATEMENT_TIMEOUT).
_STATEMENT_TIME_EXCEEDED = 1969


class DatabaseError(Exception):
    """Base of the errors this package raises on purpose. Messages name host:port, never the password."""


class DatabaseUnavailable(DatabaseError, ConnectionError):
    """MariaDB cannot be reached (or refuses the login, which also heals only from outside); retry later."""


class DatabaseTimeout(DatabaseUnavailable):
    """A statement or a transaction exceeded its bound (`DB_STATEMENT_TIMEOUT`, `DB_TRANSACTION_TIMEOUT`).

    The connection was discarded, so nothing of the transaction was committed; transient: retry later.
    """


# A statement refused for a conflict with another transaction (deadlock, lock wait timeout, duplicate key): the
# server answered, so after a clean ROLLBACK the connection is as good as new and goes back to the pool (the
# caller retries; reconnecting each time would only add a login, and TLS, to every conflict).
_CONFLICT_ERRNOS = {1205, 1213, 1062}

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


class _Cursor(aiomysql.DictCursor):  # type: ignore[misc]  # aiomysql is untyped
    """The cursor `Database.transaction` hands out: each statement is one bounded round trip.

    `executemany` runs through `execute`, so it is bounded per round trip too.
    """

    database: Database

    async def execute(self, query: str, args: Any = None) -> int:
        rows: int = await self.database._bounded(super().execute(query, args), "a statement")
        return rows


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
            self._free.append(await _open(self._settings, self._database, autocommit=False, bounded=True))
            self._cond.notify()
        finally:
            self._acquiring -= 1

    def release(self, conn: aiomysql.Connection) -> Any:
        """Upstream wakes no waiter when the connection released was closed, though its slot is free now: a
        caller waiting for a connection would sit out its whole deadline behind a discarded one."""
        released = super().release(conn)
        if conn.closed:  # also wakes `wait_closed`, which waits for the used connections to come back
            return self._loop.create_task(self._wakeup())
        return released


def _session_bounds(settings: DatabaseSettings) -> str:
    """The server-side twins of the client-side bounds, set once per pooled connection."""
    return (
        f"SET SESSION max_statement_time = {settings.statement_timeout:.3f}, "
        f"idle_transaction_timeout = {math.ceil(settings.transaction_timeout)}"
    )


async def _open(
    settings: DatabaseSettings, database: str | None, *, autocommit: bool, bounded: bool = False
) -> aiomysql.Connection:
    """One new connection with the configured TLS; raises pymysql/OS errors as aiomysql does.

    The whole opening is bounded (aiomysql bounds the TCP connect only: a black-holed server accepts nothing, but
    a proxy or load balancer in front of it accepts and then says nothing). `bounded` connections (the pool's)
    also carry the server-side statement and idle-transaction bounds.
    """
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
        init_command=_session_bounds(settings) if bounded else None,
    )
    limit = settings.connect_timeout + settings.statement_timeout
    try:
        async with asyncio.timeout(limit):
            await conn._connect()  # what aiomysql.connect() does; it closes the socket itself on errors
    except TimeoutError:
        _discard(conn)
        raise pymysql.err.OperationalError(
            CR.CR_CONN_HOST_ERROR, f"no answer while connecting and logging in within {limit:g}s"
        ) from None
    except BaseException:  # cancelled: aiomysql closes only on Exception
        _discard(conn)
        raise
    return conn


PING_AFTER_IDLE = 1.0
"""Seconds a pooled connection may have been idle and still be used without a ping first."""


def _discard(conn: aiomysql.Connection) -> None:
    """Close a connection whose state is unknown: with a reset, dropping whatever is still unsent.

    A graceful close would leave queued bytes (the COMMIT that never got an answer, say) for the kernel to keep
    retransmitting - and deliver, should the network heal before the server gave up on the session.
    """
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        sock = writer.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    conn.close()


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


def _errno(exc: BaseException) -> object:
    return exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None


@dataclass
class _Lease:
    conn: aiomysql.Connection
    reusable: bool = False


class Database:
    def __init__(self, settings: DatabaseSettings, *, database: str | None = None) -> None:
        self.settings = settings
        self.name = database or settings.name
        self._pool: aiomysql.Pool | None = None
        self._active = 0
        self._returned: weakref.WeakKeyDictionary[aiomysql.Connection, float] = weakref.WeakKeyDictionary()
        """When each pooled connection last came back in a known state (see `_lease`)."""

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def active(self) -> int:
        """Connections checked out right now."""
        return self._active

    async def _get_pool(self) -> aiomysql.Pool:
        if self._pool is None:
            self._pool = _Pool(self.settings, self.name)
        return self._pool

    async def _bounded(self, step: Awaitable[T], what: str) -> T:
        """One round trip, bounded by DB_STATEMENT_TIMEOUT; raises DatabaseTimeout when it takes longer."""
        limit = self.settings.statement_timeout
        bound = asyncio.timeout(limit)
        try:
            async with bound:
                return await step
        except TimeoutError:
            if not bound.expired():
                raise
            raise DatabaseTimeout(
                f"MariaDB at {self.address} did not answer {what} within {limit:g}s (DB_STATEMENT_TIMEOUT); "
                "connection discarded"
            ) from None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiomysql.Connection]:
        """A pooled connection (pinged first if it was idle, see `_lease`). If the body raises (or is cancelled) the
        connection is discarded, never returned to the pool: its state is unknown. Otherwise whatever the body
        left open is rolled back: `transaction` relies on pooled connections being between transactions."""
        async with self._lease() as lease:
            yield lease.conn
            await self._bounded(lease.conn.rollback(), "ROLLBACK")

    @asynccontextmanager
    async def _lease(self) -> AsyncIterator[_Lease]:
        """`connection()`, for `transaction`: a body that raises after restoring a known state (a clean ROLLBACK)
        sets `reusable` and the connection goes back to the pool instead of being discarded."""
        try:
            pool = await self._get_pool()
            conn = await pool.acquire()
            try:
                # Pooled connections may have died with a restarted server; one round trip revives them
                # here instead of failing the caller's first statement. Not for a connection that was in use
                # a moment ago (`PING_AFTER_IDLE`): under load that round trip was one in ten of a transaction.
                # One the server closed meanwhile is not handed out (the pool sees the closed socket); one that
                # died without a word fails its first statement as a connection error, bounded like the ping,
                # and the caller retries, as for a server lost mid-transaction. A connection never returned
                # was just opened (connected and logged in): alive.
                returned = self._returned.pop(conn, None)
                if returned is not None and time.monotonic() - returned > PING_AFTER_IDLE:
                    await self._bounded(conn.ping(reconnect=True), "a ping")
            except BaseException:
                _discard(conn)
                pool.release(conn)
                raise
        except DatabaseError:
            raise
        except Exception as exc:
            if is_connection_error(exc):
                raise DatabaseUnavailable(f"cannot connect to MariaDB at {self.address}: {_describe(exc)}") from None
            raise
        self._active += 1
        ACTIVE_DB_CONNECTIONS.inc()
        lease = _Lease(conn)
        try:
            yield lease
        except BaseException:
            if not lease.reusable:
                _discard(conn)  # a no-op when the transaction already closed it after a clean rollback
            raise
        finally:
            if not conn.closed:
                self._returned[conn] = time.monotonic()
            self._active -= 1
            ACTIVE_DB_CONNECTIONS.dec()
            pool.release(conn)

    @asynccontextmanager
    async def transaction(self, operation: str) -> AsyncIterator[aiomysql.Cursor]:
        """One transaction, observed as `operation`; rolled back on any exception (including cancellation).

        Bounded as a whole by DB_TRANSACTION_TIMEOUT (from the wait for a pooled connection to the COMMIT) and
        per round trip by DB_STATEMENT_TIMEOUT. On a timeout or a cancellation nothing more is sent: the
        connection is discarded and the server rolls back when it sees the disconnect (or, if it never does,
        at `idle_transaction_timeout`). Other errors are rolled back explicitly (bounded); then the connection
        is closed, except after a conflict with another transaction (deadlock, lock wait timeout, duplicate
        key), which leaves it in a known state: it goes back to the pool for the retry.
        """
        started = time.perf_counter()
        result = "error"
        limit = self.settings.transaction_timeout
        whole = asyncio.timeout(limit)
        try:
            async with whole, self._lease() as lease:
                conn = lease.conn
                # No BEGIN: pooled connections run with autocommit off and every use of one ends in COMMIT,
                # ROLLBACK or its discarding, so the first statement opens the transaction (and its snapshot,
                # as it would after a BEGIN) - one round trip fewer per transaction.
                cur = _Cursor(conn, False)
                cur.database = self
                try:
                    yield cur
                    await self._bounded(cur.close(), "the rest of a result")
                    await self._bounded(conn.commit(), "COMMIT")
                    result = "success"
                except Exception as exc:
                    if not isinstance(exc, DatabaseError) and not is_connection_error(exc):
                        # The server answered (a bad statement, a deadlock, the caller's own error): roll back
                        # now, so its locks go at once, then close the connection cleanly - or keep it, after
                        # a conflict (the server's own answer, nothing left unread).
                        with contextlib.suppress(Exception):
                            await self._bounded(conn.rollback(), "ROLLBACK")
                            if _errno(exc) in _CONFLICT_ERRNOS:
                                lease.reusable = True
                            else:
                                conn.close()
                    raise
        except Exception as exc:
            if isinstance(exc, TimeoutError) and whole.expired():
                result = "timeout"
                raise DatabaseTimeout(
                    f"a transaction ({operation}) on MariaDB at {self.address} did not finish within {limit:g}s "
                    "(DB_TRANSACTION_TIMEOUT); connection discarded, nothing committed"
                ) from None
            if isinstance(exc, DatabaseTimeout):
                result = "timeout"
                raise
            if _errno(exc) == _STATEMENT_TIME_EXCEEDED:
                result = "timeout"
                raise DatabaseTimeout(
                    f"MariaDB at {self.address} stopped a statement at {self.settings.statement_timeout:g}s "
                    "(DB_STATEMENT_TIMEOUT); nothing committed"
                ) from None
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
    """A single connection outside the pool (migrations take a named lock on it; it may need no database).

    Its opening is bounded like any other; its statements are not (a migration may legitimately wait for the
    migration lock or run long DDL).
    """
    try:
        return await _open(settings, database, autocommit=True)
    except Exception as exc:
        if is_connection_error(exc):
            raise DatabaseUnavailable(
                f"cannot connect to MariaDB at {settings.host}:{settings.port}: {_describe(exc)}"
            ) from None
        raise
