"""MultiNicOperator spec parsing: defaults, the MISSION shape, the issue's additions, refusals naming their field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from multinic_ctrl.operator.spec import (
    BackupSpec,
    EnvVar,
    OperatorSpec,
    PasswordSource,
    Resources,
    SecretKeyRef,
    SpecError,
    parse_spec,
)
from multinic_ctrl.operator.validation import SecretValue

ROOT_PW = "root-pw-Qz71!"
USER_PW = "user-pw-Jx05$"

MISSION_SPEC: dict[str, Any] = {
    "controller": {
        "image": "multinic:v1alpha1",
        "replicas": 2,
        "resources": {"cpu": "200m", "memory": "256Mi"},
        "healthProbe": {"port": 8082, "path": "/healthz"},
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "TRIGGER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "trigger", "key": "token"}}},
        ],
    },
    "database": {
        "enabled": True,
        "image": "mariadb:10.11",
        "storageSize": "20Gi",
        "resources": {"cpu": "500m", "memory": "512Mi"},
        "credentials": {"rootPassword": ROOT_PW, "database": "multinic", "user": "multinic", "password": USER_PW},
    },
    "openstack": {
        "identityEndpoint": "http://110.0.0.100:5000/v3",
        "networkEndpoint": "http://110.0.0.100:9696/v2.0",
        "computeEndpoint": "http://110.0.0.100:8774/v2.1",
    },
    "protection": {
        "enableMutationPrevention": True,
        "enableAutoRecovery": True,
        "allowedOperations": ["get", "list", "watch"],
    },
    "reconcileTrigger": {"mode": "scheduled", "interval": "15m", "immediateOnCRChange": True, "timezone": "UTC"},
}


def with_changes(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the spec with `a.b.c` set to value (`...` deletes it)."""
    spec = copy.deepcopy(MISSION_SPEC if base is None else base)
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return spec


def test_empty_spec_gives_the_defaults() -> None:
    spec = parse_spec({})
    assert spec == OperatorSpec()
    assert spec.controller.image == "multinic:v1alpha1" and spec.controller.replicas == 2
    assert spec.controller.resources == Resources("200m", "256Mi")
    assert (spec.controller.probe_port, spec.controller.probe_path) == (8082, "/healthz")
    assert spec.database.enabled and spec.database.image == "mariadb:10.11" and spec.database.storage_size == "20Gi"
    assert spec.database.backup is None and spec.database.delete_data_on_uninstall is False
    assert spec.protection.enable_auto_recovery and spec.protection.allowed_operations == ("get", "list", "watch")
    assert spec.reconcile_trigger.mode == "immediate"
    assert spec.inline_secret_fields == ()


def test_none_spec_is_an_empty_spec() -> None:
    assert parse_spec(None) == OperatorSpec()


def test_the_mission_example_parses() -> None:
    spec = parse_spec(MISSION_SPEC)
    assert spec.controller.env == (
        EnvVar("LOG_LEVEL", value="debug"),
        EnvVar("TRIGGER_TOKEN", value_from={"secretKeyRef": {"name": "trigger", "key": "token"}}),
    )
    creds = spec.database.credentials
    assert creds.root_password == PasswordSource(inline=SecretValue(ROOT_PW))
    assert creds.password == PasswordSource(inline=SecretValue(USER_PW))
    assert spec.inline_secret_fields == ("spec.database.credentials.rootPassword", "spec.database.credentials.password")
    assert spec.openstack.identity_endpoint == "http://110.0.0.100:5000/v3"
    assert spec.reconcile_trigger.interval == "15m" and spec.reconcile_trigger.immediate_on_cr_change


def test_inline_passwords_never_show_in_the_repr() -> None:
    text = repr(parse_spec(MISSION_SPEC))
    assert ROOT_PW not in text and USER_PW not in text


