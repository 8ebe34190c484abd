"""Which OpenStack notifications can change a config's rows, and whose project they concern.

A notification never tells the controller *what* the rows should be: it only says "something in project P
changed that an observation of P might see". The controller then re-observes P (one coalesced observation
for all of P's configs), so nothing here has to be complete or exact about the change itself - only cheap,
and never wrong in the direction of missing a project.

Relevant events (`.end`: the change is committed, a fresh observation sees it):
- Neutron `port.create.end`, `port.update.end`, `port.delete.end`: a port was bound to a VM (hot-attach of
  an existing port), unbound (detach), created on a VM or deleted. A port created with no device is ignored:
  an unbound port is in nobody's rows. `network.update.end` (a changed MTU is in every row of the network)
  and `subnet.*.end` (configs find their subnet by name) also count.
- Nova's versioned `instance.interface_attach.end` / `instance.interface_detach.end` and the legacy
  `compute.instance.interface_attach.end` / `compute.instance.interface_detach.end` (Nova 34 sends interface
  events only in the versioned format; older clouds only in the legacy one).
Everything else (instance.update, port.*.start, security groups, ...) is ignored.

The project: the resource owner (`port.project_id`/`tenant_id`, the instance's `tenant_id`) and the caller's
project (`_context_project_id`). Both, because an admin may attach another project's port to a VM, and
Neutron's `port.delete.end` of older releases carries only `port_id`. A project that has no configs costs a
dictionary lookup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PORT_EVENTS = frozenset({"port.create.end", "port.update.end", "port.delete.end"})
NETWORK_EVENTS = frozenset({"network.update.end", "subnet.create.end", "subnet.update.end", "subnet.delete.end"})
NOVA_EVENTS = frozenset(
    {
        "instance.interface_attach.end",
        "instance.interface_detach.end",
        "compute.instance.interface_attach.end",
        "compute.instance.interface_detach.end",
    }
)
RELEVANT_EVENTS = PORT_EVENTS | NETWORK_EVENTS | NOVA_EVENTS

MARKERS: tuple[bytes, ...] = tuple(sorted({name.rsplit(".", 1)[0].encode() for name in RELEVANT_EVENTS}))
"""Byte strings one of which every relevant message contains (its event type without `.end`): a message with
none of them is dropped without being decoded. JSON escapes none of these characters."""

# Keystone project IDs are 32 hex digits; other identity backends use other IDs, so accept any short token.
_PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Change:
    """A relevant notification: its event type and the projects whose configs should look again."""

    event_type: str
    projects: frozenset[str]


def classify(message: Mapping[str, Any]) -> Change | None:
    """The change `message` (a decoded oslo.messaging notification) announces, or None if it is irrelevant.

    Raises `ValueError` when a relevant event lacks what it must carry (no project at all, a payload that is
    not an object): such a message is malformed, not merely uninteresting.
    """
    event_type = message.get("event_type")
    if not isinstance(event_type, str) or event_type not in RELEVANT_EVENTS:
        return None
    payload = message.get("payload")
    if not isinstance(payload, Mapping):
        raise ValueError(f"{event_type}: payload is not an object")
    owners: list[Any] = []
    if event_type in PORT_EVENTS:
        port = payload.get("port")
        if isinstance(port, Mapping):
            if event_type == "port.create.end" and not port.get("device_id"):
                return None  # a port on no device is in nobody's rows
            owners += [port.get("project_id"), port.get("tenant_id")]
    elif event_type in NETWORK_EVENTS:
        resource = payload.get(event_type.split(".", 1)[0])
        if isinstance(resource, Mapping):
            owners += [resource.get("project_id"), resource.get("tenant_id")]
    else:
        data = payload.get("nova_object.data", payload)  # versioned payloads wrap their fields
        if isinstance(data, Mapping):
            owners += [data.get("tenant_id"), data.get("project_id")]
    owners += [message.get("_context_project_id"), message.get("_context_tenant"), message.get("_context_project")]
    projects = frozenset(p for p in owners if isinstance(p, str) and _PROJECT_ID.match(p))
    if not projects:
        raise ValueError(f"{event_type}: no project ID in the payload or the context")
    return Change(event_type, projects)
