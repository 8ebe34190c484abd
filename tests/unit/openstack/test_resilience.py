"""Tokens, retries, timeouts, faults and secret hygiene against the simulator."""

from __future__ import annotations

import asyncio
import logging

import pytest
import structlog

from multinic_ctrl.metrics import REGISTRY
from multinic_ctrl.openstack import (
    AuthenticationError,
    OpenStackError,
    OpenStackRequestError,
    OpenStackUnavailable,
)
from multinic_ctrl.openstack.auth import TokenManager
from multinic_ctrl.openstack.http import HttpTransport
from tests.fakes.openstack import Simulator, running_simulator

from .conftest import SleepRecorder, make_client

VMS = ["test-vm-1", "test-vm-2", "test-vm-3"]


async def test_token_expiry_mid_run_reauthenticates() -> None:
    async with running_simulator(token_lifetime=0.6) as sim:
        client = make_client(refresh_margin=0.0)
        try:
            await client.observe(sim.credentials(), VMS, "k8s-subnet")
            await client.observe(sim.credentials(), VMS, "k8s-subnet")
            assert sim.calls("identity.tokens") == 1
            await asyncio.sleep(0.7)  # the token expires between two reconciles
            obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
        finally:
            await client.close()
        assert len(obs.ports) == 3
        assert sim.calls("identity.tokens") == 2
        assert all(r.status != 401 for r in sim.request_log)  # refreshed proactively, never rejected


async def test_refresh_margin_renews_before_expiry() -> None:
    async with running_simulator(token_lifetime=10.0) as sim:
        tokens = TokenManager(HttpTransport(), refresh_margin=120.0)  # margin capped at 10% of lifetime
        try:
            first = await tokens.get(sim.credentials())
            assert await tokens.get(sim.credentials()) is first
            assert first.deadline - asyncio.get_running_loop().time() == pytest.approx(9.0, abs=0.5)
        finally:
            await tokens._transport.close()


async def test_revoked_token_gets_one_reauth(sim: Simulator, sleeps: SleepRecorder) -> None:
    client = make_client(sleeps)
    try:
        await client.observe(sim.credentials(), VMS, "k8s-subnet")
        sim.state.revoke_all_tokens()
        sim.request_log.clear()
        obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert len(obs.servers) == 3
    assert sim.calls("identity.tokens") == 1  # concurrent 401s share one re-authentication
    assert sum(1 for r in sim.request_log if r.status == 401) >= 1


async def test_persistent_401_is_an_authentication_error(sim: Simulator) -> None:
    client = make_client()
    try:
        await client.observe(sim.credentials(), VMS, "k8s-subnet")
        sim.faults.fail_next("network.subnets", 5, status=401)
        sim.request_log.clear()
        with pytest.raises(AuthenticationError, match="rejected a freshly issued Keystone token"):
            await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert sim.calls("network.subnets") == 2  # the original try and exactly one retry