def test_secret_references_are_not_flagged() -> None:
    creds = {
        "rootPasswordSecretRef": {"name": "db-root"},
        "passwordSecretRef": {"name": "db-user", "key": "pw"},
    }
    spec = parse_spec(with_changes("database.credentials", creds))
    assert spec.database.credentials.root_password.ref == SecretKeyRef("db-root", "root-password")
    assert spec.database.credentials.password.ref == SecretKeyRef("db-user", "pw")
    assert spec.inline_secret_fields == ()
    assert not spec.database.credentials.password.operator_managed


def test_backup_block() -> None:
    backup = {
        "schedule": "30 1 * * *",
        "timeZone": "Europe/Berlin",
        "retention": {"keepLast": 14, "maxAge": "30d"},
        "target": {"storageSize": "50Gi", "storageClassName": "fast"},
        "activeDeadlineSeconds": 1800,
    }
    spec = parse_spec(with_changes("database.backup", backup))
    assert spec.database.backup == BackupSpec(
        schedule="30 1 * * *",
        time_zone="Europe/Berlin",
        keep_last=14,
        max_age_minutes=30 * 1440,
        storage_size="50Gi",
        storage_class="fast",
        image="mariadb:10.11",
        active_deadline_seconds=1800,
    )


@pytest.mark.parametrize(
    ("backup", "expected"),
    [
        ({}, {"keep_last": 7, "max_age_minutes": None, "claim_name": None, "storage_size": "20Gi"}),
        ({"retention": {"maxAge": "7d"}}, {"keep_last": None, "max_age_minutes": 7 * 1440}),
        ({"target": {"claimName": "nfs-backups"}}, {"claim_name": "nfs-backups"}),
        ({"image": "mariadb:11.4"}, {"image": "mariadb:11.4"}),
    ],
)
def test_backup_defaults(backup: dict[str, Any], expected: dict[str, Any]) -> None:
    parsed = parse_spec({"database": {"backup": backup}}).database.backup
    assert parsed is not None
    for name, value in expected.items():
        assert getattr(parsed, name) == value


def test_backup_disabled_explicitly() -> None:
    assert parse_spec({"database": {"backup": {"enabled": False}}}).database.backup is None


def test_external_database_frees_the_db_env_names() -> None:
    env = [
        {"name": "DB_HOST", "value": "db.example"},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "external-db", "key": "password"}}},
    ]
    spec = parse_spec({"database": {"enabled": False}, "controller": {"env": env}})
    assert [v.name for v in spec.controller.env] == ["DB_HOST", "DB_PASSWORD"]


def test_autoscaled_replicas() -> None:
    assert parse_spec({"controller": {"replicasManagedExternally": True}}).controller.replicas_managed_externally


def test_env_value_from_variants() -> None:
    env = [
        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": True}}},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {
            "name": "C",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']", "apiVersion": "v1"}},
        },
        {"name": "D", "value": ""},
    ]
    parsed = parse_spec({"controller": {"env": env}}).controller.env
    assert parsed[0].value_from == {"configMapKeyRef": {"name": "cm", "key": "k", "optional": True}}
    assert parsed[2].value_from == {"fieldRef": {"fieldPath": "metadata.labels['app.kubernetes.io/name']"}}
    assert parsed[3] == EnvVar("D", value="")


# ---------------------------------------------------------------- refusals: each names its field

