"""The MultiNicOperator reconciler: read, decide (pure), write once.

Per key: a vanished object's cluster-scoped leftovers are removed; deletion runs the finalizer (remove what was
created, keep the data unless `deleteDataOnUninstall`); otherwise ensure the finalizer, refuse a second
installation in the same namespace, parse the spec, make sure the credentials Secret and its recovery copy exist
(`recovery.plan_credentials`), build the desired objects (`desired`), compare them with the watched live objects
(`drift`), apply what differs (server-side apply, one field manager, forced), prune what is no longer desired,
and write status (`status.compute_status`) only when it changed.

Drift versus change: when the spec's generation is the one status last reported (`observedGeneration`), any
difference between desired and live objects was made by someone else - that is *drift*: repaired when
`protection.enableAutoRecovery` is true (Event `DriftCorrected`, `multinic_operator_drift_corrections_total`),
otherwise only reported (Event `DriftDetected`, condition `Drifted`). A new generation is simply applied.
Fields Kubernetes refuses to change in place (a StatefulSet's `volumeClaimTemplates`, ...) are never forced:
the rest of the object is applied with the live values kept for those fields, and status says a recreate is
needed - the operator does not delete a StatefulSet (and risk its data) on its own.

Failures: an object the apiserver refuses (422) is reported in status and retried with backoff; anything else
(apiserver unavailable, 409 on a create race) raises, so the work queue retries with backoff.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from multinic_ctrl import metrics
from multinic_ctrl.kube import (
    DONE,
    ApiError,
    EventRecorder,
    JsonObj,
    KubeClient,
    Result,
    add_finalizer,
    has_finalizer,
    is_being_deleted,
    is_conflict,
    is_not_found,
    merge_patch,
    patch_status,
    remove_finalizer,
    split_key,
)
from multinic_ctrl.kube.apply import server_side_apply
from multinic_ctrl.kube.conditions import Condition, merge_conditions, rfc3339

from . import status as status_mod
from .credentials import CredentialValues, Rng, credentials_secret
from .desired import desired_objects, object_key
from .drift import Drift, detect_all
from .names import (
    API_GROUP,
    BACKUP,
    CONTROLLER,
    CREDENTIALS_SECRET,
    DATABASE,
    FIELD_MANAGER,
    Owner,
    owner_from_object,
)
from .rbac import RbacTemplate
from .recovery import DATA_CLAIM, RECOVERY_SECRET, plan_credentials, recovery_secret
from .resources import MANAGED, MULTINICOPERATORS, SECRETS, resource_of
from .spec import OperatorSpec, SpecError, parse_spec

log = structlog.get_logger(__name__)

FINALIZER = f"{API_GROUP}/operator-cleanup"
# Consent to an orphaning delete + recreate of the StatefulSet when a change needs it (`"true"` on the
# MultiNicOperator): pods and volumes stay, the new StatefulSet adopts them. Without it the change is only reported.
RECREATE_ANNOTATION = f"{API_GROUP}/allow-statefulset-recreate"
# Kinds removed when no longer desired (never PVCs or Secrets: they hold data or passwords).
PRUNABLE = ("Deployment", "CronJob", "StatefulSet", "Service", "RoleBinding", "Role", "ClusterRoleBinding",
            "ClusterRole", "ServiceAccount")  # fmt: skip
# Deletion order on uninstall: workloads first, identities last.
UNINSTALL_ORDER = ("Deployment", "CronJob", "StatefulSet", "Service", "PersistentVolumeClaim", "Secret", *PRUNABLE[4:])
DATA_SECRETS = frozenset({CREDENTIALS_SECRET, RECOVERY_SECRET})
# Takes over `spec.replicas` when an autoscaler is to own it: applying the Deployment without `replicas` while the
# operator's manager owns that field would *remove* it (the apiserver would default it to 1), so another manager
# first co-owns the current value - the hand-over the server-side apply documentation describes.
REPLICAS_HANDOVER = f"{FIELD_MANAGER}-replicas-handover"
_STATEFULSET_FIXED = ("selector", "serviceName", "volumeClaimTemplates", "podManagementPolicy")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _nothing_to_do(_namespace: str, _name: str) -> None:
    return None


class ManagedCache(Protocol):
    """Read access to the informer caches (see `service.Caches`)."""

    def operator(self, key: str) -> JsonObj | None: ...

    def operators_in(self, namespace: str) -> list[JsonObj]: ...

    def get(self, kind: str, namespace: str, name: str) -> JsonObj | None: ...

    def owned(self, kind: str, namespace: str, name: str) -> list[JsonObj]:
        """Objects of `kind` labelled as managed by MultiNicOperator `namespace/name`."""
        ...

    def watermark(self, kind: str) -> str:
        """The last resourceVersion the kind's informer has seen."""
        ...


