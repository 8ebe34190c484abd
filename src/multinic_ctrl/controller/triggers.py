"""Run-time trigger state shared by the reconciler, the policy watcher and the webhook endpoint.

Webhook requests live on the config objects, not in memory (see `webhook.py`): `TRIGGER_ANNOTATION` holds the
ID of the latest request, `status.lastHandledTrigger` the ID the leader last reconciled successfully. A request
is pending while the two differ - whichever replica received it, and across restarts and leader changes.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from multinic_ctrl.controller.trigger import TriggerConfigError, TriggerPolicy, parse_policy

log = structlog.get_logger(__name__)


TRIGGER_ANNOTATION = "multinic.example.com/trigger-request"
HANDLED_FIELD = "lastHandledTrigger"


def requested_trigger(obj: Mapping[str, Any]) -> str | None:
    """The latest webhook request ID recorded on the config, if any."""
    value = ((obj.get("metadata") or {}).get("annotations") or {}).get(TRIGGER_ANNOTATION)
    return str(value) if value else None


def pending_trigger(obj: Mapping[str, Any]) -> str | None:
    """The request ID still to be handled: recorded on the object and not yet acknowledged in its status.

    Stays pending until a reconcile *succeeds*, so a failed attempt is retried even in `webhook` mode, where
    nothing else would bring the key back.
    """
    requested = requested_trigger(obj)
    if requested is None or requested == (obj.get("status") or {}).get(HANDLED_FIELD):
        return None
    return requested


def new_request_id(now: dt.datetime | None = None) -> str:
    """Sortable by time for people reading status, unique by its random part (no coordination needed)."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{moment:%Y%m%dT%H%M%S}Z-{secrets.token_hex(6)}"


def trigger_patch(request_id: str) -> dict[str, Any]:
    """The merge patch a receiving replica writes (metadata only: no generation bump, no spec change)."""
    return {"metadata": {"annotations": {TRIGGER_ANNOTATION: request_id}}}


class TriggerState:
    """The current policy, hot-swappable without restart."""

    def __init__(self, policy: TriggerPolicy | None = None) -> None:
        self.policy = policy or TriggerPolicy()
        self._listeners: list[Callable[[TriggerPolicy], None]] = []

    def on_change(self, listener: Callable[[TriggerPolicy], None]) -> None:
        self._listeners.append(listener)

    def update_from_spec(self, trigger: Mapping[str, Any] | None, *, source: str) -> None:
        try:
            policy = parse_policy(trigger, resync=self.policy.resync)
        except TriggerConfigError as exc:
            log.error(
                "Ignoring invalid reconcile trigger; keeping the previous one",
                source=source,
                error=str(exc),
                mode=self.policy.mode.value,
            )
            return
        if policy == self.policy:
            return
        log.info(
            "Reconcile trigger changed",
            source=source,
            mode=policy.mode.value,
            interval=str(policy.interval),
            immediateOnCRChange=policy.immediate_on_cr_change,
        )
        self.policy = policy
        for listener in self._listeners:
            listener(policy)