REFUSALS: list[tuple[str, Any, str]] = [
    ("controller.image", "evil image", "spec.controller.image"),
    ("controller.image", "multinic:$(id)", "spec.controller.image"),
    ("controller.imagePullPolicy", "Sometimes", "spec.controller.imagePullPolicy"),
    ("controller.replicas", -1, "spec.controller.replicas"),
    ("controller.replicas", 11, "spec.controller.replicas"),
    ("controller.replicas", "2", "spec.controller.replicas"),
    ("controller.replicas", True, "spec.controller.replicas"),
    ("controller.resources", {"cpu": "lots"}, "spec.controller.resources.cpu"),
    ("controller.resources", {"memory": "1e9"}, "spec.controller.resources.memory"),
    ("controller.resources", {"gpu": 1}, "spec.controller.resources.gpu"),
    ("controller.healthProbe", {"port": 80}, "spec.controller.healthProbe.port"),
    ("controller.healthProbe", {"path": "healthz"}, "spec.controller.healthProbe.path"),
    ("controller.env", {"name": "X"}, "spec.controller.env"),
    ("controller.env", [{"name": "A B", "value": "x"}], "spec.controller.env[0].name"),
    ("controller.env", [{"name": "X"}], "spec.controller.env[0]"),
    ("controller.env", [{"name": "X", "value": "1", "valueFrom": {}}], "spec.controller.env[0]"),
    ("controller.env", [{"name": "X", "value": 1}], "spec.controller.env[0].value"),
    ("controller.env", [{"name": "X", "value": "a"}, {"name": "X", "value": "b"}], "spec.controller.env[1].name"),
    ("controller.env", [{"name": "TRIGGER_FROM", "value": "other/op"}], "spec.controller.env[0].name"),
    ("controller.env", [{"name": "LEADER_ELECT", "value": "false"}], "spec.controller.env[0].name"),
    ("controller.env", [{"name": "DB_HOST", "value": "evil.example"}], "spec.controller.env[0].name"),
    ("controller.env", [{"name": "DB_PASSWORD_FILE", "value": "/etc/shadow"}], "spec.controller.env[0].name"),
    ("controller.env", [{"name": "TRIGGER_TOKEN", "value": "tok"}], "spec.controller.env[0].value"),
    (
        "controller.env",
        [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "Bad_Name", "key": "k"}}}],
        "spec.controller.env[0].valueFrom.secretKeyRef.name",
    ),
    (
        "controller.env",
        [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "../k"}}}],
        "spec.controller.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        "controller.env",
        [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s"}}}],
        "spec.controller.env[0].valueFrom.secretKeyRef.key",
    ),
    (
        "controller.env",
        [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.containers[0].env"}}}],
        "spec.controller.env[0].valueFrom.fieldRef.fieldPath",
    ),
    (
        "controller.env",
        [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}],
        "spec.controller.env[0].valueFrom.resourceFieldRef",
    ),
    (
        "controller.env",
        [
            {
                "name": "X",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}, "configMapKeyRef": {"name": "c", "key": "k"}},
            }
        ],
        "spec.controller.env[0].valueFrom",
    ),
    ("controller.env", [{"name": "X", "value": "v" * 5000}], "spec.controller.env[0].value"),
    ("controller.env", [{"name": f"V{i}", "value": "x"} for i in range(101)], "spec.controller.env"),
    ("database.enabled", "yes", "spec.database.enabled"),
    ("database.image", "mariadb:10.11 --skip-grant-tables", "spec.database.image"),
    ("database.storageSize", "20", "spec.database.storageSize"),
    ("database.storageSize", "lots", "spec.database.storageSize"),
    ("database.storageClassName", "Fast!", "spec.database.storageClassName"),
    ("database.credentials", {"user": "root"}, "spec.database.credentials.user"),
    ("database.credentials", {"user": "ROOT"}, "spec.database.credentials.user"),
    ("database.credentials", {"user": "a'; DROP USER root; --"}, "spec.database.credentials.user"),
    ("database.credentials", {"database": "multinic`; DROP"}, "spec.database.credentials.database"),
    ("database.credentials", {"database": "1234"}, "spec.database.credentials.database"),
    ("database.credentials", {"password": "x", "passwordSecretRef": {"name": "s"}}, "spec.database.credentials"),
    ("database.credentials", {"password": ""}, "spec.database.credentials.password"),
    ("database.credentials", {"rootPassword": 1234}, "spec.database.credentials.rootPassword"),
    ("database.credentials", {"passwordSecretRef": {"key": "k"}}, "spec.database.credentials.passwordSecretRef.name"),
    ("database.backup", {"schedule": "0 2 * *"}, "spec.database.backup.schedule"),
    ("database.backup", {"schedule": "TZ=UTC 0 2 * * *"}, "spec.database.backup.schedule"),
    ("database.backup", {"timeZone": "Nowhere/City"}, "spec.database.backup.timeZone"),
    ("database.backup", {"retention": {"keepLast": 0}}, "spec.database.backup.retention.keepLast"),
    ("database.backup", {"retention": {"maxAge": "forever"}}, "spec.database.backup.retention.maxAge"),
    ("database.backup", {"target": {"claimName": "x", "storageSize": "1Gi"}}, "spec.database.backup.target"),
    ("database.backup", {"target": {"claimName": "../x"}}, "spec.database.backup.target.claimName"),
    ("database.backup", {"activeDeadlineSeconds": 10}, "spec.database.backup.activeDeadlineSeconds"),
    ("database.backup", {"image": "x y"}, "spec.database.backup.image"),
    ("database.backup", {"command": ["sh"]}, "spec.database.backup.command"),
    ("database.deleteDataOnUninstall", "true", "spec.database.deleteDataOnUninstall"),
    ("openstack.identityEndpoint", "keystone:5000", "spec.openstack.identityEndpoint"),
    ("protection.allowedOperations", ["get", "escalate"], "spec.protection.allowedOperations[1]"),
    ("protection.allowedOperations", "get", "spec.protection.allowedOperations"),
    ("reconcileTrigger.mode", "often", "spec.reconcileTrigger.mode"),
    ("reconcileTrigger.interval", "soon", "spec.reconcileTrigger.interval"),
    ("reconcileTrigger.schedule", "61 * * * *", "spec.reconcileTrigger.schedule"),
    ("reconcileTrigger.schedule", "@daily", "spec.reconcileTrigger.schedule"),
    ("reconcileTrigger.timezone", "Atlantis/Capital", "spec.reconcileTrigger.timezone"),
    ("webhook", {}, "spec.webhook"),
]


