"""The OpenstackConfig reconciler: read, decide (pure), write.

Per key: deletion first (remove the rows, then the finalizer); otherwise ensure the finalizer, parse the spec,
resolve credentials, hash, ask the trigger policy whether OpenStack must be called, observe, compute the
desired rows, apply them as one diff transaction that also stores the hash, write status, requeue per mode.

Failures are split by who can fix them. Configuration problems (bad credentials, unknown subnet, missing
Secret) are written to status and retried slowly (`error_retry`); a CR or Secret change retries at once.
Transient problems (OpenStack or MariaDB unavailable) raise, so the work queue retries with backoff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import structlog

from multinic_ctrl import metrics
from multinic_ctrl.controller.desired import desired_rows, port_problem, rows_to_keep
from multinic_ctrl.controller.hashing import SecretVersion, spec_hash
from multinic_ctrl.controller.notified import NotificationBridge, notified
from multinic_ctrl.controller.peers import CallForecast, peer_group
from multinic_ctrl.controller.resources import FINALIZER, OPENSTACKCONFIGS
from multinic_ctrl.controller.resync import MIN_GAP, budgeted_interval, identity_phase
from multinic_ctrl.controller.secret_reads import SecretReader
from multinic_ctrl.controller.spec import (
    ConfigSpec,
    CredentialsError,
    SpecError,
    parse_spec,
    resolve_credentials,
)
from multinic_ctrl.controller.status import (
    ERROR,
    PENDING,
    SYNCED,
    Condition,
    merge_conditions,
    rfc3339,
    secure_transport_condition,
    synced_conditions,
    vm_report,
    without_volatile,
)
from multinic_ctrl.controller.trigger import Decision, Mode, TriggerPolicy, decide, format_duration
from multinic_ctrl.controller.triggers import (
    HANDLED_FIELD,
    TriggerState,
    new_request_id,
    pending_trigger,
    requested_trigger,
    trigger_patch,
)
from multinic_ctrl.db import ApplyResult, DatabaseError, Repository
from multinic_ctrl.db.fence import Fenced
from multinic_ctrl.db.repository import CrState
from multinic_ctrl.kube import (
    DONE,
    ApiError,
    EventRecorder,
    InvalidObjectName,
    KubeClient,
    Result,
    add_finalizer,
    has_finalizer,
    is_being_deleted,
    is_not_found,
    patch_status,
    remove_finalizer,
    split_key,
)
from multinic_ctrl.logs import register_secret
from multinic_ctrl.openstack import (
    AmbiguousServer,
    AmbiguousSubnet,
    AuthenticationError,
    Credentials,
    EndpointNotAllowed,
    Observation,
    ObservationCoalescer,
    OpenStackClient,
    OpenStackError,
    PermissionDenied,
    SubnetNotFound,
)

log = structlog.get_logger(__name__)

ERROR_RETRY = dt.timedelta(minutes=1)
STATUS_REFRESH = dt.timedelta(minutes=5)
"""How stale the rows' and status' write may get while resyncs find nothing to change (see `Written`)."""
_KEPT_ON_ERROR = frozenset(
    ("lastSyncTime", "vms", "vmsFound", "vmsRequested", "vmsSummary", "interfaces", "missingVMs", HANDLED_FIELD)
)
"""What the last successful sync reported stays visible while the config is in error."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _loop_time() -> float:
    return asyncio.get_running_loop().time()


def _parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class ConfigLookup(Protocol):
    """Read access to the informer cache(s) of OpenstackConfigs, keyed `namespace/name`."""

    def get(self, key: str) -> dict[str, Any] | None: ...


