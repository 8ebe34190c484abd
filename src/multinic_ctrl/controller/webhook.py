"""`POST /trigger` and `POST /trigger/{namespace}/{name}`: external systems ask for a reconcile.

Bearer-token authenticated (constant-time comparison), small bodies only, rate limited per client address,
JSON errors everywhere (including 405/413, which aiohttp would otherwise answer in plain text). A trigger is
accepted in every mode; in `webhook` mode it is the only periodic trigger. The keys are queued and answered
with 202: the reconcile itself runs asynchronously and reports through the config's status.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 4096
RATE_BURST = 10
RATE_PER_SECOND = 1.0
_MAX_CLIENTS = 1024

Enqueue = Callable[[Iterable[str]], None]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers or None)


class _TokenBuckets:
    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """0 when allowed, else seconds until the next token."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > _MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


class TriggerEndpoint:
    def __init__(
        self,
        token: str,
        *,
        known_keys: Callable[[], Iterable[str]],
        enqueue: Enqueue,
        ready: Callable[[], bool],
        burst: int = RATE_BURST,
        rate: float = RATE_PER_SECOND,
    ) -> None:
        self._token = token.encode()
        self._known_keys = known_keys
        self._enqueue = enqueue
        self._ready = ready
        self._limits = _TokenBuckets(burst, rate)

    def install(self, app: web.Application) -> None:
        for path in ("/trigger", "/trigger/{namespace}/{name}"):
            app.router.add_route("*", path, self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _error(405, f"method {request.method} not allowed; use POST", Allow="POST")
        wait = self._limits.take(request.remote or "unknown")
        if wait:
            return _error(429, "too many trigger requests; slow down", **{"Retry-After": str(max(1, round(wait)))})
        if not self._token:
            return _error(503, "webhook trigger is disabled: no token configured (TRIGGER_TOKEN_FILE)")
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), self._token):
            return _error(401, "missing or invalid bearer token", **{"WWW-Authenticate": 'Bearer realm="multinic"'})
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        received = 0
        while chunk := await request.content.read(MAX_BODY_BYTES + 1 - received):
            # `read(n)` returns what has arrived so far; a chunked body must be counted to the end.
            received += len(chunk)
            if received > MAX_BODY_BYTES:
                return _error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        if not self._ready():
            return _error(503, "caches are not synced yet; retry shortly", **{"Retry-After": "5"})
        known = set(self._known_keys())
        namespace, name = request.match_info.get("namespace"), request.match_info.get("name")
        if namespace is not None and name is not None:
            key = f"{namespace}/{name}"
            if key not in known:
                return _error(404, f"OpenstackConfig {key} not found")
            keys = [key]
        else:
            keys = sorted(known)
        self._enqueue(keys)
        log.info("Reconcile requested by webhook", keys=len(keys), client=request.remote)
        return web.json_response({"enqueued": keys}, status=202)
