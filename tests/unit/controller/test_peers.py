"""Peer groups, the call forecast and the peer finder (controller/peers.py)."""

from __future__ import annotations

from typing import Any

import pytest

from multinic_ctrl.controller.peers import CallForecast, PeerFinder, peer_group, peer_groups
from multinic_ctrl.controller.spec import parse_spec
from multinic_ctrl.controller.trigger import Mode, TriggerPolicy
from multinic_ctrl.controller.triggers import HANDLED_FIELD, TRIGGER_ANNOTATION
from multinic_ctrl.openstack import Peer

INLINE = {"authURL": "http://ks:5000", "username": "u", "password": "s3cret-pw", "projectID": "p"}
SECRET_REF = {"authURL": "http://ks:5000", "username": "u", "projectID": "p", "passwordSecretRef": {"name": "pw"}}


def config(
    name: str = "a",
    namespace: str = "ns",
    credentials: dict[str, Any] | None = None,
    *,
    vms: list[str] | None = None,
    generation: int = 1,
    **meta: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation, **meta},
        "spec": {"vmNames": vms or ["vm-1"], "subnetName": "s", "credentials": credentials or INLINE},
    }


def group(obj: dict[str, Any]) -> str:
    return peer_group(obj["metadata"]["namespace"], parse_spec(obj["spec"]))


def test_peer_group_follows_the_credentials_and_holds_no_secret() -> None:
    a = group(config())
    assert a == group(config("b", vms=["other"]))  # VMs and subnet do not matter
    assert a == group(config("c", "other-ns"))  # inline credentials: the namespace does not matter
    assert a != group(config(credentials={**INLINE, "password": "another"}))
    assert a != group(config(credentials={**INLINE, "projectID": "q"}))
    assert "s3cret" not in a and len(a) == 64
    # Credentials from a Secret: the Secret is the namespace's own.
    assert group(config(credentials=SECRET_REF)) == group(config("b", credentials=SECRET_REF))
    assert group(config(credentials=SECRET_REF)) != group(config("b", "other-ns", credentials=SECRET_REF))
    assert peer_groups(config()) == [a]
    assert peer_groups({"metadata": {"namespace": "ns"}, "spec": {"vmNames": []}}) == []


IMM, SCH = TriggerPolicy(Mode.IMMEDIATE), TriggerPolicy(Mode.SCHEDULED)
SCH_IOC = TriggerPolicy(Mode.SCHEDULED, immediate_on_cr_change=True)
MAN, WEB = TriggerPolicy(Mode.MANUAL), TriggerPolicy(Mode.WEBHOOK)
NOW = 1000.0


@pytest.mark.parametrize(
    ("policy", "recorded", "obj", "likely"),
    [
        # Never handled in this process (a restart, a new config): only policies that act on changes at once.
        (IMM, None, config(), True),
        (MAN, None, config(), True),
        (SCH_IOC, None, config(), True),
        (SCH, None, config(), False),
        (WEB, None, config(), False),
        # Handled, unchanged: by when it said it would next call.
        (IMM, (1, NOW + 0.5), config(), True),
        (IMM, (1, NOW + 20), config(), False),
        (SCH, (1, NOW - 1), config(), True),
        (MAN, (1, None), config(), False),
        (WEB, (1, None), config(), False),
        # Spec changed since.
        (MAN, (1, None), config(generation=2), True),
        (WEB, (1, None), config(generation=2), False),
        (SCH, (1, NOW + 600), config(generation=2), False),
        # A webhook request is pending: every mode calls.
        (WEB, (1, None), config(annotations={TRIGGER_ANNOTATION: "r2"}), True),
        # Being deleted: never.
        (IMM, None, config(deletionTimestamp="2026-01-01T00:00:00Z"), False),
    ],
)
def test_call_forecast(
    policy: TriggerPolicy, recorded: tuple[int, float | None] | None, obj: dict[str, Any], likely: bool
) -> None:
    forecast = CallForecast()
    if recorded is not None:
        forecast.record("ns/a", *recorded)
    assert forecast.likely("ns/a", obj, policy, NOW) is likely


def test_a_handled_request_is_not_pending() -> None:
    forecast = CallForecast()
    forecast.record("ns/a", 1, None)
    obj = config(annotations={TRIGGER_ANNOTATION: "r1"})
    obj["status"] = {HANDLED_FIELD: "r1"}
    assert not forecast.likely("ns/a", obj, WEB, NOW)


def test_peer_finder_names_queued_configs_that_will_call() -> None:
    objects = {
        "ns/a": config("a", vms=["vm-1"]),
        "ns/b": config("b", vms=["vm-2", "vm-3"]),
        "ns/c": config("c", vms=["vm-4"]),  # not queued
        "ns/d": config("d", deletionTimestamp="x"),
        "ns/gone": None,
    }
    forecast = CallForecast()
    finder = PeerFinder(
        members=lambda g: ["ns/a", "ns/b", "ns/c", "ns/d", "ns/gone"] if g == "g" else [],
        get=lambda key: objects[key],
        is_queued=lambda key: key != "ns/c",
        forecast=forecast,
        policy=lambda: IMM,
        now=lambda: NOW,
    )
    assert finder("g") == [Peer("ns/a", ("vm-1",), "s"), Peer("ns/b", ("vm-2", "vm-3"), "s")]
    assert finder("other") == []
    forecast.record("ns/b", 1, NOW + 25)  # handled; its next resync is a while off
    assert finder("g") == [Peer("ns/a", ("vm-1",), "s")]
    forecast.forget("ns/b")
    assert len(forecast) == 0
