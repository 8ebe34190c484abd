"""Wiring of the operator process: informers, queue, workers, leader election, events (no database).

Watches:

* MultiNicOperators (in `OPERATOR_NAMESPACES`, or all) - spec, deletion and finalizer changes enqueue the object;
  status-only updates (its own writes) do not;
* every managed kind (`desired.MANAGED_KINDS`) plus the backup Jobs, each through one informer whose label
  selector is `multinic.example.com/managed-by-operator` - so only the operator's own objects are cached, and a
  change, a deletion or a stripped label (the object leaves the selection: a DELETED event) maps back to its
  MultiNicOperator through the ownership labels (`kube.owned`), for namespaced objects the owner reference too.
  The drift is repaired within the time of one reconcile. Secrets are cached as identity and labels only.

Every long-running task runs on one `Supervisor` (a dead informer turns `/healthz` red); `/readyz` = caches
synced (and, with the protection webhook, its certificate valid and injected); only the leader of the
`multinic-operator` Lease runs workers; every installation is also re-checked every `OPERATOR_RESYNC_INTERVAL`.

The protection webhook (`protection.ProtectionRuntime`, OPERATOR_WEBHOOK) runs on every replica - the apiserver may
call any ready Pod behind the Service: it starts serving once the caches synced and, on the replica that runs
workers, after the first reconcile of every installation found (drift made while the operator was down is
repaired first; its own requests are exempt in the configuration's `matchConditions` anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog

from multinic_ctrl.kube import (
    Controller,
    EventRecorder,
    Informer,
    JsonObj,
    KubeClient,
    LeaderElector,
    Supervisor,
    is_being_deleted,
)
from multinic_ctrl.kube.owned import label_owner_keys
from multinic_ctrl.kube.store import namespace_index
from multinic_ctrl.metrics import OPERATOR_MANAGED_RESOURCES, OPERATOR_RECONCILE_DURATION, OPERATOR_RECONCILE_TOTAL
from multinic_ctrl.server import NotReady, ProbeServer
from multinic_ctrl.settings import Settings

from .desired import MANAGED_KINDS
from .names import KIND, MANAGED_BY_LABEL, MANAGED_BY_NAMESPACE_LABEL
from .protection import SERVE_AFTER_FIRST_RECONCILES, SERVICE_ACCOUNT_TOKEN, ProtectionRuntime, resolve_identity
from .rbac import packaged_template
from .reconciler import RECREATE_ANNOTATION, MultiNicOperatorReconciler, ReconcilerDeps
from .resources import JOBS, MULTINICOPERATORS, secret_identity, watched

log = structlog.get_logger(__name__)

SHUTDOWN_DEADLINE = 8.0
OWNER_INDEX = "owner"
NAMESPACE_INDEX = "namespace"
WATCHED_KINDS = (*(kind for _, kind, _ in MANAGED_KINDS), "Job")


def owner_index(obj: Mapping[str, Any]) -> list[str]:
    """`namespace/name` of the MultiNicOperator an object is labelled as managed by."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(MANAGED_BY_LABEL), labels.get(MANAGED_BY_NAMESPACE_LABEL)
    return [f"{namespace}/{name}"] if name and namespace else []


def spec_or_lifecycle_changed(old: JsonObj | None, new: JsonObj) -> bool:
    """MultiNicOperator updates that need a reconcile: not its status (the operator's own writes)."""
    if old is None:
        return True
    o, n = old.get("metadata") or {}, new.get("metadata") or {}
    if (o.get("annotations") or {}).get(RECREATE_ANNOTATION) != (n.get("annotations") or {}).get(RECREATE_ANNOTATION):
        return True
    return any(o.get(k) != n.get(k) for k in ("generation", "deletionTimestamp", "finalizers", "labels"))