@dataclass
class ReconcilerDeps:
    kube: KubeClient
    cache: ManagedCache
    events: EventRecorder
    rbac: RbacTemplate
    clock: Callable[[], dt.datetime] = _utcnow
    rng: Rng = secrets.token_bytes
    resync: float = 60.0
    protection_active: Callable[[], bool] = lambda: False  # the webhook (issue 13): served, trusted, configured
    # The finalizer's last step before the finalizer is removed (the webhook: the last installation deletes the
    # cluster-scoped ValidatingWebhookConfiguration, which no MultiNicOperator can own); raising retries.
    uninstalling: Callable[[str, str], Awaitable[None]] = field(default=_nothing_to_do)


@dataclass
class _SecretCheck:
    """What the last read of the two credentials Secrets found (no values, only versions and the inline check)."""

    versions: tuple[str | None, str | None]
    generation: int
    differs_from_inline: tuple[str, ...] = ()


@dataclass
class _Outcome:
    repaired: list[Drift] = field(default_factory=list)
    reported: list[Drift] = field(default_factory=list)
    recreate: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    applied: dict[tuple[str, str, str, str], JsonObj] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    recreating: list[str] = field(default_factory=list)


def _rv(value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        return -1


def _decode(secret: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(value).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
    return out


def _describe(drift: Drift) -> str:
    what = "deleted" if drift.missing else "changed " + ", ".join(drift.changed[:6])
    more = f" (+{len(drift.changed) - 6} more)" if len(drift.changed) > 6 else ""
    return f"{drift.kind} {drift.name}: {what}{more}"


def keep_fixed_fields(desired: Mapping[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """`desired` with the StatefulSet fields Kubernetes will not change taken from `live` (pure)."""
    body = copy.deepcopy(dict(desired))
    live_spec = live.get("spec") or {}
    for key in _STATEFULSET_FIXED:
        if key in live_spec:
            value = copy.deepcopy(live_spec[key])
            if key == "volumeClaimTemplates":
                for template in value:
                    template.pop("status", None)
            body["spec"][key] = value
        else:
            body["spec"].pop(key, None)
    return body


def replacing_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge-patch that turns `current` into exactly `desired` (pure): keys `desired` no longer has are
    nulled at every depth, since a merge-patch merges nested objects (a nested key left out would stay)."""
    patch: dict[str, Any] = {k: None for k in current if k not in desired}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            patch[key] = replacing_patch(old, value)
        else:
            patch[key] = value
    return patch


def owns_field(live: Mapping[str, Any], manager: str, *path: str) -> bool:
    """Whether `manager` owns the field at `path` through an Apply (from `metadata.managedFields`; pure)."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        node: Any = entry.get("fieldsV1") or {}
        for part in path:
            node = node.get(f"f:{part}") if isinstance(node, Mapping) else None
            if node is None:
                break
        else:
            return True
    return False


def replicas_handover(live: Mapping[str, Any]) -> dict[str, Any]:
    """An apply that makes `REPLICAS_HANDOVER` co-own a Deployment's current replica count (pure)."""
    meta = live["metadata"]
    return {
        "apiVersion": live.get("apiVersion", "apps/v1"),
        "kind": "Deployment",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": (live.get("spec") or {}).get("replicas", 1)},
    }


def backup_gauges(namespace: str, name: str, backup: Mapping[str, Any]) -> None:
    success = backup.get("lastSuccessfulTime")
    failed = backup.get("lastFailedTime")
    stamp = dt.datetime.fromisoformat(success.replace("Z", "+00:00")).timestamp() if success else 0.0
    metrics.OPERATOR_BACKUP_LAST_SUCCESS.labels(namespace=namespace, name=name).set(stamp)
    if not backup.get("enabled") or not (success or failed):
        outcome = -1
    else:
        outcome = 0 if failed and (not success or failed >= success) else 1
    metrics.OPERATOR_BACKUP_LAST_STATUS.labels(namespace=namespace, name=name).set(outcome)


class MultiNicOperatorReconciler:
    def __init__(self, deps: ReconcilerDeps) -> None:
        self.d = deps
        self._applied: dict[tuple[str, str, str, str], JsonObj] = {}
        self._secrets: dict[str, _SecretCheck] = {}
        self._recreating: set[tuple[str, str, str, str]] = set()  # orphan-deleted by us, to be created again

    # ------------------------------------------------------------------------------------------- entry
    async def reconcile(self, key: str) -> Result:
        namespace, name = split_key(key)
        assert namespace is not None, "MultiNicOperator is namespaced"
        obj = self.d.cache.operator(key)
        if obj is None:
            # Gone without the finalizer (stripped by hand, or deleted before it was added): namespaced objects
            # follow their owner reference; cluster-scoped ones cannot, so they are removed here.
            await self._delete_owned(namespace, name, kinds=("ClusterRoleBinding", "ClusterRole"))
            return DONE
        if is_being_deleted(obj):
            return await self._uninstall(obj, namespace, name)
        if not has_finalizer(obj, FINALIZER):
            fresh = await add_finalizer(self.d.kube, MULTINICOPERATORS, name, FINALIZER, namespace=namespace, obj=obj)
            if fresh is None:
                return DONE
            obj = fresh
        now = self.d.clock()
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        previous = obj.get("status") or {}
        winner = self._installation_owner(namespace)
        if winner is not None and winner != name:
            message = (
                f"MultiNicOperator {winner} already manages namespace {namespace}: one installation per namespace; "
                "delete this object or move it to another namespace"
            )
            await self._refuse(obj, "Conflict", message, generation, previous, now)
            return DONE
        try:
            owner = owner_from_object(obj)
            spec = parse_spec(obj.get("spec"))
        except SpecError as exc:
            await self._refuse(obj, "InvalidSpec", str(exc), generation, previous, now)
            return DONE  # only a spec change can fix it
        return await self._sync(obj, owner, spec, previous, now)

    def _installation_owner(self, namespace: str) -> str | None:
        """The oldest live MultiNicOperator of the namespace owns it (ties broken by name)."""
        alive = [o for o in self.d.cache.operators_in(namespace) if not is_being_deleted(o)]
        if not alive:
            return None
        oldest = min(alive, key=lambda o: (o["metadata"].get("creationTimestamp") or "", o["metadata"]["name"]))
        return str(oldest["metadata"]["name"])

    async def _refuse(
        self,
        obj: Mapping[str, Any],
        reason: str,
        message: str,
        generation: int,
        previous: Mapping[str, Any],
        now: dt.datetime,
    ) -> None:
        if previous.get("message") != message:
            self.d.events.warning(obj, reason, message)
            log.warning("MultiNicOperator not installed", reason=reason, error=message, **_ids(obj))
        document = status_mod.override_status(status_mod.INVALID, reason, message, generation, previous, now=now)
        await self._write_status(obj, document)

    # -------------------------------------------------------------------------------------------- sync
    async def _sync(
        self, obj: JsonObj, owner: Owner, spec: OperatorSpec, previous: Mapping[str, Any], now: dt.datetime
    ) -> Result:
        generation = owner.generation
        # Drift only when the spec did not change since status last reported on it; a first install or a new
        # generation is a change the user asked for.
        steady = previous.get("observedGeneration") == generation and previous.get("phase") != status_mod.INVALID
        credentials, refused = await self._credentials(obj, spec, owner)
        desired = desired_objects(spec, owner, self.d.rbac)
        live = {object_key(d): self._live(d) for d in desired}
        outcome = _Outcome()
        present = {k: v for k, v in live.items() if v is not None}
        drifts = {(d.kind, d.namespace, d.name): d for d in detect_all(desired, present)}
        for want in desired:
            if want["kind"] == "Deployment" and "replicas" not in want["spec"]:
                await self._hand_over_replicas(obj, want, live.get(object_key(want)), outcome)
        for want in desired:
            meta = want["metadata"]
            drift = drifts.get((want["kind"], meta.get("namespace", ""), meta["name"]))
            if drift is not None:
                await self._converge(obj, want, live.get(object_key(want)), drift, steady, spec, outcome)
        await self._prune(owner, desired, outcome)
        self._report(obj, outcome, steady)

        def current(kind: str, name: str) -> JsonObj | None:
            key = ("apps/v1" if kind != "CronJob" else "batch/v1", kind, owner.namespace, name)
            return outcome.applied.get(key) or live.get(key)

        observed = status_mod.Observed(
            deployment=current("Deployment", CONTROLLER),
            statefulset=current("StatefulSet", DATABASE) if spec.database.enabled else None,
            cronjob=current("CronJob", BACKUP) if spec.database.backup else None,
            jobs=self.d.cache.owned("Job", owner.namespace, owner.name),
        )
        document = status_mod.compute_status(
            spec,
            generation,
            observed,
            previous,
            now=now,
            credentials=credentials,
            recreate_required=outcome.recreate,
            protection_active=self.d.protection_active(),
        )
        document = self._extra_conditions(document, outcome, refused, generation, previous, now)
        await self._write_status(obj, document)
        backup_gauges(owner.namespace, owner.name, document.get("backupStatus") or {})
        if outcome.failures or refused:
            return Result(requeue=True)
        if outcome.recreating:
            return Result(requeue_after=1.0)  # until the orphaning delete is done and the object is created again
        return Result(requeue_after=self.d.resync)

    def _live(self, want: Mapping[str, Any]) -> JsonObj | None:
        """The cached object, unless what this process applied last is newer (the watch has not caught up)."""
        key = object_key(want)
        meta = want["metadata"]
        cached = self.d.cache.get(want["kind"], meta.get("namespace", ""), meta["name"])
        applied = self._applied.get(key)
        if applied is None:
            return cached
        applied_rv = _rv(applied["metadata"].get("resourceVersion"))
        if cached is not None:
            if _rv(cached["metadata"].get("resourceVersion")) >= applied_rv:
                self._applied.pop(key, None)
                return cached
            return applied
        if _rv(self.d.cache.watermark(want["kind"])) >= applied_rv:
            self._applied.pop(key, None)  # the watch saw our write and then a deletion: really gone
            return None
        return applied

    async def _converge(
        self,
        obj: JsonObj,
        want: dict[str, Any],
        live: JsonObj | None,
        drift: Drift,
        steady: bool,
        spec: OperatorSpec,
        outcome: _Outcome,
    ) -> None:
        kind, name = want["kind"], want["metadata"]["name"]
        if drift.recreate:
            needed = [f"{kind} {name}: {path}" for path in drift.recreate]
            known = ((obj.get("status") or {}).get("databaseStatus") or {}).get("recreateRequired") or []
            if any(n not in known for n in needed):
                metrics.OPERATOR_DRIFT_DETECTED.labels(kind=kind, action="recreate").inc()
            outcome.recreate += needed
            consent = ((obj.get("metadata") or {}).get("annotations") or {}).get(RECREATE_ANNOTATION) == "true"
            if kind == "StatefulSet" and live is not None and consent:
                # Orphaning delete: the garbage collector releases pods and claims; the next reconcile creates
                # the StatefulSet anew, which adopts them (same selector, same claim names).
                self._recreating.add(object_key(want))
                if await self._delete(kind, live, propagation="Orphan"):
                    self.d.events.normal(
                        obj, "StatefulSetRecreating", f"{kind} {name}: orphaning delete for {', '.join(drift.recreate)}"
                    )
                outcome.recreating.append(f"{kind} {name}")
                return
            if not drift.patchable:
                return
        ours = drift.missing and object_key(want) in self._recreating
        if steady and not spec.protection.enable_auto_recovery and not ours:
            outcome.reported.append(drift)
            return
        body = keep_fixed_fields(want, live) if drift.recreate and live is not None else want
        try:
            applied = await server_side_apply(self.d.kube, resource_of(want), body, field_manager=FIELD_MANAGER)
        except ApiError as exc:
            if exc.status in (400, 403, 422):
                outcome.failures.append(f"{kind} {name}: {exc.message}")
                log.warning("Apply refused", kind=kind, object=name, status=exc.status, error=exc.message, **_ids(obj))
                return
            raise
        self._applied[object_key(want)] = applied
        outcome.applied[object_key(want)] = applied
        if ours:
            self._recreating.discard(object_key(want))
            self.d.events.normal(
                obj, "StatefulSetRecreated", f"{kind} {name}: created again; it adopts the pods and volumes"
            )
        elif steady:
            outcome.repaired.append(drift)
            metrics.OPERATOR_DRIFT_CORRECTIONS.labels(kind=kind).inc()
            metrics.OPERATOR_DRIFT_DETECTED.labels(kind=kind, action="repaired").inc()
        else:
            outcome.changed.append(f"{kind} {name}")

    async def _hand_over_replicas(
        self, obj: JsonObj, want: dict[str, Any], live: JsonObj | None, outcome: _Outcome
    ) -> None:
        """`replicasManagedExternally`: stop owning `spec.replicas` without changing it."""
        if live is None or not owns_field(live, FIELD_MANAGER, "spec", "replicas"):
            return
        resource = resource_of(want)
        await server_side_apply(self.d.kube, resource, replicas_handover(live), field_manager=REPLICAS_HANDOVER)
        applied = await server_side_apply(self.d.kube, resource, want, field_manager=FIELD_MANAGER)
        self._applied[object_key(want)] = applied
        outcome.applied[object_key(want)] = applied
        replicas = (applied.get("spec") or {}).get("replicas")
        self.d.events.normal(
            obj,
            "ReplicasHandedOver",
            f"Deployment {want['metadata']['name']}: replicas ({replicas}) left to an autoscaler",
        )

    async def _prune(self, owner: Owner, desired: Sequence[Mapping[str, Any]], outcome: _Outcome) -> None:
        wanted = {(d["kind"], d["metadata"]["name"]) for d in desired}
        for kind in PRUNABLE:
            for live in self.d.cache.owned(kind, owner.namespace, owner.name):
                name = live["metadata"]["name"]
                if (kind, name) in wanted:
                    continue
                await self._delete(kind, live)
                outcome.changed.append(f"{kind} {name} (removed)")

    def _report(self, obj: JsonObj, outcome: _Outcome, steady: bool) -> None:
        for drift in outcome.repaired:
            self.d.events.normal(obj, "DriftCorrected", f"Repaired {_describe(drift)}")
            log.info("Drift corrected", drift=_describe(drift), **_ids(obj))
        conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
        drifted = conditions.get("Drifted") or {}
        already = drifted.get("message", "") if drifted.get("status") == "True" else ""
        for drift in outcome.reported:
            if _describe(drift) in already:
                continue  # reported before and still the same: status keeps saying so, no new Event
            metrics.OPERATOR_DRIFT_DETECTED.labels(kind=drift.kind, action="reported").inc()
            self.d.events.warning(
                obj, "DriftDetected", f"{_describe(drift)}; not repaired (protection.enableAutoRecovery is false)"
            )
            log.warning("Drift detected (auto-recovery off)", drift=_describe(drift), **_ids(obj))
        if outcome.changed:
            reason = "Updated" if steady or (obj.get("status") or {}).get("observedGeneration") else "Installed"
            self.d.events.normal(obj, reason, "Applied " + ", ".join(outcome.changed))
        for failure in outcome.failures:
            self.d.events.warning(obj, "ApplyFailed", failure)

    def _extra_conditions(
        self,
        document: dict[str, Any],
        outcome: _Outcome,
        refused: str | None,
        generation: int,
        previous: Mapping[str, Any],
        now: dt.datetime,
    ) -> dict[str, Any]:
        extra = []
        problems = []
        if outcome.reported:
            text = "; ".join(_describe(d) for d in outcome.reported)
            extra.append(Condition("Drifted", True, "AutoRecoveryDisabled", text))
            problems.append(f"Drift not repaired (auto-recovery off): {text}")
        else:
            extra.append(Condition("Drifted", False, "InSync", "Managed objects match the MultiNicOperator"))
        if refused:
            extra.append(Condition("CredentialsAvailable", False, "CredentialsLost", refused))
            problems.append(refused)
        else:
            extra.append(Condition("CredentialsAvailable", True, "Stored", "Database credentials are stored"))
        if outcome.failures:
            problems.append("Apply failed: " + "; ".join(outcome.failures))
        if outcome.recreating:
            problems.append(f"Recreating {', '.join(outcome.recreating)} (orphaning delete: pods and volumes stay)")
        document["conditions"] = merge_conditions(
            document["conditions"], extra, generation=generation, now=now, order=status_mod.CONDITION_ORDER
        )
        if problems:
            document["message"] = "; ".join([*problems, document["message"]])
            if refused or outcome.failures:
                document["phase"] = status_mod.DEGRADED
            elif outcome.recreating:
                document["phase"] = status_mod.PROGRESSING
        stamp = previous.get("lastUpdated")
        if stamp and not status_mod.status_changed(previous, document):
            document["lastUpdated"] = stamp
        else:
            document["lastUpdated"] = rfc3339(now)
        return document

    # ------------------------------------------------------------------------------------- credentials
    async def _credentials(
        self, obj: JsonObj, spec: OperatorSpec, owner: Owner
    ) -> tuple[CredentialValues | None, str | None]:
        """Make sure the credentials Secret and its recovery copy hold the passwords; (values, refusal)."""
        ns = owner.namespace
        if not spec.database.enabled or credentials_secret_needed(spec) is False:
            return None, None
        main_meta = self.d.cache.get("Secret", ns, CREDENTIALS_SECRET)
        copy_meta = self.d.cache.get("Secret", ns, RECOVERY_SECRET)
        versions = (
            (main_meta or {}).get("metadata", {}).get("resourceVersion"),
            (copy_meta or {}).get("metadata", {}).get("resourceVersion"),
        )
        checked = self._secrets.get(ns)
        if (
            checked is not None
            and main_meta is not None
            and copy_meta is not None
            and checked.versions == versions
            and checked.generation == owner.generation
        ):
            return CredentialValues({}, differs_from_inline=checked.differs_from_inline), None
        stored = await self._read_secret(CREDENTIALS_SECRET, ns)
        recovery = await self._read_secret(RECOVERY_SECRET, ns)
        data_exists = self.d.cache.get("PersistentVolumeClaim", ns, DATA_CLAIM) is not None
        plan = plan_credentials(spec, stored, recovery, data_exists=data_exists, rng=self.d.rng)
        if plan.refused:
            if checked is None or checked.versions != (None, None):
                self.d.events.warning(obj, "CredentialsLost", plan.refused)
            self._secrets[ns] = _SecretCheck((None, None), owner.generation)
            return None, plan.refused
        values = plan.values
        assert values is not None
        secret = credentials_secret(spec, owner, values)
        assert secret is not None
        main_rv = versions[0]
        if plan.create_secret:
            try:
                created = await self.d.kube.create(SECRETS, secret, ns)
            except ApiError as exc:
                if is_conflict(exc):
                    # Created meanwhile (another replica, or our cache lagged): never overwrite, look again.
                    self._secrets.pop(ns, None)
                    raise
                raise
            main_rv = created["metadata"].get("resourceVersion")
            if plan.restored:
                message = (
                    f"Secret {CREDENTIALS_SECRET} was missing; recreated with the stored values of "
                    f"{', '.join(plan.restored)} from {RECOVERY_SECRET}"
                )
                self.d.events.normal(obj, "CredentialsRestored", message)
                metrics.OPERATOR_DRIFT_CORRECTIONS.labels(kind="Secret").inc()
                log.info("Credentials Secret restored from its recovery copy", **_ids(obj))
            elif values.generated:
                self.d.events.normal(
                    obj, "CredentialsGenerated", f"Generated {', '.join(values.generated)} into {CREDENTIALS_SECRET}"
                )
        elif plan.add_keys:
            patch = {"data": {k: secret["data"][k] for k in plan.add_keys}}
            added = await merge_patch(self.d.kube, SECRETS, CREDENTIALS_SECRET, patch, namespace=ns)
            main_rv = added["metadata"].get("resourceVersion")
            self.d.events.normal(
                obj, "CredentialsCompleted", f"Added {', '.join(plan.add_keys)} to {CREDENTIALS_SECRET}"
            )
        copy_rv = versions[1]
        if plan.write_recovery:
            written = await server_side_apply(
                self.d.kube, SECRETS, recovery_secret(spec, owner, secret), field_manager=FIELD_MANAGER
            )
            copy_rv = written["metadata"].get("resourceVersion")
        self._secrets[ns] = _SecretCheck((main_rv, copy_rv), owner.generation, values.differs_from_inline)
        return values, None

    async def _read_secret(self, name: str, namespace: str) -> dict[str, str] | None:
        try:
            return _decode(await self.d.kube.get(SECRETS, name, namespace))
        except ApiError as exc:
            if is_not_found(exc):
                return None
            raise

    # -------------------------------------------------------------------------------------------- delete
    async def _uninstall(self, obj: JsonObj, namespace: str, name: str) -> Result:
        if not has_finalizer(obj, FINALIZER):
            return DONE
        try:
            delete_data = parse_spec(obj.get("spec")).database.delete_data_on_uninstall
        except SpecError:
            delete_data = False
        removed = await self._delete_owned(namespace, name, kinds=UNINSTALL_ORDER, delete_data=delete_data)
        self._secrets.pop(namespace, None)
        await self.d.uninstalling(namespace, name)
        await remove_finalizer(self.d.kube, MULTINICOPERATORS, name, FINALIZER, namespace=namespace, obj=obj)
        log.info("MultiNicOperator deleted; installation removed", removed=removed, data_kept=not delete_data,
                 namespace=namespace, name=name)  # fmt: skip
        return DONE

    async def _delete_owned(self, namespace: str, name: str, *, kinds: Sequence[str], delete_data: bool = False) -> int:
        removed = 0
        for kind in kinds:
            for live in self.d.cache.owned(kind, namespace, name):
                if not delete_data and (
                    kind == "PersistentVolumeClaim" or (kind == "Secret" and live["metadata"]["name"] in DATA_SECRETS)
                ):
                    continue
                removed += await self._delete(kind, live)
        return removed

    async def _delete(self, kind: str, live: Mapping[str, Any], *, propagation: str = "Background") -> int:
        meta = live["metadata"]
        if meta.get("deletionTimestamp"):
            return 0
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self.d.kube.delete(MANAGED[kind], meta["name"], meta.get("namespace"), body=body)
        except ApiError as exc:
            if is_not_found(exc):
                return 0
            raise
        return 1

    # -------------------------------------------------------------------------------------------- status
    async def _write_status(self, obj: Mapping[str, Any], document: dict[str, Any]) -> None:
        current = obj.get("status") or {}
        if not status_mod.status_changed(current, document):
            return
        meta = obj["metadata"]
        patch = replacing_patch(current, document)
        try:
            await patch_status(self.d.kube, MULTINICOPERATORS, meta["name"], patch, namespace=meta["namespace"])
        except ApiError as exc:
            if not is_not_found(exc):
                raise


def credentials_secret_needed(spec: OperatorSpec) -> bool:
    creds = spec.database.credentials
    return creds.root_password.operator_managed or creds.password.operator_managed


def _ids(obj: Mapping[str, Any]) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    return {"namespace": str(meta.get("namespace", "")), "name": str(meta.get("name", ""))}
