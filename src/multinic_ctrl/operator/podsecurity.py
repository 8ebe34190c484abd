"""Pod and container security settings shared by every managed workload (pure).

Invariant: every pod the operator creates passes the Pod Security Standard `restricted` profile
(https://kubernetes.io/docs/concepts/security/pod-security-standards/): non-root with a fixed non-zero UID,
no privilege escalation, all capabilities dropped, `RuntimeDefault` seccomp, a read-only root filesystem
with writable emptyDirs only where a program must write, and only secret/emptyDir/PVC/projected volumes.
`restricted_violations` checks a built pod spec against those rules, so tests (and the reconciler, before
it applies anything) can prove it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECCOMP = {"type": "RuntimeDefault"}
_ALLOWED_VOLUMES = {"secret", "emptyDir", "persistentVolumeClaim", "projected", "configMap", "downwardAPI"}


def pod_security_context(uid: int) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": dict(SECCOMP),
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": dict(SECCOMP),
    }


def restricted_violations(pod_spec: Mapping[str, Any]) -> list[str]:
    """What in a pod spec breaks PSS `restricted` (plus read-only root fs); empty when compliant."""
    problems: list[str] = []
    pod_ctx = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _ALLOWED_VOLUMES:
            problems.append(f"volume {volume.get('name')} uses {sorted(kinds - _ALLOWED_VOLUMES)}")
    if pod_ctx.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    for container in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        name = container.get("name")
        ctx = container.get("securityContext") or {}
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if not (ctx.get("runAsNonRoot") is True or (pod_ctx.get("runAsNonRoot") is True and "runAsNonRoot" not in ctx)):
            problems.append(f"{name}: runAsNonRoot is not true")
        if ctx.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        if (ctx.get("capabilities") or {}).get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities do not drop ALL")
        added = set((ctx.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}
        if added:
            problems.append(f"{name}: adds capabilities {sorted(added)}")
        seccomp = (ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost") and not (seccomp is None and pod_seccomp):
            problems.append(f"{name}: seccompProfile is not RuntimeDefault")
        if ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: root filesystem is writable")
        if container.get("ports") and any(p.get("hostPort") for p in container["ports"]):
            problems.append(f"{name}: uses a hostPort")
    return problems
