"""Spec → desired objects: the list, labels and owner references, the controller Deployment, MariaDB, backups,
PSS restricted, and the security cases (no secret in any object, no env injection)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from multinic_ctrl.operator import backup_script
from multinic_ctrl.operator.controller_objects import PASSWORD_FILE
from multinic_ctrl.operator.desired import desired_objects
from multinic_ctrl.operator.names import (
    MANAGED_BY_LABEL,
    MANAGED_BY_NAMESPACE_LABEL,
    PROTECTED_LABEL,
    Owner,
    owner_from_object,
)
from multinic_ctrl.operator.podsecurity import restricted_violations
from multinic_ctrl.operator.rbac import packaged_template
from multinic_ctrl.operator.validation import SpecError

from .support import (
    FULL_SPEC,
    OWNER,
    ROOT_PW,
    UID,
    USER_PW,
    build,
    containers,
    env_of,
    find,
    pod_spec,
    spec_of,
    walk_strings,
)

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}

# ---------------------------------------------------------------- which objects


@pytest.mark.parametrize(
    ("raw", "tail"),
    [
        ({}, ["Service", "Service", "StatefulSet", "Deployment", "Service"]),
        (
            {"database": {"backup": {}}},
            ["Service", "Service", "StatefulSet", "PersistentVolumeClaim", "CronJob", "Deployment", "Service"],
        ),
        (
            {"database": {"backup": {"target": {"claimName": "nfs"}}}},
            ["Service", "Service", "StatefulSet", "CronJob", "Deployment", "Service"],
        ),
        ({"database": {"enabled": False}}, ["Deployment", "Service"]),
    ],
)
def test_objects_in_apply_order(raw: dict[str, Any], tail: list[str]) -> None:
    """Identity and RBAC (as many roles and bindings as the manifest has) first, the controller last."""
    rbac_kinds = [d["kind"] for d in packaged_template().documents]
    assert [o["kind"] for o in build(raw)] == ["ServiceAccount", *rbac_kinds, *tail]


def test_build_is_deterministic() -> None:
    assert build(FULL_SPEC) == build(FULL_SPEC)


# ---------------------------------------------------------------- labels and owner references


@pytest.mark.parametrize("raw", [{}, FULL_SPEC, {"database": {"enabled": False}}])
def test_every_object_is_labelled_protected_and_managed(raw: dict[str, Any]) -> None:
    for obj in build(raw):
        labels = obj["metadata"]["labels"]
        assert labels[PROTECTED_LABEL] == "true"
        assert labels[MANAGED_BY_LABEL] == "production-system"
        assert labels[MANAGED_BY_NAMESPACE_LABEL] == "multinic-system"
        assert labels["app.kubernetes.io/part-of"] == "multinic"
        assert labels["app.kubernetes.io/instance"] == "production-system"
        assert labels["app.kubernetes.io/managed-by"] == "multinic-operator"
        assert {"app.kubernetes.io/name", "app.kubernetes.io/component"} <= set(labels)


@pytest.mark.parametrize("delete_data", [False, True])
def test_owner_references_where_kubernetes_allows_them(delete_data: bool) -> None:
    raw = {"database": {"backup": {}, "deleteDataOnUninstall": delete_data}}
    data_bearing = {("PersistentVolumeClaim", "multinic-mariadb-backup")}
    for obj in build(raw):
        meta = obj["metadata"]
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta and "ownerReferences" not in meta
            assert meta["name"].endswith("-multinic-system")
        elif (obj["kind"], meta["name"]) in data_bearing and not delete_data:
            assert "ownerReferences" not in meta, obj["kind"]
        else:
            assert meta["namespace"] == "multinic-system"
            assert meta["ownerReferences"] == [
                {
                    "apiVersion": "multinic.example.com/v1alpha1",
                    "kind": "MultiNicOperator",
                    "name": "production-system",
                    "uid": UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ]


def test_installations_in_two_namespaces_do_not_collide() -> None:
    other = Owner("production-system", "team-b", UID, 1)
    first = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in build({})}
    second = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        for o in desired_objects(spec_of({}), other, packaged_template())
    }
    assert not first & second


@pytest.mark.parametrize(
    ("meta", "problem"),
    [
        ({"name": "x" * 64, "namespace": "ns", "uid": UID}, "metadata.name"),
        ({"name": "Bad", "namespace": "ns", "uid": UID}, "metadata.name"),
        ({"name": "ok", "namespace": "a.b", "uid": UID}, "metadata.namespace"),
        ({"name": "ok", "namespace": "ns"}, "metadata.uid"),
        ({"name": "ok", "namespace": "ns", "uid": "x; drop"}, "metadata.uid"),
    ],
)
def test_owner_from_object_validates(meta: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError, match=f"^{problem}"):
        owner_from_object({"metadata": meta})


def test_owner_from_object() -> None:
    obj = {"metadata": {"name": "production-system", "namespace": "multinic-system", "uid": UID, "generation": 3}}
    assert owner_from_object(obj) == OWNER
    assert OWNER.trigger_from == "multinic-system/production-system"


# ---------------------------------------------------------------- controller Deployment


def test_controller_deployment() -> None:
    objects = build(FULL_SPEC)
    deployment = find(objects, "Deployment", "multinic-controller")
    (container,) = containers(deployment)
    pod = pod_spec(deployment)
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "registry.example.com/multinic:v1.2.3"
    assert container["args"] == ["run"]
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "300Mi"},
        "limits": {"cpu": "250m", "memory": "300Mi"},
    }
    assert container["ports"] == [{"name": "http", "containerPort": 8082, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = env_of(container)
    assert env["TRIGGER_FROM"] == "multinic-system/production-system"
    assert env["LEADER_ELECT"] == "true"
    assert env["LEADER_ELECTION_NAMESPACE"] == "multinic-system"
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["PROBE_PORT"] == "8082"
    assert env["DB_HOST"] == "multinic-mariadb.multinic-system.svc"
    assert (env["DB_PORT"], env["DB_USER"], env["DB_NAME"]) == ("3306", "nicuser", "nics")
    assert env["DB_PASSWORD_FILE"] == PASSWORD_FILE
    assert "DB_PASSWORD" not in env
    assert env["LOG_LEVEL"] == "debug"
    assert env["TRIGGER_TOKEN"] == {"secretKeyRef": {"name": "trigger-token", "key": "token"}}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "database-password")
    assert PASSWORD_FILE.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == "database-password")
    assert volume["secret"]["secretName"] == "multinic-mariadb-credentials"
    assert volume["secret"]["items"] == [{"key": "password", "path": "password"}]
    assert pod["serviceAccountName"] == "multinic-controller"
    assert pod["enableServiceLinks"] is False
    assert (
        deployment["spec"]["selector"]["matchLabels"].items()
        <= deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_operator_env_comes_before_user_env() -> None:
    (container,) = containers(find(build(FULL_SPEC), "Deployment"))
    names = [e["name"] for e in container["env"]]
    assert names.index("TRIGGER_FROM") < names.index("LOG_LEVEL")


def test_password_from_a_users_secret_is_mounted_from_that_secret() -> None:
    raw = {"database": {"credentials": {"passwordSecretRef": {"name": "app-db", "key": "pw"}}}}
    volume = next(v for v in pod_spec(find(build(raw), "Deployment"))["volumes"] if v["name"] == "database-password")
    assert volume["secret"] == {
        "secretName": "app-db",
        "items": [{"key": "pw", "path": "password"}],
        "defaultMode": 0o440,
    }


def test_external_database() -> None:
    raw = {
        "database": {"enabled": False},
        "controller": {
            "env": [
                {"name": "DB_HOST", "value": "db.example"},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "ext", "key": "password"}}},
            ]
        },
    }
    deployment = find(build(raw), "Deployment")
    (container,) = containers(deployment)
    env = env_of(container)
    assert env["DB_HOST"] == "db.example" and "DB_PASSWORD_FILE" not in env
    assert [v["name"] for v in pod_spec(deployment)["volumes"]] == ["tmp"]


def test_autoscaled_replicas_are_left_out() -> None:
    deployment = find(build({"controller": {"replicasManagedExternally": True}}), "Deployment")
    assert "replicas" not in deployment["spec"]


def test_custom_probe_port_and_path() -> None:
    objects = build({"controller": {"healthProbe": {"port": 9090, "path": "/livez"}}})
    (container,) = containers(find(objects, "Deployment"))
    assert container["ports"][0]["containerPort"] == 9090
    assert env_of(container)["PROBE_PORT"] == "9090"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    service = find(objects, "Service", "multinic-controller")
    assert service["spec"]["ports"] == [{"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"}]


def test_image_pull_policy_only_when_given() -> None:
    (container,) = containers(find(build({}), "Deployment"))
    assert "imagePullPolicy" not in container
    (container,) = containers(find(build({"controller": {"imagePullPolicy": "Always"}}), "Deployment"))
    assert container["imagePullPolicy"] == "Always"


@pytest.mark.parametrize(
    ("value", "built"),
    [
        ("$(DB_PASSWORD_FILE)", "$$(DB_PASSWORD_FILE)"),  # no $(VAR) expansion: values are literal
        ("a$b", "a$$b"),
        ("plain", "plain"),
        ("line\nbreak", "line\nbreak"),  # passed as data, never through a shell
    ],
)
def test_user_env_values_are_literal(value: str, built: str) -> None:
    (container,) = containers(find(build({"controller": {"env": [{"name": "X", "value": value}]}}), "Deployment"))
    assert env_of(container)["X"] == built


def test_empty_env_value_is_omitted() -> None:
    (container,) = containers(find(build({"controller": {"env": [{"name": "EMPTY", "value": ""}]}}), "Deployment"))
    assert {"name": "EMPTY"} in container["env"]


# ---------------------------------------------------------------- Services


def test_services_select_the_right_pods() -> None:
    objects = build(FULL_SPEC)
    controller_labels = find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    mariadb_labels = find(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    backup_labels = find(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    controller_svc = find(objects, "Service", "multinic-controller")["spec"]["selector"]
    client_svc = find(objects, "Service", "multinic-mariadb")["spec"]
    headless_svc = find(objects, "Service", "multinic-mariadb-headless")["spec"]
    assert controller_svc.items() <= controller_labels.items()
    assert client_svc["selector"].items() <= mariadb_labels.items()
    assert not client_svc["selector"].items() <= backup_labels.items()
    assert not controller_svc.items() <= backup_labels.items()
    assert headless_svc["clusterIP"] == "None" and headless_svc["publishNotReadyAddresses"] is True
    assert client_svc["ports"] == [{"name": "mysql", "port": 3306, "targetPort": "mysql", "protocol": "TCP"}]


# ---------------------------------------------------------------- MariaDB


def test_mariadb_statefulset() -> None:
    sts = find(build(FULL_SPEC), "StatefulSet", "multinic-mariadb")
    spec = sts["spec"]
    (container,) = containers(sts)
    assert spec["replicas"] == 1 and spec["serviceName"] == "multinic-mariadb-headless"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "30Gi"}},
        "storageClassName": "fast-ssd",
    }
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert container["image"] == "mariadb:10.11.6"
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "512Mi"}
    env = env_of(container)
    assert env["MARIADB_ROOT_PASSWORD_FILE"] == "/var/run/secrets/multinic/database/root-password"
    assert env["MARIADB_PASSWORD_FILE"] == "/var/run/secrets/multinic/database/password"
    assert (env["MARIADB_DATABASE"], env["MARIADB_USER"]) == ("nics", "nicuser")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        command = " ".join(container[probe]["exec"]["command"])
        assert "ping" in command and "password" not in command.lower()
    (credentials,) = [v for v in pod_spec(sts)["volumes"] if v["name"] == "credentials"]
    sources = credentials["projected"]["sources"]
    assert sources == [
        {
            "secret": {
                "name": "multinic-mariadb-credentials",
                "items": [{"key": "root-password", "path": "root-password"}],
            }
        },
        {"secret": {"name": "multinic-mariadb-credentials", "items": [{"key": "password", "path": "password"}]}},
    ]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/lib/mysql"]["name"] == "data"
    assert {"/run/mysqld", "/tmp"} <= set(mounts)


def test_mariadb_passwords_from_two_user_secrets() -> None:
    creds = {"rootPasswordSecretRef": {"name": "root-s", "key": "r"}, "passwordSecretRef": {"name": "user-s"}}
    sts = find(build({"database": {"credentials": creds}}), "StatefulSet")
    (volume,) = [v for v in pod_spec(sts)["volumes"] if v["name"] == "credentials"]
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "root-s", "items": [{"key": "r", "path": "root-password"}]}},
        {"secret": {"name": "user-s", "items": [{"key": "password", "path": "password"}]}},
    ]


def test_delete_data_on_uninstall_deletes_claims_with_the_statefulset() -> None:
    sts = find(build({"database": {"deleteDataOnUninstall": True}}), "StatefulSet")
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Delete", "whenScaled": "Retain"}


# ---------------------------------------------------------------- backups


def test_backup_cronjob() -> None:
    cronjob = find(build(FULL_SPEC), "CronJob", "multinic-mariadb-backup")
    spec = cronjob["spec"]
    assert spec["schedule"] == "15 3 * * *" and spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid" and spec["suspend"] is False
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] == 3600 and job["backoffLimit"] == 1
    assert "ttlSecondsAfterFinished" not in job  # status reads the Job history
    pod = pod_spec(cronjob)
    assert pod["restartPolicy"] == "Never"
    (container,) = containers(cronjob)
    assert container["command"] == ["/bin/bash", "-c", backup_script.SCRIPT]
    env = env_of(container)
    assert env["RETENTION_KEEP_LAST"] == "5" and env["RETENTION_MAX_AGE_MINUTES"] == str(10 * 1440)
    assert (env["DB_NAME"], env["DB_USER"], env["DB_HOST"]) == (
        "nics",
        "nicuser",
        "multinic-mariadb.multinic-system.svc",
    )
    assert container["image"] == "mariadb:10.11.6"
    (backups,) = [v for v in pod["volumes"] if v["name"] == "backups"]
    assert backups["persistentVolumeClaim"]["claimName"] == "multinic-mariadb-backup"


def test_backup_script_is_the_same_whatever_the_spec() -> None:
    hostile = {
        "database": {
            "credentials": {"database": "x_y", "user": "u1"},
            "backup": {"schedule": "@hourly", "retention": {"maxAge": "1d"}, "target": {"claimName": "their-pvc"}},
        }
    }
    scripts = {containers(find(build(raw), "CronJob"))[0]["command"][2] for raw in (FULL_SPEC, hostile)}
    assert scripts == {backup_script.SCRIPT}


def test_backup_script_essentials() -> None:
    script = backup_script.SCRIPT
    assert script.startswith("set -euo pipefail\n")
    assert "--single-transaction" in script and "gzip -c" in script and "gzip -t" in script
    assert "--defaults-extra-file" in script and "--password" not in script and "MYSQL_PWD" not in script


def test_backup_target_pvc() -> None:
    objects = build(FULL_SPEC)
    claim = find(objects, "PersistentVolumeClaim", "multinic-mariadb-backup")
    assert claim["spec"]["resources"]["requests"]["storage"] == "30Gi"  # the database's size by default


def test_backup_to_an_existing_claim() -> None:
    objects = build({"database": {"backup": {"target": {"claimName": "nfs-backups"}}}})
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    (backups,) = [v for v in pod_spec(find(objects, "CronJob"))["volumes"] if v["name"] == "backups"]
    assert backups["persistentVolumeClaim"]["claimName"] == "nfs-backups"


# ---------------------------------------------------------------- PSS restricted


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "CronJob"])
def test_every_pod_passes_pss_restricted(kind: str) -> None:
    pod = pod_spec(find(build(FULL_SPEC), kind))
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}


RESTRICTED_POD: dict[str, Any] = {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [
        {
            "name": "c",
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
        }
    ],
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda p: p.update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "hostPath"),
        (lambda p: p["securityContext"].update(runAsUser=0), "runAsUser is 0"),
        (lambda p: p["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (lambda p: p["securityContext"].pop("seccompProfile"), "seccompProfile"),
        (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged"),
        (lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
        (lambda p: p["containers"][0]["securityContext"].update(capabilities={"drop": ["NET_RAW"]}), "drop ALL"),
        (lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "SYS_ADMIN"),
        (lambda p: p["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False), "writable"),
        (lambda p: p["containers"][0].update(ports=[{"containerPort": 1, "hostPort": 1}]), "hostPort"),
    ],
)
def test_restricted_violations_are_found(change: Any, problem: str) -> None:
    import copy

    pod = copy.deepcopy(RESTRICTED_POD)
    assert restricted_violations(pod) == []
    change(pod)
    assert any(problem in p for p in restricted_violations(pod))


# ---------------------------------------------------------------- no secret in any object


def test_inline_passwords_appear_in_no_desired_object() -> None:
    encoded = {base64.b64encode(pw.encode()).decode() for pw in (ROOT_PW, USER_PW)}
    for obj in build(FULL_SPEC):
        for text in walk_strings(obj):
            assert ROOT_PW not in text and USER_PW not in text, obj["kind"]
            assert not any(e in text for e in encoded), obj["kind"]


def test_no_object_holds_a_literal_password_env() -> None:
    for obj in build(FULL_SPEC):
        if obj["kind"] in ("Deployment", "StatefulSet", "CronJob"):
            for container in containers(obj):
                for env in container.get("env", []):
                    if "PASSWORD" in env["name"] and "value" in env:
                        assert env["name"].endswith("_FILE"), env["name"]


def test_secret_references_do_not_change_with_inline_values() -> None:
    other = {
        **FULL_SPEC,
        "database": {
            **FULL_SPEC["database"],
            "credentials": {"rootPassword": "a", "password": "b", "database": "nics", "user": "nicuser"},
        },
    }
    assert build(FULL_SPEC) == build(other)  # fmt: skip
