"""Drift: operator-owned fields only, apiserver defaults and other managers ignored, quantities by value, lists
merged as the apiserver merges them, immutable changes flagged for a recreate, and no values in reports."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from multinic_ctrl.operator.credentials import credential_values, credentials_secret
from multinic_ctrl.operator.desired import object_key
from multinic_ctrl.operator.drift import Drift, detect, detect_all, diff_fields

from .support import FULL_SPEC, OWNER, build, find, spec_of

OBJECTS = build(FULL_SPEC)

_CANONICAL = {"250m": "250m", "300Mi": "300Mi", "500m": "500m", "512Mi": "512Mi", "100m": "100m", "1000m": "1"}


def as_the_apiserver_returns_it(obj: dict[str, Any]) -> dict[str, Any]:
    """Desired object + what the apiserver and other managers add (defaults, status, metadata, extra items)."""
    live = copy.deepcopy(obj)
    meta = live["metadata"]
    meta.update(uid="u-1", resourceVersion="42", generation=3, creationTimestamp="2026-01-01T00:00:00Z")
    meta["managedFields"] = [{"manager": "multinic-operator", "operation": "Apply"}]
    meta.setdefault("labels", {})["team"] = "added-by-someone-else"
    meta["annotations"] = {"deployment.kubernetes.io/revision": "3"}
    live["status"] = {"observedGeneration": 3}
    spec = live.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "CronJob"):
        template = spec["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else spec["template"]
        pod = template["spec"]
        pod.update(dnsPolicy="ClusterFirst", schedulerName="default-scheduler", terminationGracePeriodSeconds=30)
        template["metadata"].setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = "now"
        for container in pod["containers"]:
            container.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File")
            container.setdefault("imagePullPolicy", "IfNotPresent")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if probe in container:
                    container[probe].update(successThreshold=1, initialDelaySeconds=0)
            for env in container.get("env", []):
                if "fieldRef" in env.get("valueFrom", {}):
                    env["valueFrom"]["fieldRef"]["apiVersion"] = "v1"
            container.get("env", []).append({"name": "INJECTED_BY_WEBHOOK", "value": "x"})
        pod["containers"].append({"name": "sidecar", "image": "mesh-proxy:1"})
    if obj["kind"] == "Deployment":
        spec.update(revisionHistoryLimit=10, progressDeadlineSeconds=600, strategy={"type": "RollingUpdate"})
    if obj["kind"] == "StatefulSet":
        spec.update(podManagementPolicy="OrderedReady", revisionHistoryLimit=10)
        for claim in spec["volumeClaimTemplates"]:
            claim["spec"]["volumeMode"] = "Filesystem"
            claim["status"] = {"phase": "Pending"}
    if obj["kind"] == "Service":
        spec.update(sessionAffinity="None", ipFamilies=["IPv4"], internalTrafficPolicy="Cluster")
        if spec.get("clusterIP") != "None":
            spec.update(clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"])
    return live


def canonical_quantities(live: dict[str, Any]) -> dict[str, Any]:
    """The apiserver rewrites quantities in canonical form (`1000m` → `1`, `0.5` → `500m`)."""
    for container in live["spec"]["template"]["spec"]["containers"]:
        for part in ("requests", "limits"):
            res = container.get("resources", {}).get(part, {})
            for key, value in res.items():
                res[key] = {"250m": "0.25", "300Mi": "314572800"}.get(value, value)
    return live


@pytest.mark.parametrize("index", range(len(OBJECTS)), ids=[f"{o['kind']}/{o['metadata']['name']}" for o in OBJECTS])
def test_apiserver_defaults_and_other_managers_are_not_drift(index: int) -> None:
    desired = OBJECTS[index]
    drift = detect(desired, as_the_apiserver_returns_it(desired))
    assert not drift.drifted, drift.changed


def test_quantities_compare_by_value() -> None:
    desired = find(OBJECTS, "Deployment")
    live = canonical_quantities(as_the_apiserver_returns_it(desired))
    assert live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "0.25"
    assert not detect(desired, live).drifted


def test_missing_object() -> None:
    desired = find(OBJECTS, "Deployment")
    assert detect(desired, None) == Drift("Deployment", "multinic-system", "multinic-controller", missing=True)


CONTAINER = "spec.template.spec.containers[controller]"
MARIADB = "spec.template.spec.containers[mariadb]"


def _container(live: dict[str, Any], name: str = "controller") -> dict[str, Any]:
    return next(c for c in live["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _env(live: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in _container(live)["env"] if e["name"] == name)


Mutation = Callable[[dict[str, Any]], object]
NAMES = {
    "Service": "multinic-mariadb-headless",
    "ClusterRole": f"multinic-controller-{OWNER.namespace}",
    "ClusterRoleBinding": f"multinic-controller-{OWNER.namespace}",
}

CASES: list[tuple[str, str, Mutation, list[str], list[str]]] = [
    ("image", "Deployment", lambda o: _container(o).update(image="evil:latest"), [f"{CONTAINER}.image"], []),
    ("replicas", "Deployment", lambda o: o["spec"].update(replicas=1), ["spec.replicas"], []),
    ("env value", "Deployment", lambda o: _env(o, "TRIGGER_FROM").update(value="other/op"),
     [f"{CONTAINER}.env[TRIGGER_FROM].value"], []),
    ("env removed", "Deployment", lambda o: _container(o)["env"].remove(_env(o, "LEADER_ELECT")),
     [f"{CONTAINER}.env[LEADER_ELECT]"], []),
    ("env literal to secret", "Deployment", lambda o: _env(o, "DB_PASSWORD_FILE").update(value="/tmp/x"),
     [f"{CONTAINER}.env[DB_PASSWORD_FILE].value"], []),
    ("writable root", "Deployment", lambda o: _container(o)["securityContext"].update(readOnlyRootFilesystem=False),
     [f"{CONTAINER}.securityContext.readOnlyRootFilesystem"], []),
    ("capabilities", "Deployment", lambda o: _container(o)["securityContext"]["capabilities"].update(drop=["ALL", "X"]),
     [f"{CONTAINER}.securityContext.capabilities.drop"], []),
    ("bool as string", "Deployment", lambda o: _container(o)["securityContext"].update(runAsNonRoot="true"),
     [f"{CONTAINER}.securityContext.runAsNonRoot"], []),
    ("container gone", "Deployment", lambda o: o["spec"]["template"]["spec"].update(containers=[]), [CONTAINER], []),
    ("volume source", "Deployment",
     lambda o: o["spec"]["template"]["spec"]["volumes"][1]["secret"].update(secretName="attacker"),
     ["spec.template.spec.volumes[database-password].secret.secretName"], []),
    ("label removed", "Deployment", lambda o: o["metadata"]["labels"].pop("multinic.example.com/protected"),
     ["metadata.labels.multinic.example.com/protected"], []),
    ("owner removed", "Deployment", lambda o: o["metadata"].pop("ownerReferences"), ["metadata.ownerReferences"], []),
    ("selector", "Deployment", lambda o: o["spec"]["selector"]["matchLabels"].update({"x": "y"}),
     [], []),  # an extra selector key is not an operator field: not drift
    ("selector value", "Deployment",
     lambda o: o["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "x"}),
     ["spec.selector.matchLabels.app.kubernetes.io/name"], ["spec.selector.matchLabels.app.kubernetes.io/name"]),
    ("sts scaled", "StatefulSet", lambda o: o["spec"].update(replicas=3), ["spec.replicas"], []),
    ("sts image", "StatefulSet", lambda o: _container(o, "mariadb").update(image="mariadb:11"),
     [f"{MARIADB}.image"], []),
    ("sts storage", "StatefulSet",
     lambda o: o["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"].update(storage="10Gi"),
     ["spec.volumeClaimTemplates[0].spec.resources.requests.storage"],
     ["spec.volumeClaimTemplates[0].spec.resources.requests.storage"]),
    ("sts serviceName", "StatefulSet", lambda o: o["spec"].update(serviceName="x"), ["spec.serviceName"],
     ["spec.serviceName"]),
    ("sts retention", "StatefulSet",
     lambda o: o["spec"]["persistentVolumeClaimRetentionPolicy"].update(whenDeleted="Delete"),
     ["spec.persistentVolumeClaimRetentionPolicy.whenDeleted"], []),
    ("headless", "Service", lambda o: o["spec"].update(clusterIP="10.0.0.1"), ["spec.clusterIP"], ["spec.clusterIP"]),
    ("cronjob suspended", "CronJob", lambda o: o["spec"].update(suspend=True), ["spec.suspend"], []),
    ("cronjob schedule", "CronJob", lambda o: o["spec"].update(schedule="* * * * *"), ["spec.schedule"], []),
    ("extra subject", "ClusterRoleBinding",
     lambda o: o["subjects"].append({"kind": "ServiceAccount", "name": "attacker", "namespace": "x"}),
     ["subjects"], []),
    ("roleRef", "ClusterRoleBinding", lambda o: o["roleRef"].update(name="cluster-admin"), ["roleRef.name"],
     ["roleRef.name"]),
    ("extra verb", "ClusterRole", lambda o: o["rules"][0]["verbs"].append("delete"), ["rules[0].verbs"], []),
    ("extra rule", "ClusterRole", lambda o: o["rules"].append({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
     ["rules"], []),
    ("pvc grows", "PersistentVolumeClaim", lambda o: o["spec"]["resources"]["requests"].update(storage="10Gi"),
     ["spec.resources.requests.storage"], []),
    ("pvc shrinks", "PersistentVolumeClaim", lambda o: o["spec"]["resources"]["requests"].update(storage="100Gi"),
     ["spec.resources.requests.storage"], ["spec.resources.requests.storage"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "kind", "mutate", "changed", "recreate"), CASES, ids=[c[0] for c in CASES])
def test_drift_cases(case: str, kind: str, mutate: Mutation, changed: list[str], recreate: list[str]) -> None:
    desired = find(OBJECTS, kind, NAMES.get(kind))
    live = as_the_apiserver_returns_it(desired)
    mutate(live)
    drift = detect(desired, live)
    assert list(drift.changed) == changed
    assert list(drift.recreate) == recreate
    assert list(drift.patchable) == [p for p in changed if p not in recreate]


def test_autoscaled_replicas_are_not_compared() -> None:
    desired = find(build({"controller": {"replicasManagedExternally": True}}), "Deployment")
    live = as_the_apiserver_returns_it(desired)
    live["spec"]["replicas"] = 7
    assert not detect(desired, live).drifted


@pytest.mark.parametrize(
    ("ignore", "remaining"),
    [
        ([], ["spec.replicas", f"{CONTAINER}.image"]),
        (["spec.replicas"], [f"{CONTAINER}.image"]),
        (["spec"], []),
        ([CONTAINER], ["spec.replicas"]),
        (["spec.replica"], ["spec.replicas", f"{CONTAINER}.image"]),  # a prefix of a name is not its parent
    ],
)
def test_ignored_paths(ignore: list[str], remaining: list[str]) -> None:
    desired = find(OBJECTS, "Deployment")
    live = as_the_apiserver_returns_it(desired)
    live["spec"]["replicas"] = 9
    _container(live)["image"] = "x:1"
    assert list(detect(desired, live, ignore=ignore).changed) == remaining


def test_secret_drift_names_paths_never_values() -> None:
    spec = spec_of(FULL_SPEC)
    secret = credentials_secret(spec, OWNER, credential_values(spec, None))
    assert secret is not None
    live = as_the_apiserver_returns_it(secret)
    live["data"]["password"] = "c3RvbGVu"
    drift = detect(secret, live)
    assert drift.changed == ("data.password",)
    for text in (repr(drift), str(drift)):
        assert secret["data"]["password"] not in text and "c3RvbGVu" not in text


@pytest.mark.parametrize(
    ("desired", "live", "paths"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, []),
        ({"a": 1}, {}, ["a"]),
        ({"a": {"b": 1}}, {"a": "x"}, ["a"]),
        ({"a": [1, 2]}, {"a": [2, 1]}, ["a"]),  # atomic lists: order matters
        ({"a": [1]}, {"a": "x"}, ["a"]),
        ({"a": True}, {"a": 1}, ["a"]),
        ({"env": [{"name": "A", "value": "1"}]}, {"env": [{"name": "B"}, {"name": "A", "value": "1"}]}, []),
        ({"ports": [{"containerPort": 80}]}, {"ports": [{"containerPort": 80, "protocol": "TCP"}]}, []),
        ({"resources": {"limits": {"memory": "1Gi"}}}, {"resources": {"limits": {"memory": "1024Mi"}}}, []),
        ({"resources": {"limits": {"memory": "1Gi"}}}, {"resources": {"limits": {"memory": "1G"}}},
         ["resources.limits.memory"]),
        ({"sizeLimit": "64Mi"}, {"sizeLimit": "67108864"}, []),
    ],
)  # fmt: skip
def test_diff_fields(desired: dict[str, Any], live: dict[str, Any], paths: list[str]) -> None:
    assert diff_fields(desired, live) == paths


def test_detect_all_reports_only_drifted_objects() -> None:
    live = {object_key(o): as_the_apiserver_returns_it(o) for o in OBJECTS}
    assert detect_all(OBJECTS, live) == []
    deployment = find(OBJECTS, "Deployment")
    _container(live[object_key(deployment)])["image"] = "evil:1"
    service = find(OBJECTS, "Service", "multinic-controller")
    del live[object_key(service)]
    drifts = detect_all(OBJECTS, live)
    assert [(d.kind, d.name, d.missing) for d in drifts] == [
        ("Deployment", "multinic-controller", False),
        ("Service", "multinic-controller", True),
    ]
    live[object_key(service)] = as_the_apiserver_returns_it(service)
    assert detect_all(OBJECTS, live, ignore={"Deployment": ["spec.template"]}) == []
