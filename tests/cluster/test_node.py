"""The real node works: our image runs in pods as it will in a cluster.

* a pod running the image's two entrypoints (`multinic-ctrl version`, `multinic-ctrl operator --help`) to
  completion, its logs read back through the apiserver (apiserver -> kubelet -> containerd);
* the controller as a Deployment under Pod Security `restricted` with a read-only root filesystem and a
  non-root user, talking to the apiserver through the `kubernetes` Service (kube-proxy) with its own RBAC,
  MariaDB (the test image) by its Service name through CoreDNS, its liveness probe run by kubelet, `/healthz`
  reached from the host at the pod IP and at a ClusterIP Service.
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

from .conftest import Cluster

IMAGE = "localhost/multinic:v1alpha1"
PROBE_PORT = 8082


def _pod_security(uid: int = 65532) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,  # Secret files (mode 0440) readable by the process
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


def _controller_rbac(ns: str) -> list[dict[str, Any]]:
    """manifests/rbac/controller.yaml moved into ``ns`` (cluster-scoped names suffixed with it)."""
    docs = [d for d in yaml.safe_load_all((REPO_ROOT / "manifests/rbac/controller.yaml").read_text()) if d]
    for doc in docs:
        meta = doc["metadata"]
        if meta.get("namespace"):
            meta["namespace"] = ns
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            meta["name"] = f"{meta['name']}-{ns}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{ns}"
        for subject in doc.get("subjects", []):
            subject["namespace"] = ns
    return docs


def _test_mariadb(ns: str) -> list[dict[str, Any]]:
    """The test MariaDB image the way the operator runs MariaDB: UID 999, read-only root, password files."""
    labels = {"app.kubernetes.io/name": "mariadb"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": ns},
        "stringData": {"root-password": "root-secret", "password": "multinic-secret"},
    }
    ping = ["mariadb-admin", "ping", "--protocol=tcp", "--host=127.0.0.1"]
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 5,
        "securityContext": _pod_security(999),
        "containers": [
            {
                "name": "mariadb",
                "image": "docker.io/library/mariadb:10.11",  # the operator's default name, tagged on the node
                "imagePullPolicy": "Never",
                "env": [
                    {"name": "MARIADB_ROOT_PASSWORD_FILE", "value": "/secrets/root-password"},
                    {"name": "MARIADB_DATABASE", "value": "multinic"},
                    {"name": "MARIADB_USER", "value": "multinic"},
                    {"name": "MARIADB_PASSWORD_FILE", "value": "/secrets/password"},
                ],
                "ports": [{"name": "mysql", "containerPort": 3306}],
                "readinessProbe": {"exec": {"command": ping}, "periodSeconds": 1},
                "securityContext": container_security_context(),
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/mysql"},
                    {"name": "secrets", "mountPath": "/secrets", "readOnly": True},
                    {"name": "run", "mountPath": "/run/mysqld"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }
        ],
        "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "secrets", "secret": {"secretName": "db", "defaultMode": 0o440}},
            {"name": "run", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    assert restricted_violations(spec) == []
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mariadb", "namespace": ns},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": spec}},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mariadb", "namespace": ns},
        "spec": {"selector": labels, "ports": [{"name": "mysql", "port": 3306, "targetPort": "mysql"}]},
    }
    return [secret, deployment, service]


def test_controller_deployment_read_only_non_root_with_mariadb(cluster: Cluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    cluster.kubectl("apply", "--server-side", "--force-conflicts", f"--filename={CRD_DIR}")
    _apply(cluster, *_test_mariadb(ns))
    labels = {"app.kubernetes.io/name": "multinic-controller"}
    env = {
        # The in-cluster client uses KUBERNETES_SERVICE_HOST/PORT as kubelet sets them: the `kubernetes`
        # Service, which kube-proxy forwards to the apiserver. MariaDB by its Service name (cluster DNS).
        "WATCH_NAMESPACES": ns,
        "LEADER_ELECT": "false",
        "PROBE_ADDRESS": "0.0.0.0",  # noqa: S104 - inside the pod: kubelet and the host probe it
        "PROBE_PORT": str(PROBE_PORT),
        "DB_HOST": "mariadb",
        "DB_PORT": "3306",
        "DB_USER": "multinic",
        "DB_NAME": "multinic",
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
                "env": [
                    *({"name": k, "value": v} for k, v in env.items()),
                    {"name": "DB_PASSWORD_FILE", "value": "/secrets/password"},
                ],
                "ports": [{"name": "probes", "containerPort": PROBE_PORT}],
                # As the operator's Deployment does: liveness only after a startup probe passed, so a start slowed
                # down by a busy machine is not mistaken for a hung process (a restart would fail the test below).
                "startupProbe": {
                    "httpGet": {"path": "/healthz", "port": "probes"},
                    "periodSeconds": 1,
                    "failureThreshold": 120,
                },
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": "probes"}, "periodSeconds": 2},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "probes"}, "periodSeconds": 1},
                "securityContext": container_security_context(),
                "volumeMounts": [{"name": "secrets", "mountPath": "/secrets", "readOnly": True}],
            }
        ],
        "volumes": [{"name": "secrets", "secret": {"secretName": "db", "defaultMode": 0o440}}],
    }
    assert restricted_violations(pod_spec) == []
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "controller", "namespace": ns},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "controller-probes", "namespace": ns},
        "spec": {"selector": labels, "ports": [{"name": "probes", "port": 80, "targetPort": "probes"}]},
    }
    _apply(cluster, *_controller_rbac(ns), deployment, service)
    # Ready = /readyz: MariaDB reached through its Service, schema migrated, informer caches synced.
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/mariadb", "--timeout=120s")
    cluster.kubectl("-n", ns, "rollout", "status", "deployment/controller", "--timeout=120s")

    pod = json.loads(
        cluster.kubectl(
            "-n", ns, "get", "pods", "-l", "app.kubernetes.io/name=multinic-controller", "-o", "json"
        ).stdout
    )["items"][0]
    name, pod_ip = pod["metadata"]["name"], pod["status"]["podIP"]
    # /healthz from the host: at the pod IP and through the ClusterIP Service (kube-proxy).
    assert _get_until_ok(f"http://{pod_ip}:{PROBE_PORT}/healthz", timeout=30)
    probes_ip = cluster.kubectl("-n", ns, "get", "service", "controller-probes", "-o", "jsonpath={.spec.clusterIP}")
    assert _get_until_ok(f"http://{probes_ip.stdout.strip()}/healthz", timeout=30)
    # The process really is non-root and cannot write its root filesystem (exec via apiserver -> kubelet).
    assert cluster.kubectl("-n", ns, "exec", name, "--", "id", "-u").stdout.strip() == "65532"
    denied = cluster.kubectl("-n", ns, "exec", name, "--", "touch", "/opt/multinic/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr

    # A config is reconciled from inside the pod: finalizer added (apiserver through the `kubernetes`
    # Service, with only the manifests' RBAC), status written (OpenStack is unreachable on purpose).
    config = {
        "apiVersion": "multinic.example.com/v1alpha1",
        "kind": "OpenstackConfig",
        "metadata": {"name": "probe", "namespace": ns},
        "spec": {
            "vmNames": ["vm-1"],
            "subnetName": "subnet",
            "credentials": {
                "authURL": "http://10.254.254.1:1",  # the node IP, nothing listens: refused at once
                "username": "admin",
                "password": "not-a-secret",
                "projectID": "p",
                "domainName": "Default",
            },
        },
    }
    _apply(cluster, config)
    cluster.kubectl(
        "-n",
        ns,
        "wait",
        "--for=jsonpath={.metadata.finalizers[0]}=multinic.example.com/interface-rows",
        "--timeout=60s",
        "openstackconfig/probe",
    )
    status = json.loads(cluster.kubectl("-n", ns, "get", "pod", name, "-o", "json").stdout)["status"]
    assert status["containerStatuses"][0]["restartCount"] == 0, status
    logs = cluster.kubectl("-n", ns, "logs", name).stdout
    lines = [json.loads(line) for line in logs.splitlines() if line]
    assert any(line.get("event") == "Starting" for line in lines), lines[:5]
    assert "not-a-secret" not in logs and "multinic-secret" not in logs
    # Deleting the config: the controller removes its (zero) rows and the finalizer, so the namespace can go.
    cluster.kubectl("-n", ns, "delete", "openstackconfig", "probe", "--timeout=60s")


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
