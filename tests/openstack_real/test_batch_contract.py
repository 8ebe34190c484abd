"""Batched observation contract (issue 15 item 1): on the real testbed and the simulator alike, one batch of many
configs answers each config exactly as observing it alone does, in one call per kind."""

from __future__ import annotations

import pytest

from multinic_ctrl.openstack import Observation, ObserveRequest, OpenStackError

from .conftest import PAGE, Backend, make_client

pytestmark = pytest.mark.openstack_real

# Configs over the testbed layout: shared servers and subnets, look-alike names, a VM missing, a subnet nobody
# has, a subnet name two shared subnets carry, a subnet only shared with the project.
CONFIGS = [
    (("test-vm-1", "test-vm-2"), "k8s-subnet"),
    (("test-vm-2", "test-vm-3"), "k8s-subnet"),
    (("test-vm-1",), "k8s-subnet"),
    (("test-vm-2",), "other-subnet"),
    (("test-vm-10", "test-vm-1.backup"), "k8s-subnet"),
    (("test-vm-3", "no-such-vm"), "k8s-subnet"),
    (("test-vm-1",), "no-such-subnet"),
    (("test-vm-1",), "twin-subnet"),
    ((), "shared-subnet"),
]

Outcome = Observation | tuple[type[BaseException], str]


async def alone(backend: Backend, page_size: int | None) -> list[Outcome]:
    client, _ = make_client(page_size)
    outcomes: list[Outcome] = []
    try:
        for names, subnet in CONFIGS:
            try:
                outcomes.append(await client.observe(backend.creds, names, subnet))
            except OpenStackError as exc:
                outcomes.append((type(exc), str(exc)))
    finally:
        await client.close()
    return outcomes


@pytest.mark.parametrize("page_size", [None, PAGE])
async def test_each_slice_equals_the_config_observed_alone(backend: Backend, page_size: int | None) -> None:
    expected = await alone(backend, page_size)
    client, transport = make_client(page_size)
    try:
        batch = await client.observe_batch(backend.creds, [ObserveRequest(n, s) for n, s in CONFIGS])
    finally:
        await client.close()
    got: list[Outcome] = []
    for names, subnet in CONFIGS:
        try:
            got.append(batch.slice(names, subnet))
        except OpenStackError as exc:
            got.append((type(exc), str(exc)))
    assert got == expected
    assert [type(o).__name__ if isinstance(o, Observation) else o[0].__name__ for o in got] == [
        *["Observation"] * 6,
        "SubnetNotFound",
        "AmbiguousSubnet",
        "Observation",
    ]
    if page_size is None:  # the testbed pages at PAGE items anyway: counts are per first page
        first_pages = {c.operation for c in transport.calls if not any(k == "marker" for k, _ in c.params)}
        assert {"list_subnets", "list_servers", "list_ports", "list_networks"} <= first_pages
        # Nine configs: the owned-subnets query and the shared one (for names the project owns none of), one
        # ports and one networks listing - not one per config.
        starts = [c for c in transport.calls if not any(k == "marker" for k, _ in c.params)]
        assert sum(1 for c in starts if c.operation == "list_subnets") == 2
        assert sum(1 for c in starts if c.operation == "list_ports") == 1
        assert sum(1 for c in starts if c.operation == "list_networks") == 1
        assert sum(1 for c in starts if c.operation == "get_network") == 0
