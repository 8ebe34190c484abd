"""One message body in, at most one `Change` out: the per-message path, cheap for what does not matter.

Most traffic on a busy cloud's notification topics is irrelevant here (instance.update, volume, image and
security-group events, `.start` events). A body that contains none of the relevant event names is dropped
before it is decoded; the rest is decoded and classified (`events.classify`). Nothing raises out of here:
a malformed message is counted, logged (at most once a minute, without its content) and dropped, so that
one bad publisher can neither crash the listener nor make it requeue the same message forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import structlog

from multinic_ctrl.metrics import NOTIFICATIONS_RECEIVED

from .envelope import MalformedNotification, decode
from .events import MARKERS, Change, classify

log = structlog.get_logger(__name__)

Outcome = Literal["relevant", "ignored", "malformed"]
MALFORMED_LOG_INTERVAL = 60.0


class NotificationHandler:
    """Classifies bodies and hands relevant changes to `on_change` (synchronous and quick: it runs per message)."""

    def __init__(self, on_change: Callable[[Change], None], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._on_change = on_change
        self._clock = clock
        self._malformed_since_log = 0
        self._last_malformed_log: float | None = None

    def __call__(self, body: bytes, source: str = "") -> Outcome:
        outcome = self._handle(body, source)
        NOTIFICATIONS_RECEIVED.labels(outcome=outcome).inc()
        return outcome

    def _handle(self, body: bytes, source: str) -> Outcome:
        if not any(marker in body for marker in MARKERS):
            return "ignored"
        try:
            change = classify(decode(body))
        except (MalformedNotification, ValueError) as exc:
            self._malformed(str(exc), len(body), source)
            return "malformed"
        if change is None:
            return "ignored"
        self._on_change(change)
        return "relevant"

    def _malformed(self, reason: str, size: int, source: str) -> None:
        self._malformed_since_log += 1
        now = self._clock()
        if self._last_malformed_log is not None and now - self._last_malformed_log < MALFORMED_LOG_INTERVAL:
            return
        log.warning(
            "Malformed OpenStack notification dropped",
            reason=reason,
            bytes=size,
            exchange=source,
            dropped=self._malformed_since_log,
        )
        self._last_malformed_log = now
        self._malformed_since_log = 0
