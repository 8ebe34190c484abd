from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from multinic_ctrl.openstack import HttpSettings, OpenStackClient, RetryPolicy
from multinic_ctrl.openstack.http import HttpTransport
from tests.fakes.openstack import Simulator, running_simulator


class SleepRecorder:
    """Replaces asyncio.sleep in the transport: records retry delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(rng_seed=1) as s:
        yield s


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def make_client(
    sleeps: SleepRecorder | None = None,
    *,
    page_size: int | None = None,
    request_timeout: float = 5.0,
    attempts: int = 4,
    refresh_margin: float = 120.0,
    ca_bundle: str | None = None,
    insecure: bool = False,
) -> OpenStackClient:
    settings = HttpSettings(
        request_timeout=request_timeout,
        connect_timeout=2.0,
        retry=RetryPolicy(attempts=attempts, backoff_base=0.01, backoff_max=0.05),
        ca_bundle=ca_bundle,
        insecure=insecure,
    )
    transport = HttpTransport(settings, sleep=sleeps or SleepRecorder(), rng=random.Random(0))
    return OpenStackClient(transport=transport, page_size=page_size, refresh_margin=refresh_margin)


@pytest.fixture
async def client(sleeps: SleepRecorder) -> AsyncIterator[OpenStackClient]:
    c = make_client(sleeps)
    yield c
    await c.close()
