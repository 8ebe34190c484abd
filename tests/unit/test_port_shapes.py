"""Port shapes the agent contract does not spell out: what row (if any) each becomes (see controller/desired.py)."""

from __future__ import annotations

import pytest

from multinic_ctrl.controller.desired import desired_rows, port_problem
from multinic_ctrl.controller.status import vm_report
from multinic_ctrl.openstack import Observation, Port, Server, Subnet
from multinic_ctrl.openstack.network import _port

V4 = Subnet("s4", "k8s-subnet", "192.168.100.0/24", "n1", 1450)
V6 = Subnet("s6", "k8s-v6", "fd00:10::/64", "n1", 1450)


def observe(subnet: Subnet, *ports: Port, name: str = "node-1") -> Observation:
    return Observation(subnet, (Server("srv-1", name, "ACTIVE"),), (), ports)


def port(mac: str = "fa:16:3e:00:00:01", ip: str = "192.168.100.10", pid: str = "p1") -> Port:
    return Port(pid, mac, ip, "srv-1", "n1")


@pytest.mark.parametrize(
    ("subnet", "mac", "ip", "problem"),
    [
        (V4, "fa:16:3e:00:00:01", "192.168.100.10", None),
        (V6, "fa:16:3e:00:00:01", "fd00:10::5", None),
        (V6, "fa:16:3e:00:00:01", "fd00:0010:0000::5", None),
        (V4, "fa-16-3e-00-00-01", "192.168.100.10", "not six hex octets"),
        (V4, "fa:16:3e:00:00", "192.168.100.10", "not six hex octets"),
        (V4, "fa:16:3e:00:00:01:02", "192.168.100.10", "not six hex octets"),
        (V4, "zz:16:3e:00:00:01", "192.168.100.10", "not six hex octets"),
        (V4, "", "192.168.100.10", "not six hex octets"),
        (V4, "fa:16:3e:00:00:01", "192.168.101.10", "outside subnet"),
        (V4, "fa:16:3e:00:00:01", "fd00:10::5", "outside subnet"),
        (V4, "fa:16:3e:00:00:01", "not-an-ip", "not an IP address"),
        (V4, "fa:16:3e:00:00:01", "192.168.100.10/24", "not an IP address"),
    ],
)
def test_which_ports_become_rows(subnet: Subnet, mac: str, ip: str, problem: str | None) -> None:
    found = port_problem(port(mac, ip), subnet.cidr)
    assert (found is None) if problem is None else (problem in str(found))
    rows = desired_rows(observe(subnet, port(mac, ip))).interfaces
    assert len(rows) == (1 if problem is None else 0)
    (vm,) = vm_report(observe(subnet, port(mac, ip)), {})
    assert ("problem" in vm["interfaces"][0]) == (problem is not None)


def test_a_bad_port_does_not_stop_the_good_ones() -> None:
    rows = desired_rows(observe(V4, port("bad", pid="p1"), port("fa:16:3e:00:00:02", "192.168.100.11", "p2")))
    assert [r.port_id for r in rows.interfaces] == ["p2"]


def test_upper_case_macs_are_lowered_by_the_client() -> None:
    item = {"id": "p1", "mac_address": "FA:16:3E:00:00:0A", "fixed_ips": [{"subnet_id": "s4", "ip_address": "1.2.3.4"}]}
    parsed = _port(item, "s4")
    assert parsed is not None and parsed.mac == "fa:16:3e:00:00:0a"


def test_two_addresses_on_the_subnet_give_one_row_with_the_first() -> None:
    item = {
        "id": "p1",
        "mac_address": "fa:16:3e:00:00:01",
        "device_id": "srv-1",
        "fixed_ips": [
            {"subnet_id": "other", "ip_address": "10.0.0.5"},
            {"subnet_id": "s4", "ip_address": "192.168.100.20"},
            {"subnet_id": "s4", "ip_address": "192.168.100.10"},
        ],
    }
    parsed = _port(item, "s4")
    assert parsed is not None and parsed.ip == "192.168.100.20"
    (row,) = desired_rows(observe(V4, parsed)).interfaces
    assert row.address == "192.168.100.20"


@pytest.mark.parametrize("name", ["nöde-1", "节点-1", "node.example.com"])
def test_vm_names_are_written_exactly_as_nova_has_them(name: str) -> None:
    (row,) = desired_rows(observe(V4, port(), name=name)).interfaces
    assert row.node_name == name
