"""Wiring of the controller process: informers, queue, workers, leader election, webhook, events.

The pieces and their owners: every long-running task is spawned on one `Supervisor`, whose failures turn
`/healthz` red; readiness = database reachable + informers synced; leadership state is reported in `/readyz`
details (a standby replica is ready - it serves probes and takes over within one lease duration).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import structlog

from multinic_ctrl.controller.clients import openstack_client
from multinic_ctrl.controller.notified import NotificationBridge
from multinic_ctrl.controller.peers import PEER_INDEX, CallForecast, PeerFinder, peer_groups
from multinic_ctrl.controller.reconciler import OpenstackConfigReconciler, ReconcilerDeps
from multinic_ctrl.controller.resources import MULTINICOPERATORS, OPENSTACKCONFIGS, SECRET_METADATA
from multinic_ctrl.controller.secret_reads import SecretReader
from multinic_ctrl.controller.spec import SpecError, parse_spec
from multinic_ctrl.controller.trigger import TriggerPolicy
from multinic_ctrl.controller.triggers import TriggerState, requested_trigger, trigger_patch
from multinic_ctrl.controller.webhook import TriggerEndpoint
from multinic_ctrl.db import Database, DatabaseError, Repository, fence
from multinic_ctrl.db.fence import Fenced
from multinic_ctrl.db.migrations import migrate_until_done
from multinic_ctrl.kube import (
    ApiError,
    Controller,
    EventRecorder,
    Informer,
    JsonObj,
    KubeClient,
    LeaderElector,
    Supervisor,
    identity_only,
    is_not_found,
    split_key,
    without_bookkeeping,
)
from multinic_ctrl.metrics import RECONCILE_TOTAL
from multinic_ctrl.openstack import ObservationCoalescer, OpenStackClient, OpenStackError
from multinic_ctrl.server import NotReady, ProbeServer
from multinic_ctrl.settings import Settings

log = structlog.get_logger(__name__)

SHUTDOWN_DEADLINE = 8.0  # twice (queue drain, then tasks): inside the process's 20 s grace period
_RECORD_CONCURRENCY = 8  # webhook trigger patches in flight at once
ORPHAN_CHECK_INTERVAL = 300.0  # seconds between orphan checks (RESYNC_INTERVAL when that is longer)


class StoreView:
    """One read view over the stores of several informers (one per watched namespace)."""

    def __init__(self, informers: list[Informer]) -> None:
        self._informers = informers

    def get(self, key: str) -> JsonObj | None:
        for informer in self._informers:
            found = informer.store.get(key)
            if found is not None:
                return found
        return None

    def keys(self) -> list[str]:
        return sorted(k for informer in self._informers for k in informer.store.keys())

    def resource_version(self, key: str) -> str | None:
        for informer in self._informers:
            found = informer.store.resource_version(key)
            if found is not None:
                return found
        return None

    def index_count(self, index_name: str, value: str) -> int:
        return sum(informer.store.index_count(index_name, value) for informer in self._informers)

    def objects(self) -> list[JsonObj]:
        return [o for informer in self._informers for o in informer.store.objects()]


def _spec_or_meta_changed(old: JsonObj | None, new: JsonObj) -> bool:
    """Status-only updates (our own writes) must not wake the controller; spec, deletion, finalizers and a
    recorded webhook request do."""
    if old is None:
        return True
    o, n = old.get("metadata") or {}, new.get("metadata") or {}
    return (
        o.get("generation") != n.get("generation")
        or o.get("deletionTimestamp") != n.get("deletionTimestamp")
        or o.get("finalizers") != n.get("finalizers")
        or requested_trigger(old) != requested_trigger(new)
    )


SECRET_INDEX = "secrets"  # noqa: S105 - an index name, not a credential


def referenced_secrets(obj: Mapping[str, Any]) -> list[str]:
    """Index function: `namespace/name` of each Secret a config references (none for a spec that does not parse)."""
    namespace = (obj.get("metadata") or {}).get("namespace")
    try:
        names = parse_spec(obj.get("spec")).secret_names()
    except SpecError:
        return []
    return [f"{namespace}/{name}" for name in sorted(names)]


CONFLICT_INDEX = "conflicts"


def blocking_owners(obj: Mapping[str, Any]) -> list[str]:
    """Index function: the configs owning ports this config reported as conflicts (from its status)."""
    owners = {
        str(interface["ownedBy"])
        for vm in (obj.get("status") or {}).get("vms") or ()
        if isinstance(vm, Mapping)
        for interface in vm.get("interfaces") or ()
        if isinstance(interface, Mapping) and interface.get("ownedBy")
    }
    return sorted(owners)


def _secret_changed(old: JsonObj | None, new: JsonObj) -> bool:
    """Secrets are watched as metadata only: any write (data included) moves the resourceVersion."""
    if old is None:
        return True
    return (old.get("metadata") or {}).get("resourceVersion") != (new.get("metadata") or {}).get("resourceVersion")


class ControllerService:
    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        cfg = settings.controller
        self.triggers = TriggerState(TriggerPolicy(resync=dt.timedelta(seconds=cfg.resync_seconds)))
        self.supervisor = Supervisor("controller")
        self.kube: KubeClient | None = None
        self.controller: Controller | None = None
        self.reconciler: OpenstackConfigReconciler | None = None
        self.config_informers: list[Informer] = []
        self.secret_informers: list[Informer] = []
        self.elector: LeaderElector | None = None
        self._term: int | None = None  # database term while leading (db/fence.py)
        self.endpoint = TriggerEndpoint(
            cfg.trigger_token,
            known_keys=lambda: self.configs.keys(),
            record=self._record_triggers,
            ready=lambda: self.synced,
        )
        self.configs = StoreView(self.config_informers)

    @property
    def synced(self) -> bool:
        return bool(self.config_informers) and all(i.has_synced for i in self.config_informers)

    def install(self, server: ProbeServer) -> None:
        self.endpoint.install(server.app)
        server.add_liveness_probe(self.supervisor.failed_tasks)
        server.add_liveness_probe(lambda: self.controller.stalled() if self.controller is not None else [])
        server.add_readiness_check("informers", self._informers_ready)
        server.add_detail("leadership", self._leadership)
        server.add_detail("triggerMode", lambda: self.triggers.policy.mode.value)

    async def _informers_ready(self) -> None:
        if not self.synced:
            raise NotReady("OpenstackConfig caches not synced yet")

    def _leadership(self) -> str:
        if self.elector is None:
            return "disabled (single replica)"
        return "leader" if self.elector.is_leader else "standby"

    async def _record_triggers(self, keys: Sequence[str], request_id: str) -> list[str]:
        """Write the request onto each config: durable, and seen by whichever replica leads (via its watch).

        Any replica may receive the call; none queues anything itself. At most `_RECORD_CONCURRENCY` patches
        are in flight, so `POST /trigger` on a large cluster does not burst the apiserver.
        """
        kube = self.kube
        if kube is None:
            raise RuntimeError("not connected to the apiserver yet")
        limit = asyncio.Semaphore(_RECORD_CONCURRENCY)

        async def record(key: str) -> str | None:
            namespace, name = split_key(key)
            async with limit:
                try:
                    await kube.patch(OPENSTACKCONFIGS, name, trigger_patch(request_id), namespace)
                except Exception as exc:
                    if is_not_found(exc):
                        return None  # deleted since the cache saw it: nothing to reconcile
                    raise
            return key

        results = await asyncio.gather(*(record(k) for k in keys))
        return [k for k in results if k is not None]

    def _enqueue_all(self, _policy: TriggerPolicy | None = None) -> None:
        if self.controller is not None:
            for key in self.configs.keys():
                self.controller.queue.add(key)

    def _configs_using_secret(self, secret: JsonObj) -> list[str]:
        """The configs that reference `secret`: an index lookup, O(1) per event.

        Runs for every Secret event - a relist of N Secrets calls it N times on the event loop - so it must not
        scan (or copy, or parse) the configs: the `secrets` index is kept up to date as configs change.
        """
        meta = secret.get("metadata") or {}
        ref = f"{meta.get('namespace')}/{meta.get('name')}"
        return [key for informer in self.config_informers for key in informer.store.index_keys(SECRET_INDEX, ref)]

    async def _lead(self) -> None:
        """While holding the Lease: claim a database term first (fencing out any deposed leader), then work."""
        assert self.controller is not None and self.elector is not None
        delay = 0.5
        while self._term is None:
            try:
                self._term = await fence.claim(self.database, self.elector.identity)
            except DatabaseError as exc:
                log.warning("Could not claim the database term; retrying", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        log.info("Database term claimed", term=self._term)
        await self._work()

    async def _work(self) -> None:
        """The workers of one term (all of the process's life without leader election), started once the caches
        have synced and the configs' stored state has been read in one query (`prime`)."""
        assert self.controller is not None and self.reconciler is not None
        await self.controller.wait_synced()
        await self.reconciler.prime(self.configs.keys())
        await self.controller.run_workers()

    def _end_term(self) -> None:
        self._term = None

    def _fence_term(self) -> int:
        """The term writes carry - only while leading with a safety margin left on the Lease."""
        elector, term = self.elector, self._term
        if elector is None or term is None or not elector.is_leader:
            raise Fenced("this replica is not the leader")
        margin = elector.lease_duration - elector.renew_deadline
        if elector.lease_remaining() < margin:
            raise Fenced(f"the lease has less than {margin:.0f}s left; not writing (another replica may lead)")
        return term

    def _group_size(self, group: str) -> int:
        """Configs in a peer group: asked on every reconcile, so counted, never listed."""
        return self.configs.index_count(PEER_INDEX, group)

    def _blocked_by(self, owner: str) -> list[str]:
        """Configs whose status reports a port conflict with `owner` (looked up in every watched namespace)."""
        return sorted(
            {key for informer in self.config_informers for key in informer.store.index_keys(CONFLICT_INDEX, owner)}
        )

    async def _collect_orphans(self) -> None:
        """Rows are removed when their config's key is processed; a config deleted while the controller was
        gone (or whose finalizer was removed by hand) is never processed again. So, once the caches have synced
        and while leading, compare the configs that have rows or state with the cache and queue the missing
        ones: the reconciler removes their rows as for any config that is gone. Repeated every 5 minutes (or every
        resync, if longer)."""
        while True:  # ends by cancellation at shutdown (returning early would count as a dead task)
            if self.synced and self.controller is not None and (self.elector is None or self.elector.is_leader):
                watched = set(self.settings.namespaces)
                try:
                    stored = await Repository(self.database).config_keys()
                except Exception as exc:  # MariaDB down: the next round tries again; reconciles report it
                    log.warning("Orphan check skipped: database unavailable", error=str(exc))
                else:
                    orphans = [
                        f"{ns}/{name}"
                        for ns, name in stored
                        if (not watched or ns in watched)
                        and not any(f"{ns}/{name}" in informer.store for informer in self.config_informers)
                    ]
                    if orphans:
                        log.info("Rows of configs that no longer exist found; removing", configs=orphans)
                    for key in orphans:
                        self.controller.queue.add(key)
                # Not tied to a short OpenStack resync: the check reads every config's key from the database.
                delay = max(self.settings.controller.resync_seconds, ORPHAN_CHECK_INTERVAL)
            else:
                delay = 1.0  # not synced or not leading yet: look again soon
            await asyncio.sleep(delay)

    def _notification_bridge(self, openstack: OpenStackClient) -> NotificationBridge | None:
        """The opt-in OpenStack notification listener (OPENSTACK_NOTIFICATIONS_URL), wired to this replica's
        queue; it queues nothing unless this replica leads (see controller/notified.py)."""
        settings = self.settings.controller.notifications
        if settings is None:
            return None
        bridge = NotificationBridge(
            settings,
            exists=lambda key: self.configs.get(key) is not None,
            enqueue=lambda key: self.controller.queue.add(key) if self.controller is not None else None,
            mode=lambda: self.triggers.policy.mode,
            leading=lambda: self.elector is None or self.elector.is_leader,
            token_project=lambda creds: getattr(openstack.tokens.cached(creds), "project_id", None),
        )
        for informer in self.config_informers:
            informer.add_handler(on_delete=lambda obj: bridge.forget(_key_of(obj)), read_only=True)
        return bridge

    def make_config_informers(self, kube: KubeClient, namespaces: Sequence[str | None]) -> list[Informer]:
        """One OpenstackConfig informer per watched namespace, indexed by the Secrets each config references."""
        informers = [
            Informer(
                kube,
                OPENSTACKCONFIGS,
                namespace=ns,
                indexers={SECRET_INDEX: referenced_secrets, CONFLICT_INDEX: blocking_owners, PEER_INDEX: peer_groups},
                # Cached for the life of the process, read only for spec, status and a few metadata fields.
                transform=without_bookkeeping,
            )
            for ns in namespaces
        ]
        self.config_informers.extend(informers)
        return informers

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.settings.controller
        kubeconfig = str(self.settings.kubeconfig) if self.settings.kubeconfig else None
        self.kube = kube = await KubeClient.from_config(kubeconfig)
        openstack = openstack_client(self.settings)
        events = EventRecorder(kube, "multinic-controller")
        namespaces: list[str | None] = list(self.settings.namespaces) or [None]
        self.make_config_informers(kube, namespaces)
        self.secret_informers = secret_informers = [
            Informer(kube, SECRET_METADATA, namespace=ns, transform=identity_only) for ns in namespaces
        ]
        forecast = CallForecast()

        secret_reader = SecretReader(kube, StoreView(secret_informers).resource_version)
        for informer in secret_informers:
            informer.add_handler(on_delete=lambda obj: secret_reader.forget(_key_of(obj)), read_only=True)

        def members(group: str) -> list[str]:
            return [k for informer in self.config_informers for k in informer.store.index_keys(PEER_INDEX, group)]

        # Observations are shared per identity, with the queued configs of the same peer group taken along.
        coalescer = ObservationCoalescer(
            openstack,
            window=cfg.coalesce_window,
            peers=PeerFinder(
                members=members,
                get=self.configs.get,
                is_queued=lambda key: self.controller is not None and self.controller.queue.is_queued(key),
                forecast=forecast,
                policy=lambda: self.triggers.policy,
                now=lambda: asyncio.get_running_loop().time(),
            ),
        )
        self.reconciler = reconciler = OpenstackConfigReconciler(
            ReconcilerDeps(
                kube=kube,
                configs=self.configs,
                repo=Repository(self.database, fence=self._fence_term if cfg.leader_elect else None),
                openstack=openstack,
                events=events,
                triggers=self.triggers,
                error_retry=dt.timedelta(seconds=cfg.error_retry_seconds),
                blocked_by=self._blocked_by,
                notifications=self._notification_bridge(openstack),
                coalescer=coalescer,
                group_size=self._group_size if cfg.resync_budgeted else None,
                due_since=lambda key: self.controller.queue.due_since(key) if self.controller is not None else None,
                forecast=forecast,
                secrets=secret_reader,
            )
        )
        self.controller = controller = Controller(
            "openstackconfig",
            reconciler.reconcile,
            workers=cfg.workers,
            observe=_observe_result,
            reconcile_timeout=cfg.reconcile_timeout,
            stall_timeout=cfg.stall_timeout,
            # Outages (MariaDB, OpenStack, the apiserver) and a deposed leader: expected, reported in status;
            # a traceback per attempt would only flood the log.
            expected_errors=(DatabaseError, OpenStackError, Fenced, ApiError, aiohttp.ClientError, OSError),
        )
        for informer in self.config_informers:
            controller.watch(informer, predicate=_spec_or_meta_changed)
        for informer in secret_informers:
            controller.watch(informer, self._configs_using_secret, predicate=_secret_changed)
        self.triggers.on_change(self._enqueue_all)
        if cfg.trigger_source:
            op_namespace, op_name = cfg.trigger_source
            op_informer = Informer(
                kube, MULTINICOPERATORS, namespace=op_namespace, field_selector=f"metadata.name={op_name}"
            )
            source = f"{op_namespace}/{op_name}"

            def apply_trigger(obj: JsonObj) -> None:
                self.triggers.update_from_spec((obj.get("spec") or {}).get("reconcileTrigger"), source=source)

            def reset_trigger(_obj: JsonObj) -> None:
                self.triggers.update_from_spec(None, source=source)

            op_informer.add_handler(apply_trigger, lambda _old, new: apply_trigger(new), reset_trigger)
            self.supervisor.spawn("informer/multinicoperators", op_informer.run())

        sup = self.supervisor
        for informer in [*self.config_informers, *secret_informers]:
            sup.spawn(f"informer/{informer.name}/{informer.namespace or '*'}", informer.run())
        sup.spawn("events", events.run())
        if reconciler.d.notifications is not None:
            sup.spawn("notifications", reconciler.d.notifications.run())
        try:
            await migrate_until_done(self.settings.database, stop)
            if stop.is_set():
                return
            sup.spawn("orphan-collector", self._collect_orphans())
            if cfg.leader_elect:
                self.elector = LeaderElector(
                    kube, name=cfg.leader_election_name, namespace=cfg.leader_election_namespace
                )
                sup.spawn("leader-election", self.elector.run(self._lead, on_stopped_leading=self._end_term))
            else:
                sup.spawn("workers", self._work())
            await sup.run_until(stop)
        finally:
            log.info("Controller stopping: finishing in-flight reconciles")
            # In-flight reconciles finish and no new ones start; the leader task then returns and releases its
            # Lease; informers and the event recorder are cancelled last.
            await sup.shutdown(2 * SHUTDOWN_DEADLINE, drain=lambda: controller.shutdown(SHUTDOWN_DEADLINE))
            await coalescer.close()
            await openstack.close()
            await kube.close()


def _key_of(obj: JsonObj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"


def _observe_result(_key: str, outcome: str, _seconds: float) -> None:
    """Reconciles that raised (MariaDB or OpenStack unavailable, API errors): the reconciler counts the rest."""
    if outcome == "error":
        RECONCILE_TOTAL.labels(result="error", trigger="exception").inc()
