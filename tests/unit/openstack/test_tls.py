"""TLS is verified by default; a CA bundle makes a self-signed endpoint work; insecure is explicit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from multinic_ctrl.openstack import OpenStackRequestError
from tests.fakes.openstack import Simulator, running_simulator
from tests.fakes.openstack.tls import SelfSigned, make_self_signed

from .conftest import make_client


@pytest.fixture
def cert(tmp_path: Path) -> SelfSigned:
    return make_self_signed(tmp_path)


@pytest.fixture
async def https_sim(cert: SelfSigned) -> AsyncIterator[Simulator]:
    async with running_simulator(ssl_context=cert.server_context()) as sim:
        yield sim


async def test_self_signed_rejected_by_default(https_sim: Simulator) -> None:
    assert https_sim.auth_url.startswith("https://")
    client = make_client()
    try:
        with pytest.raises(OpenStackRequestError, match="TLS error"):
            await client.observe(https_sim.credentials(), ["test-vm-1"], "k8s-subnet")
    finally:
        await client.close()
    assert https_sim.calls() == 0  # the handshake failed; no request reached the server
    # and the failure was not retried: a certificate problem does not fix itself


async def test_ca_bundle_makes_it_work(https_sim: Simulator, cert: SelfSigned) -> None:
    client = make_client(ca_bundle=str(cert.cert_file))
    try:
        obs = await client.observe(https_sim.credentials(), ["test-vm-1"], "k8s-subnet")
    finally:
        await client.close()
    assert [p.ip for p in obs.ports] == ["192.168.100.11"]
    assert https_sim.calls("identity.tokens") == 1


async def test_insecure_switch_is_explicit(https_sim: Simulator) -> None:
    client = make_client(insecure=True)
    try:
        obs = await client.observe(https_sim.credentials(), ["test-vm-1"], "k8s-subnet")
    finally:
        await client.close()
    assert obs.subnet.mtu == 1450
