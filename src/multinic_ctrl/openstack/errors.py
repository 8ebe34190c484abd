"""Typed errors of the OpenStack client.

Every error subclasses `OpenStackError`, so a reconciler can catch one type and still tell the user what to
fix from the message. Messages name users, domains, subnets and services, never passwords or tokens: they end
up in logs, Kubernetes events and CR status.
"""

from __future__ import annotations

from collections.abc import Sequence


class OpenStackError(Exception):
    """Base class of every error raised by `multinic_ctrl.openstack`."""

    #: Whether retrying the same call later can plausibly succeed (outage vs. configuration mistake).
    transient: bool = False


class ConfigurationError(OpenStackError):
    """The credentials/endpoints given are malformed (bad URL, missing field)."""


class AuthenticationError(OpenStackError):
    """Keystone rejected the credentials, or a service rejected a freshly issued token."""


class PermissionDenied(OpenStackError):
    """HTTP 403: the user is authenticated but lacks a role or policy for the call."""


class EndpointNotFound(OpenStackError):
    """No usable endpoint for a service in the spec or in the token's service catalog."""

    def __init__(self, service_type: str, interface: str, region: str | None) -> None:
        where = f"interface '{interface}'" + (f" in region '{region}'" if region else "")
        super().__init__(
            f"no '{service_type}' endpoint with {where} in the Keystone service catalog; "
            f"set the endpoint explicitly or fix the interface/region"
        )
        self.service_type = service_type
        self.interface = interface
        self.region = region


class ResourceNotFound(OpenStackError):
    """HTTP 404 or an empty filtered listing for something that must exist."""


class SubnetNotFound(ResourceNotFound):
    def __init__(self, name: str, *, project_id: str | None = None) -> None:
        where = f" in project {project_id} (owned or shared with it)" if project_id else ""
        super().__init__(f"subnet '{name}' not found{where}")
        self.name = name
        self.project_id = project_id


class AmbiguousSubnet(OpenStackError):
    """Neutron subnet names are not unique; several matches cannot be resolved safely.

    `candidates` are `(subnet ID, network ID)` or `(subnet ID, network ID, owning project ID)`; `scope` says
    which subnets were compared (e.g. "owned by project X").
    """

    def __init__(self, name: str, candidates: Sequence[tuple[str, ...]], *, scope: str | None = None) -> None:
        listed = ", ".join(
            f"{c[0]} (network {c[1]}" + (f", project {c[2]})" if len(c) > 2 else ")") for c in candidates
        )
        which = f" {scope}" if scope else ""
        super().__init__(f"subnet name '{name}' is ambiguous: {len(candidates)} subnets{which} match: {listed}")
        self.name = name
        self.scope = scope
        self.candidates = tuple(candidates)


class AmbiguousServer(OpenStackError):
    """Nova server names are not unique; a node row cannot map to two servers."""

    def __init__(self, name: str, server_ids: Sequence[str]) -> None:
        super().__init__(
            f"server name '{name}' is ambiguous: {len(server_ids)} servers share it: {', '.join(server_ids)}"
        )
        self.name = name
        self.server_ids = tuple(server_ids)


class OpenStackRequestError(OpenStackError):
    """A non-retryable HTTP error (4xx other than 401/403/404) or an unparseable response."""

    def __init__(self, service: str, operation: str, status: int | None, detail: str) -> None:
        code = f"HTTP {status}" if status is not None else "invalid response"
        super().__init__(f"{service} {operation} failed with {code}: {detail}")
        self.service = service
        self.operation = operation
        self.status = status


class PaginationError(OpenStackError):
    """The server's `*_links` would make us loop (repeated marker) or never end."""


class OpenStackUnavailable(OpenStackError):
    """Connection errors, timeouts, 5xx or 429 persisted through every retry."""

    transient = True

    def __init__(self, service: str, operation: str, attempts: int, reason: str) -> None:
        super().__init__(f"{service} {operation} unavailable after {attempts} attempts: {reason}")
        self.service = service
        self.operation = operation
        self.attempts = attempts
        self.reason = reason
