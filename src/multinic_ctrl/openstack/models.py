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

    Absence is only evidence when Nova's answer is whole. `incomplete_vms` are the missing names whose absence
    is *not* proven: Nova could not report some servers (`unknown_servers`, "present, state unknown"), or its
    answer may have left servers out (`listing_complete` is False). Rows of those VMs must be kept.
    """

    subnet: Subnet
    servers: tuple[Server, ...]
    missing_vms: tuple[str, ...]
    ports: tuple[Port, ...]
    plaintext_endpoints: tuple[str, ...] = ()
    """Endpoints used over plain HTTP that the allow-list does not allow explicitly (scheme://host:port)."""
    unknown_servers: tuple[str, ...] = ()
    """IDs of servers Nova returned as partial records (their cell did not answer): they exist, but their name
    and state are unknown, so Nova cannot say whether one of them is a missing VM."""
    listing_complete: bool = True
    """False when Nova's answer may have silently left servers out (an endpoint without compute microversion
    2.69, or too many servers to see the partial records on one page)."""
    incomplete_vms: tuple[str, ...] = ()
    """The missing names whose absence is not proven (a subset of `missing_vms`, in its order)."""
    compute_microversion: str | None = None
    """The compute microversion used to check for unreachable cells (None: not needed or not offered)."""

    @property
    def state_unknown(self) -> bool:
        """Whether some requested VM may exist although Nova did not name it."""
        return bool(self.incomplete_vms)
