"""The real node works: our image runs in pods as it will in a cluster.

* a pod running the image's two entrypoints (`multinic-ctrl version`, `multinic-ctrl operator --help`) to
  completion, its logs read back through the apiserver (apiserver -> kubelet -> containerd);
* the controller as a Deployment under Pod Security `restricted` with a read-only root filesystem and a
  non-root user, connected to the apiserver from inside the pod, its liveness probe run by kubelet, and
  `/healthz` reached from the host at the pod IP (there is no kube-proxy: see tests/support/node.py).
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import yaml

from multinic_ctrl import __version__
from multinic_ctrl.operator.podsecurity import container_security_context, restricted_violations
from tests.support.control_plane import CRD_DIR, REPO_ROOT
from tests.support.node import NODE_IP

from .conftest import Cluster

IMAGE = "localhost/multinic:v1alpha1"
PROBE_PORT = 8082


def _pod_security(uid: int = 65532) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--filename=-", stdin=yaml.safe_dump_all(objects))


def test_image_entrypoints_run_to_completion_and_logs_are_readable(cluster: Cluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    containers = [
        {"name": "version", "args": ["version"]},
        {"name": "operator-help", "args": ["operator", "--help"]},
    ]
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "entrypoints", "namespace": ns},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            # No runAsUser: the image's numeric USER must satisfy runAsNonRoot by itself.
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {**c, "image": IMAGE, "imagePullPolicy": "Never", "securityContext": container_security_context()}
                for c in containers
            ],
        },
    }
    assert restricted_violations(pod["spec"]) == []
    _apply(cluster, pod)
    cluster.kubectl("-n", ns, "wait", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s", "pod/entrypoints")
    status = json.loads(cluster.kubectl("-n", ns, "get", "pod", "entrypoints", "-o", "json").stdout)["status"]
    exits = {s["name"]: s["state"]["terminated"]["exitCode"] for s in status["containerStatuses"]}
    assert exits == {"version": 0, "operator-help": 0}

    version_log = cluster.kubectl("-n", ns, "logs", "pod/entrypoints", "-c", "version").stdout
    assert version_log.strip() == f"multinic-ctrl {__version__}"
    help_log = cluster.kubectl("-n", ns, "logs", "pod/entrypoints", "-c", "operator-help").stdout
    assert help_log.startswith("usage: multinic-ctrl operator")


def test_controller_deployment_read_only_non_root_healthz_from_host(cluster: Cluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    cluster.kubectl("apply", "--server-side", "--force-conflicts", f"--filename={CRD_DIR}")
    # The controller's own least-privilege ClusterRole (manifests/rbac), bound to a ServiceAccount here.
    role = next(
        doc
        for doc in yaml.safe_load_all((REPO_ROOT / "manifests/rbac/controller.yaml").read_text())
        if doc and doc["kind"] == "ClusterRole"
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"multinic-controller-{ns}"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"kind": "ServiceAccount", "name": "multinic-controller", "namespace": ns}],
    }
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "multinic-controller", "namespace": ns}}
    labels = {"app.kubernetes.io/name": "multinic-controller"}
    env = {
        # No kube-proxy on the test node: the in-cluster client goes straight to the apiserver's address.
        "KUBERNETES_SERVICE_HOST": NODE_IP,
        "KUBERNETES_SERVICE_PORT": str(cluster.cp.apiserver_port),
        "WATCH_NAMESPACES": ns,
        "LEADER_ELECT": "false",
        "PROBE_ADDRESS": "0.0.0.0",  # noqa: S104 - inside the pod: kubelet and the host probe it
        "PROBE_PORT": str(PROBE_PORT),
        # No database reachable from this pod: /readyz says so, /healthz (liveness) does not depend on it.
        "DB_HOST": "127.0.0.1",
        "DB_PASSWORD": "unused",
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": "multinic-controller",
        "terminationGracePeriodSeconds": 5,
        "securityContext": _pod_security(),
        "containers": [
            {
                "name": "controller",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "args": ["run"],
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "ports": [{"name": "probes", "containerPort": PROBE_PORT}],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "probes"},
                    "periodSeconds": 2,
                    "failureThreshold": 3,
                },
                "securityContext": container_security_context(),
            }
        ],
    }
    assert restricted_violations(pod_spec) == []
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "controller", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    _apply(cluster, role, sa, binding, deployment)
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/controller", "--timeout=120s")

    pod = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-l", "app.kubernetes.io/name", "-o", "json").stdout)[
        "items"
    ][0]
    name, pod_ip = pod["metadata"]["name"], pod["status"]["podIP"]
    assert pod_ip, pod["status"]

    # /healthz from the host, at the pod IP; kubelet's liveness probe has been passing meanwhile.
    body = _get_until_ok(f"http://{pod_ip}:{PROBE_PORT}/healthz", timeout=60)
    assert body
    # The process really is non-root and cannot write its root filesystem (exec via apiserver -> kubelet).
    assert cluster.kubectl("-n", ns, "exec", name, "--", "id", "-u").stdout.strip() == "65532"
    denied = cluster.kubectl("-n", ns, "exec", name, "--", "touch", "/opt/multinic/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    # It talks to the apiserver from inside the pod (informer synced, no restarts) and logs JSON.
    time.sleep(1)
    status = json.loads(cluster.kubectl("-n", ns, "get", "pod", name, "-o", "json").stdout)["status"]
    assert status["containerStatuses"][0]["restartCount"] == 0, status
    lines = [json.loads(line) for line in cluster.kubectl("-n", ns, "logs", name).stdout.splitlines() if line]
    assert any(line.get("event") == "Starting" for line in lines), lines[:5]


def _get_until_ok(url: str, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - pod IP on the test node
                if resp.status == 200:
                    return bytes(resp.read())
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} not 200 within {timeout:.0f}s: {last}")
