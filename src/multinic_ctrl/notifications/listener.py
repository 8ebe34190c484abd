"""The AMQP side of the notification listener: connect, bind a queue of our own, consume, reconnect.

Why a queue of our own. oslo.messaging publishes each notification to its service's topic exchange (`nova`,
`neutron`) with the routing key `<topic>.<priority>` (`notifications.info`), and declares a shared queue of
that very name, which is how Ceilometer and other consumers receive notifications. Consumers of one queue
*share* its messages - each message goes to one of them - so consuming from `notifications.info` would steal
notifications from those consumers (and they from us). Instead we declare a server-named (`amq.gen-...`),
exclusive, auto-delete queue and bind it to the same routing keys: the exchange delivers a copy of every
notification to it, nobody else can consume from it, and it disappears with our connection, so nothing piles
up while we are away (what happens meanwhile is caught by the periodic resync, which never stops). Its length
is capped (oldest dropped first) in case the controller stalls while connected.

Exchanges are only looked up (a passive declare, which needs no permission), never created: declaring one
with other properties than the service's own declaration would make the service's declaration fail. The
services' exchanges are not durable, so after a broker restart one may be missing until its service has
reconnected; a missing exchange is looked for again every `exchange_recheck` seconds while connected.

Least privilege on the broker: configure and write on `^amq\\.gen-.*$` (our queue and its bindings), read on
that and on the exchanges. The listener never publishes.

Reconnection: exponential backoff with full jitter (1 s doubling to 60 s), reset once a connection has lived
a minute. The log says once that the bus is unavailable (polling continues), and once when it is back.
The URL's password appears nowhere: the connection is shown as `NotificationSettings.display_url`, and
errors are reported by type and text with the URL's secrets masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity

from multinic_ctrl.metrics import NOTIFICATIONS_CONNECTED, NOTIFICATIONS_CONNECTION_ATTEMPTS
from multinic_ctrl.settings import NotificationSettings

log = structlog.get_logger(__name__)

# aiormq and aio-pika log every lost connection and failed attempt at ERROR, with tracebacks, although the
# listener handles both and says so once per outage (with the password masked): keep them quiet.
for _library in ("aiormq", "aio_pika"):
    logging.getLogger(_library).setLevel(logging.CRITICAL)

CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
PREFETCH = 100  # unacknowledged messages in flight to us
MAX_BACKLOG = 10_000  # messages our queue keeps while we are slow (oldest dropped first)
STABLE_AFTER = 60.0  # a connection that lived this long resets the backoff
CONNECTION_NAME = "multinic-controller notifications"

Connect = Callable[..., Awaitable[AbstractConnection]]
Handle = Callable[[bytes, str], object]


class BusListener:
    """Runs until cancelled; `handle(body, exchange)` is called for every message (synchronously; it must not raise
    and must be quick - see `handler.NotificationHandler`)."""

    def __init__(
        self,
        settings: NotificationSettings,
        handle: Handle,
        *,
        connect: Connect = aio_pika.connect,
        rng: random.Random | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        exchange_recheck: float = 30.0,
    ) -> None:
        self._settings = settings
        self._handle = handle
        self._connect = connect
        self._rng = rng or random.Random()
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._exchange_recheck = exchange_recheck
        self._secrets = sorted(settings.secrets(), key=len, reverse=True)
        self.bound: tuple[str, ...] = ()
        """Exchanges the queue is bound to now (empty while disconnected)."""
        self.connections = 0
        """Connections established so far (tests and the log use it)."""

    @property
    def listening(self) -> bool:
        return bool(self.bound)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        outage: str | None = None  # the reason of the ongoing outage, None while connected or never tried
        down_since: float | None = None
        log.info(
            "Starting the OpenStack notification listener",
            url=self._settings.display_url,
            exchanges=list(self._settings.exchanges),
            topics=list(self._settings.topics),
        )
        while True:
            started = loop.time()
            connected = asyncio.Event()
            try:
                await self._session(connected, down_since)
                reason = "the broker closed the connection"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = self._describe(exc)
            if connected.is_set():
                down_since = loop.time()
                if loop.time() - started >= STABLE_AFTER:
                    attempt = 0
            else:
                NOTIFICATIONS_CONNECTION_ATTEMPTS.labels(result="failure").inc()
            delay = self._backoff(attempt)
            attempt += 1
            if connected.is_set():
                log.warning(
                    "OpenStack notification bus connection lost; polling continues, reconnecting",
                    reason=reason,
                    retry_in=round(delay, 1),
                )
            elif reason != outage:
                log.warning(
                    "OpenStack notification bus unavailable; polling continues, retrying",
                    url=self._settings.display_url,
                    reason=reason,
                    retry_in=round(delay, 1),
                )
            else:
                log.debug("OpenStack notification bus still unavailable", reason=reason, attempt=attempt)
            outage = reason
            if down_since is None:
                down_since = started
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [base/2, min(max, base * 2^attempt)] (never a tight loop)."""
        ceiling = min(self._backoff_max, self._backoff_base * 2 ** min(attempt, 30))
        return self._rng.uniform(min(self._backoff_base / 2, ceiling), ceiling)

    async def _session(self, connected: asyncio.Event, down_since: float | None) -> None:
        """One connection: returns when the broker closes it, raises when it fails."""
        connection = await self._connect(
            self._settings.url,
            timeout=CONNECT_TIMEOUT,
            ssl_context=self._ssl_context(),
            client_properties={"connection_name": CONNECTION_NAME},
        )
        self.connections += 1
        connected.set()
        NOTIFICATIONS_CONNECTION_ATTEMPTS.labels(result="success").inc()
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        try:
            channel = await connection.channel()
            channel.close_callbacks.add(lambda *_: lost.set())
            await channel.set_qos(prefetch_count=PREFETCH)
            queue = await channel.declare_queue(
                "", exclusive=True, auto_delete=True, arguments={"x-max-length": MAX_BACKLOG}
            )
            missing = await self._bind(connection, queue, self._settings.exchanges)
            await queue.consume(self._on_message)
            self._report_bound(queue.name, missing, down_since)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), self._exchange_recheck if missing else None)
                if missing and not lost.is_set():
                    still = await self._bind(connection, queue, missing)
                    if still != missing:
                        self._report_bound(queue.name, still, None)
                    missing = still
        finally:
            self.bound = ()
            NOTIFICATIONS_CONNECTED.set(0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)

    async def _bind(self, connection: AbstractConnection, queue: AbstractQueue, names: Sequence[str]) -> list[str]:
        """Bind `queue` to each existing exchange of `names` for every topic; returns the missing ones."""
        missing: list[str] = []
        for name in names:
            if not await self._exchange_exists(connection, name):
                missing.append(name)
                continue
            for topic in self._settings.topics:
                await queue.bind(name, routing_key=f"{topic}.info")
            self.bound = (*self.bound, name)
        return missing

    @staticmethod
    async def _exchange_exists(connection: AbstractConnection, name: str) -> bool:
        # A passive declare of a missing exchange closes its channel (404): probe on a throwaway channel.
        probe = await connection.channel()
        try:
            await probe.get_exchange(name, ensure=True)
            return True
        except ChannelNotFoundEntity:
            return False
        finally:
            with contextlib.suppress(Exception):
                await probe.close()

    def _report_bound(self, queue: str, missing: list[str], down_since: float | None) -> None:
        NOTIFICATIONS_CONNECTED.set(1 if self.bound else 0)
        fields: dict[str, Any] = {"queue": queue, "exchanges": list(self.bound), "topics": list(self._settings.topics)}
        if missing:
            fields["missing"] = missing
        if not self.bound:
            log.warning(
                "Connected to the OpenStack notification bus, but no exchange exists yet; looking again", **fields
            )
        elif down_since is not None:
            outage = asyncio.get_running_loop().time() - down_since
            log.info("OpenStack notification bus is back; listening", down_seconds=round(outage, 1), **fields)
        else:
            log.info("Listening for OpenStack notifications", **fields)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            self._handle(message.body, message.exchange or "")
        except Exception as exc:  # the handler does not raise; never let one message end the consumer
            log.error("OpenStack notification handler failed", error=self._describe(exc))
        finally:
            with contextlib.suppress(Exception):
                await message.ack()

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self._settings.url.startswith("amqps:"):
            return None
        return ssl.create_default_context(cafile=self._settings.ca_bundle)

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        text = text.replace(self._settings.url, self._settings.display_url)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:500]
