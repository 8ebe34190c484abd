"""The listener's retry loop without a broker (the AMQP side itself runs against the testbed's RabbitMQ in
tests/openstack_real/test_notifications_real.py): backoff bounds, one warning per outage, no password anywhere."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from multinic_ctrl.metrics import NOTIFICATIONS_CONNECTION_ATTEMPTS
from multinic_ctrl.notifications import BusListener
from multinic_ctrl.settings import NotificationSettings

URL = "amqp://listener:s3cretpassw0rd@rabbit.example:5672/"


def listener(connect: Any = None, **kwargs: Any) -> BusListener:
    return BusListener(
        NotificationSettings(url=URL), lambda _b, _s: None, connect=connect, rng=random.Random(7), **kwargs
    )


def test_backoff_grows_to_its_cap_with_jitter_and_never_spins() -> None:
    subject = listener(backoff_base=1.0, backoff_max=60.0)
    for attempt in range(40):
        ceiling = min(60.0, 2.0**attempt)
        delays = [subject._backoff(attempt) for _ in range(50)]
        assert all(0.5 <= d <= ceiling for d in delays), attempt
    assert len({round(subject._backoff(10), 3) for _ in range(20)}) > 1  # jittered: replicas do not reconnect in step


@pytest.fixture(autouse=True)
def every_level_reaches_capture_logs() -> Iterator[None]:
    """Debug events are asserted here: a level filter configured by an earlier test (the app's logging set-up
    at info) would drop them before `capture_logs` sees them."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**saved)


async def test_a_broker_that_refuses_is_retried_and_reported_once_without_the_password() -> None:
    attempts: list[str] = []

    async def refuse(url: str, **_kwargs: Any) -> Any:
        attempts.append(url)
        raise ConnectionError(f"cannot reach {url}")  # a library quoting the URL must not leak it

    failures = NOTIFICATIONS_CONNECTION_ATTEMPTS.labels(result="failure")._value.get()
    subject = listener(refuse, backoff_base=0.01, backoff_max=0.02)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(subject.run())
        await asyncio.sleep(0.3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()  # runs until cancelled, never returns on its own
    assert len(attempts) >= 5 and set(attempts) == {URL}
    assert NOTIFICATIONS_CONNECTION_ATTEMPTS.labels(result="failure")._value.get() - failures == len(attempts)
    events = [e["event"] for e in logs]
    assert events.count("OpenStack notification bus unavailable; polling continues, retrying") == 1
    assert events.count("OpenStack notification bus still unavailable") == len(attempts) - 1
    assert "s3cretpassw0rd" not in repr(logs)
    warning = next(e for e in logs if e["log_level"] == "warning")
    assert warning["url"] == "amqp://listener:***@rabbit.example:5672/"
    assert warning["reason"] == "ConnectionError: cannot reach amqp://listener:***@rabbit.example:5672/"