class Caches:
    """The reconciler's read view over every informer (`reconciler.ManagedCache`)."""

    def __init__(self) -> None:
        self.operators: list[Informer] = []
        self.managed: dict[str, list[Informer]] = {}

    def operator(self, key: str) -> JsonObj | None:
        for informer in self.operators:
            found = informer.store.get(key)
            if found is not None:
                return found
        return None

    def operators_in(self, namespace: str) -> list[JsonObj]:
        return [o for informer in self.operators for o in informer.store.by_index(NAMESPACE_INDEX, namespace)]

    def get(self, kind: str, namespace: str, name: str) -> JsonObj | None:
        key = f"{namespace}/{name}" if namespace else name
        for informer in self.managed.get(kind, ()):
            found = informer.store.get(key)
            if found is not None:
                return found
        return None

    def owned(self, kind: str, namespace: str, name: str) -> list[JsonObj]:
        return [o for i in self.managed.get(kind, ()) for o in i.store.by_index(OWNER_INDEX, f"{namespace}/{name}")]

    def watermark(self, kind: str) -> str:
        versions = [i.resource_version for i in self.managed.get(kind, ())]
        try:
            return str(min(int(v) for v in versions)) if versions else ""
        except ValueError:
            return ""

    def all_informers(self) -> list[Informer]:
        return [*self.operators, *(i for informers in self.managed.values() for i in informers)]

    @property
    def synced(self) -> bool:
        informers = self.all_informers()
        return bool(informers) and all(i.has_synced for i in informers)

    def count(self, kind: str) -> int:
        return sum(len(i.store) for i in self.managed.get(kind, ()))


