"""The HTTPS endpoint of `vprotection.multinic.example.com` (POST /validate) and the batching of what it denies.

Invariants:

* **fail closed, answer always** - every well-formed AdmissionReview gets an AdmissionReview back with its uid; when
  the decision itself fails the answer is a denial (code 500), never an exception the apiserver has to interpret;
  malformed bodies get a JSON error (400), oversized ones 413 (`max_body`), other methods 405;
* **certificates are hot-swapped** - `set_certificate` builds a new `ssl.SSLContext` (load_cert_chain) and swaps it
  in for new connections through the listening context's SNI callback (called for every ClientHello, with or
  without SNI); connections already open keep their context. No restart, no dropped request across a renewal;
* **no object content leaves** - logs carry `Decision.summary` (uid, user, verb, target, outcome), metrics carry
  operation and result words; objects (Secrets!) are parsed, judged and forgotten;
* **visibility without a write per request** - each decision counts in
  `multinic_operator_protection_events_total{operation,result}`; denials go to `on_denial` (the service turns them
  into Events, which `kube/events.py` aggregates) and into a `DenialBatcher` whose `flush` hands out at most every
  `interval` seconds the per-installation count and last event for one `status.protectionStatus` write.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from multinic_ctrl.metrics import OPERATOR_PROTECTION_EVENTS

from .admission import Decision, InvalidReview, Policy, decide, parse_review, review_response

log = structlog.get_logger(__name__)

PATH = "/validate"
DEFAULT_MAX_BODY = 8 * 1024 * 1024  # objects are at most 1.5 MiB; a review carries object and oldObject


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) presenting `cert_pem`; the PEMs pass through a private temporary file
    (load_cert_chain reads only files) that is removed at once."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory(prefix="multinic-webhook-") as directory:
        cert_path, key_path = os.path.join(directory, "tls.crt"), os.path.join(directory, "tls.key")
        for path, content in ((cert_path, cert_pem), (key_path, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
        context.load_cert_chain(cert_path, key_path)
    return context


class ReloadingContext:
    """A listening SSLContext that hands each new connection the newest certificate's context."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self.listening = server_context(cert_pem, key_pem)
        self._current = self.listening
        self.cert_pem = cert_pem  # what new connections are served
        self.generation = 0
        self.handshakes: dict[int, int] = {}  # generation -> TLS handshakes served with it
        self.listening.sni_callback = self._select

    def set(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Swap in a new certificate for connections accepted from now on (raises ssl.SSLError on bad PEM)."""
        fresh = server_context(cert_pem, key_pem)
        self._current = fresh
        self.cert_pem = cert_pem
        self.generation += 1

    def _select(self, connection: Any, server_name: str | None, _context: ssl.SSLContext) -> None:
        current, generation = self._current, self.generation
        if current is not self.listening:
            connection.context = current
        self.handshakes[generation] = self.handshakes.get(generation, 0) + 1


@dataclass(frozen=True)
class Batch:
    """Denials of one installation since the last flush."""

    prevented: int
    last_event: str


def event_message(decision: Decision, at: datetime | None = None) -> str:
    """One line: who did what, and what to change instead; prefixed with the time when `at` is given.

    Events take it without a time (the recorder aggregates identical messages into one Event with a count);
    `lastProtectionEvent` with one.
    """
    r = decision.request
    text = f"denied {r.verb} of {r.target} by {r.username}: {decision.message}"
    return f"{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} {text}" if at is not None else text


class DenialBatcher:
    """Counts denials per installation and releases them at most every `interval` seconds.

    Dry-run requests are not counted (nothing was prevented); denials without a known installation neither (there
    is no MultiNicOperator to report on).
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._pending: dict[tuple[str, str], Batch] = {}
        self._last_flush: float | None = None

    def record(self, decision: Decision, at: datetime) -> None:
        if decision.allowed or decision.request.dry_run or decision.installation is None:
            return
        previous = self._pending.get(decision.installation)
        count = (previous.prevented if previous else 0) + 1
        self._pending[decision.installation] = Batch(count, event_message(decision, at))

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def due_in(self) -> float | None:
        """Seconds until `flush` would hand something out (0: now); None when nothing is pending."""
        if not self._pending:
            return None
        if self._last_flush is None:
            return 0.0
        return max(0.0, self._last_flush + self.interval - self._clock())

    def flush(self, *, force: bool = False) -> dict[tuple[str, str], Batch]:
        """The pending batches, if due (or `force`); they are forgotten - put them back with `restore` if the
        status write fails."""
        wait = self.due_in()
        if wait is None or (wait > 0 and not force):
            return {}
        out, self._pending = self._pending, {}
        self._last_flush = self._clock()
        return out

    def restore(self, batches: Mapping[tuple[str, str], Batch]) -> None:
        """Give back batches whose status write failed; newer denials keep their last event."""
        for key, batch in batches.items():
            newer = self._pending.get(key)
            self._pending[key] = Batch(
                batch.prevented + (newer.prevented if newer else 0), newer.last_event if newer else batch.last_event
            )


def protection_status(previous: Mapping[str, Any] | None, batch: Batch) -> dict[str, Any]:
    """`status.protectionStatus` after adding `batch` to what the object had."""
    merged = dict(previous or {})
    count = merged.get("preventedMutations")
    base = count if isinstance(count, int) and not isinstance(count, bool) else 0
    merged["preventedMutations"] = base + batch.prevented
    merged["lastProtectionEvent"] = batch.last_event
    return merged


class ProtectionWebhook:
    """`POST /validate` over HTTPS on `host:port` (port 0 picks a free one: see `bound_port`)."""

    def __init__(
        self,
        policy: Callable[[], Policy],
        cert_pem: bytes,
        key_pem: bytes,
        *,
        host: str = "0.0.0.0",  # noqa: S104 - the apiserver reaches the operator Pod through its Service
        port: int = 9443,
        on_denial: Callable[[Decision], None] | None = None,
        batcher: DenialBatcher | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        keepalive_timeout: float = 75.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.policy = policy
        self.host, self.port = host, port
        self.on_denial = on_denial
        self.batcher = batcher
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self._clock = clock
        self.tls = ReloadingContext(cert_pem, key_pem)
        self.app = web.Application(client_max_size=max_body)
        self.app.router.add_post(PATH, self._validate)
        self._runner: web.AppRunner | None = None

    def set_certificate(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Serve a renewed certificate to new connections."""
        self.tls.set(cert_pem, key_pem)
        log.info("Webhook serving certificate reloaded", generation=self.tls.generation)

    @property
    def bound_port(self) -> int:
        assert self._runner is not None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return int(server.sockets[0].getsockname()[1])
        return self.port

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.bound_port}{PATH}"

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=2.0,
            keepalive_timeout=self.keepalive_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls.listening)
        await site.start()
        log.info("Protection webhook serving", url=self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _validate(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body:
            return _error(413, f"body larger than {self.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {self.max_body} bytes")
        try:
            review = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error(400, "body is not JSON")
        try:
            request_, obj, old = parse_review(review)
        except InvalidReview as exc:
            return _error(400, str(exc))
        operation = _bounded(request_.operation)
        try:
            decision = decide(request_, obj, old, self.policy())
        except Exception:  # fail closed with an answer, never a 500 page the apiserver must interpret
            log.exception("Protection decision failed; denying", uid=request_.uid)
            OPERATOR_PROTECTION_EVENTS.labels(operation=operation, result="error").inc()
            return web.json_response(review_response(request_.uid, error="the protection webhook failed to decide"))
        del obj, old  # judged and forgotten
        answer = review_response(request_.uid, decision)
        OPERATOR_PROTECTION_EVENTS.labels(operation=operation, result="allowed" if decision.allowed else "denied").inc()
        if decision.allowed:
            log.debug("Admission allowed", **decision.summary)
        else:
            log.info("Admission denied", **decision.summary)
            if self.batcher is not None:
                self.batcher.record(decision, self._clock())
            if self.on_denial is not None:
                try:
                    self.on_denial(decision)
                except Exception:
                    log.exception("Denial callback failed", uid=decision.request.uid)
        return web.json_response(answer)


_OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})


def _bounded(operation: str) -> str:
    """A bounded metric label: the operation, or `other`."""
    return operation if operation in _OPERATIONS else "other"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
