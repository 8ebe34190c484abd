"""A thin, generic JSON client for the Kubernetes API on top of kubernetes-asyncio's `ApiClient`.

Why not the generated `CoreV1Api` & co.: the machinery must work for *any* resource (custom ones included) and
must see the raw JSON (resourceVersion of bookmarks, in-stream ERROR Status objects) that the generated models
and `kubernetes_asyncio.watch.Watch` hide or mangle. We therefore reuse only the parts of kubernetes-asyncio
that are worth reusing - config loading (kubeconfig or in-cluster, token refresh, TLS) and the authenticated
aiohttp session - and issue requests through `ApiClient.call_api(..., _preload_content=False)`, which hands
back the raw aiohttp response. Watch streams are read line by line here so that the caller controls every
timeout (see ARCHITECTURE.md, "Known pitfalls": kubernetes-asyncio >= 32 applies no read timeout to watches).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import structlog
import yarl
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

log = structlog.get_logger(__name__)

JsonObj = dict[str, Any]
"""A Kubernetes object (or any JSON object) as decoded from the wire."""

QueryParams = Sequence[tuple[str, str]]

MERGE_PATCH = "application/merge-patch+json"
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
METADATA_LIST_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

_PATH_SEGMENT = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.:]{0,252}")
"""What a namespace or object name may look like when it becomes a URL path segment.

