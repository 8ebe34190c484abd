"""OpenStack notifications → queued configs: the controller's side of the opt-in listener (notifications/).

A relevant notification names projects, not configs or VMs. Its projects are looked up in the directory the
reconciler keeps (`seen`), throttled per project, and each config of a project is marked (`ChangeHints`)
and queued; the reconciler's trigger decision then calls OpenStack for it (`notified`) although neither its
spec nor its resync asks - and the observation coalescer serves all the configs of the project that were
queued together with one observation.

Trigger modes do not change: only `immediate` acts on notifications. `manual` and `webhook` configs never get
an OpenStack call from a notification, `scheduled` ones keep their slot (nothing is marked or queued for
them, and `notified` ignores a mark in any other mode). A standby replica marks and queues nothing (its
directory is empty anyway: it reconciles nothing), so running the listener on every replica is harmless.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from multinic_ctrl.controller.trigger import Decision, Mode, TriggerPolicy
from multinic_ctrl.metrics import NOTIFICATIONS_ENQUEUED
from multinic_ctrl.notifications import (
    BusListener,
    Change,
    ChangeHints,
    NotificationHandler,
    ProjectDirectory,
    ProjectThrottle,
)
from multinic_ctrl.openstack import Credentials
from multinic_ctrl.settings import NotificationSettings

log = structlog.get_logger(__name__)


def notified(policy: TriggerPolicy, decision: Decision) -> Decision:
    """The decision for a config a notification marked: call OpenStack now in `immediate` mode, where the policy
    would otherwise skip it as unchanged; keep its next resync where it was. Any other mode: unchanged."""
    if policy.mode is not Mode.IMMEDIATE or decision.call_openstack:
        return decision
    return Decision(True, decision.is_cr_change_event, "notification", decision.next_requeue)


class NotificationBridge:
    def __init__(
        self,
        settings: NotificationSettings,
        *,
        exists: Callable[[str], bool],
        enqueue: Callable[[str], None],
        mode: Callable[[], Mode],
        leading: Callable[[], bool],
        token_project: Callable[[Credentials], str | None],
    ) -> None:
        self.directory = ProjectDirectory()
        self.hints = ChangeHints()
        self._exists = exists
        self._enqueue = enqueue
        self._mode = mode
        self._leading = leading
        self._token_project = token_project
        self._throttle = ProjectThrottle(settings.min_interval, self._flush)
        self._events: dict[str, set[str]] = {}  # per project: event types since its last flush
        self.handler = NotificationHandler(self._on_change)
        self.listener = BusListener(settings, self.handler)

    async def run(self) -> None:
        """The listener, until cancelled (it reconnects by itself; it never returns)."""
        try:
            await self.listener.run()
        finally:
            self._throttle.close()

    # ------------------------------------------------------------------------------- reconciler hooks
    def seen(self, key: str, credentials: Credentials) -> int | None:
        """Before the trigger decision: file the config under its project; the pending mark, if any."""
        self._record(key, credentials)
        return self.hints.pending(key)

    def synced(self, key: str, credentials: Credentials, mark: int | None) -> None:
        """After a successful observation: the token's project is known now; the mark it answered is done."""
        self._record(key, credentials)
        self.hints.done(key, mark)

    def forget(self, key: str) -> None:
        self.directory.forget(key)
        self.hints.forget(key)

    def _record(self, key: str, credentials: Credentials) -> None:
        # Keystone scopes a token to `projectID` or refuses it, so before the first token that ID is the project.
        project = self._token_project(credentials) or credentials.project_id
        if project:
            self.directory.record(key, project)

    # -------------------------------------------------------------------------------- notifications
    def _on_change(self, change: Change) -> None:
        for project in change.projects:
            if project in self.directory:
                self._events.setdefault(project, set()).add(change.event_type)
                self._throttle.hit(project)

    def _flush(self, project: str) -> None:
        events = sorted(self._events.pop(project, ()))
        if self._mode() is not Mode.IMMEDIATE or not self._leading():
            return
        queued = 0
        for key in self.directory.configs(project):
            if self._exists(key):
                self.hints.mark(key)
                self._enqueue(key)
                queued += 1
        NOTIFICATIONS_ENQUEUED.inc(queued)
        # At most twice per project and OPENSTACK_NOTIFICATIONS_MIN_INTERVAL: says why the reconciles that follow ran.
        log.info("Configs queued after an OpenStack notification", project=project, events=events, configs=queued)
