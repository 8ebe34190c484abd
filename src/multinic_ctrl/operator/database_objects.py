"""The MariaDB StatefulSet and its two Services (pure).

Invariants:

* **passwords only as files from Secrets** - MariaDB's entrypoint reads `MARIADB_ROOT_PASSWORD_FILE` and
  `MARIADB_PASSWORD_FILE`; both point into a read-only projected volume built from the operator's credentials
  Secret or the user's own Secrets, so no password is ever written into the StatefulSet;
* **data outlives the installation by default** - `persistentVolumeClaimRetentionPolicy` retains the PVCs when the
  StatefulSet is deleted or scaled down, unless `spec.database.deleteDataOnUninstall` is true;
* **only mutable fields change after creation** - `serviceName`, `selector` and `volumeClaimTemplates` are
  fixed by Kubernetes; `drift.IMMUTABLE` lists them so the reconciler reports a needed recreate instead of
  failing on every apply;
* **probes need no password** - `mariadb-admin ping` exits 0 whenever the server answers, even with "access
  denied", so probe commands carry no credentials.
"""

from __future__ import annotations

from typing import Any

from .controller_objects import SECRET_FILE_MODE, resources
from .names import CREDENTIALS_SECRET, DATABASE, DATABASE_HEADLESS, DATABASE_PORT, Owner, object_meta, selector_labels
from .podsecurity import container_security_context, pod_security_context
from .spec import OperatorSpec, PasswordSource

MARIADB_UID = 999  # the `mysql` user of the official image
SECRETS_DIR = "/var/run/secrets/multinic/database"
DATA_DIR = "/var/lib/mysql"
# mariadb-admin since 10.4, mysqladmin before (MISSION: MariaDB 10.3+).
_PING = [
    "/bin/sh",
    "-c",
    'exec "$(command -v mariadb-admin || command -v mysqladmin)" ping --protocol=tcp --host=127.0.0.1'
    f" --port={DATABASE_PORT}",
]


def _source(password: PasswordSource, managed_key: str, path: str) -> dict[str, Any]:
    secret, key = (password.ref.name, password.ref.key) if password.ref else (CREDENTIALS_SECRET, managed_key)
    return {"secret": {"name": secret, "items": [{"key": key, "path": path}]}}


def credentials_volume(spec: OperatorSpec, name: str) -> dict[str, Any]:
    """Projected volume with `root-password` and `password` files, wherever each password lives."""
    creds = spec.database.credentials
    return {
        "name": name,
        "projected": {
            "defaultMode": SECRET_FILE_MODE,
            "sources": [
                _source(creds.root_password, "root-password", "root-password"),
                _source(creds.password, "password", "password"),
            ],
        },
    }


def _exec_probe(period: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": list(_PING)},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def statefulset(spec: OperatorSpec, owner: Owner) -> dict[str, Any]:
    db = spec.database
    creds = db.credentials
    meta = object_meta(owner, DATABASE, DATABASE, "database")
    container: dict[str, Any] = {
        "name": "mariadb",
        "image": db.image,
        "ports": [{"name": "mysql", "containerPort": DATABASE_PORT, "protocol": "TCP"}],
        "env": [
            {"name": "MARIADB_ROOT_PASSWORD_FILE", "value": f"{SECRETS_DIR}/root-password"},
            {"name": "MARIADB_DATABASE", "value": creds.database},
            {"name": "MARIADB_USER", "value": creds.user},
            {"name": "MARIADB_PASSWORD_FILE", "value": f"{SECRETS_DIR}/password"},
        ],
        "resources": resources(db.resources),
        "startupProbe": _exec_probe(10, 60),  # first start initialises the data directory
        "livenessProbe": _exec_probe(10, 6),
        "readinessProbe": _exec_probe(5, 3),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "credentials", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "run", "mountPath": "/run/mysqld"},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
        ],
    }
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": db.storage_size}},
    }
    if db.storage_class:
        claim["storageClassName"] = db.storage_class
    policy = "Delete" if db.delete_data_on_uninstall else "Retain"
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "serviceName": DATABASE_HEADLESS,
            "selector": {"matchLabels": selector_labels(DATABASE)},
            "updateStrategy": {"type": "RollingUpdate"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": policy, "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": dict(meta["labels"])},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(MARIADB_UID),
                    "containers": [container],
                    "volumes": [
                        credentials_volume(spec, "credentials"),
                        {"name": "run", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": dict(meta["labels"])},
                    "spec": claim,
                }
            ],
        },
    }


def _service(owner: Owner, name: str, *, headless: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "selector": selector_labels(DATABASE),
        "ports": [{"name": "mysql", "port": DATABASE_PORT, "targetPort": "mysql", "protocol": "TCP"}],
    }
    if headless:
        # Stable per-pod DNS for the StatefulSet; resolvable before the pod is ready (it initialises first).
        body = {"clusterIP": "None", "publishNotReadyAddresses": True, **body}
    else:
        body = {"type": "ClusterIP", **body}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(owner, name, DATABASE, "database"),
        "spec": body,
    }


def headless_service(owner: Owner) -> dict[str, Any]:
    return _service(owner, DATABASE_HEADLESS, headless=True)


def client_service(owner: Owner) -> dict[str, Any]:
    """What the controller and backups connect to (`DB_HOST`)."""
    return _service(owner, DATABASE, headless=False)