@dataclass
class ReconcilerDeps:
    kube: KubeClient
    configs: ConfigLookup
    repo: Repository
    openstack: OpenStackClient
    events: EventRecorder
    triggers: TriggerState
    clock: Callable[[], dt.datetime] = _utcnow
    error_retry: dt.timedelta = ERROR_RETRY
    blocked_by: Callable[[str], list[str]] = lambda _key: []
    """Keys of configs whose status reports a port conflict with the config `key` (an informer index)."""
    notifications: NotificationBridge | None = None
    """The OpenStack notification listener's directory and marks (controller/notified.py); None: polling only."""
    coalescer: ObservationCoalescer | None = None
    """Shares observations among configs of one identity; None: every config is observed alone."""
    group_size: Callable[[str], int] | None = None
    """Configs in a peer group (an informer index): immediate-mode resyncs then spend the old per-config budget
    per identity (`resync.budgeted_interval`). None: RESYNC_INTERVAL was set and is used as it is."""
    due_since: Callable[[str], float | None] = lambda _key: None
    """When the key being reconciled was last queued (the work queue's clock): the observation must be newer."""
    forecast: CallForecast = field(default_factory=CallForecast)
    """When each config will next call OpenStack (read by the coalescer's peer lookup)."""
    monotonic: Callable[[], float] = _loop_time
    """The work queue's clock."""
    status_refresh: dt.timedelta = STATUS_REFRESH
    secrets: SecretReader | None = None
    """Reads referenced Secrets once per version (wired to the Secret watch); None: a GET per reconcile."""


@dataclass(frozen=True)
class Written:
    """What the last full sync of a config wrote: its spec hash, a fingerprint of what the rows and status were
    made from (the observation, the trigger mode, the generation), and when.

    With resyncs every 30 s, rewriting identical rows and status each time would cost every config a database
    transaction and a status patch per interval (and make the controller's throughput, not OpenStack, the
    limit). A resync whose observation has the same fingerprint writes nothing - no transaction, no status
    patch, no `cr_state` read - until `status_refresh` has passed since the last write (then it writes as
    usual, which also repairs rows changed behind the controller's back). Only what this process wrote is
    remembered; a new leader starts with nothing and writes once.
    """

    digest: str
    fingerprint: bytes
    at: dt.datetime


def _fingerprint(observation: Observation, mode: str, generation: object) -> bytes:
    return hashlib.blake2b(repr((observation, mode, generation)).encode(), digest_size=16).digest()


