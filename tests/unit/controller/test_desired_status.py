"""OpenStack observation → desired rows, and the status documents built from it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from multinic_ctrl.controller.desired import desired_rows
from multinic_ctrl.controller.status import (
    ERROR,
    PENDING,
    SYNCED,
    Condition,
    merge_conditions,
    rfc3339,
    synced_conditions,
    vm_report,
    without_volatile,
)
from multinic_ctrl.db import DesiredState, InterfaceRow, NodeRow, SubnetRow
from multinic_ctrl.openstack import Observation, Port, Server, Subnet

SUBNET = Subnet(id="sub-1", name="k8s-subnet", cidr="192.168.10.0/24", network_id="net-1", mtu=1450)
VM1 = Server(id="srv-1", name="test-vm-1", status="ACTIVE")
VM2 = Server(id="srv-2", name="test-vm-2", status="SHUTOFF")
VM3 = Server(id="srv-3", name="test-vm-3", status="")
P1 = Port(id="port-a", mac="fa:16:3e:00:00:01", ip="192.168.10.11", device_id="srv-1", network_id="net-1")
P1B = Port(id="port-b", mac="FA:16:3E:00:00:0B", ip="192.168.10.12", device_id="srv-1", network_id="net-1")
P2 = Port(id="port-c", mac="fa:16:3e:00:00:02", ip="192.168.10.21", device_id="srv-2", network_id="net-1")
STRAY = Port(id="port-z", mac="fa:16:3e:00:00:99", ip="192.168.10.99", device_id="srv-unknown", network_id="net-1")


def observe(
    servers: tuple[Server, ...] = (VM1, VM2),
    ports: tuple[Port, ...] = (P1, P2),
    missing: tuple[str, ...] = (),
    subnet: Subnet = SUBNET,
) -> Observation:
    return Observation(subnet=subnet, servers=servers, missing_vms=missing, ports=ports)


# ---------------------------------------------------------------- desired_rows


def test_desired_rows_for_a_full_observation() -> None:
    state = desired_rows(observe())
    assert state == DesiredState(
        subnets=(SubnetRow("sub-1", "k8s-subnet", "192.168.10.0/24", "net-1"),),
        nodes=(NodeRow("srv-1", "test-vm-1", "active"), NodeRow("srv-2", "test-vm-2", "shutoff")),
        interfaces=(
            InterfaceRow("port-a", "sub-1", "fa:16:3e:00:00:01", "192.168.10.11", 1450, "srv-1", "test-vm-1"),
            InterfaceRow("port-c", "sub-1", "fa:16:3e:00:00:02", "192.168.10.21", 1450, "srv-2", "test-vm-2"),
        ),
    )


@pytest.mark.parametrize("mtu", [1280, 1450, 1500, 9000])
def test_interface_mtu_is_the_subnets_network_mtu(mtu: int) -> None:
    subnet = Subnet("sub-1", "k8s-subnet", "192.168.10.0/24", "net-1", mtu)
    state = desired_rows(observe(subnet=subnet, ports=(P1, P1B, P2)))
    assert [i.mtu for i in state.interfaces] == [mtu, mtu, mtu]


def test_mac_is_lower_case() -> None:
    state = desired_rows(observe(ports=(P1B,)))
    assert state.interfaces[0].mac == "fa:16:3e:00:00:0b"


def test_several_ports_on_one_vm() -> None:
    state = desired_rows(observe(servers=(VM1,), ports=(P1, P1B)))
    assert [(i.port_id, i.node_name) for i in state.interfaces] == [("port-a", "test-vm-1"), ("port-b", "test-vm-1")]
    assert len(state.nodes) == 1


def test_ports_of_servers_not_found_are_dropped() -> None:
    state = desired_rows(observe(ports=(P1, STRAY, P2)))
    assert [i.port_id for i in state.interfaces] == ["port-a", "port-c"]
    assert "srv-unknown" not in {n.node_id for n in state.nodes}


def test_found_vms_without_ports_are_still_nodes() -> None:
    state = desired_rows(observe(servers=(VM1, VM2, VM3), ports=(P1,)))
    assert [n.node_name for n in state.nodes] == ["test-vm-1", "test-vm-2", "test-vm-3"]
    assert [i.node_id for i in state.interfaces] == ["srv-1"]


def test_server_status_is_lower_cased_and_empty_means_unknown() -> None:
    state = desired_rows(observe(servers=(VM1, VM2, VM3), ports=()))
    assert [n.status for n in state.nodes] == ["active", "shutoff", "unknown"]


def test_missing_vms_and_no_servers_give_only_the_subnet() -> None:
    state = desired_rows(observe(servers=(), ports=(STRAY,), missing=("test-vm-1",)))
    assert state.nodes == ()
    assert state.interfaces == ()
    assert state.subnets == (SubnetRow("sub-1", "k8s-subnet", "192.168.10.0/24", "net-1"),)


def test_desired_rows_is_pure() -> None:
    observation = observe(ports=(P1, P1B, P2))
    assert desired_rows(observation) == desired_rows(observation)


# ---------------------------------------------------------------- merge_conditions

T0 = dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(hours=1)


def test_phase_names() -> None:
    assert (PENDING, SYNCED, ERROR) == ("Pending", "Synced", "Error")


def test_rfc3339() -> None:
    assert rfc3339(dt.datetime(2026, 1, 10, 8, 0, 5, 999999, tzinfo=dt.UTC)) == "2026-01-10T08:00:05Z"
    berlin = dt.timezone(dt.timedelta(hours=2))
    assert rfc3339(dt.datetime(2026, 7, 10, 10, 0, tzinfo=berlin)) == "2026-07-10T08:00:00Z"


def test_new_conditions_get_now_and_generation() -> None:
    merged = merge_conditions(None, [Condition("Ready", True, "Synced", "ok")], generation=3, now=T0)
    assert merged == [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Synced",
            "message": "ok",
            "lastTransitionTime": "2026-01-10T08:00:00Z",
            "observedGeneration": 3,
        }
    ]


@pytest.mark.parametrize(
    ("before", "after", "moves"),
    [
        (True, True, False),
        (False, False, False),
        (True, False, True),
        (False, True, True),
    ],
)
def test_last_transition_time_moves_only_when_status_flips(before: bool, after: bool, moves: bool) -> None:
    first = merge_conditions(None, [Condition("Ready", before, "A", "first")], generation=1, now=T0)
    second = merge_conditions(first, [Condition("Ready", after, "B", "second")], generation=2, now=T1)
    assert second[0]["lastTransitionTime"] == ("2026-01-10T09:00:00Z" if moves else "2026-01-10T08:00:00Z")
    # reason, message and generation always follow the new condition
    assert (second[0]["reason"], second[0]["message"], second[0]["observedGeneration"]) == ("B", "second", 2)
    assert second[0]["status"] == ("True" if after else "False")


def test_unchanged_status_gives_an_identical_document() -> None:
    conds = [Condition("Ready", True, "Synced", "ok"), Condition("AllVMsFound", False, "VMsMissing", "x")]
    first = merge_conditions(None, conds, generation=1, now=T0)
    assert merge_conditions(first, conds, generation=1, now=T1) == first


def test_prior_without_transition_time_gets_now() -> None:
    prior = [{"type": "Ready", "status": "True", "reason": "x", "message": "y"}]
    merged = merge_conditions(prior, [Condition("Ready", True, "x", "y")], generation=1, now=T1)
    assert merged[0]["lastTransitionTime"] == "2026-01-10T09:00:00Z"


def test_conditions_not_spoken_about_keep_their_value() -> None:
    first = merge_conditions(None, synced_conditions(observe()), generation=1, now=T0)
    auth_failed = [
        Condition("Ready", False, "AuthFailed", "Keystone rejected the credentials"),
        Condition("CredentialsValid", False, "AuthFailed", "Keystone rejected the credentials"),
    ]
    second = merge_conditions(first, auth_failed, generation=2, now=T1)
    by_type = {c["type"]: c for c in second}
    assert [c["type"] for c in second] == ["Ready", "CredentialsValid", "SubnetFound", "AllVMsFound", "SecureTransport"]
    assert by_type["SubnetFound"] == next(c for c in first if c["type"] == "SubnetFound")
    assert by_type["SubnetFound"]["observedGeneration"] == 1
    assert by_type["Ready"]["lastTransitionTime"] == "2026-01-10T09:00:00Z"
    assert by_type["CredentialsValid"]["status"] == "False"


def test_conditions_are_sorted_with_unknown_types_last() -> None:
    merged = merge_conditions(
        [{"type": "Custom", "status": "True"}],
        [
            Condition("AllVMsFound", True, "a", "a"),
            Condition("Ready", True, "a", "a"),
            Condition("SubnetFound", True, "a", "a"),
            Condition("CredentialsValid", True, "a", "a"),
        ],
        generation=1,
        now=T0,
    )
    assert [c["type"] for c in merged] == ["Ready", "CredentialsValid", "SubnetFound", "AllVMsFound", "Custom"]


def test_merge_does_not_mutate_previous() -> None:
    previous = [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    snapshot = [dict(c) for c in previous]
    merge_conditions(previous, [Condition("Ready", True, "a", "b")], generation=1, now=T0)
    assert previous == snapshot


# ---------------------------------------------------------------- synced_conditions / vm_report


def test_synced_conditions_all_found() -> None:
    conds = {c.type: c for c in synced_conditions(observe())}
    assert list(conds) == ["Ready", "CredentialsValid", "SubnetFound", "AllVMsFound", "SecureTransport"]
    assert all(c.status for c in conds.values())
    assert conds["SubnetFound"].message == "Subnet k8s-subnet (192.168.10.0/24)"
    assert conds["AllVMsFound"].reason == "AllFound"


def test_plaintext_endpoints_are_a_warning_condition_not_a_failure() -> None:
    obs = dataclasses.replace(observe(), plaintext_endpoints=("http://keystone:5000",))
    conds = {c.type: c for c in synced_conditions(obs)}
    assert conds["Ready"].status is True
    transport = conds["SecureTransport"]
    assert (transport.status, transport.reason) == (False, "PlaintextEndpoint")
    assert "http://keystone:5000" in transport.message and "OPENSTACK_ALLOWED_URLS" in transport.message


def test_synced_conditions_names_missing_vms() -> None:
    conds = {c.type: c for c in synced_conditions(observe(missing=("vm-x", "vm-y")))}
    assert conds["Ready"].status is True
    assert conds["AllVMsFound"].status is False
    assert conds["AllVMsFound"].reason == "VMsMissing"
    assert conds["AllVMsFound"].message == "VMs not found: vm-x, vm-y"


def test_vm_report() -> None:
    report = vm_report(observe(servers=(VM1, VM2, VM3), ports=(P1, P1B, STRAY), missing=("vm-gone",)), {})
    expected: list[dict[str, Any]] = [
        {
            "name": "test-vm-1",
            "serverID": "srv-1",
            "status": "ACTIVE",
            "interfaces": [
                {"portID": "port-a", "macAddress": "fa:16:3e:00:00:01", "address": "192.168.10.11"},
                {"portID": "port-b", "macAddress": "FA:16:3E:00:00:0B", "address": "192.168.10.12"},
            ],
        },
        {
            "name": "test-vm-2",
            "serverID": "srv-2",
            "status": "SHUTOFF",
            "interfaces": [],
            "message": "no port on subnet k8s-subnet",
        },
        {
            "name": "test-vm-3",
            "serverID": "srv-3",
            "status": "",
            "interfaces": [],
            "message": "no port on subnet k8s-subnet",
        },
        {"name": "vm-gone", "message": "no server with this name in the project", "interfaces": []},
    ]
    assert report == expected


def test_vm_report_marks_conflicting_ports() -> None:
    report = vm_report(observe(servers=(VM1,), ports=(P1, P1B)), {"port-b": "other-ns/other-config"})
    interfaces = report[0]["interfaces"]
    assert "conflict" not in interfaces[0]
    assert interfaces[1]["conflict"] == "already managed by OpenstackConfig other-ns/other-config"


def test_vm_report_of_nothing_found() -> None:
    report = vm_report(observe(servers=(), ports=(), missing=("a", "b")), {})
    assert [r["name"] for r in report] == ["a", "b"]
    assert all("serverID" not in r for r in report)


# ---------------------------------------------------------------- without_volatile


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"phase": "Synced", "lastSyncTime": "t1", "nextSyncTime": "t2"}, {"phase": "Synced"}),
        ({"phase": "Synced", "message": "m"}, {"phase": "Synced", "message": "m"}),
        ({"lastSyncTime": "t1"}, {}),
    ],
)
def test_without_volatile(status: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert without_volatile(status) == expected


def test_without_volatile_does_not_mutate_and_compares_syncs() -> None:
    first = {"phase": "Synced", "lastSyncTime": "2026-01-10T08:00:00Z", "conditions": []}
    second = {"phase": "Synced", "lastSyncTime": "2026-01-10T08:05:00Z", "conditions": []}
    assert without_volatile(first) == without_volatile(second)
    assert first["lastSyncTime"] == "2026-01-10T08:00:00Z"
    assert without_volatile(first) != without_volatile({**second, "phase": "Error"})
