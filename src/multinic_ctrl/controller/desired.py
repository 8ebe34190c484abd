"""OpenStack observations → the rows the node agent should see (pure).

Decisions on shapes the agent contract does not spell out (table-tested in tests/unit/test_port_shapes.py):
- A port with two or more addresses on the subnet: one row, with the first address Neutron lists for that
  subnet (its allocation order; the agent configures one address per row, and the first is the one DHCP and
  the metadata service hand out).
- IPv6 subnets: rows as for IPv4 (the agent writes `address/prefix` from the subnet's CIDR either way).
- VM names are written exactly as Nova has them, unicode included; the agent matches its short hostname, so a
  name that is no valid hostname (or contains a ".") gets rows that no agent reads - the status still lists it.
- A MAC that is not six hex octets, or an address that is not an IP inside the subnet's CIDR, cannot become a
  row the agent could apply: the port is skipped, and its entry in status says why. The other ports go on.
"""

from __future__ import annotations

import ipaddress
import re

from multinic_ctrl.db import DesiredState, InterfaceRow, NodeRow, SubnetRow
from multinic_ctrl.db.repository import KeepRows
from multinic_ctrl.openstack import Observation, Port

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def port_problem(port: Port, cidr: str) -> str | None:
    """Why `port` cannot become a row the node agent could apply, or None when it can."""
    if not _MAC.fullmatch(port.mac.lower()):  # case is normalised where rows are built
        return f"MAC address {port.mac[:40]!r} is not six hex octets"
    try:
        address = ipaddress.ip_address(port.ip)
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return f"address {port.ip[:60]!r} is not an IP address in subnet {cidr[:60]!r}"
    if address not in network:
        return f"address {port.ip} is outside subnet {cidr}"
    return None


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
        if port.device_id in servers and port_problem(port, subnet.cidr) is None
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
