"""Run-time trigger state shared by the reconciler, the policy watcher and the webhook endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from multinic_ctrl.controller.trigger import TriggerConfigError, TriggerPolicy, parse_policy

log = structlog.get_logger(__name__)


class TriggerState:
    """The current policy (hot-swappable without restart) and the keys a webhook asked to reconcile.

    A webhook request stays pending until a reconcile of that key *succeeds*, so a failed attempt is retried
    even in `webhook` mode, where nothing else would bring the key back.
    """

    def __init__(self, policy: TriggerPolicy | None = None) -> None:
        self.policy = policy or TriggerPolicy()
        self._webhook_pending: set[str] = set()
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

    def request_webhook(self, keys: Iterable[str]) -> None:
        self._webhook_pending.update(keys)

    def webhook_pending(self, key: str) -> bool:
        return key in self._webhook_pending

    def webhook_done(self, key: str) -> None:
        self._webhook_pending.discard(key)
