"""OpenstackConfig status documents (pure).

Phases: `Pending` (accepted, not synced yet or waiting for its trigger), `Synced` (rows match OpenStack as of
`lastSyncTime`; some VMs may be missing - see `AllVMsFound`), `Error` (the last attempt failed; `message`
says why and what to fix), `Deleting` (rows are being removed). Conditions follow the Kubernetes API
conventions (type/status/reason/message/lastTransitionTime/observedGeneration); `lastTransitionTime` only
moves when a condition's status flips, so an unchanged status is never rewritten (which would otherwise wake
the controller's own watch in a loop). Nothing here may carry a secret.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from multinic_ctrl.controller.desired import port_problem
from multinic_ctrl.kube.conditions import Condition as Condition  # re-exported: the reconciler builds them
from multinic_ctrl.kube.conditions import merge_conditions as _merge
from multinic_ctrl.kube.conditions import rfc3339 as rfc3339
from multinic_ctrl.openstack import Observation

PENDING, SYNCED, ERROR = "Pending", "Synced", "Error"


CONDITION_ORDER = ("Ready", "CredentialsValid", "SubnetFound", "AllVMsFound", "SecureTransport")


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None, new: Sequence[Condition], *, generation: int, now: dt.datetime
) -> list[dict[str, Any]]:
    """`kube.conditions.merge_conditions` in this resource's condition order (conditions not spoken about, e.g.
    SubnetFound after an auth failure, keep their value)."""
    return _merge(previous, new, generation=generation, now=now, order=CONDITION_ORDER)


def vm_report(observation: Observation, conflicts: Mapping[str, str]) -> list[dict[str, Any]]:
    by_server: dict[str, list[dict[str, Any]]] = {s.id: [] for s in observation.servers}
    for port in observation.ports:
        entry = {"portID": port.id, "macAddress": port.mac, "address": port.ip}
        problem = port_problem(port, observation.subnet.cidr)
        if problem is not None:
            entry["problem"] = f"skipped: {problem}"
        if port.id in conflicts:
            entry["conflict"] = f"already managed by OpenstackConfig {conflicts[port.id]}"
            entry["ownedBy"] = conflicts[port.id]  # structured: the index that heals conflicts reads it
        by_server.setdefault(port.device_id, []).append(entry)
    report: list[dict[str, Any]] = [
        {"name": s.name, "serverID": s.id, "status": s.status, "interfaces": by_server.get(s.id, [])}
        for s in observation.servers
    ]
    unknown = set(observation.incomplete_vms)
    for name in observation.missing_vms:
        if name in unknown:
            # Present, state unknown: Nova could not vouch for it, and its rows are kept (see desired.rows_to_keep).
            report.append({"name": name, "status": "UNKNOWN", "message": _state_unknown(observation), "interfaces": []})
        else:
            report.append({"name": name, "message": "no server with this name in the project", "interfaces": []})
    for entry in report:
        if "serverID" in entry and not entry["interfaces"]:
            entry["message"] = f"no port on subnet {observation.subnet.name}"
    return report


def _state_unknown(observation: Observation) -> str:
    """Why a VM missing from Nova's answer is "state unknown" rather than gone (for vm_report)."""
    if observation.listing_complete:
        return (
            f"state unknown: not among the servers Nova could name while {len(observation.unknown_servers)} "
            "server(s) of the project are in a Nova cell that does not answer; its rows are kept if it is one of them"
        )
    return f"state unknown: not in Nova's answer, which {_may_omit(observation)}; its rows are kept"


def _may_omit(observation: Observation) -> str:
    if observation.compute_microversion is None:
        return "may leave out servers of unreachable cells (the compute API offers no microversion 2.69)"
    return "could not show whether servers of unreachable cells are left out (listing too large or not 2.69)"


def _all_vms_found(observation: Observation) -> Condition:
    unknown = [n for n in observation.missing_vms if n in set(observation.incomplete_vms)]
    gone = [n for n in observation.missing_vms if n not in set(observation.incomplete_vms)]
    if unknown:
        if observation.listing_complete:
            why = f"{len(observation.unknown_servers)} server(s) of the project are in a Nova cell that does not answer"
        else:
            why = f"Nova's answer {_may_omit(observation)}"
        message = f"State unknown for {', '.join(unknown)} ({why}); their existing rows are kept"
        if gone:
            message += f"; VMs not found: {', '.join(gone)}"
        return Condition("AllVMsFound", None, "VMStateUnknown", message)
    if gone:
        return Condition("AllVMsFound", False, "VMsMissing", f"VMs not found: {', '.join(gone)}")
    return Condition("AllVMsFound", True, "AllFound", "Every listed VM exists")


def synced_conditions(observation: Observation) -> list[Condition]:
    ready = "Rows match OpenStack"
    if observation.state_unknown:
        ready += "; rows of VMs whose state is unknown are kept"
    return [
        Condition("Ready", True, "Synced", ready),
        Condition("CredentialsValid", True, "Authenticated", "Keystone accepted the credentials"),
        Condition("SubnetFound", True, "Found", f"Subnet {observation.subnet.name} ({observation.subnet.cidr})"),
        _all_vms_found(observation),
        secure_transport_condition(observation.plaintext_endpoints),
    ]


def secure_transport_condition(plaintext: Sequence[str]) -> Condition:
    """A warning, not a failure: plain HTTP works, but puts the password and tokens on the wire."""
    if plaintext:
        return Condition(
            "SecureTransport",
            False,
            "PlaintextEndpoint",
            f"Credentials and tokens are sent unencrypted to {', '.join(plaintext)}; use https, or have the "
            "cluster admin allow the endpoint explicitly in OPENSTACK_ALLOWED_URLS",
        )
    return Condition(
        "SecureTransport", True, "TLSOrAllowed", "Every OpenStack endpoint uses TLS or is explicitly allowed"
    )


def without_volatile(status: Mapping[str, Any] | None) -> dict[str, Any]:
    """Status minus fields that legitimately change on every sync, for "did anything change?" checks."""
    document = dict(status or {})
    document.pop("lastSyncTime", None)
    document.pop("nextSyncTime", None)
    return document