class OperatorService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.supervisor = Supervisor("operator")
        self.caches = Caches()
        self.kube: KubeClient | None = None
        self.controller: Controller | None = None
        self.elector: LeaderElector | None = None
        self.reconciler: MultiNicOperatorReconciler | None = None
        self.protection: ProtectionRuntime | None = None
        self._first_pass: set[str] | None = None  # installations whose first reconcile the webhook waits for
        self._first_pass_done = asyncio.Event()

    def install(self, server: ProbeServer) -> None:
        server.add_liveness_probe(self.supervisor.failed_tasks)
        server.add_readiness_check("informers", self._informers_ready)
        if self.settings.operator.webhook_enabled:
            server.add_readiness_check("webhook", self._webhook_ready)
        server.add_detail("leadership", self._leadership)

    async def _informers_ready(self) -> None:
        if not self.caches.synced:
            raise NotReady("caches not synced yet")

    async def _webhook_ready(self) -> None:
        if self.protection is None or self.protection.hook is None:
            raise NotReady("protection webhook not serving yet")
        if not self.protection.ready:
            raise NotReady("protection webhook certificate not valid or not injected yet")

    def _protection_active(self) -> bool:
        return self.protection is not None and self.protection.ready

    def _enqueue_all(self) -> None:
        if self.controller is not None:
            for informer in self.caches.operators:
                for key in informer.store.keys():
                    self.controller.queue.add(key)

    def _all_operators(self) -> list[JsonObj]:
        return [o for informer in self.caches.operators for o in informer.store.objects()]

    async def _run_protection(self, protection: ProtectionRuntime) -> None:
        """Serve once the caches synced and the first reconciles ran, then keep TLS and configuration in step."""
        for informer in self.caches.all_informers():
            await informer.wait_synced()
        runs_workers = self.elector is None or self.elector.is_leader
        if runs_workers:
            self._first_pass = {f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in self._all_operators()}
            if self._first_pass:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._first_pass_done.wait(), SERVE_AFTER_FIRST_RECONCILES)
            self._first_pass = None
        await protection.serve()
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(protection.run_sync())
                tasks.create_task(protection.run_status())
        finally:
            await protection.stop()

    def _leadership(self) -> str:
        if self.elector is None:
            return "disabled (single replica)"
        return "leader" if self.elector.is_leader else "standby"

    def make_informers(self, kube: KubeClient) -> None:
        cfg = self.settings.operator
        namespaces: list[str | None] = list(cfg.namespaces) or [None]
        selector = MANAGED_BY_LABEL
        self.caches.operators = [
            Informer(kube, MULTINICOPERATORS, namespace=ns, indexers={NAMESPACE_INDEX: namespace_index})
            for ns in namespaces
        ]
        for kind in WATCHED_KINDS:
            resource = JOBS if kind == "Job" else watched(kind)
            scopes = namespaces if resource.namespaced else [None]
            self.caches.managed[kind] = [
                Informer(
                    kube,
                    resource,
                    namespace=ns,
                    label_selector=selector,
                    name=f"{resource.plural}.managed",
                    indexers={OWNER_INDEX: owner_index},
                    transform=secret_identity if kind == "Secret" else None,
                )
                for ns in scopes
            ]

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.settings.operator
        kubeconfig = str(self.settings.kubeconfig) if self.settings.kubeconfig else None
        self.kube = kube = await KubeClient.from_config(kubeconfig)
        events = EventRecorder(kube, "multinic-operator")
        self.make_informers(kube)
        if cfg.webhook_enabled:
            # With an explicit kubeconfig the operator is whoever that kubeconfig says, not a mounted token.
            token = None if self.settings.kubeconfig else SERVICE_ACCOUNT_TOKEN
            identity = await resolve_identity(kube, cfg, token)
            log.info("Protection webhook identity", user=identity.username, namespace=identity.namespace)
            self.protection = ProtectionRuntime(
                kube,
                cfg,
                identity,
                operators=self._all_operators,
                operator=self.caches.operator,
                events=events,
                on_ready_change=self._enqueue_all,
            )
        protection = self.protection
        deps = ReconcilerDeps(
            kube=kube,
            cache=self.caches,
            events=events,
            rbac=packaged_template(),
            resync=cfg.resync_seconds,
            protection_active=self._protection_active,
        )
        if protection is not None:
            deps.uninstalling = protection.uninstalling
        self.reconciler = reconciler = MultiNicOperatorReconciler(deps)
        self.controller = controller = Controller(
            "multinicoperator", reconciler.reconcile, workers=cfg.workers, observe=self._observe
        )
        for informer in self.caches.operators:
            controller.watch(informer, predicate=spec_or_lifecycle_changed)
        to_owner = label_owner_keys(
            MANAGED_BY_LABEL,
            MANAGED_BY_NAMESPACE_LABEL,
            owner_kind=KIND,
            owner_api_version=MULTINICOPERATORS.api_version,
        )
        for informers in self.caches.managed.values():
            for informer in informers:
                controller.watch(informer, to_owner)
        if protection is not None:
            for informer in self.caches.operators:
                # the configuration exists while an installation does: look again when one comes or goes
                informer.add_handler(
                    lambda _obj: protection.poke(),
                    lambda old, new: protection.poke() if is_being_deleted(old) != is_being_deleted(new) else None,
                    lambda _obj: protection.poke(),
                    read_only=True,
                )
        sup = self.supervisor
        for informer in self.caches.all_informers():
            sup.spawn(f"informer/{informer.name}/{informer.namespace or '*'}", informer.run())
        sup.spawn("events", events.run())
        if protection is not None:
            for informer in protection.informers:
                sup.spawn(f"informer/{informer.name}", informer.run())
            sup.spawn("protection-webhook", self._run_protection(protection))
        try:
            if cfg.leader_elect:
                self.elector = LeaderElector(
                    kube, name=cfg.leader_election_name, namespace=cfg.leader_election_namespace
                )
                sup.spawn("leader-election", self.elector.run(controller.run_workers))
            else:
                sup.spawn("workers", controller.run_workers())
            await sup.run_until(stop)
        finally:
            log.info("Operator stopping: finishing in-flight reconciles")

            async def drain() -> None:
                await controller.shutdown(SHUTDOWN_DEADLINE)
                try:
                    await asyncio.wait_for(events.drain(), 2.0)
                except Exception as exc:  # best effort: the Events of the last reconcile
                    log.warning("Could not flush Events at shutdown", error=repr(exc))

            await sup.shutdown(2 * SHUTDOWN_DEADLINE, drain=drain)
            await kube.close()

    def _observe(self, key: str, outcome: str, seconds: float) -> None:
        if self._first_pass is not None:
            self._first_pass.discard(key)
            if not self._first_pass:
                self._first_pass_done.set()
        result = {"requeue_after": "success", "requeue": "retry"}.get(outcome, outcome)
        OPERATOR_RECONCILE_TOTAL.labels(result=result).inc()
        OPERATOR_RECONCILE_DURATION.labels(result=result).observe(seconds)
        for kind in WATCHED_KINDS:
            if kind != "Job":
                OPERATOR_MANAGED_RESOURCES.labels(kind=kind).set(self.caches.count(kind))
