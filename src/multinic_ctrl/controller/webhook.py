"""`POST /trigger` and `POST /trigger/{namespace}/{name}`: external systems ask for a reconcile.

Invariants:
- A trigger that was answered 202 is never lost: the receiving replica - leader or standby - records it on
  the config object itself (an annotation holding a request ID, see `triggers.py`) before answering. The
  leader sees the annotation through its watch and records the ID it handled in the config's status, so a
  request survives a restart, a leader change or a `kill -9` between the answer and the reconcile.
- The token is checked first, in constant time, before anything about the request is looked at, and
  failures and successes are rate limited apart: a flood of bad requests from a shared address (NAT, an
  ingress) cannot use up the real caller's budget. A global cap bounds the work all callers together can ask.
- Small bodies only, JSON errors everywhere (including 405/413, which aiohttp would otherwise answer in plain
  text). A trigger is accepted in every mode; in `webhook` mode it is the only periodic trigger.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

import structlog
from aiohttp import web

from multinic_ctrl.controller.triggers import new_request_id

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 4096
RATE_BURST = 10  # per client, authenticated requests
RATE_PER_SECOND = 1.0
FAILURE_BURST = 5  # per client, failed authentications
FAILURE_PER_SECOND = 0.2
GLOBAL_BURST = 50  # all clients together (authenticated and failed counted apart)
GLOBAL_PER_SECOND = 5.0
_MAX_CLIENTS = 1024
_EVERYONE = "*"

RecordTriggers = Callable[[Sequence[str], str], Awaitable[list[str]]]
"""Record request `request_id` on each config key; returns the keys recorded (configs gone meanwhile are left
out); raises when the apiserver could not be written, and the caller is then told to retry (503)."""


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers or None)


class _TokenBuckets:
    def __init__(self, burst: int, rate: float, *, per_client: bool = True) -> None:
        self.burst, self.rate, self.per_client = burst, rate, per_client
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
        record: RecordTriggers,
        ready: Callable[[], bool],
        burst: int = RATE_BURST,
        rate: float = RATE_PER_SECOND,
        failure_burst: int = FAILURE_BURST,
        failure_rate: float = FAILURE_PER_SECOND,
        global_burst: int = GLOBAL_BURST,
        global_rate: float = GLOBAL_PER_SECOND,
    ) -> None:
        self._token = token.encode()
        self._known_keys = known_keys
        self._record = record
        self._ready = ready
        self._accepted = _TokenBuckets(burst, rate)
        self._failed = _TokenBuckets(failure_burst, failure_rate)
        self._accepted_all = _TokenBuckets(global_burst, global_rate, per_client=False)
        self._failed_all = _TokenBuckets(global_burst, global_rate, per_client=False)

    def install(self, app: web.Application) -> None:
        for path in ("/trigger", "/trigger/{namespace}/{name}"):
            app.router.add_route("*", path, self._handle)

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        # compare_digest runs in time independent of where the first difference is; the scheme check leaks
        # only whether the caller wrote "Bearer", which is no secret.
        return hmac.compare_digest(presented.strip().encode(), self._token) and scheme.lower() == "bearer"

    @staticmethod
    def _limited(client: str, *buckets: _TokenBuckets) -> web.Response | None:
        for bucket in buckets:
            wait = bucket.take(client if bucket.per_client else _EVERYONE)
            if wait:
                return _error(429, "too many trigger requests; slow down", **{"Retry-After": str(max(1, round(wait)))})
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method != "POST":
            return _error(405, f"method {request.method} not allowed; use POST", Allow="POST")
        if not self._token:
            return _error(503, "webhook trigger is disabled: no token configured (TRIGGER_TOKEN_FILE)")
        client = request.remote or "unknown"
        if not self._authenticated(request):
            refused = self._limited(client, self._failed, self._failed_all)
            if refused is not None:
                return refused
            return _error(401, "missing or invalid bearer token", **{"WWW-Authenticate": 'Bearer realm="multinic"'})
        refused = self._limited(client, self._accepted, self._accepted_all)
        if refused is not None:
            return refused
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
        request_id = new_request_id()
        try:
            recorded = await self._record(keys, request_id)
        except Exception as exc:
            log.warning("Webhook trigger could not be recorded", keys=len(keys), error=str(exc), client=client)
            return _error(503, "the trigger could not be recorded; retry shortly", **{"Retry-After": "5"})
        log.info("Reconcile requested by webhook", keys=len(recorded), request=request_id, client=client)
        return web.json_response({"enqueued": recorded, "request": request_id}, status=202)