@pytest.mark.parametrize(("path", "value", "field"), REFUSALS)
def test_refusals_name_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(with_changes(path, value))
    message = str(err.value)
    assert message.startswith(f"{field}: "), message
    assert "\n" not in message
    assert ROOT_PW not in message and USER_PW not in message


def test_backups_need_the_operator_run_database() -> None:
    with pytest.raises(SpecError, match=r"^spec\.database\.backup: "):
        parse_spec({"database": {"enabled": False, "backup": {}}})


def test_spec_must_be_an_object() -> None:
    with pytest.raises(SpecError, match=r"^spec: must be an object"):
        parse_spec(["not", "an", "object"])


@pytest.mark.parametrize(
    ("name", "value"),
    [("DB_PASSWORD", "s3cret-value"), ("API_TOKEN", "tok-991"), ("MY_SECRET", "x-secret-x"), ("PRIVATE_KEY", "pk-1")],
)
def test_inline_secret_env_values_are_refused_without_echo(name: str, value: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"database": {"enabled": False}, "controller": {"env": [{"name": name, "value": value}]}})
    assert value not in str(err.value)
    assert "secretKeyRef" in str(err.value)


def test_secret_file_paths_are_not_secrets() -> None:
    env = [{"name": "TRIGGER_TOKEN_FILE", "value": "/var/run/secrets/trigger/token"}]
    assert parse_spec({"controller": {"env": env}}).controller.env[0].name == "TRIGGER_TOKEN_FILE"


@pytest.mark.parametrize("bad", ["pw\nwith newline", "pw\x00nul", "x" * 257])
def test_inline_passwords_with_control_characters_are_refused_without_echo(bad: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"database": {"credentials": {"password": bad}}})
    assert bad not in str(err.value)
    assert str(err.value).startswith("spec.database.credentials.password: ")


def test_inline_passwords_are_flagged_even_with_an_external_database() -> None:
    spec = parse_spec({"database": {"enabled": False, "credentials": {"password": USER_PW}}})
    assert spec.inline_secret_fields == ("spec.database.credentials.password",)


def test_allowed_operations_are_deduplicated_in_a_fixed_order() -> None:
    spec = parse_spec({"protection": {"allowedOperations": ["watch", "get", "get", "list"]}})
    assert spec.protection.allowed_operations == ("get", "list", "watch")
