"""Which queued configs an OpenStack observation should take along (the `PeerSource` of `openstack/coalesce.py`).

When a batch starts, it asks for the configs that (a) probably share its credentials and (b) will call
OpenStack when a worker reaches them; it observes them too, and their reconciles then find a fresh result.

(a) *Peer group*: a guess at a config's identity from its spec alone, without reading a Secret (the Secret
watch caches no content, and reading every Secret per batch would cost the apiserver what coalescing saves
OpenStack): the namespace, the inline credential fields, and the Secrets (name, key) the rest comes from. The
inline password enters through an HMAC with a per-process key, so the group is safe to keep in an informer
index. Configs of one group resolve to the same credentials unless a Secret changes between their reads; the
coalescer serves results by the *resolved* credentials' identity, so a wrong guess only costs a larger
listing, never a wrong answer.

(b) *Call forecast*: the reconciler remembers, per config, the generation it last handled and when it will
next call OpenStack if nothing changes (its periodic slot, its error retry, at once after a failure, never in
`manual`/`webhook` mode). A queued config is taken along when it is due by that memory, when a webhook request
is pending, or when its spec changed and the trigger policy acts on spec changes at once. Taking a config along
never makes it call OpenStack (its own reconcile still decides); a forecast that is too eager only widens a
listing, which is why `manual` and `webhook` configs are taken along only for a pending request or a spec
change that will call anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from multinic_ctrl.controller.spec import ConfigSpec, SpecError, parse_spec
from multinic_ctrl.controller.trigger import Mode, TriggerPolicy
from multinic_ctrl.controller.triggers import pending_trigger
from multinic_ctrl.openstack import Peer

PEER_INDEX = "openstack-peers"
_GROUP_KEY = secrets.token_bytes(32)
DUE_SLACK = 1.0
"""Seconds: a config due this soon is taken along (it would otherwise come a moment after the batch)."""


def peer_group(namespace: str, spec: ConfigSpec) -> str:
    """The config's peer group (see (a) in the module docstring); never contains a secret. The namespace counts
    only when Secrets are involved (they are namespaced): inline credentials group across namespaces."""
    uses_secrets = bool(spec.password_ref or spec.credentials_secret)
    document = {
        "namespace": namespace if uses_secrets else None,
        "inline": dict(sorted(spec.credentials.items())),
        "password_ref": [spec.password_ref.name, spec.password_ref.key] if spec.password_ref else None,
        "secret": spec.credentials_secret,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(_GROUP_KEY, canonical, hashlib.sha256).hexdigest()


def peer_groups(obj: Mapping[str, Any]) -> list[str]:
    """Informer index function: the config's peer group (none for a spec that does not parse)."""
    namespace = str((obj.get("metadata") or {}).get("namespace") or "")
    try:
        return [peer_group(namespace, parse_spec(obj.get("spec")))]
    except SpecError:
        return []


class CallForecast:
    """When each config will next call OpenStack if nothing changes (see (b) in the module docstring).

    Times are on the work queue's clock (monotonic seconds); None: only a change or a webhook call brings it.
    """

    def __init__(self) -> None:
        self._next: dict[str, tuple[int, float | None]] = {}

    def record(self, key: str, generation: int, next_call: float | None) -> None:
        self._next[key] = (generation, next_call)

    def forget(self, key: str) -> None:
        self._next.pop(key, None)

    def __len__(self) -> int:
        return len(self._next)

    def likely(self, key: str, obj: Mapping[str, Any], policy: TriggerPolicy, now: float) -> bool:
        """Whether `key`, once a worker reaches it, will probably call OpenStack."""
        meta = obj.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return False
        if pending_trigger(obj) is not None:
            return True
        generation, next_call = self._next.get(key, (None, None))
        acts_on_changes = policy.mode in (Mode.IMMEDIATE, Mode.MANUAL) or policy.immediate_on_cr_change
        if generation != meta.get("generation") and acts_on_changes:
            return True  # never handled here, or its spec changed since: it calls at once
        return next_call is not None and next_call <= now + DUE_SLACK


class PeerFinder:
    """The `PeerSource` the coalescer calls: queued configs of a group that will probably call OpenStack."""

    def __init__(
        self,
        *,
        members: Callable[[str], Iterable[str]],
        get: Callable[[str], Mapping[str, Any] | None],
        is_queued: Callable[[str], bool],
        forecast: CallForecast,
        policy: Callable[[], TriggerPolicy],
        now: Callable[[], float],
    ) -> None:
        self._members = members
        self._get = get
        self._is_queued = is_queued
        self._forecast = forecast
        self._policy = policy
        self._now = now

    def __call__(self, group: str) -> list[Peer]:
        policy, now = self._policy(), self._now()
        peers: list[Peer] = []
        for key in self._members(group):
            if not self._is_queued(key):
                continue
            obj = self._get(key)
            if obj is None or not self._forecast.likely(key, obj, policy, now):
                continue
            try:
                spec = parse_spec(obj.get("spec"))
            except SpecError:
                continue
            peers.append(Peer(key, spec.vm_names, spec.subnet_name))
        return peers
