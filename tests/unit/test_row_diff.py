from __future__ import annotations

from dataclasses import replace

import pytest

from multinic_ctrl.db.models import DesiredState, InterfaceRow, NodeRow, SubnetRow, diff_interfaces

BASE = InterfaceRow("p1", "s1", "FA:16:3E:00:00:01", "10.0.0.5", 1450, "n1", "vm-1")


def test_mac_is_lower_cased_and_validated() -> None:
    assert BASE.mac == "fa:16:3e:00:00:01"
    with pytest.raises(ValueError, match="not a MAC"):
        replace(BASE, mac="zz")


@pytest.mark.parametrize(
    ("change", "resets"),
    [
        ({"mac": "fa:16:3e:00:00:02"}, True),
        ({"address": "10.0.0.6"}, True),
        ({"mtu": 9000}, True),
        ({"node_id": "n2", "node_name": "vm-2"}, True),
        ({"subnet_id": "s2"}, True),
        ({"status": "DOWN"}, False),
    ],
)
def test_what_resets_netplan(change: dict[str, object], resets: bool) -> None:
    diff = diff_interfaces([BASE], [replace(BASE, **change)])  # type: ignore[arg-type]
    (changed,) = diff.changed
    assert changed.resets_netplan is resets


def test_diff_partitions_rows() -> None:
    a, b, c = BASE, replace(BASE, port_id="p2"), replace(BASE, port_id="p3")
    diff = diff_interfaces([a, b], [a, c, replace(BASE, port_id="p4")], {"p4": "ns/other"})
    assert diff.unchanged == (a,) and diff.added == (c,) and diff.removed == (b,)
    assert diff.conflicts == ((replace(BASE, port_id="p4"), "ns/other"),)
    assert not diff.is_empty and diff_interfaces([a], [a]).is_empty


def test_desired_state_rejects_dangling_references() -> None:
    with pytest.raises(ValueError, match="unknown subnet"):
        DesiredState((), (NodeRow("n1", "vm-1"),), (BASE,))
    with pytest.raises(ValueError, match="unknown node"):
        DesiredState((SubnetRow("s1", "x", "10.0.0.0/24", "net"),), (), (BASE,))
    with pytest.raises(ValueError, match="listed twice"):
        DesiredState((SubnetRow("s1", "x", "10.0.0.0/24", "net"),), (NodeRow("n1", "vm-1"),), (BASE, BASE))