class OpenstackConfigReconciler:
    def __init__(self, deps: ReconcilerDeps) -> None:
        self.d = deps
        self._secrets = deps.secrets or SecretReader(deps.kube)
        self._written: dict[str, Written] = {}
        self._primed: dict[str, CrState | None] = {}

    async def prime(self, keys: Iterable[str]) -> None:
        """Read the stored state of every config in `keys` (the synced cache) at once, before the workers of a
        new term start.

        A controller starting on an existing cluster (an upgrade, a failover) reconciles every config, and each
        first reconcile needs its config's state: one query for all of them instead of a transaction each.
        Read after the database term was claimed, so no other replica writes state afterwards; each entry
        (None: the config had no state) is used by the key's first reconcile only - then the reconcile's own
        write (`_written`) or a fresh read takes over. What this process remembers from an earlier term is
        dropped: another leader may have written since.
        """
        self._written.clear()
        self._primed.clear()
        try:
            states = await self.d.repo.states()
        except DatabaseError as exc:
            log.warning("Could not read the configs' stored state at start; reading it per config", error=str(exc))
            return
        by_key = {f"{namespace}/{name}": state for (namespace, name), state in states.items()}
        self._primed = {key: by_key.get(key) for key in keys}

    async def reconcile(self, key: str) -> Result:
        namespace, name = split_key(key)
        assert namespace is not None, "OpenstackConfig is namespaced"
        obj = self.d.configs.get(key)
        if obj is None or is_being_deleted(obj):
            self.d.forecast.forget(key)
            self._written.pop(key, None)
            self._primed.pop(key, None)
        if obj is None:
            # Gone without our finalizer running (finalizer stripped by hand, or deleted while we were down
            # before we added it): its rows must still go, or the agent keeps configuring NICs for it.
            removed = await self.d.repo.remove(namespace, name)
            if removed:
                log.info(
                    "Removed rows of a config deleted without cleanup", namespace=namespace, name=name, removed=removed
                )
                metrics.ORPHANS_COLLECTED.inc()
                await self._release_conflicts(key)
            return DONE
        if is_being_deleted(obj):
            return await self._delete(obj, namespace, name)
        if not has_finalizer(obj, FINALIZER):
            fresh = await add_finalizer(self.d.kube, OPENSTACKCONFIGS, name, FINALIZER, namespace=namespace, obj=obj)
            if fresh is None:
                return DONE
            obj = fresh
        try:
            return await self._sync(obj, namespace, name)
        except DatabaseError as exc:
            # Visible in status (best effort: the apiserver is independent of MariaDB), then retried by the
            # queue's backoff. Nothing was committed: the transaction rolled back and the hash was not stored.
            message = str(exc)
            await self._write_error(
                obj, "DatabaseUnavailable", message, [Condition("Ready", False, "DatabaseUnavailable", message)]
            )
            raise
        except (OpenStackError, ApiError, aiohttp.ClientError, OSError, TimeoutError, Fenced):
            raise  # transient (OpenStack's already in status) or deposed: the queue retries with backoff
        except Exception as exc:
            return await self._unexpected(obj, exc)

    async def _release_conflicts(self, key: str) -> None:
        """Configs that could not take a port because `key` owned it get a durable trigger request now that
        `key` let rows go: they re-observe in every trigger mode and take the port over (the node would
        otherwise keep no row for it until someone touched them)."""
        waiting = [k for k in self.d.blocked_by(key) if k != key]
        if not waiting:
            return
        request_id = new_request_id()
        for other in waiting:
            other_ns, other_name = split_key(other)
            try:
                await self.d.kube.patch(OPENSTACKCONFIGS, other_name, trigger_patch(request_id), other_ns)
            except Exception as exc:
                if not is_not_found(exc):
                    raise
        log.info("Port conflicts released; waiting configs triggered", owner=key, configs=waiting, request=request_id)

    async def _unexpected(self, obj: Mapping[str, Any], exc: Exception) -> Result:
        """Bad input nobody foresaw (a malformed port, a Secret we cannot read...) must end in status, with an
        Event and a bounded retry - never in silent exponential backoff with nothing to see for the user.

        The message names only the exception type: its text may quote input, and status is widely readable.
        """
        meta = obj.get("metadata") or {}
        log.exception(
            "Reconcile failed unexpectedly", namespace=meta.get("namespace"), name=meta.get("name"), error=str(exc)
        )
        message = f"Reconcile failed unexpectedly ({type(exc).__name__}); the controller log has the details"
        await self._write_error(obj, "InternalError", message, [Condition("Ready", False, "InternalError", message)])
        metrics.RECONCILE_TOTAL.labels(result="error", trigger="internal").inc()
        return Result(requeue_after=self.d.error_retry.total_seconds())

    # ------------------------------------------------------------------------------------------ delete
    async def _delete(self, obj: Mapping[str, Any], namespace: str, name: str) -> Result:
        if not has_finalizer(obj, FINALIZER):
            return DONE
        # Raises when MariaDB is unreachable: the finalizer stays and the queue retries with backoff.
        removed = await self.d.repo.remove(namespace, name)
        if removed:
            await self._release_conflicts(f"{namespace}/{name}")
        await remove_finalizer(self.d.kube, OPENSTACKCONFIGS, name, FINALIZER, namespace=namespace, obj=obj)
        log.info("Config deleted; interface rows removed", namespace=namespace, name=name, removed=removed)
        metrics.RECONCILE_TOTAL.labels(result="success", trigger="delete").inc()
        return DONE

    # -------------------------------------------------------------------------------------------- sync
    async def _sync(self, obj: dict[str, Any], namespace: str, name: str) -> Result:
        key = f"{namespace}/{name}"
        policy = self.d.triggers.policy
        mode = policy.mode.value
        bound = log.bind(namespace=namespace, name=name)
        try:
            spec = parse_spec(obj.get("spec"))
        except SpecError as exc:
            self._expect_call(key, obj, None)
            self._written.pop(key, None)
            await self._write_error(obj, "InvalidSpec", str(exc), [Condition("Ready", False, "InvalidSpec", str(exc))])
            metrics.RECONCILE_TOTAL.labels(result="error", trigger="cr-change").inc()
            return DONE  # only a spec change can fix it
        try:
            secret_data, secret_versions = await self._read_secrets(namespace, spec)
            credentials = resolve_credentials(spec, secret_data)
        except CredentialsError as exc:
            self._expect_call(key, obj, None)
            self._written.pop(key, None)
            message = f"Credentials unavailable: {exc}"
            await self._write_error(
                obj,
                "CredentialsUnavailable",
                message,
                [
                    Condition("Ready", False, "CredentialsUnavailable", message),
                    Condition("CredentialsValid", False, "SecretMissing", str(exc)),
                ],
            )
            metrics.RECONCILE_TOTAL.labels(result="error", trigger="cr-change").inc()
            return DONE  # the Secret watch brings the key back when it appears
        register_secret(credentials.password)

        uid = str((obj.get("metadata") or {}).get("uid") or "")
        digest = spec_hash(spec, credentials, config_uid=uid, secrets=secret_versions)
        written = self._written.get(key)
        first = key in self._primed
        primed = self._primed.pop(key, None)
        if written is not None and written.digest == digest:
            state: CrState | None = CrState(digest, written.at)  # written by this process: no need to read it back
        elif first:
            state = primed  # read when this term began (None: no state then), and nothing wrote it since
        else:
            state = await self.d.repo.state_of(namespace, name)
        now = self.d.clock()
        created = _parse_time((obj.get("metadata") or {}).get("creationTimestamp")) or now
        trigger_request = pending_trigger(obj)
        # Immediate mode resyncs on the identity's common slots, so a project's configs share one observation.
        if policy.mode is Mode.IMMEDIATE and self.d.group_size is not None:
            interval = budgeted_interval(policy.resync, self.d.group_size(peer_group(namespace, spec)))
            policy = dataclasses.replace(policy, resync=interval)
        phase = identity_phase(credentials, policy.resync) if policy.mode is Mode.IMMEDIATE else None
        decision = _decide(policy, state, digest, trigger_request is not None, created, now, phase)
        self._expect_call(key, obj, decision.next_requeue)
        notes = self.d.notifications
        mark = notes.seen(f"{namespace}/{name}", credentials) if notes is not None else None
        if mark is not None:
            decision = notified(self.d.triggers.policy, decision)
        if not decision.call_openstack:
            bound.info(
                "Reconcile skipped due to trigger configuration",
                mode=mode,
                isCRChangeEvent=decision.is_cr_change_event,
                reason=decision.reason,
                nextRequeue=format_duration(decision.next_requeue),
            )
            metrics.RECONCILE_TOTAL.labels(result="skipped", trigger=decision.reason).inc()
            if decision.is_cr_change_event:
                await self._write_pending(obj, decision, now)
            return self._requeue(now, decision.next_requeue, phase)
        if decision.is_cr_change_event and (policy.immediate_on_cr_change or mode == "immediate"):
            bound.info("Immediate reconcile triggered by CR change event", mode=mode)
        # Periodic resyncs (every 30 s by default) log at debug; what they change is logged at info below.
        (bound.debug if decision.reason == "resync" else bound.info)(
            "Proceeding with reconcile", mode=mode, isCRChangeEvent=decision.is_cr_change_event, reason=decision.reason
        )

        try:
            observation = await self._observe(key, namespace, spec, credentials)
        except OpenStackError as exc:
            self._expect_call(key, obj, self.d.error_retry if not exc.transient else dt.timedelta(0))
            self._written.pop(key, None)
            return await self._openstack_failed(obj, exc, decision)
        fingerprint = _fingerprint(observation, mode, (obj.get("metadata") or {}).get("generation"))
        if (
            decision.reason == "resync"
            and written is not None
            and written.digest == digest
            and written.fingerprint == fingerprint
            and now - written.at < self.d.status_refresh
        ):
            bound.debug("Resync found nothing to change", nextRequeue=format_duration(decision.next_requeue))
            metrics.RECONCILE_TOTAL.labels(result="success", trigger=decision.reason).inc()
            return self._requeue(now, decision.next_requeue, phase)
        self._written.pop(key, None)
        desired = desired_rows(observation)
        # Rows of VMs whose state is unknown (Nova could not vouch for them) stay; see rows_to_keep.
        keep = rows_to_keep(observation)
        result = await self.d.repo.apply(
            namespace, name, desired, keep=keep, spec_hash=digest, synced_at=now
        )  # raises: backoff
        if notes is not None:
            notes.synced(f"{namespace}/{name}", credentials, mark)
        await self._write_synced(obj, spec, observation, result, now, decision)
        if result.diff.removed:
            await self._release_conflicts(f"{namespace}/{name}")
        bound.info(
            "Reconcile completed successfully",
            triggerMode=mode,
            nextRequeue=format_duration(decision.next_requeue),
            vmsFound=len(observation.servers),
            vmsMissing=len(observation.missing_vms),
            interfaces=len(desired.interfaces),
            added=len(result.diff.added),
            changed=len(result.diff.changed),
            removed=len(result.diff.removed),
        )
        self._written[key] = Written(digest, fingerprint, now)
        metrics.RECONCILE_TOTAL.labels(result="success", trigger=decision.reason).inc()
        return self._requeue(now, decision.next_requeue, phase)

    async def _observe(self, key: str, namespace: str, spec: ConfigSpec, credentials: Credentials) -> Observation:
        if self.d.coalescer is None:
            return await self.d.openstack.observe(credentials, spec.vm_names, spec.subnet_name)
        return await self.d.coalescer.observe(
            credentials,
            spec.vm_names,
            spec.subnet_name,
            due=self.d.due_since(key),
            key=key,
            group=peer_group(namespace, spec),
        )

    def _requeue(self, decided_at: dt.datetime, delay: dt.timedelta | None, phase: dt.timedelta | None) -> Result:
        """Come back `delay` after `decided_at`: counted from the decision, not from now, so that configs of one
        identity requeued for the same resync slot after reconciles of different lengths still come due
        together (the queue counts the delay from when the reconcile returns). A reconcile so slow that its slot
        is (nearly) gone waits for its identity's next slot rather than coming alone, just late: it has just
        synced. Anything else waits at least a second (trigger.decide)."""
        if delay is None:
            return DONE
        now = self.d.clock()
        remaining = decided_at + delay - now
        if remaining < MIN_GAP and phase is not None and self.d.triggers.policy.mode is Mode.IMMEDIATE:
            remaining = self.d.triggers.policy.next_due(now, phase) - now
        return Result(requeue_after=max(remaining.total_seconds(), MIN_GAP.total_seconds()))

    def _expect_call(self, key: str, obj: Mapping[str, Any], after: dt.timedelta | None) -> None:
        """Remember when this config will next call OpenStack if nothing changes (see `peers.CallForecast`)."""
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        when = None if after is None else self.d.monotonic() + after.total_seconds()
        self.d.forecast.record(key, generation, when)

    async def _read_secrets(
        self, namespace: str, spec: ConfigSpec
    ) -> tuple[dict[str, dict[str, str]], list[SecretVersion]]:
        """The referenced Secrets' data and versions: read once per Secret version (`secret_reads`).

        Only Secrets of the config's own namespace are ever read: the names were validated by `parse_spec`,
        and the API path builder refuses anything that is not a plain name (defence in depth).
        """
        found: dict[str, dict[str, str]] = {}
        versions: list[SecretVersion] = []
        for secret_name in spec.secret_names():
            try:
                read = await self._secrets.read(namespace, secret_name)
            except InvalidObjectName as exc:
                raise CredentialsError(str(exc)) from None
            if read is None:
                continue  # resolve_credentials names the missing Secret
            found[secret_name] = read.data
            versions.append(read.version)
        return found, versions

    async def _openstack_failed(self, obj: dict[str, Any], exc: OpenStackError, decision: Decision) -> Result:
        meta = obj["metadata"]
        message = str(exc)
        conditions = [Condition("Ready", False, type(exc).__name__, message)]
        if isinstance(exc, AuthenticationError):
            reason = "AuthenticationFailed"
            conditions.append(Condition("CredentialsValid", False, reason, message))
        elif isinstance(exc, SubnetNotFound | AmbiguousSubnet):
            reason = "SubnetNotFound" if isinstance(exc, SubnetNotFound) else "SubnetAmbiguous"
            conditions += [
                Condition("CredentialsValid", True, "Authenticated", "Keystone accepted the credentials"),
                Condition("SubnetFound", False, reason, message),
            ]
        elif isinstance(exc, PermissionDenied | AmbiguousServer):
            reason = type(exc).__name__
        elif isinstance(exc, EndpointNotAllowed):
            reason = "EndpointNotAllowed"
        else:
            reason = "OpenStackUnavailable"
        log.warning(
            "Reconcile failed: OpenStack error",
            namespace=meta["namespace"],
            name=meta["name"],
            reason=reason,
            error=message,
        )
        await self._write_error(obj, reason, message, conditions)
        if getattr(exc, "transient", False):
            raise exc  # OpenStack down or overloaded: back off per key (counted by the runner's observer)
        metrics.RECONCILE_TOTAL.labels(result="error", trigger=decision.reason).inc()
        return Result(requeue_after=self.d.error_retry.total_seconds())

    # ------------------------------------------------------------------------------------------ status
    async def _write_status(self, obj: Mapping[str, Any], status: dict[str, Any]) -> None:
        current = obj.get("status") or {}
        if without_volatile(current) == without_volatile(status) and status.get("lastSyncTime") == current.get(
            "lastSyncTime"
        ):
            return
        meta = obj["metadata"]
        # Keys the new status does not set are removed (merge-patch null), so stale fields never linger.
        patch = {k: None for k in current if k not in status} | status
        try:
            await patch_status(self.d.kube, OPENSTACKCONFIGS, meta["name"], patch, namespace=meta["namespace"])
        except Exception as exc:
            if is_not_found(exc):
                return
            raise

    async def _write_error(
        self, obj: Mapping[str, Any], reason: str, message: str, conditions: list[Condition]
    ) -> None:
        current = obj.get("status") or {}
        generation = int(obj["metadata"].get("generation") or 0)
        if current.get("message") != message:
            self.d.events.warning(obj, reason, message)
        status = {
            k: v
            for k, v in current.items()
            if k
            in (
                "lastSyncTime",
                "vms",
                "vmsFound",
                "vmsRequested",
                "vmsSummary",
                "interfaces",
                "missingVMs",
                HANDLED_FIELD,
            )
        }
        status |= {
            "phase": ERROR,
            "message": message,
            "reason": reason,
            "observedGeneration": generation,
            "triggerMode": self.d.triggers.policy.mode.value,
            "conditions": merge_conditions(
                current.get("conditions"), conditions, generation=generation, now=self.d.clock()
            ),
        }
        await self._write_status(obj, status)

    async def _write_pending(self, obj: Mapping[str, Any], decision: Decision, now: dt.datetime) -> None:
        current = obj.get("status") or {}
        if current.get("phase") == SYNCED and current.get("observedGeneration") == obj["metadata"].get("generation"):
            return  # a Secret rotation waiting for its slot: the rows are still right for this generation
        generation = int(obj["metadata"].get("generation") or 0)
        waiting = "a webhook call" if decision.reason == "waiting-for-webhook" else "the next scheduled reconcile"
        message = f"Spec changed; waiting for {waiting} (trigger mode {self.d.triggers.policy.mode.value})"
        status = {k: v for k, v in current.items() if k not in ("phase", "message", "reason", "conditions")}
        status |= {
            "phase": PENDING,
            "message": message,
            "observedGeneration": generation,
            "triggerMode": self.d.triggers.policy.mode.value,
            "conditions": merge_conditions(
                current.get("conditions"),
                [Condition("Ready", False, "WaitingForTrigger", message)],
                generation=generation,
                now=now,
            ),
        }
        if decision.next_requeue is not None:
            status["nextSyncTime"] = rfc3339(now + decision.next_requeue)
        await self._write_status(obj, status)

    async def _write_synced(
        self,
        obj: Mapping[str, Any],
        spec: ConfigSpec,
        observation: Observation,
        result: ApplyResult,
        now: dt.datetime,
        decision: Decision,
    ) -> None:
        current = obj.get("status") or {}
        generation = int(obj["metadata"].get("generation") or 0)
        conflicts = {row.port_id: owner for row, owner in result.diff.conflicts}
        skipped = [p.id for p in observation.ports if port_problem(p, observation.subnet.cidr) is not None]
        interfaces = len(observation.ports) - len(conflicts) - len(skipped)
        # VMs Nova cannot vouch for (a down cell, an incomplete listing) are not "not found": their rows stay.
        unknown = [name for name in observation.missing_vms if name in set(observation.incomplete_vms)]
        missing = [name for name in observation.missing_vms if name not in set(unknown)]
        message = f"{interfaces} interface(s) on {len(observation.servers)}/{len(spec.vm_names)} VM(s) synced"
        if missing:
            message += f"; VMs not found: {', '.join(missing)}"
        if unknown:
            message += f"; state unknown (rows kept): {', '.join(unknown)}"
            if current.get("phase") == SYNCED and unknown != _unknown_in(current):
                self.d.events.warning(obj, "VMStateUnknown", f"Nova cannot vouch for {', '.join(unknown)}; rows kept")
        if conflicts:
            message += f"; {len(conflicts)} port(s) already managed by another OpenstackConfig"
        if skipped:
            message += f"; {len(skipped)} port(s) skipped (invalid MAC or address, see status.vms)"
            if current.get("message") != message:
                self.d.events.warning(
                    obj, "PortSkipped", f"ports skipped, invalid MAC or address: {', '.join(skipped)}"
                )
        if current.get("phase") != SYNCED:
            self.d.events.normal(obj, "Synced", message)
        if missing and current.get("missingVMs") != missing:
            self.d.events.warning(obj, "VMNotFound", f"VMs not found: {', '.join(missing)}")
        transport = secure_transport_condition(observation.plaintext_endpoints)
        previous = {c.get("type"): c for c in current.get("conditions") or ()}.get("SecureTransport") or {}
        if not transport.status and previous.get("message") != transport.message:
            self.d.events.warning(obj, transport.reason, transport.message)
        status: dict[str, Any] = {
            "phase": SYNCED,
            "message": message,
            "observedGeneration": generation,
            "lastSyncTime": rfc3339(now),
            "triggerMode": self.d.triggers.policy.mode.value,
            "vmsRequested": len(spec.vm_names),
            "vmsFound": len(observation.servers),
            "vmsSummary": f"{len(observation.servers)}/{len(spec.vm_names)}",
            "interfaces": interfaces,
            "subnet": {
                "id": observation.subnet.id,
                "name": observation.subnet.name,
                "cidr": observation.subnet.cidr,
                "networkID": observation.subnet.network_id,
                "mtu": observation.subnet.mtu,
            },
            "vms": vm_report(observation, conflicts),
            "conditions": merge_conditions(
                current.get("conditions"), synced_conditions(observation), generation=generation, now=now
            ),
        }
        if missing:
            status["missingVMs"] = missing
        if decision.next_requeue is not None:
            status["nextSyncTime"] = rfc3339(now + decision.next_requeue)
        # The webhook request this sync answered (the one recorded when the reconcile began: a newer one that
        # arrived meanwhile stays pending and brings the key back).
        handled = requested_trigger(obj) or current.get(HANDLED_FIELD)
        if handled:
            status[HANDLED_FIELD] = handled
        await self._write_status(obj, status)


def _decide(
    policy: TriggerPolicy,
    state: CrState | None,
    digest: str,
    webhook_requested: bool,
    created: dt.datetime,
    now: dt.datetime,
    phase: dt.timedelta | None = None,
) -> Decision:
    return decide(
        policy,
        spec_changed=state is None or state.spec_hash != digest,
        webhook_requested=webhook_requested,
        last_sync=state.last_sync_at if state is not None else None,
        created=created,
        now=now,
        phase=phase,
    )


def _unknown_in(status: Mapping[str, Any]) -> list[str]:
    return [str(vm.get("name")) for vm in status.get("vms") or () if vm.get("status") == "UNKNOWN"]
