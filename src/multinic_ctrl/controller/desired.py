"""OpenStack observations → the rows the node agent should see (pure)."""

from __future__ import annotations

from multinic_ctrl.db import DesiredState, InterfaceRow, NodeRow, SubnetRow
from multinic_ctrl.db.repository import KeepRows
from multinic_ctrl.openstack import Observation


def desired_rows(observation: Observation) -> DesiredState:
    """Every found VM becomes a node (even without ports, so the status can list it); every port an interface.

    The interface MTU is the network's MTU: Neutron has no per-port MTU, and the agent writes it into netplan.
    """
    subnet = observation.subnet
    servers = {server.id: server for server in observation.servers}
    nodes = tuple(NodeRow(s.id, s.name, s.status.lower() or "unknown") for s in observation.servers)
    interfaces = tuple(
        InterfaceRow(
            port_id=port.id,
            subnet_id=subnet.id,
            mac=port.mac,
            address=port.ip,
            mtu=subnet.mtu,
            node_id=port.device_id,
            node_name=servers[port.device_id].name,
        )
        for port in observation.ports
        if port.device_id in servers
    )
    return DesiredState(
        subnets=(SubnetRow(subnet.id, subnet.name, subnet.cidr, subnet.network_id),),
        nodes=nodes,
        interfaces=interfaces,
    )


def rows_to_keep(observation: Observation) -> KeepRows:
    """The existing rows that must survive although `desired_rows` does not list them: VMs whose state is
    unknown ("present, state unknown") are never deleted on evidence that may be incomplete.

    - Nova's answer may have left servers out (`listing_complete` False): every missing VM keeps its rows.
    - Nova reported servers it could not name (partial records of an unreachable cell): a missing VM keeps its
      rows if their server ID is one of those; a missing VM whose rows name another server is really gone.
    - Otherwise nothing is kept: a VM Nova does not list is gone, and its rows go.
    """
    names = frozenset(observation.incomplete_vms)
    if not names:
        return KeepRows()
    if observation.listing_complete:
        return KeepRows(node_names=names, node_ids=frozenset(observation.unknown_servers))
    return KeepRows(node_names=names)
