"""scripts/deploy-operator.sh and scripts/cleanup-operator.sh against a real apiserver (no node: pods stay Pending).

The checks (no cluster, no permission, no image) and `--dry-run` run on the session's control plane in this
test's namespace and change nothing there. The real install and uninstall run on a private etcd + apiserver
started for this module: cleanup removes cluster-wide objects (the CRDs among them), which the session's plane
shares with every other test.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.control_plane import ControlPlane, free_port, locate_assets

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "scripts" / "deploy-operator.sh"
CLEANUP = ROOT / "scripts" / "cleanup-operator.sh"
SAMPLE = ROOT / "manifests" / "samples" / "multinicoperator-trigger.yaml"
CRDS = ("multinicoperators.multinic.example.com", "openstackconfigs.multinic.example.com")
DATA_LABEL = "multinic.example.com/managed-by-operator"
EXIT_NO_CLUSTER, EXIT_NO_PERMISSION, EXIT_NO_IMAGE, EXIT_TIMEOUT = 3, 4, 5, 6


def run(
    script: Path,
    *args: str,
    cp: ControlPlane | None = None,
    kubeconfig: Path | None = None,
    path_prefix: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    assets = locate_assets()
    env = {**os.environ, "KUBECTL": str(assets / "kubectl")}
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    config = kubeconfig or (cp.kubeconfig_path if cp else None)
    argv = [str(script), *args, *(["--kubeconfig", str(config)] if config else [])]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=240, check=False)
    print(f"$ {' '.join(argv)}  -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def exists(cp: ControlPlane, *what: str) -> bool:
    return cp.kubectl("get", *what, "-o", "name", check=False).returncode == 0


def fake_ctr(tmp_path: Path, images: list[str]) -> Path:
    """A `ctr` on PATH that lists `images` in containerd's k8s.io namespace."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    ctr = bin_dir / "ctr"
    ctr.write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(f"'{i}'" for i in images) + "\n")
    ctr.chmod(0o755)
    return bin_dir


# ------------------------------------------------------------------------ checks, on the session's plane
def test_dry_run_succeeds_and_changes_nothing(
    control_plane: ControlPlane, multinic_crds: list[str], namespace: str
) -> None:
    done = run(DEPLOY, "--dry-run", "--namespace", namespace, "--skip-image-check", cp=control_plane)
    assert done.returncode == 0, done.stderr
    assert "(server dry run)" in done.stdout and "dry run complete" in done.stdout
    assert "client-side only" not in done.stderr, "the namespace exists: everything is checked by the server"
    assert (
        "No resources"
        in control_plane.kubectl(
            "get", "deployments,services,serviceaccounts,roles,rolebindings,networkpolicies", "-n", namespace
        ).stderr
    )
    assert not exists(control_plane, "clusterrole", f"multinic-operator-{namespace}")
    assert not exists(control_plane, "clusterrolebinding", f"multinic-operator-{namespace}")


def test_dry_run_into_a_namespace_that_does_not_exist(control_plane: ControlPlane, multinic_crds: list[str]) -> None:
    missing = f"t-none-{uuid.uuid4().hex[:8]}"
    done = run(DEPLOY, "--dry-run", "--namespace", missing, "--skip-image-check", cp=control_plane)
    assert done.returncode == 0, done.stderr
    assert "client-side only" in done.stderr
    assert not exists(control_plane, "namespace", missing)


