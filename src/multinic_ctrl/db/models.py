"""Row models and the pure diff between what a CR's rows are and what they should be.

Kept free of I/O so `plan` can show a diff without writing and the rules are table-tested. The rule that
matters most to the node agent: a row whose configured values (MAC, address, MTU, subnet, node) did not
change keeps its `id` and `netplan_success`; otherwise every reconcile would make every node re-apply netplan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True, order=True)
class SubnetRow:
    subnet_id: str
    subnet_name: str
    cidr: str
    network_id: str
    status: str = "active"


@dataclass(frozen=True, order=True)
class NodeRow:
    node_id: str
    node_name: str
    status: str = "active"


@dataclass(frozen=True, order=True)
class InterfaceRow:
    port_id: str
    subnet_id: str
    mac: str
    address: str | None
    mtu: int | None
    node_id: str
    node_name: str
    status: str = "active"

    def __post_init__(self) -> None:
        # The agent compares MACs as text against the kernel's lower-case form.
        object.__setattr__(self, "mac", self.mac.lower())
        if not _MAC.match(self.mac):
            raise ValueError(f"port {self.port_id}: {self.mac!r} is not a MAC address")

    def configured_differs(self, other: InterfaceRow) -> bool:
        """True when something the node agent writes into netplan changed (so it must re-apply)."""
        return (self.mac, self.address, self.mtu, self.subnet_id, self.node_id, self.node_name) != (
            other.mac,
            other.address,
            other.mtu,
            other.subnet_id,
            other.node_id,
            other.node_name,
        )


@dataclass(frozen=True)
class DesiredState:
    """One CR's wanted rows. Every interface must reference a listed subnet and node."""

    subnets: tuple[SubnetRow, ...] = ()
    nodes: tuple[NodeRow, ...] = ()
    interfaces: tuple[InterfaceRow, ...] = ()

    def __post_init__(self) -> None:
        subnet_ids = {s.subnet_id for s in self.subnets}
        nodes = {(n.node_id, n.node_name) for n in self.nodes}
        if len({n.node_name for n in self.nodes}) != len(self.nodes):
            raise ValueError("two desired nodes share a name")
        seen: set[str] = set()
        for iface in self.interfaces:
            if iface.port_id in seen:
                raise ValueError(f"port {iface.port_id} is listed twice")
            seen.add(iface.port_id)
            if iface.subnet_id not in subnet_ids:
                raise ValueError(f"port {iface.port_id} references unknown subnet {iface.subnet_id}")
            if (iface.node_id, iface.node_name) not in nodes:
                raise ValueError(f"port {iface.port_id} references unknown node {iface.node_name}")


@dataclass(frozen=True)
class StoredInterface:
    id: int
    row: InterfaceRow
    netplan_success: int
    cr_namespace: str
    cr_name: str


@dataclass(frozen=True)
class ChangedInterface:
    old: InterfaceRow
    new: InterfaceRow
    resets_netplan: bool


@dataclass(frozen=True)
class RowDiff:
    added: tuple[InterfaceRow, ...] = ()
    changed: tuple[ChangedInterface, ...] = ()
    removed: tuple[InterfaceRow, ...] = ()
    unchanged: tuple[InterfaceRow, ...] = ()
    # Ports another CR already owns: left alone (first writer wins), reported in status.
    conflicts: tuple[tuple[InterfaceRow, str], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.changed or self.removed)


@dataclass(frozen=True)
class ApplyResult:
    diff: RowDiff
    subnets_written: int = 0
    nodes_written: int = 0
    swept: tuple[str, ...] = field(default_factory=tuple)


def diff_interfaces(
    current: Iterable[InterfaceRow],
    desired: Iterable[InterfaceRow],
    owned_elsewhere: Mapping[str, str] | None = None,
) -> RowDiff:
    """Compare one CR's stored rows with its desired rows, keyed by Neutron port ID."""
    owned_elsewhere = owned_elsewhere or {}
    current_by_port = {row.port_id: row for row in current}
    desired_by_port = {row.port_id: row for row in desired}
    added: list[InterfaceRow] = []
    changed: list[ChangedInterface] = []
    unchanged: list[InterfaceRow] = []
    conflicts: list[tuple[InterfaceRow, str]] = []
    for port_id, new in sorted(desired_by_port.items()):
        old = current_by_port.get(port_id)
        if old is None:
            owner = owned_elsewhere.get(port_id)
            if owner is not None:
                conflicts.append((new, owner))
            else:
                added.append(new)
        elif old == new:
            unchanged.append(new)
        else:
            changed.append(ChangedInterface(old, new, resets_netplan=new.configured_differs(old)))
    removed = [row for port_id, row in sorted(current_by_port.items()) if port_id not in desired_by_port]
    return RowDiff(tuple(added), tuple(changed), tuple(removed), tuple(unchanged), tuple(conflicts))