Every Kubernetes naming rule (DNS-1123 label and subdomain, RBAC's `system:` names, path-segment names) fits
inside it; it leaves out `/`, `%`, `?`, `#`, whitespace and a leading dot, so `.`, `..` and anything that a URL
parser or the HTTP stack would re-interpret (dot-segment removal, percent-decoding, query or fragment) can never
come from a name. The names come from objects that users write (a Secret reference in a spec) or from objects
that predate a schema, so this check is the last line, independent of CRD validation.
"""

_DEFAULT_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30.0, connect=10.0, sock_connect=10.0)
_MAX_LINE = 16 * 1024 * 1024  # etcd caps objects at 1.5 MiB; this only guards against a runaway stream.


@dataclass(frozen=True)
class Resource:
    """Where a kind of object lives in the API: enough to build every URL the machinery needs.

    Kept as plain data (not discovered) because the controller knows its resources at build time and discovery
    adds a failure mode at start-up for no benefit.
    """

    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""
    metadata_only: bool = False
    """Read as `PartialObjectMetadata` (LIST/WATCH/GET): for watching objects whose content must not be cached,
    such as Secrets - the apiserver sends metadata only, and the content is fetched when needed."""

    def accept(self, *, collection: bool = False) -> str:
        """The Accept header: a LIST answers a `...List`, a WATCH streams single objects."""
        if not self.metadata_only:
            return "application/json"
        return METADATA_LIST_ACCEPT if collection else METADATA_ACCEPT

    @property
    def api_version(self) -> str:
        """The `apiVersion` field value objects of this resource carry."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """URL path for the collection (name=None) or one object, optionally a subresource such as `status`.

        A namespaced resource without a namespace gives the all-namespaces collection path, which is what a
        cluster-wide informer lists and watches.
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{checked_segment(namespace, 'namespace')}"
        elif not self.namespaced and namespace:
            raise ValueError(f"{self.plural} is cluster-scoped; got namespace {namespace!r}")
        base += f"/{self.plural}"
        if name is not None:
            if not name:
                raise ValueError("empty object name")
            base += f"/{checked_segment(name, f'{self.kind or self.plural} name')}"
            if subresource:
                base += f"/{checked_segment(subresource, 'subresource')}"
        elif subresource:
            raise ValueError("a subresource needs an object name")
        return base


CONFIGMAPS = Resource("", "v1", "configmaps", True, "ConfigMap")
SECRETS = Resource("", "v1", "secrets", True, "Secret")
NAMESPACES = Resource("", "v1", "namespaces", False, "Namespace")
NODES = Resource("", "v1", "nodes", False, "Node")
PODS = Resource("", "v1", "pods", True, "Pod")
CORE_EVENTS = Resource("", "v1", "events", True, "Event")
EVENTS_V1 = Resource("events.k8s.io", "v1", "events", True, "Event")
LEASES = Resource("coordination.k8s.io", "v1", "leases", True, "Lease")
DEPLOYMENTS = Resource("apps", "v1", "deployments", True, "Deployment")
DAEMONSETS = Resource("apps", "v1", "daemonsets", True, "DaemonSet")


class InvalidObjectName(ValueError):
    """A namespace or name that cannot be a URL path segment: refused before any request is made."""


def checked_segment(value: str, what: str) -> str:
    """`value` when it is safe as one URL path segment (see `_PATH_SEGMENT`), else `InvalidObjectName`."""
    if not isinstance(value, str) or not _PATH_SEGMENT.fullmatch(value):
        shown = repr(value) if isinstance(value, str) and len(value) <= 80 else "a value"
        raise InvalidObjectName(f"{what} {shown} is not a valid Kubernetes name; refusing to build a request for it")
    return value


class ApiError(Exception):
    """A non-2xx answer from the apiserver, with the decoded `Status` body when there is one."""

    def __init__(self, status: int, reason: str, body: JsonObj | None = None) -> None:
        self.status = status
        self.reason = reason
        self.body: JsonObj = body or {}
        message = self.body.get("message") or reason
        super().__init__(f"HTTP {status}: {message}")

    @property
    def message(self) -> str:
        return str(self.body.get("message") or self.reason)


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 404


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 409


def is_gone(exc: BaseException) -> bool:
    return isinstance(exc, ApiError) and exc.status == 410


def object_key(obj: Mapping[str, Any]) -> str:
    """The store / work-queue key of an object: `namespace/name`, or `name` when cluster-scoped."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of `object_key`: (namespace or None, name)."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, namespace)


async def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """Build a `kubernetes_asyncio.client.ApiClient` from a kubeconfig or the pod's service account.

    Order: explicit `kubeconfig` argument, then `$KUBECONFIG`, then in-cluster config, then `~/.kube/config`.
    In-cluster comes before the home file so a pod never silently picks up a stray file baked into the image.
    A fresh `Configuration` is used (not the process-wide default) so tests can talk to several clusters.
    """
    configuration = k8s_client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        await k8s_config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        source = "kubeconfig"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        source = "in-cluster"
    else:
        await k8s_config.load_kube_config(context=context, client_configuration=configuration)
        source = "default kubeconfig"
    log.info("Kubernetes client configured.", source=source, host=configuration.host)
    return without_per_request_env_lookups(k8s_client.ApiClient(configuration=configuration))


def without_per_request_env_lookups(api_client: Any) -> Any:
    """Resolve the proxy for the apiserver from the environment once, instead of on every request.

    kubernetes-asyncio makes its aiohttp session with `trust_env=True`, and aiohttp then reads `~/.netrc` and
    the `*_PROXY` variables in a worker thread on every request: two thread hand-offs per apiserver call, a
    measurable share of the controller's CPU when it writes thousands of finalizers and statuses. The
    environment does not change while the process runs, so: look the proxy up once (HTTPS_PROXY / NO_PROXY, as
    client-go honours them), pass it explicitly, and stop the per-request lookups. A proxy set in the
    kubeconfig (`proxy-url`) wins; netrc credentials were never a Kubernetes authentication method.
    """
    configuration = api_client.configuration
    rest = api_client.rest_client
    if not rest.proxy and configuration.host:
        with contextlib.suppress(LookupError):
            proxy, auth = get_env_proxy_for_url(yarl.URL(configuration.host))
            rest.proxy = str(proxy)
            if auth is not None:
                rest.proxy_headers = {"Proxy-Authorization": auth.encode()}
    rest.pool_manager._trust_env = False  # aiohttp has no public setter (tests/unit/kube/test_client_env.py)
    return api_client


class KubeClient:
    """Generic JSON requests (get/list/create/patch/delete) and raw watch streams on one `ApiClient`.

    The wrapped ApiClient owns the aiohttp session (connection pool, TLS, bearer-token refresh); closing this
    client closes it only when `owns_api_client` is true, so a test fixture's ApiClient stays the fixture's.
    """

    def __init__(
        self,
        api_client: Any,
        *,
        owns_api_client: bool = False,
        request_timeout: aiohttp.ClientTimeout = _DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.api_client = api_client
        self._owns = owns_api_client
        self._request_timeout = request_timeout

    @classmethod
    async def from_config(cls, kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        return cls(await load_api_client(kubeconfig, context), owns_api_client=True)

    async def close(self) -> None:
        if self._owns:
            await self.api_client.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: QueryParams | None = None,
        body: Any = None,
        content_type: str = "application/json",
        request_timeout: aiohttp.ClientTimeout | None = None,
        accept: str = "application/json",
    ) -> aiohttp.ClientResponse:
        response = await self.api_client.call_api(
            path,
            method,
            query_params=list(query or []),
            header_params={"Accept": accept, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=request_timeout or self._request_timeout,
        )
        return cast(aiohttp.ClientResponse, response)

    @staticmethod
    async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
        if 200 <= response.status < 300:
            return
        raw = await response.read()
        body: JsonObj | None = None
        try:
            decoded = json.loads(raw)
            if isinstance(decoded, dict):
                body = decoded
        except ValueError:
            body = {"message": raw[:2000].decode("utf-8", "replace")}
        raise ApiError(response.status, response.reason or "", body)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: QueryParams | None = None,
        body: Any = None,
        content_type: str = "application/json",
        request_timeout: aiohttp.ClientTimeout | None = None,
        accept: str = "application/json",
    ) -> JsonObj:
        """One request with a JSON answer; raises `ApiError` for non-2xx."""
        response = await self._send(
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            request_timeout=request_timeout,
            accept=accept,
        )
        async with response:
            await self._raise_for_status(response)
            raw = await response.read()
        if not raw:
            return {}
        decoded = json.loads(raw)
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    async def get(self, resource: Resource, name: str, namespace: str | None = None) -> JsonObj:
        return await self.request("GET", resource.path(namespace, name))

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
    ) -> JsonObj:
        """One page of a LIST: the raw `...List` object (`items`, `metadata.resourceVersion`, `.continue`)."""
        query: list[tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if limit:
            query.append(("limit", str(limit)))
        if continue_token:
            query.append(("continue", continue_token))
        if resource_version is not None:
            query.append(("resourceVersion", resource_version))
        return await self.request("GET", resource.path(namespace), query=query, accept=resource.accept(collection=True))

    async def create(self, resource: Resource, body: JsonObj, namespace: str | None = None) -> JsonObj:
        return await self.request("POST", resource.path(namespace), body=body)

    async def replace(
        self,
        resource: Resource,
        name: str,
        body: JsonObj,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> JsonObj:
        return await self.request("PUT", resource.path(namespace, name, subresource), body=body)

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> JsonObj:
        return await self.request(
            "PATCH", resource.path(namespace, name, subresource), body=patch, content_type=content_type
        )

    async def delete(
        self, resource: Resource, name: str, namespace: str | None = None, *, body: JsonObj | None = None
    ) -> JsonObj:
        return await self.request("DELETE", resource.path(namespace, name), body=body)

    @asynccontextmanager
    async def watch_stream(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int,
        label_selector: str | None = None,
        field_selector: str | None = None,
        connect_timeout: float = 10.0,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a WATCH and yield the raw response; non-2xx (e.g. 410 Gone) raises `ApiError` before yielding.

        No client read timeout is set on purpose: the caller's inactivity watchdog decides when a stream is
        dead, and `timeoutSeconds` (server side) bounds a healthy stream's life.
        """
        query: list[tuple[str, str]] = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
            ("resourceVersion", resource_version),
        ]
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=None
        )
        response = await self._send(
            "GET", resource.path(namespace), query=query, request_timeout=timeout, accept=resource.accept()
        )
        try:
            await self._raise_for_status(response)
            yield response
        finally:
            response.close()


async def read_lines(response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    """Yield complete newline-terminated lines of a streaming body (without the newline), ignoring blank ones.

    Reads whatever chunk arrives so one huge object never trips aiohttp's readline limit; the caller wraps
    each `__anext__` in its own timeout.
    """
    buffer = bytearray()
    while True:
        chunk = await response.content.readany()
        if not chunk:
            if bytes(buffer).strip():
                yield bytes(buffer)
            return
        start = len(buffer)
        buffer += chunk
        newline = buffer.find(b"\n", start)
        while newline >= 0:
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            if line.strip():
                yield line
            newline = buffer.find(b"\n")
        if len(buffer) > _MAX_LINE:
            raise ValueError("watch line exceeds the maximum size")