def test_no_cluster(tmp_path: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [
            {"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}", "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(yaml.safe_dump(config))
    for script in (DEPLOY, CLEANUP):
        done = run(script, kubeconfig=nowhere)
        assert done.returncode == EXIT_NO_CLUSTER, done.stderr
        assert "no cluster reachable" in done.stderr
    done = run(DEPLOY, kubeconfig=tmp_path / "absent.kubeconfig")
    assert done.returncode == EXIT_NO_CLUSTER and "does not exist" in done.stderr


def test_no_permission(control_plane: ControlPlane, namespace: str) -> None:
    nobody = control_plane.service_account_kubeconfig(namespace, "nobody")
    for script in (DEPLOY, CLEANUP):
        done = (
            run(script, "--namespace", namespace, "--skip-image-check", kubeconfig=nobody)
            if script == DEPLOY
            else run(script, "--namespace", namespace, kubeconfig=nobody)
        )
        assert done.returncode == EXIT_NO_PERMISSION, done.stderr
        assert f"system:serviceaccount:{namespace}:nobody may not" in done.stderr
        assert "clusterroles (cluster-wide)" in done.stderr
        assert f"deployments (namespace {namespace})" in done.stderr


def test_no_image(control_plane: ControlPlane, multinic_crds: list[str], namespace: str, tmp_path: Path) -> None:
    done = run(DEPLOY, "--image", "", "--dry-run", "--namespace", namespace, cp=control_plane)
    assert done.returncode == EXIT_NO_IMAGE and "no image given" in done.stderr
    # A local image (no registry) that the node's containerd does not have.
    elsewhere = fake_ctr(tmp_path, ["docker.io/library/mariadb:10.11", "localhost/multinic:v1alpha1"])
    done = run(DEPLOY, "--dry-run", "--namespace", namespace, cp=control_plane, path_prefix=elsewhere)
    assert done.returncode == EXIT_NO_IMAGE, done.stderr
    assert "docker.io/library/multinic:v1alpha1" in done.stderr and "not in this node's containerd" in done.stderr
    # Present (as the kubelet names it): accepted. A registry image absent locally: the kubelet pulls it.
    here = fake_ctr(tmp_path, ["docker.io/library/multinic:v1alpha1"])
    done = run(DEPLOY, "--dry-run", "--namespace", namespace, cp=control_plane, path_prefix=here)
    assert done.returncode == 0 and "is in this node's containerd" in done.stdout, done.stderr
    done = run(
        DEPLOY,
        "--dry-run",
        "--namespace",
        namespace,
        "--image",
        "registry.example.com/multinic:v2",
        cp=control_plane,
        path_prefix=here,
    )
    assert done.returncode == 0 and "will pull it" in done.stdout, done.stderr
    # No containerd to ask: a warning, not an error.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ctr").write_text("#!/bin/sh\nexit 1\n")
    (broken / "ctr").chmod(0o755)
    done = run(DEPLOY, "--dry-run", "--namespace", namespace, cp=control_plane, path_prefix=broken)
    assert done.returncode == 0 and "not checking" in done.stderr, done.stderr


# ------------------------------------------------------------------ install and uninstall, on a private plane
@pytest.fixture(scope="module")
def private_plane() -> Iterator[ControlPlane]:
    with ControlPlane(locate_assets()) as cp:
        yield cp


def installed(cp: ControlPlane, ns: str) -> dict[str, str]:
    """name -> resourceVersion of everything deploy-operator.sh creates."""
    found: dict[str, str] = {}
    for what in (
        ["deployments,services,serviceaccounts,roles,rolebindings,networkpolicies", "-n", ns],
        ["customresourcedefinitions"],
        [f"clusterrole/multinic-operator-{ns}"],
        [f"clusterrolebinding/multinic-operator-{ns}"],
        [f"namespace/{ns}"],
    ):
        out = cp.kubectl("get", *what, "-o", "json", check=False)
        if out.returncode == 0:
            data = json.loads(out.stdout)
            for item in data.get("items", [data]):
                found[f"{item['kind']}/{item['metadata']['name']}"] = item["metadata"]["resourceVersion"]
    return found


def test_deploy_is_idempotent_and_cleanup_keeps_data(private_plane: ControlPlane) -> None:
    cp = private_plane
    ns = f"t-op-{uuid.uuid4().hex[:8]}"
    # No node: the Deployment never becomes available; a short --timeout says so (exit 6) with everything installed.
    first = run(DEPLOY, "--namespace", ns, "--image", "multinic:test", "--timeout", "3s", "--skip-image-check", cp=cp)
    assert first.returncode == EXIT_TIMEOUT, first.stderr
    assert "not available after 3s" in first.stderr and "objects are installed" in first.stderr
    for progress in ("1/5 namespace", "2/5 CustomResourceDefinitions", "3/5", "4/5", "5/5 waiting"):
        assert progress in first.stdout
    objects = installed(cp, ns)
    expected = {
        f"Namespace/{ns}",
        *(f"CustomResourceDefinition/{c}" for c in CRDS),
        f"ClusterRole/multinic-operator-{ns}",
        f"ClusterRoleBinding/multinic-operator-{ns}",
        "ServiceAccount/multinic-operator",
        "Role/multinic-operator-webhook-tls",
        "RoleBinding/multinic-operator-webhook-tls",
        "Service/multinic-operator-webhook",
        "Deployment/multinic-operator",
        "NetworkPolicy/multinic-ingress",
        "NetworkPolicy/multinic-egress",
        "NetworkPolicy/multinic-egress-openstack",
    }
    assert expected <= objects.keys(), expected - objects.keys()
    assert not exists(cp, "clusterrole", "multinic-operator"), "another namespace gets its own cluster-scoped names"
    labels = json.loads(cp.kubectl("get", "namespace", ns, "-o", "json").stdout)["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{m}"] for m in ("enforce", "audit", "warn")} == {"restricted"}
    image = cp.kubectl(
        "-n", ns, "get", "deployment", "multinic-operator", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
    ).stdout
    assert image == "multinic:test"
    binding = json.loads(cp.kubectl("get", "clusterrolebinding", f"multinic-operator-{ns}", "-o", "json").stdout)
    assert binding["roleRef"]["name"] == f"multinic-operator-{ns}"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "multinic-operator", "namespace": ns}]

    # Again: same result, nothing rewritten.
    second = run(DEPLOY, "--namespace", ns, "--image", "multinic:test", "--timeout", "3s", "--skip-image-check", cp=cp)
    assert second.returncode == EXIT_TIMEOUT, second.stderr
    assert installed(cp, ns) == objects

    # What cleanup meets: a MultiNicOperator, data (a PVC and a credentials Secret labelled as the operator's),
    # the operator's TLS Secret and a left-over webhook configuration.
    mno = yaml.safe_load(SAMPLE.read_text())
    mno["metadata"]["namespace"] = ns
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(mno))
    data = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": "data-multinic-mariadb-0",
                "namespace": ns,
                "labels": {DATA_LABEL: "production-system"},
            },
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "multinic-mariadb-credentials",
                "namespace": ns,
                "labels": {DATA_LABEL: "production-system"},
            },
            "stringData": {"password": "kept"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "multinic-operator-webhook-tls", "namespace": ns},
            "stringData": {"tls.crt": "x"},
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "vprotection.multinic.example.com"},
            "webhooks": [
                {
                    "name": "vprotection.multinic.example.com",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Ignore",
                    "clientConfig": {"service": {"name": "multinic-operator-webhook", "namespace": ns}},
                    "rules": [
                        {
                            "apiGroups": ["example.invalid"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["nothing"],
                        }
                    ],
                }
            ],
        },
    ]
    cp.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(data))

    removed = run(CLEANUP, "--namespace", ns, "--timeout", "30s", cp=cp)
    assert removed.returncode == 0, removed.stderr
    assert f"multinicoperator {ns}/production-system gone" in removed.stdout
    assert installed(cp, ns) == {f"Namespace/{ns}": objects[f"Namespace/{ns}"]}, "everything but the namespace"
    assert not exists(cp, "validatingwebhookconfiguration", "vprotection.multinic.example.com")
    assert not exists(cp, "-n", ns, "secret", "multinic-operator-webhook-tls")
    assert exists(cp, "-n", ns, "persistentvolumeclaim", "data-multinic-mariadb-0")
    assert exists(cp, "-n", ns, "secret", "multinic-mariadb-credentials")
    assert "data kept" in removed.stdout and "data-multinic-mariadb-0" in removed.stdout

    again = run(CLEANUP, "--namespace", ns, "--timeout", "30s", cp=cp)
    assert again.returncode == 0, again.stderr
    assert "not installed: nothing to do" in again.stdout

    gone = run(CLEANUP, "--namespace", ns, "--delete-data", "--timeout", "30s", cp=cp)
    assert gone.returncode == 0, gone.stderr
    # No controller-manager here: PVC protection and the namespace's finalizer keep them Terminating.
    for what in (["persistentvolumeclaim", "data-multinic-mariadb-0"], ["secret", "multinic-mariadb-credentials"]):
        out = cp.kubectl("-n", ns, "get", *what, "-o", "jsonpath={.metadata.deletionTimestamp}", check=False)
        assert out.returncode != 0 or out.stdout, what
    out = cp.kubectl("get", "namespace", ns, "-o", "jsonpath={.metadata.deletionTimestamp}", check=False)
    assert out.returncode != 0 or out.stdout


