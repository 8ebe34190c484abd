"""Value objects returned by the client: exactly the fields the database rows need."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Subnet:
    id: str
    name: str
    cidr: str
    network_id: str
    mtu: int


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str


@dataclass(frozen=True)
class Port:
    id: str
    mac: str  # lower case, as the node agent compares it
    ip: str  # the port's address on the observed subnet
    device_id: str  # the Nova server UUID
    network_id: str


@dataclass(frozen=True)
class Observation:
    """What OpenStack says about one OpenstackConfig: its subnet, the VMs found, and their ports on it.

    `servers` follow the order of the requested names; `missing_vms` lists requested names with no server
    (not an error: the VM may not exist yet); `ports` are sorted by server order, then port ID.
    """

    subnet: Subnet
    servers: tuple[Server, ...]
    missing_vms: tuple[str, ...]
    ports: tuple[Port, ...]
    plaintext_endpoints: tuple[str, ...] = ()
    """Endpoints used over plain HTTP that the allow-list does not allow explicitly (scheme://host:port)."""
