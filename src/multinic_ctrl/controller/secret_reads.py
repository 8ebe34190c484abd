"""Reading the Secrets configs reference: one GET per Secret version, not one per reconcile.

Every reconcile of a config with `passwordSecretRef` or `credentialsSecretRef` needs the Secret's data (to
resolve the credentials and to hash the version it used). Read fresh each time, 1,000 configs sharing one
Secret cost the apiserver 1,000 GETs per resync round - every 30 s by default in a large project - to learn
what the Secret watch already says did not change.

So the data read is kept, with the resourceVersion it was read at, and reused while the metadata-only Secret
watch (which caches no content: see `kube.store.identity_only`) reports that same resourceVersion. Any write
to a Secret moves its resourceVersion, so a rotation is read at the next reconcile that needs it - the watch
event that announces it also queues the configs that use it. A watch that does not know the Secret (gone,
or not listed yet) means a fresh read, as before.

What is kept is only what reconciles of this process read anyway, for Secrets configs reference, and only as
long as the watch shows it unchanged: it leaves with the Secret's deletion or its next write, and at most
`capacity` Secrets are held (least recently used go first). It is never logged or exported.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from multinic_ctrl.controller.hashing import SecretVersion
from multinic_ctrl.controller.resources import SECRETS
from multinic_ctrl.controller.spec import SecretData, decode_secret
from multinic_ctrl.kube import Resource, is_not_found


class SecretGetter(Protocol):
    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SecretRead:
    data: SecretData
    version: SecretVersion


class SecretReader:
    def __init__(
        self,
        kube: SecretGetter,
        watched_version: Callable[[str], str | None] = lambda _key: None,
        *,
        capacity: int = 1024,
    ) -> None:
        self._kube = kube
        self._watched_version = watched_version
        self._capacity = capacity
        self._kept: OrderedDict[str, SecretRead] = OrderedDict()
        self.gets = 0
        """GETs sent (for tests and benchmarks)."""

    async def read(self, namespace: str, name: str) -> SecretRead | None:
        """The Secret's data and version; None when it does not exist. Raises what the GET raises otherwise
        (`InvalidObjectName` for a name that is not one, an `ApiError`, a transport error)."""
        key = f"{namespace}/{name}"
        kept = self._kept.get(key)
        watched = self._watched_version(key)
        if kept is not None and watched is not None and kept.version.resource_version == watched:
            self._kept.move_to_end(key)
            return kept
        self._kept.pop(key, None)
        self.gets += 1
        try:
            secret = await self._kube.get(SECRETS, name, namespace)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        meta = secret.get("metadata") or {}
        read = SecretRead(
            decode_secret(secret),
            SecretVersion(name, str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))),
        )
        self._kept[key] = read
        while len(self._kept) > self._capacity:
            self._kept.popitem(last=False)
        return read

    def forget(self, key: str) -> None:
        """The Secret `namespace/name` was deleted: drop what was read of it."""
        self._kept.pop(key, None)