def test_apply_k_then_the_scripts_in_the_default_namespace(private_plane: ControlPlane) -> None:
    """`kubectl apply -k manifests/` installs as shipped; the script takes over idempotently; cleanup removes it."""
    cp = private_plane
    cp.kubectl("apply", "-k", str(ROOT / "manifests"))
    for what in (
        ["namespace", "multinic-system"],
        ["clusterrole", "multinic-operator"],
        ["clusterrolebinding", "multinic-operator"],
        ["-n", "multinic-system", "deployment", "multinic-operator"],
        ["crd", *CRDS],
    ):
        assert exists(cp, *what), what
    done = run(DEPLOY, "--timeout", "2s", "--skip-image-check", cp=cp)
    assert done.returncode == EXIT_TIMEOUT, done.stderr
    assert not exists(cp, "clusterrole", "multinic-operator-multinic-system"), (
        "the shipped names in the default namespace"
    )
    removed = run(CLEANUP, "--delete-data", "--timeout", "30s", cp=cp)
    assert removed.returncode == 0, removed.stderr
    for what in (
        ["clusterrole", "multinic-operator"],
        ["clusterrolebinding", "multinic-operator"],
        ["-n", "multinic-system", "deployment", "multinic-operator"],
        ["crd", CRDS[0]],
        ["crd", CRDS[1]],
    ):
        assert not exists(cp, *what), what
    out = cp.kubectl("get", "namespace", "multinic-system", "-o", "jsonpath={.metadata.deletionTimestamp}", check=False)
    assert out.returncode != 0 or out.stdout, "the namespace goes with --delete-data"
