"""Regressions found by review: DST in cron schedules, never-matching schedules, chunked webhook bodies, blank names."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from multinic_ctrl.controller.schedule import CronSchedule, ScheduleError
from multinic_ctrl.controller.spec import SpecError, parse_spec
from multinic_ctrl.controller.trigger import TriggerConfigError, parse_policy
from multinic_ctrl.controller.webhook import TriggerEndpoint

UTC = dt.UTC


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize("expr", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_schedule_that_never_matches_raises(expr: str) -> None:
    schedule = CronSchedule.parse(expr, "UTC")
    with pytest.raises(ScheduleError, match="never matches"):
        schedule.next_after(utc(2026, 1, 1, 0, 0))


def test_parse_policy_rejects_a_schedule_that_never_matches() -> None:
    with pytest.raises(TriggerConfigError):
        parse_policy({"mode": "scheduled", "schedule": "0 0 31 2 *"})


@pytest.mark.parametrize("expr", ["*/5 * * * *", "0 * * * *", "30 2 * * *", "* * * * *"])
def test_strictly_after_across_fall_back(expr: str) -> None:
    schedule = CronSchedule.parse(expr, "Europe/Berlin")
    moment = utc(2026, 10, 24, 23, 0)
    while moment < utc(2026, 10, 25, 3, 0):
        result = schedule.next_after(moment)
        assert result > moment, (expr, moment, result)
        moment += dt.timedelta(minutes=7)


def test_no_gap_longer_than_the_step_across_fall_back() -> None:
    schedule = CronSchedule.parse("*/5 * * * *", "Europe/Berlin")
    moment = utc(2026, 10, 24, 23, 0)
    while moment < utc(2026, 10, 25, 3, 0):
        result = schedule.next_after(moment)
        assert dt.timedelta(0) < result - moment <= dt.timedelta(minutes=5), (moment, result)
        moment = result


CREDS = {"authURL": "http://ks", "username": "u", "password": "p"}


@pytest.mark.parametrize(
    "doc",
    [
        {"vmNames": ["vm-1", "   "], "subnetName": "net", "credentials": CREDS},
        {"vmNames": ["vm-1"], "subnetName": "   ", "credentials": CREDS},
    ],
)
def test_whitespace_only_names_are_rejected(doc: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_spec(doc)


async def test_413_for_a_large_chunked_body_sent_in_small_pieces() -> None:
    enqueued: list[list[str]] = []

    async def record(keys: Sequence[str], _request_id: str) -> list[str]:
        enqueued.append(list(keys))
        return list(keys)

    endpoint = TriggerEndpoint("tok", known_keys=lambda: ["a/b"], record=record, ready=lambda: True)
    app = web.Application()
    endpoint.install(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(40):  # 10 KiB in 256-byte pieces
                yield b"x" * 256
                await asyncio.sleep(0.005)

        async with client.post("/trigger", headers={"Authorization": "Bearer tok"}, data=chunks()) as resp:
            assert resp.status == 413
    assert enqueued == []
