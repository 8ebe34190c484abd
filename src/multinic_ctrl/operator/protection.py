"""The protection webhook inside the operator process: who the operator is, when its webhook serves, its
configuration's life, Events and batched `status.protectionStatus` writes.

Invariants:

* **no lockout** - the configuration's `matchConditions` exempt the operator's own identity (resolved here, from
  POD_NAMESPACE/SERVICE_ACCOUNT_NAME, the in-cluster token or the apiserver's "who am I"), so its repairs pass while
  the endpoint is down; and a starting operator serves only after its caches synced and (when it runs workers) the
  first reconcile of every installation it found has finished: drift made while it was down is repaired before
  anyone is judged, and a scale request is never judged against an empty installation list;
* **Ready means served and trusted** - `ready` is true once the webhook listens with a certificate issued by a CA of
  the bundle the live configuration carries (`WebhookSync`); with no installation there is no configuration and
  ready means a valid certificate is served. It changes only after a whole sync, so `/readyz` and
  `status.protectionStatus.active` do not flicker while a sync runs; a change enqueues every installation so
  `active` is written;
* **the configuration exists exactly while an installation does** - applied (and re-applied on any edit or
  deletion, from a watch plus `WEBHOOK_SYNC_PERIOD`) while one live MultiNicOperator is in scope; deleted by the
  finalizer of the last one (`uninstalling`) and by the sync loop when none is left. A lock orders the two, so a
  sync in flight cannot recreate what the finalizer just deleted;
* **a status write per period, not per request** - denials become Events on the MultiNicOperator at once (the
  recorder aggregates them) and a `status.protectionStatus` merge-patch at most every `WEBHOOK_STATUS_INTERVAL`
  (`DenialBatcher`), guarded by the resourceVersion read just before; a failed write is given back to the batcher.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from multinic_ctrl.kube import ApiError, EventRecorder, Informer, JsonObj, KubeClient, is_being_deleted, is_not_found
from multinic_ctrl.kube.client import Resource, is_conflict
from multinic_ctrl.kube.patch import patch_status
from multinic_ctrl.settings import OperatorSettings

from .admission import Decision, Installation, Policy, service_account_user
from .model import ProtectionSpec
from .resources import MULTINICOPERATORS, secret_identity
from .spec import SpecError, parse_spec
from .webhook_config import CONFIGURATION_NAME, DEFAULT_NAMESPACE_SELECTOR, ServiceRef, desired_configuration
from .webhook_server import DenialBatcher, ProtectionWebhook, event_message, protection_status
from .webhook_sync import SECRETS, VALIDATING_WEBHOOK_CONFIGURATIONS, WebhookSync, _trusted, served_material
from .webhook_tls import Identity, Lifetimes, ip_sans

log = structlog.get_logger(__name__)

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
SELF_SUBJECT_REVIEWS = Resource("authentication.k8s.io", "v1", "selfsubjectreviews", False, "SelfSubjectReview")
DEFAULT_NAMESPACE = "multinic-system"
LABELS = {"app.kubernetes.io/name": "multinic-operator", "app.kubernetes.io/part-of": "multinic"}
SERVE_AFTER_FIRST_RECONCILES = 30.0  # at most this long before serving anyway (a reconcile that keeps failing)


@dataclass(frozen=True)
class OperatorIdentity:
    username: str  # what userInfo.username says for the operator's requests
    namespace: str  # where its TLS Secret and webhook Service live


def _token_subject(path: Path) -> str | None:
    """The `sub` claim of a ServiceAccount token (read, not verified: the apiserver verifies it on every call)."""
    try:
        payload = path.read_text(encoding="utf-8").strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (OSError, IndexError, ValueError):
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) and subject else None


def _service_account_namespace(username: str) -> str | None:
    parts = username.split(":")
    return parts[2] if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"] else None


async def resolve_identity(
    kube: KubeClient, cfg: OperatorSettings, token: Path | None = SERVICE_ACCOUNT_TOKEN
) -> OperatorIdentity:
    """POD_NAMESPACE + SERVICE_ACCOUNT_NAME, else the in-cluster token's subject, else SelfSubjectReview."""
    if cfg.service_account:
        namespace = cfg.pod_namespace or DEFAULT_NAMESPACE
        return OperatorIdentity(service_account_user(namespace, cfg.service_account), namespace)
    username = _token_subject(token) if token is not None else None
    if username is None:
        review = await kube.create(
            SELF_SUBJECT_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        username = str(((review.get("status") or {}).get("userInfo") or {}).get("username") or "")
        if not username:
            raise RuntimeError("the apiserver did not say who the operator is (SelfSubjectReview without a user)")
    namespace = cfg.pod_namespace or _service_account_namespace(username) or DEFAULT_NAMESPACE
    return OperatorIdentity(username, namespace)


def namespace_selector(namespaces: tuple[str, ...]) -> dict[str, Any]:
    """The webhook's scope: the operator's namespaces (OPERATOR_NAMESPACES) when it has some; never kube-system."""
    if not namespaces:
        return DEFAULT_NAMESPACE_SELECTOR
    key = "kubernetes.io/metadata.name"
    return {
        "matchExpressions": [
            {"key": key, "operator": "In", "values": sorted(namespaces)},
            {"key": key, "operator": "NotIn", "values": ["kube-system"]},
        ]
    }


class ProtectionRuntime:
    """One operator process's webhook: serving, the sync loop, the watches and the status batches."""

    def __init__(
        self,
        kube: KubeClient,
        cfg: OperatorSettings,
        identity: OperatorIdentity,
        *,
        operators: Callable[[], list[JsonObj]],
        operator: Callable[[str], JsonObj | None],
        events: EventRecorder,
        on_ready_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.kube = kube
        self.cfg = cfg
        self.identity = identity
        self._operators = operators
        self._operator = operator
        self.events = events
        self.on_ready_change = on_ready_change
        hosts = [urlsplit(cfg.webhook_url).hostname or ""] if cfg.webhook_url else []
        ips = ip_sans([h for h in hosts if _is_ip(h)])
        self.tls_identity = Identity(cfg.webhook_service, identity.namespace, ips)
        self.client: ServiceRef | str = cfg.webhook_url or ServiceRef(identity.namespace, cfg.webhook_service)
        self.sync = WebhookSync(
            kube,
            secret_name=cfg.webhook_secret,
            identity=self.tls_identity,
            configuration=self.configuration,
            lifetimes=Lifetimes(serving=timedelta(seconds=cfg.webhook_cert_lifetime)),
            labels=LABELS,
        )
        self.batcher = DenialBatcher(interval=cfg.webhook_status_interval)
        self.hook: ProtectionWebhook | None = None
        self.ready = False
        self.served_at: float | None = None  # monotonic time the webhook started serving
        self.ready_at: float | None = None  # ... and first became ready
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._denied = asyncio.Event()
        self._specs: dict[tuple[str, str, int], ProtectionSpec] = {}
        self.informers = [
            Informer(
                kube,
                VALIDATING_WEBHOOK_CONFIGURATIONS,
                field_selector=f"metadata.name={CONFIGURATION_NAME}",
                name="validatingwebhookconfigurations.protection",
            ),
            Informer(
                kube,
                SECRETS,
                namespace=identity.namespace,
                field_selector=f"metadata.name={cfg.webhook_secret}",
                name="secrets.webhook-tls",
                transform=secret_identity,
            ),
        ]
        for informer in self.informers:
            informer.add_handler(
                lambda _obj: self.poke(), lambda _old, _new: self.poke(), lambda _obj: self.poke(), read_only=True
            )

    # -- what is desired ---------------------------------------------------------------------------------------

    def configuration(self, bundle: bytes) -> Mapping[str, Any]:
        return desired_configuration(
            ca_bundle=bundle,
            client=self.client,
            operator_users=[self.identity.username],
            labels=LABELS,
            namespace_selector=namespace_selector(self.cfg.namespaces),
        )

    def live_installations(self) -> list[JsonObj]:
        return [o for o in self._operators() if not is_being_deleted(o)]

    def _protection_of(self, obj: Mapping[str, Any]) -> ProtectionSpec:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")), int(meta.get("generation") or 0))
        found = self._specs.get(key)
        if found is None:
            try:
                found = parse_spec(obj.get("spec")).protection
            except SpecError:
                found = ProtectionSpec()  # an invalid spec keeps the default: protected
            if len(self._specs) > 1024:
                self._specs.clear()
            self._specs[key] = found
        return found

    def policy(self) -> Policy:
        """Per namespace the installation that owns it (the oldest live one, as the reconciler decides)."""
        chosen: dict[str, JsonObj] = {}
        for obj in self._operators():
            meta = obj["metadata"]
            rank = (is_being_deleted(obj), meta.get("creationTimestamp") or "", meta["name"])
            current = chosen.get(meta["namespace"])
            if current is None or rank < (
                is_being_deleted(current),
                current["metadata"].get("creationTimestamp") or "",
                current["metadata"]["name"],
            ):
                chosen[meta["namespace"]] = obj
        installations = {
            ns: Installation(str(obj["metadata"]["name"]), self._protection_of(obj)) for ns, obj in chosen.items()
        }
        return Policy(frozenset({self.identity.username}), installations)

    # -- serving -----------------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Certificate from the Secret (created when missing; retried while the apiserver refuses), then listen."""
        backoff = 0.5
        while True:
            try:
                plan = await self.sync.ensure_certificate()
                break
            except Exception as exc:
                log.warning("Webhook TLS Secret not available yet; retrying", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        self.hook = ProtectionWebhook(
            self.policy,
            *served_material(plan),
            host=self.cfg.webhook_address,
            port=self.cfg.webhook_port,
            batcher=self.batcher,
            on_denial=self._on_denial,
        )
        await self.hook.start()
        self.sync.webhook = self.hook
        self.served_at = time.monotonic()
        self.poke()

    async def stop(self) -> None:
        if self.hook is not None:
            await self.hook.stop()

    def _on_denial(self, decision: Decision) -> None:
        if decision.installation is not None and not decision.request.dry_run:
            obj = self._operator("/".join(decision.installation))
            if obj is not None:
                self.events.warning(obj, "MutationPrevented", event_message(decision))
        self._denied.set()

    # -- the sync loop -----------------------------------------------------------------------------------------

    def poke(self) -> None:
        self._wake.set()

    def _set_ready(self, ready: bool) -> None:
        if ready and self.ready_at is None:
            self.ready_at = time.monotonic()
        if ready != self.ready:
            self.ready = ready
            log.info("Protection webhook readiness changed", ready=ready)
            self.on_ready_change()

    async def _sync_once(self) -> float:
        """One pass; the seconds until the next one is due."""
        async with self._lock:
            if self.live_installations():
                plan = await self.sync.sync()
                trusted = self.sync.ready
            else:
                plan = await self.sync.ensure_certificate()
                if self.hook is not None and plan.material.cert != self.hook.tls.cert_pem:
                    self.hook.set_certificate(plan.material.cert, plan.material.key)
                await self._delete_configuration()
                trusted = _trusted(plan)
        self._set_ready(trusted and self.hook is not None)
        return max(0.05, (plan.next_check - datetime.now(UTC)).total_seconds())

    async def run_sync(self) -> None:
        """Sync at every poke (watch), every WEBHOOK_SYNC_PERIOD and at the renewal point; back off on errors."""
        backoff = 0.5
        while True:
            self._wake.clear()
            try:
                wait = min(self.cfg.webhook_sync_period, await self._sync_once())
                backoff = 0.5
            except Exception as exc:
                self._set_ready(False)
                log.warning("Protection webhook sync failed; retrying", error=str(exc), retry_in=backoff)
                wait, backoff = backoff, min(backoff * 2, 30.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def _delete_configuration(self) -> bool:
        try:
            await self.kube.delete(VALIDATING_WEBHOOK_CONFIGURATIONS, CONFIGURATION_NAME)
        except ApiError as exc:
            if is_not_found(exc):
                return False
            raise
        log.info("Webhook configuration deleted: no MultiNicOperator left", name=CONFIGURATION_NAME)
        return True

    async def uninstalling(self, namespace: str, name: str) -> None:
        """The finalizer of MultiNicOperator namespace/name: the last one takes the configuration with it."""
        async with self._lock:
            others = [
                o
                for o in self.live_installations()
                if (o["metadata"]["namespace"], o["metadata"]["name"]) != (namespace, name)
            ]
            if not others:
                await self._delete_configuration()
        self.poke()

    # -- status batches ----------------------------------------------------------------------------------------

    async def run_status(self) -> None:
        while True:
            due = self.batcher.due_in()
            if due is None:
                self._denied.clear()
                await self._denied.wait()
                continue
            if due > 0:
                await asyncio.sleep(due)
            for key, batch in self.batcher.flush().items():
                try:
                    await self._write_batch(key, batch)
                except Exception as exc:
                    self.batcher.restore({key: batch})
                    log.warning("protectionStatus write failed; kept for the next batch", error=str(exc))
                    await asyncio.sleep(1.0)

    async def _write_batch(self, key: tuple[str, str], batch: Any) -> None:
        namespace, name = key
        for attempt in range(3):
            try:
                obj = await self.kube.get(MULTINICOPERATORS, name, namespace)
            except ApiError as exc:
                if is_not_found(exc):
                    return  # gone: nothing to report on
                raise
            previous = (obj.get("status") or {}).get("protectionStatus")
            document = {"protectionStatus": protection_status(previous, batch)}
            try:
                await patch_status(
                    self.kube,
                    MULTINICOPERATORS,
                    name,
                    document,
                    namespace=namespace,
                    resource_version=obj["metadata"]["resourceVersion"],
                )
                return
            except ApiError as exc:
                if is_conflict(exc) and attempt < 2:
                    continue
                raise


def _is_ip(host: str) -> bool:
    try:
        ip_sans([host])
    except ValueError:
        return False
    return True
