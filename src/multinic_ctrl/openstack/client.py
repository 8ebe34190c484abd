"""`OpenStackClient`: the one object the controller holds (one per process)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import aiohttp
import structlog

from .auth import DEFAULT_REFRESH_MARGIN, TokenManager
from .credentials import Credentials
from .endpoints import normalize_identity_url, resolve_endpoints
from .errors import AuthenticationError, OpenStackRequestError, PermissionDenied, ResourceNotFound
from .http import HttpSettings, HttpTransport, Params, Response, raise_for_status
from .microversion import (
    VERSION_CACHE_TTL,
    Microversion,
    MicroversionCache,
    VersionRange,
    parse_version_document,
    version_document_url,
)
from .models import Observation
from .names import DEFAULT_MAX_QUERIES
from .observe import BatchObservation, ObserveRequest
from .observe import observe_batch as _observe_batch
from .policy import EndpointNotAllowed, EndpointPolicy
from .tasks import first_error

log = structlog.get_logger(__name__)


class OpenStackClient:
    """Shared session + token cache; `observe()` is the reconcile-shaped query.

    Exceptions leaving `observe` are always `OpenStackError` subclasses (TaskGroup wrapping is undone), so
    callers can branch on type and show `str(exc)` to users.
    """

    def __init__(
        self,
        settings: HttpSettings | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        page_size: int | None = None,
        max_server_queries: int = DEFAULT_MAX_QUERIES,
        transport: HttpTransport | None = None,
        policy: EndpointPolicy | None = None,
        version_cache_ttl: float = VERSION_CACHE_TTL,
    ) -> None:
        self._transport = transport or HttpTransport(settings, session)
        self.policy = policy or EndpointPolicy()
        self._tokens = TokenManager(self._transport, refresh_margin=refresh_margin)
        self._microversions = MicroversionCache(ttl=version_cache_ttl)
        self._page_size = page_size
        self._max_server_queries = max_server_queries

    @property
    def tokens(self) -> TokenManager:
        return self._tokens

    async def observe(self, creds: Credentials, vm_names: Sequence[str], subnet_name: str) -> Observation:
        """One config's observation (a batch of one: the same calls as ever)."""
        request = ObserveRequest(tuple(vm_names), subnet_name)
        batch = await self.observe_batch(creds, [request])
        return batch.slice(request.vm_names, request.subnet_name)

    async def observe_batch(self, creds: Credentials, requests: Sequence[ObserveRequest]) -> BatchObservation:
        """Observe several configs of one identity at once; each takes its slice (`BatchObservation.slice`).

        Raises what fails them all (policy, authentication, outages); per-config errors stay in the slices.
        """
        identity = normalize_identity_url(creds.auth_url)
        # Before any request: the allow-list decides where this config's credentials may go at all.
        self.policy.check(identity, "spec.credentials.authURL")
        for what, url in (
            ("spec.credentials.networkEndpoint", creds.network_endpoint),
            ("spec.credentials.computeEndpoint", creds.compute_endpoint),
        ):
            if url:
                self.policy.check(url, what)
        token = await self._tokens.get(creds)
        endpoints = resolve_endpoints(creds, token.catalog)
        # Catalog endpoints too: tokens must not be sent where the credentials could not be.
        self.policy.check(endpoints.network, "the network endpoint")
        self.policy.check(endpoints.compute, "the compute endpoint")

        version_url = version_document_url(endpoints.compute)

        async def get(
            service: str, operation: str, url: str, params: Params, headers: Mapping[str, str] | None = None
        ) -> Response:
            try:
                return await self._get(creds, service, operation, url, params, headers)
            except OpenStackRequestError as exc:
                if service == "compute" and exc.status == 406:
                    # The endpoint no longer offers the microversion we negotiated (downgraded, or another
                    # Nova behind the same URL): negotiate again on the next reconcile.
                    self._microversions.invalidate(version_url)
                raise

        async def microversion() -> Microversion | None:
            try:
                # Same host as the compute endpoint, but a legacy `/v2.1/<project>` URL loses its last segment.
                self.policy.check(version_url, "the compute version document")
            except EndpointNotAllowed:
                return None  # no negotiation: listings then count as possibly incomplete
            return await self._microversions.get(version_url, lambda url: self._version_range(creds, url))

        try:
            result = await _observe_batch(
                get,
                compute_url=endpoints.compute,
                network_url=endpoints.network,
                requests=requests,
                project_id=token.project_id,
                microversion=microversion,
                page_size=self._page_size,
                max_server_queries=self._max_server_queries,
            )
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        plaintext = self.policy.plaintext((identity, endpoints.network, endpoints.compute))
        if plaintext:
            result = dataclasses.replace(result, plaintext_endpoints=tuple(plaintext))
        log.debug(
            "OpenStack observation complete",
            configs=len(requests),
            subnets=len(result.subnets),
            vms=len(result.names),
            servers=len(result.servers),
            ports=sum(len(p) for p in result.ports.values()),
        )
        return result

    async def _version_range(self, creds: Credentials, url: str) -> VersionRange | None:
        """The compute version document; None when the endpoint has no usable one (outages still raise)."""
        try:
            resp = await self._get(creds, "compute", "get_version", url, ())
        except (ResourceNotFound, PermissionDenied, OpenStackRequestError) as exc:
            log.warning("Compute version document unavailable: no microversion will be used", endpoint=url, error=exc)
            return None
        offered = parse_version_document(resp.body)
        if offered is None:
            log.warning("Compute version document unreadable: no microversion will be used", endpoint=url)
        return offered

    async def _get(
        self,
        creds: Credentials,
        service: str,
        operation: str,
        url: str,
        params: Params,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """GET with the cached token; on 401 drop it, re-authenticate once and retry once."""
        for attempt in (1, 2):
            token = await self._tokens.get(creds)
            resp = await self._transport.request(
                service=service,
                operation=operation,
                method="GET",
                url=url,
                params=params,
                headers={"X-Auth-Token": token.value, "Accept": "application/json", **(headers or {})},
            )
            if resp.status != 401:
                raise_for_status(resp, service, operation)
                return resp
            self._tokens.invalidate(creds, token)
            if attempt == 1:
                log.info("OpenStack rejected the token, re-authenticating", service=service, operation=operation)
        raise AuthenticationError(
            f"{service} rejected a freshly issued Keystone token for {creds.describe()} ({operation})"
        )

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> OpenStackClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