async def test_bad_password_message_and_no_secret(sim: Simulator, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client()
    creds = sim.credentials(password="hunter2-very-secret")
    try:
        with pytest.raises(AuthenticationError) as info:
            await client.observe(creds, VMS, "k8s-subnet")
    finally:
        await client.close()
    message = str(info.value)
    assert message.startswith("Keystone rejected the credentials of user 'admin' in domain 'Default'")
    assert "hunter2" not in message and "hunter2" not in repr(info.value) and "hunter2" not in repr(creds)
    assert sim.calls("identity.tokens") == 1  # 401 from Keystone is never retried


async def test_wrong_project_scope_is_rejected(sim: Simulator) -> None:
    c = make_client()
    try:
        with pytest.raises(AuthenticationError, match="project ID 'nope'"):
            await c.observe(sim.credentials(project_id="nope"), VMS, "k8s-subnet")
    finally:
        await c.close()


async def test_project_scope_by_name(sim: Simulator) -> None:
    c = make_client()
    try:
        creds = sim.credentials(project_id=None, project_name="admin", project_domain_name="Default")
        obs = await c.observe(creds, VMS, "k8s-subnet")
    finally:
        await c.close()
    assert len(obs.servers) == 3


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_retried(sim: Simulator, sleeps: SleepRecorder, status: int) -> None:
    sim.faults.fail_next("compute.servers", 2, status=status)
    sim.faults.fail_next("identity.tokens", 1, status=status)
    client = make_client(sleeps)
    try:
        obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert len(obs.servers) == 3
    assert sim.calls("compute.servers") == 3
    assert sim.calls("identity.tokens") == 2
    assert len(sleeps.delays) == 3 and all(0 <= d <= 0.05 for d in sleeps.delays)


async def test_429_honours_retry_after(sim: Simulator, sleeps: SleepRecorder) -> None:
    sim.faults.throttle_next("network.ports", 1, retry_after="2")
    client = make_client(sleeps)
    try:
        obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert len(obs.ports) == 3
    assert sleeps.delays == [2.0]
    assert sim.calls("network.ports") == 2


async def test_429_with_real_sleep(sim: Simulator) -> None:
    sim.faults.throttle_next("network.subnets", 1, retry_after="0.2")
    client = make_client(SleepRecorder())
    client._transport._sleep = asyncio.sleep  # the real thing, once
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert loop.time() - started >= 0.2


async def test_retries_exhausted_raise_unavailable(sim: Simulator, sleeps: SleepRecorder) -> None:
    sim.faults.fail_next("network.networks", 10, status=503)
    client = make_client(sleeps, attempts=3)
    try:
        with pytest.raises(OpenStackUnavailable, match="network get_network unavailable after 3 attempts: HTTP 503"):
            await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert sim.calls("network.networks") == 3
    assert OpenStackUnavailable.transient


async def test_other_4xx_is_not_retried(sim: Simulator) -> None:
    sim.faults.fail_next("compute.servers", 1, status=400)
    client = make_client()
    try:
        with pytest.raises(OpenStackRequestError, match="HTTP 400"):
            await client.observe(sim.credentials(), ["test-vm-1"], "k8s-subnet")
    finally:
        await client.close()
    assert sim.calls("compute.servers") == 1


async def test_timeout_is_retried_then_succeeds(sim: Simulator, sleeps: SleepRecorder) -> None:
    client = make_client(sleeps, request_timeout=0.3)
    try:
        await client.observe(sim.credentials(), VMS, "k8s-subnet")  # warm token
        sim.faults.set_latency("network.subnets", 1.0)
        task = asyncio.create_task(client.observe(sim.credentials(), VMS, "k8s-subnet"))
        await asyncio.sleep(0.35)
        sim.faults.set_latency("network.subnets", 0.0)  # the outage ends
        obs = await task
    finally:
        await client.close()
    assert obs.subnet.mtu == 1450
    assert len(sleeps.delays) >= 1


async def test_timeout_exhausted(sim: Simulator, sleeps: SleepRecorder) -> None:
    sim.faults.set_latency("network.subnets", 1.0)
    client = make_client(sleeps, request_timeout=0.2, attempts=2)
    try:
        with pytest.raises(OpenStackUnavailable, match=r"timed out after 0\.2s"):
            await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()


async def test_dropped_connection_is_retried(sim: Simulator, sleeps: SleepRecorder) -> None:
    sim.faults.drop_next("network.ports", 2)
    client = make_client(sleeps)
    try:
        obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert len(obs.ports) == 3
    assert [r.status for r in sim.request_log.for_endpoint("network.ports")] == [0, 0, 200]


async def test_connection_refused_is_unavailable(sleeps: SleepRecorder) -> None:
    async with running_simulator() as sim:
        creds = sim.credentials()
    client = make_client(sleeps, attempts=2)  # the simulator is gone: nothing listens on that port
    try:
        with pytest.raises(OpenStackUnavailable, match="connection error"):
            await client.observe(creds, VMS, "k8s-subnet")
    finally:
        await client.close()


async def test_random_error_rate_is_survived(sleeps: SleepRecorder) -> None:
    async with running_simulator(rng_seed=42) as sim:
        sim.faults.set_error_rate("*", 0.3)
        client = make_client(sleeps, attempts=8)
        try:
            for _ in range(5):
                obs = await client.observe(sim.credentials(), VMS, "k8s-subnet")
                assert len(obs.ports) == 3
        finally:
            await client.close()
        assert any(r.status == 500 for r in sim.request_log)


async def test_every_request_is_observed_in_metrics(sim: Simulator) -> None:
    def sample(service: str, operation: str, code: str) -> float:
        value = REGISTRY.get_sample_value(
            "multinic_openstack_request_duration_seconds_count",
            {"service": service, "operation": operation, "code": code},
        )
        return value or 0.0

    before = {k: sample(*k) for k in [("network", "list_ports", "200"), ("compute", "list_servers", "503")]}
    sim.faults.fail_next("compute.servers", 1, status=503)
    client = make_client()
    try:
        await client.observe(sim.credentials(), VMS, "k8s-subnet")
    finally:
        await client.close()
    assert sample("network", "list_ports", "200") == before[("network", "list_ports", "200")] + 1
    assert sample("compute", "list_servers", "503") == before[("compute", "list_servers", "503")] + 1
    assert sample("identity", "authenticate", "201") >= 1


async def test_secrets_never_logged(sim: Simulator, capsys: pytest.CaptureFixture[str]) -> None:
    structlog.configure(
        processors=[structlog.processors.KeyValueRenderer()],
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    try:
        sim.state.add_user("leaky", "pa55-w0rd-xyz")
        sim.faults.fail_next("compute.servers", 1, status=503)
        client = make_client()
        creds = sim.credentials(username="leaky", password="pa55-w0rd-xyz")
        try:
            await client.observe(creds, VMS, "k8s-subnet")
            sim.state.revoke_all_tokens()
            await client.observe(creds, VMS, "k8s-subnet")
            token = (await client.tokens.get(creds)).value
            with pytest.raises(OpenStackError) as info:
                await client.observe(creds, VMS, "missing-subnet")
        finally:
            await client.close()
        out = capsys.readouterr()
        logs = out.out + out.err
        assert "retrying" in logs and "Keystone token issued" in logs
        for secret in ("pa55-w0rd-xyz", token):
            assert secret not in logs
            assert secret not in str(info.value) and secret not in repr(info.value)
        assert token not in repr(await client.tokens.get(creds))
    finally:
        structlog.reset_defaults()
    logging.getLogger().handlers.clear()
