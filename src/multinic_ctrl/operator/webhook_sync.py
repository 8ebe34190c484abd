"""Keeps the webhook's TLS Secret, the served certificate and the ValidatingWebhookConfiguration in step.

One `sync()` does, in this order (the order is what makes a CA rotation safe):

1. read the TLS Secret and `webhook_tls.plan_secret` it; write it back when the plan changed - created with
   POST (create-only: a 409 means another replica won, its material is read and used), updated with PUT carrying
   the read `resourceVersion` (a 409 re-reads and re-plans once);
2. apply the ValidatingWebhookConfiguration when it is missing or `webhook_config.drifted` from the desired one
   (a deleted configuration, an edited `caBundle`, a removed rule) - the bundle is injected *before* ...
3. ... the serving certificate is swapped into the running `ProtectionWebhook` (new connections only).

Invariants:

* **Ready means served and trusted** - `ready` is true only after a sync in which the served certificate was issued
  by a CA in the bundle the live configuration carries;
* **re-injected on any edit** - `run()` syncs at the next renewal point, every `period` seconds, and at once after
  `poke()` (call it from a watch on the configuration); a failed sync is retried with backoff;
* **secret material never logged** - logs carry reasons (`created`, `serving-renewed`, ...) and names only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import structlog
from cryptography import x509

from multinic_ctrl.kube.apply import server_side_apply
from multinic_ctrl.kube.client import ApiError, KubeClient, Resource, is_conflict, is_not_found

from .names import FIELD_MANAGER
from .webhook_config import drifted
from .webhook_server import ProtectionWebhook
from .webhook_tls import (
    TLS_CERT,
    TLS_KEY,
    Identity,
    KeyFactory,
    Lifetimes,
    Plan,
    bundle_certificates,
    decode_secret_data,
    new_key,
    plan_secret,
    secret_manifest,
)

log = structlog.get_logger(__name__)

SECRETS = Resource("", "v1", "secrets", True, "Secret")
VALIDATING_WEBHOOK_CONFIGURATIONS = Resource(
    "admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", False, "ValidatingWebhookConfiguration"
)


class WebhookSync:
    """TLS Secret → served certificate + injected caBundle, for one operator process."""

    def __init__(
        self,
        client: KubeClient,
        *,
        secret_name: str,
        identity: Identity,
        configuration: Callable[[bytes], Mapping[str, Any]],
        lifetimes: Lifetimes = Lifetimes(),  # noqa: B008 - frozen
        labels: Mapping[str, str] | None = None,
        webhook: ProtectionWebhook | None = None,
        field_manager: str = FIELD_MANAGER,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        key_factory: KeyFactory = new_key,
    ) -> None:
        self.client = client
        self.secret_name = secret_name
        self.namespace = identity.namespace
        self.identity = identity
        self.configuration = configuration
        self.lifetimes = lifetimes
        self.labels = dict(labels or {})
        self.webhook = webhook
        self.field_manager = field_manager
        self._clock = clock
        self._key_factory = key_factory
        self._poked = asyncio.Event()
        self.ready = False
        self.last_plan: Plan | None = None

    # -- the Secret ------------------------------------------------------------------------------------------

    async def _read_secret(self) -> tuple[dict[str, bytes] | None, str | None]:
        try:
            secret = await self.client.get(SECRETS, self.secret_name, self.namespace)
        except ApiError as exc:
            if is_not_found(exc):
                return None, None
            raise
        return decode_secret_data(secret.get("data")), (secret.get("metadata") or {}).get("resourceVersion")

    async def ensure_certificate(self) -> Plan:
        """The material the Secret holds after this call (written when it had to change)."""
        for attempt in range(3):
            data, version = await self._read_secret()
            plan = plan_secret(data, self.identity, self._clock(), self.lifetimes, self._key_factory)
            if not plan.changed:
                return plan
            body: dict[str, Any] = secret_manifest(self.secret_name, self.namespace, plan.data, self.labels)
            try:
                if version is None:
                    await self.client.create(SECRETS, body, self.namespace)
                else:
                    body["metadata"]["resourceVersion"] = version
                    await self.client.replace(SECRETS, self.secret_name, body, self.namespace)
            except ApiError as exc:
                if is_conflict(exc) and attempt < 2:
                    continue  # another replica wrote first: use what it wrote
                raise
            log.info("Webhook TLS Secret written", secret=self.secret_name, reasons=list(plan.reasons))
            return plan
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the configuration -----------------------------------------------------------------------------------

    async def ensure_configuration(self, bundle: bytes) -> bool:
        """Apply the configuration when it is missing or drifted; True when it was written."""
        desired = self.configuration(bundle)
        name = desired["metadata"]["name"]
        try:
            live: Mapping[str, Any] | None = await self.client.get(VALIDATING_WEBHOOK_CONFIGURATIONS, name)
        except ApiError as exc:
            if not is_not_found(exc):
                raise
            live = None
        if not drifted(live, desired):
            return False
        await server_side_apply(
            self.client, VALIDATING_WEBHOOK_CONFIGURATIONS, desired, field_manager=self.field_manager
        )
        log.info("Webhook configuration applied", name=name, recreated=live is None)
        return True

    # -- one pass and the loop -------------------------------------------------------------------------------

    async def sync(self) -> Plan:
        """Secret, then configuration (bundle first), then the served certificate. Sets `ready`."""
        self.ready = False
        plan = await self.ensure_certificate()
        await self.ensure_configuration(plan.material.bundle)
        if self.webhook is not None and plan.material.cert != self.webhook.tls.cert_pem:
            self.webhook.set_certificate(plan.material.cert, plan.material.key)
        self.last_plan = plan
        self.ready = _trusted(plan)
        return plan

    def poke(self) -> None:
        """Sync soon (a watch saw the configuration or the Secret change)."""
        self._poked.set()

    async def run(self, period: float = 60.0, max_backoff: float = 30.0) -> None:
        """Sync forever: at the next renewal point, every `period` seconds, on `poke()`; back off on errors."""
        backoff = 0.5
        while True:
            self._poked.clear()
            try:
                plan = await self.sync()
            except Exception as exc:
                self.ready = False
                log.warning("Webhook TLS sync failed; retrying", error=str(exc), retry_in=backoff)
                wait = backoff
                backoff = min(backoff * 2, max_backoff)
            else:
                backoff = 0.5
                wait = max(0.05, min(period, (plan.next_check - self._clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout=wait)


def _trusted(plan: Plan) -> bool:
    """The serving certificate was issued by a CA of the bundle and is currently valid."""
    cert = x509.load_pem_x509_certificate(plan.material.cert)
    for ca in bundle_certificates(plan.material.bundle):
        try:
            cert.verify_directly_issued_by(ca)
        except Exception:  # noqa: S112 - any failure means "not this CA"
            continue
        return True
    return False


def served_material(plan: Plan) -> tuple[bytes, bytes]:
    """(cert, key) PEMs to construct the `ProtectionWebhook` with."""
    return plan.data[TLS_CERT], plan.data[TLS_KEY]
