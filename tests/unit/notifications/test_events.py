"""Decoding and classifying notifications: real bodies captured from the testbed's Nova 34 / Neutron 29, and the
shapes of other releases (legacy Nova events, Neutron's old `port.delete.end`), built the same way.

The captured bodies are exactly what the services published on the testbed's RabbitMQ (exchanges `nova` and
`neutron`, routing keys `versioned_notifications.info` / `notifications.info`), envelope included; the
`_context_auth_token` they carry was null there and is forced to null in the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import structlog

from multinic_ctrl.metrics import NOTIFICATIONS_RECEIVED
from multinic_ctrl.notifications import RELEVANT_EVENTS, Change, MalformedNotification, NotificationHandler, classify
from multinic_ctrl.notifications.envelope import MAX_BODY, decode
from multinic_ctrl.notifications.events import MARKERS

CAPTURED = Path(__file__).parent / "captured"
PROJECT = "342e90953da940d88d80e6f7dafe0b60"  # the testbed's admin project, owner of everything captured


def captured(name: str) -> bytes:
    return (CAPTURED / f"{name}.json").read_bytes()


def envelope(message: dict[str, Any]) -> bytes:
    """As oslo.messaging's RabbitMQ driver sends it (message format 2.0)."""
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)}).encode()


# name of the captured file -> the change it announces (None: irrelevant)
EXPECTED: dict[str, Change | None] = {
    "neutron-port.create.start": None,
    "neutron-port.create.end": None,  # a port created on no device: in nobody's rows
    "neutron-port.create.end-on-device": Change("port.create.end", frozenset({PROJECT})),  # Nova attaching a network
    "neutron-port.update.start": None,
    "neutron-port.update.end-attach": Change("port.update.end", frozenset({PROJECT})),
    "neutron-port.update.end-detach": Change("port.update.end", frozenset({PROJECT})),
    "neutron-port.delete.start": None,
    "neutron-port.delete.end": Change("port.delete.end", frozenset({PROJECT})),
    "nova-instance.interface_attach.start": None,
    "nova-instance.interface_attach.end": Change("instance.interface_attach.end", frozenset({PROJECT})),
    "nova-instance.interface_detach.start": None,
    "nova-instance.interface_detach.end": Change("instance.interface_detach.end", frozenset({PROJECT})),
}


def test_every_captured_body_is_covered() -> None:
    assert sorted(p.stem for p in CAPTURED.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_bodies(name: str) -> None:
    body = captured(name)
    assert b'"oslo.message"' in body  # the real envelope, not a flattened copy
    assert classify(decode(body)) == EXPECTED[name]


def test_attach_is_announced_by_a_port_bound_to_the_vm() -> None:
    """What hot-attaching an existing port looks like on the bus: Neutron's update binds it to the server."""
    message = decode(captured("neutron-port.update.end-attach"))
    port = message["payload"]["port"]
    assert port["device_owner"] == "compute:nova" and port["device_id"]
    nova = decode(captured("nova-instance.interface_attach.end"))
    assert nova["payload"]["nova_object.data"]["uuid"] == port["device_id"]


def test_projects_are_the_owner_and_the_caller() -> None:
    """An admin attaching project B's port to project A's VM: both projects' configs look again."""
    message = {
        "event_type": "port.update.end",
        "payload": {"port": {"id": "p", "device_id": "vm", "project_id": "b" * 32, "tenant_id": "b" * 32}},
        "_context_project_id": "a" * 32,
    }
    assert classify(message) == Change("port.update.end", frozenset({"a" * 32, "b" * 32}))


def test_neutron_delete_of_older_releases_carries_only_the_port_id() -> None:
    message = {"event_type": "port.delete.end", "payload": {"port_id": "p"}, "_context_project_id": PROJECT}
    assert classify(decode(envelope(message))) == Change("port.delete.end", frozenset({PROJECT}))


@pytest.mark.parametrize("event", ["compute.instance.interface_attach.end", "compute.instance.interface_detach.end"])
def test_legacy_nova_interface_events(event: str) -> None:
    message = {"event_type": event, "payload": {"tenant_id": PROJECT, "instance_id": "vm"}, "_context_tenant": None}
    assert classify(decode(envelope(message))) == Change(event, frozenset({PROJECT}))


@pytest.mark.parametrize(
    ("event", "resource"),
    [
        ("network.update.end", "network"),  # an MTU change is in every row of the network
        ("subnet.create.end", "subnet"),  # configs find their subnet by name
        ("subnet.update.end", "subnet"),
        ("subnet.delete.end", "subnet"),
    ],
)
def test_network_and_subnet_events(event: str, resource: str) -> None:
    message = {"event_type": event, "payload": {resource: {"id": "x", "project_id": PROJECT}}}
    assert classify(message) == Change(event, frozenset({PROJECT}))


def test_bare_notifications_without_the_envelope() -> None:
    body = json.dumps({"event_type": "port.delete.end", "payload": {"port": {"project_id": PROJECT}}}).encode()
    assert classify(decode(body)) == Change("port.delete.end", frozenset({PROJECT}))


@pytest.mark.parametrize(
    "event", ["instance.update", "port.update.start", "security_group.update.end", "image.update", "", None, 7]
)
def test_irrelevant_events(event: object) -> None:
    assert classify({"event_type": event, "payload": {"port": {"project_id": PROJECT}}}) is None


def test_project_ids_that_are_not_ids_are_ignored() -> None:
    message = {
        "event_type": "port.update.end",
        "payload": {"port": {"project_id": "x" * 65, "tenant_id": "a b"}},
        "_context_project_id": ["not", "a", "string"],
        "_context_tenant": PROJECT,
    }
    assert classify(message) == Change("port.update.end", frozenset({PROJECT}))


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "body is not a JSON object"),
        (json.dumps({"oslo.message": 5}).encode(), "oslo.message is not a string"),
        (json.dumps({"oslo.message": "{nope"}).encode(), "oslo.message is not JSON"),
        (json.dumps({"oslo.message": "[]"}).encode(), "oslo.message is not a JSON object"),
        (b" " * (MAX_BODY + 1), "exceeds"),
    ],
)
def test_malformed_bodies(body: bytes, problem: str) -> None:
    with pytest.raises(MalformedNotification, match=problem):
        decode(body)


