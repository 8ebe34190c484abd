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
synced; only the leader of the `multinic-operator` Lease runs workers; every installation is also re-checked
every `OPERATOR_RESYNC_INTERVAL`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from multinic_ctrl.kube import Controller, EventRecorder, Informer, JsonObj, KubeClient, LeaderElector, Supervisor
from multinic_ctrl.kube.owned import label_owner_keys
from multinic_ctrl.kube.store import namespace_index
from multinic_ctrl.metrics import OPERATOR_MANAGED_RESOURCES, OPERATOR_RECONCILE_DURATION, OPERATOR_RECONCILE_TOTAL
from multinic_ctrl.server import NotReady, ProbeServer
from multinic_ctrl.settings import Settings

from .desired import MANAGED_KINDS
from .names import KIND, MANAGED_BY_LABEL, MANAGED_BY_NAMESPACE_LABEL
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

    def install(self, server: ProbeServer) -> None:
        server.add_liveness_probe(self.supervisor.failed_tasks)
        server.add_readiness_check("informers", self._informers_ready)
        server.add_detail("leadership", self._leadership)

    async def _informers_ready(self) -> None:
        if not self.caches.synced:
            raise NotReady("caches not synced yet")

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
        self.reconciler = reconciler = MultiNicOperatorReconciler(
            ReconcilerDeps(
                kube=kube, cache=self.caches, events=events, rbac=packaged_template(), resync=cfg.resync_seconds
            )
        )
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
        sup = self.supervisor
        for informer in self.caches.all_informers():
            sup.spawn(f"informer/{informer.name}/{informer.namespace or '*'}", informer.run())
        sup.spawn("events", events.run())
        try:
            if cfg.leader_elect:
                self.elector = LeaderElector(
                    kube, name=cfg.leader_election_name, namespace=cfg.leader_election_namespace
                )
                sup.spawn("leader-election", self.elector.run(controller.run_workers))
            else:
                sup.spawn("workers", controller.run_workers())
            stopper = asyncio.ensure_future(stop.wait())
            failed = asyncio.ensure_future(sup.wait_failed())
            done, _ = await asyncio.wait({stopper, failed}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            failed.cancel()
            if failed in done and not failed.cancelled():
                raise RuntimeError(f"supervised task(s) died: {', '.join(failed.result())}")
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

    def _observe(self, _key: str, outcome: str, seconds: float) -> None:
        result = {"requeue_after": "success", "requeue": "retry"}.get(outcome, outcome)
        OPERATOR_RECONCILE_TOTAL.labels(result=result).inc()
        OPERATOR_RECONCILE_DURATION.labels(result=result).observe(seconds)
        for kind in WATCHED_KINDS:
            if kind != "Job":
                OPERATOR_MANAGED_RESOURCES.labels(kind=kind).set(self.caches.count(kind))
