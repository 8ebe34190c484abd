"""One shared aiohttp session with timeouts, retries, metrics and error mapping.

Retry policy: connection errors, timeouts, 5xx and 429 are retried with capped exponential backoff and full
jitter (so many controllers recovering at once do not hammer the API in lockstep); a 429/503 `Retry-After`
(seconds or HTTP date) replaces the computed delay, capped by `max_retry_after`. Other 4xx are never retried:
repeating a bad request cannot fix it. 401 is handled one level up (re-authenticate once).
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from multidict import CIMultiDictProxy

from multinic_ctrl.metrics import OPENSTACK_REQUEST_DURATION

from .errors import OpenStackRequestError, OpenStackUnavailable, PermissionDenied, ResourceNotFound

log = structlog.get_logger(__name__)

Params = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # total tries, including the first
    backoff_base: float = 0.25
    backoff_max: float = 8.0
    max_retry_after: float = 60.0


@dataclass(frozen=True)
class HttpSettings:
    request_timeout: float = 30.0  # whole request, per attempt
    connect_timeout: float = 10.0
    connector_limit: int = 32
    connector_limit_per_host: int = 16
    ca_bundle: str | None = None  # PEM file trusted in addition to nothing else (replaces system store)
    insecure: bool = False  # skip TLS verification: only for labs; logs a warning
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = "multinic-ctrl"


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or None when the body is empty / not JSON


def build_ssl(settings: HttpSettings) -> ssl.SSLContext | bool:
    """TLS verified by default against the system store, or against `ca_bundle` when given."""
    if settings.insecure:
        log.warning("TLS verification of OpenStack endpoints is disabled", insecure=True)
        return False
    if settings.ca_bundle:
        return ssl.create_default_context(cafile=settings.ca_bundle)
    return ssl.create_default_context()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_detail(body: Any) -> str:
    """The human message of an OpenStack error body, whatever the service's envelope.

    Keystone: `{"error": {"code", "title", "message"}}`; Neutron: `{"NeutronError": {"type", "message",
    "detail"}}`; Nova: `{"itemNotFound"|"badRequest"|...: {"code", "message"}}`. Truncated: it goes into
    the log only (never status or Events: the endpoint may be a config author's server).
    """
    if isinstance(body, Mapping) and len(body) >= 1:
        for inner in body.values():
            if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
                return str(inner["message"])[:300]
        if isinstance(body.get("message"), str):
            return str(body["message"])[:300]
    return "no error message in response"


class HttpTransport:
    """Owns (or borrows) the process-wide `aiohttp.ClientSession`."""

    def __init__(
        self,
        settings: HttpSettings | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or HttpSettings()
        self._session = session
        self._owns_session = session is None
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter only; not security relevant
        self._ssl = build_ssl(self.settings)

    def _get_session(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be created inside the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.settings.connector_limit,
                limit_per_host=self.settings.connector_limit_per_host,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": self.settings.user_agent})
            self._owns_session = True
        return self._session

    async def close(self) -> None:
        if self._session is not None and self._owns_session and not self._session.closed:
            await self._session.close()
        self._session = None

    def _backoff(self, attempt: int) -> float:
        policy = self.settings.retry
        cap = min(policy.backoff_max, policy.backoff_base * (2 ** (attempt - 1)))
        return self._rng.uniform(0, cap)

    async def request(
        self,
        *,
        service: str,
        operation: str,
        method: str,
        url: str,
        params: Params | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """Send one logical request, retrying transient failures; returns the final response.

        Raises `OpenStackUnavailable` when every attempt failed transiently. Any other status (2xx, 4xx) is
        returned for the caller to interpret.
        """
        policy = self.settings.retry
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout, sock_connect=self.settings.connect_timeout)
        reason = ""
        for attempt in range(1, policy.attempts + 1):
            started = time.perf_counter()
            retry_after: float | None = None
            try:
                async with self._get_session().request(
                    method,
                    url,
                    params=list(params) if params is not None else None,
                    json=json,
                    headers=dict(headers or {}),
                    timeout=timeout,
                    ssl=self._ssl,
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
                    resp_headers: CIMultiDictProxy[str] = resp.headers
            except TimeoutError:
                self._observe(service, operation, "timeout", started)
                reason = f"timed out after {self.settings.request_timeout:g}s"
            except aiohttp.ClientSSLError as exc:
                # A certificate problem will not fix itself: fail at once with a clear message.
                self._observe(service, operation, "tls_error", started)
                raise OpenStackRequestError(service, operation, None, f"TLS error: {exc}") from None
            except aiohttp.ClientError as exc:
                self._observe(service, operation, "connection_error", started)
                reason = f"connection error: {type(exc).__name__}"
            else:
                self._observe(service, operation, str(status), started)
                if status < 500 and status != 429:
                    return Response(status=status, headers=resp_headers, body=_parse_json(raw))
                reason = f"HTTP {status}"
                if status in (429, 503):
                    retry_after = parse_retry_after(resp_headers.get("Retry-After"))
            if attempt == policy.attempts:
                break
            delay = self._backoff(attempt)
            if retry_after is not None:
                delay = min(retry_after, policy.max_retry_after)
            log.warning(
                "OpenStack request failed, retrying",
                service=service,
                operation=operation,
                attempt=attempt,
                reason=reason,
                delay_s=round(delay, 3),
            )
            await self._sleep(delay)
        log.error(
            "OpenStack request failed after all retries",
            service=service,
            operation=operation,
            attempts=policy.attempts,
            reason=reason,
        )
        raise OpenStackUnavailable(service, operation, policy.attempts, reason)

    @staticmethod
    def _observe(service: str, operation: str, code: str, started: float) -> None:
        OPENSTACK_REQUEST_DURATION.labels(service=service, operation=operation, code=code).observe(
            time.perf_counter() - started
        )


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return jsonlib.loads(raw)
    except ValueError:
        return None


def raise_for_status(resp: Response, service: str, operation: str) -> None:
    """Map a final non-2xx response (other than 401, handled by the caller) to a typed error."""
    if 200 <= resp.status < 300:
        return
    # The body's text is the endpoint's words, and the endpoint may be anyone's (a config author picks the
    # URL): it goes to the log for the admin, never into the exception, which ends up in status and Events.
    log.warning(
        "OpenStack request refused",
        service=service,
        operation=operation,
        status=resp.status,
        detail=error_detail(resp.body),
    )
    if resp.status == 403:
        raise PermissionDenied(
            f"{service} {operation} forbidden (HTTP 403): the user lacks a role or policy for this call"
        )
    if resp.status == 404:
        raise ResourceNotFound(f"{service} {operation} found nothing (HTTP 404)")
    raise OpenStackRequestError(service, operation, resp.status, "the endpoint refused the request")