@pytest.mark.parametrize(
    "message",
    [
        {"event_type": "port.update.end", "payload": "not an object"},
        {"event_type": "port.update.end", "payload": {"port": {"id": "p"}}},  # no project anywhere
        {"event_type": "instance.interface_attach.end", "payload": {"nova_object.data": {}}},
    ],
)
def test_relevant_events_without_what_they_must_carry_are_malformed(message: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"^(port\.update\.end|instance\.interface_attach\.end): "):
        classify(message)


def test_every_relevant_event_contains_a_marker() -> None:
    """The handler drops bodies without a marker undecoded: no relevant event may lack one."""
    for event in RELEVANT_EVENTS:
        assert any(marker in event.encode() for marker in MARKERS), event
        assert any(marker in envelope({"event_type": event}) for marker in MARKERS), event


# ------------------------------------------------------------------------------------------------- handler
def _count(outcome: str) -> float:
    return NOTIFICATIONS_RECEIVED.labels(outcome=outcome)._value.get()


def test_handler_outcomes_and_counts() -> None:
    changes: list[Change] = []
    handler = NotificationHandler(changes.append)
    before = {o: _count(o) for o in ("relevant", "ignored", "malformed")}
    for name in sorted(EXPECTED):
        handler(captured(name), name.split("-", 1)[0])
    assert handler(b'{"event_type": "instance.update"}') == "ignored"  # no marker: never decoded
    assert handler(b"garbage without any marker") == "ignored"
    assert handler(b'garbage with "port.update" in it') == "malformed"
    relevant = [c for c in EXPECTED.values() if c is not None]
    assert changes == [c for name, c in sorted(EXPECTED.items()) if c is not None]
    assert _count("relevant") - before["relevant"] == len(relevant)
    assert _count("ignored") - before["ignored"] == len(EXPECTED) - len(relevant) + 2
    assert _count("malformed") - before["malformed"] == 1


def test_malformed_messages_are_logged_rarely_and_never_quoted() -> None:
    now = [0.0]
    handler = NotificationHandler(lambda _c: None, clock=lambda: now[0])
    secret = "s3cr3t-token-value"
    body = f'{{"event_type": "port.update.end", "_context_auth_token": "{secret}", "payload": 1}}'.encode()
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            assert handler(body, "neutron") == "malformed"
        now[0] = 61.0
        assert handler(body, "neutron") == "malformed"
    assert [e["event"] for e in logs] == ["Malformed OpenStack notification dropped"] * 2
    assert logs[0]["reason"] == "port.update.end: payload is not an object"
    assert (logs[0]["dropped"], logs[1]["dropped"]) == (1, 5)  # the second line counts the four unlogged ones
    assert secret not in repr(logs)


def test_a_failing_consumer_callback_is_not_the_handlers_problem() -> None:
    """The handler calls `on_change` synchronously; the bridge's never raises, but a bug must surface, not vanish."""

    def boom(_change: Change) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        NotificationHandler(boom)(captured("neutron-port.delete.end"))
