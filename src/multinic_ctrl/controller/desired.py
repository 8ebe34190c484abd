"""OpenStack observations → the rows the node agent should see (pure)."""

from __future__ import annotations

from multinic_ctrl.db import DesiredState, InterfaceRow, NodeRow, SubnetRow
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
