"""Endpoint normalisation and service-catalog lookup.

Users write endpoints in many shapes: `http://h:5000` or `http://h:5000/v3/`, `http://h:9696` or
`http://h:9696/v2.0`, `http://h:8774`, `http://h:8774/v2.1` or the legacy `http://h:8774/v2.1/<project>`.
The catalog has the same variety (Neutron is usually registered without a version, Nova with one).
We normalise every one to the versioned base the API paths hang off, and treat an empty or blank string as
"not given" so that it falls back to the catalog instead of producing a broken URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .credentials import Credentials
from .errors import ConfigurationError, EndpointNotFound

_COMPUTE_VERSION = re.compile(r"/v2(\.1)?(/[^/]+)?$")


def _clean(url: str | None, what: str) -> str | None:
    if url is None or not url.strip():
        return None
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"{what} '{url}' is not an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{what} '{url}' must not contain a query or fragment")
    return url


def normalize_identity_url(url: str) -> str:
    """Keystone base URL ending in `/v3` (appended when missing, `/v2.0` replaced)."""
    cleaned = _clean(url, "authURL")
    if cleaned is None:
        raise ConfigurationError("authURL is empty")
    if cleaned.endswith("/v3"):
        return cleaned
    if cleaned.endswith("/v2.0"):
        cleaned = cleaned[: -len("/v2.0")]
    return cleaned + "/v3"


def normalize_network_url(url: str | None) -> str | None:
    """Neutron base ending in `/v2.0`, or None for "use the catalog"."""
    cleaned = _clean(url, "network endpoint")
    if cleaned is None:
        return None
    return cleaned if cleaned.endswith("/v2.0") else cleaned + "/v2.0"


def normalize_compute_url(url: str | None) -> str | None:
    """Nova base ending in `/v2.1` (or a legacy `/v2[.1]/<project>` kept as is), or None."""
    cleaned = _clean(url, "compute endpoint")
    if cleaned is None:
        return None
    if _COMPUTE_VERSION.search(urlsplit(cleaned).path):
        return cleaned
    return cleaned + "/v2.1"


@dataclass(frozen=True)
class CatalogEndpoint:
    service_type: str
    interface: str
    region: str | None
    url: str


def parse_catalog(catalog: Any) -> tuple[CatalogEndpoint, ...]:
    """Flatten a Keystone v3 `token.catalog` into endpoints; malformed entries are skipped."""
    found: list[CatalogEndpoint] = []
    if not isinstance(catalog, list):
        return ()
    for service in catalog:
        if not isinstance(service, Mapping) or not isinstance(service.get("type"), str):
            continue
        for ep in service.get("endpoints") or ():
            if not isinstance(ep, Mapping) or not isinstance(ep.get("url"), str):
                continue
            region = ep.get("region_id") or ep.get("region")
            found.append(
                CatalogEndpoint(
                    service_type=service["type"],
                    interface=str(ep.get("interface", "")),
                    region=region if isinstance(region, str) else None,
                    url=ep["url"],
                )
            )
    return tuple(found)


def from_catalog(catalog: Sequence[CatalogEndpoint], service_type: str, interface: str, region: str | None) -> str:
    """The URL of the first endpoint of `service_type` with that interface (and region, when given)."""
    for ep in catalog:
        if ep.service_type != service_type or ep.interface != interface:
            continue
        if region and ep.region != region:
            continue
        if not ep.url.strip():
            continue
        return ep.url
    raise EndpointNotFound(service_type, interface, region)


@dataclass(frozen=True)
class ServiceEndpoints:
    compute: str
    network: str


def resolve_endpoints(creds: Credentials, catalog: Sequence[CatalogEndpoint]) -> ServiceEndpoints:
    """Spec endpoints win; otherwise the catalog's, both normalised to their versioned base."""
    compute = normalize_compute_url(creds.compute_endpoint)
    if compute is None:
        compute = _required(normalize_compute_url(from_catalog(catalog, "compute", creds.interface, creds.region)))
    network = normalize_network_url(creds.network_endpoint)
    if network is None:
        network = _required(normalize_network_url(from_catalog(catalog, "network", creds.interface, creds.region)))
    return ServiceEndpoints(compute=compute, network=network)


def _required(url: str | None) -> str:
    if url is None:  # from_catalog never returns a blank URL; this keeps the type checker honest
        raise ConfigurationError("catalog endpoint is empty")
    return url
