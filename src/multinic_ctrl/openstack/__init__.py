"""OpenStack REST client (Keystone v3, Nova v2.1, Neutron v2.0) over aiohttp.

Knows nothing about Kubernetes or the database. The controller creates one `OpenStackClient` per process
and calls `observe(creds, vm_names, subnet_name)` per reconcile - through an `ObservationCoalescer`, which lets
the configs of one identity share observations.
"""

from .auth import Token, TokenManager
from .client import OpenStackClient
from .coalesce import ObservationCoalescer, Peer, PeerSource
from .credentials import Credentials
from .endpoints import normalize_compute_url, normalize_identity_url, normalize_network_url
from .errors import (
    AmbiguousServer,
    AmbiguousSubnet,
    AuthenticationError,
    ConfigurationError,
    EndpointNotFound,
    OpenStackError,
    OpenStackRequestError,
    OpenStackUnavailable,
    PaginationError,
    PermissionDenied,
    ResourceNotFound,
    SubnetNotFound,
)
from .http import HttpSettings, RetryPolicy
from .microversion import PARTIAL_SERVERS, Microversion
from .models import Observation, Port, Server, Subnet
from .names import NameQuery, group_names
from .observe import BatchObservation, ObserveRequest
from .policy import EndpointNotAllowed, EndpointPolicy, InvalidPattern

__all__ = [
    "PARTIAL_SERVERS",
    "AmbiguousServer",
    "AmbiguousSubnet",
    "AuthenticationError",
    "BatchObservation",
    "ConfigurationError",
    "Credentials",
    "EndpointNotAllowed",
    "EndpointNotFound",
    "EndpointPolicy",
    "HttpSettings",
    "InvalidPattern",
    "Microversion",
    "NameQuery",
    "Observation",
    "ObservationCoalescer",
    "ObserveRequest",
    "OpenStackClient",
    "OpenStackError",
    "OpenStackRequestError",
    "OpenStackUnavailable",
    "PaginationError",
    "Peer",
    "PeerSource",
    "PermissionDenied",
    "Port",
    "ResourceNotFound",
    "RetryPolicy",
    "Server",
    "Subnet",
    "SubnetNotFound",
    "Token",
    "TokenManager",
    "group_names",
    "normalize_compute_url",
    "normalize_identity_url",
    "normalize_network_url",
]
