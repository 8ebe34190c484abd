"""The backup CronJob and its PersistentVolumeClaim (pure).

Invariants:

* **one backup at a time, bounded in time** - `concurrencyPolicy: Forbid` and the Job's
  `activeDeadlineSeconds`: a hung dump is killed and counted as failed (see `backup_status`), and the next one
  waits for it rather than piling up;
* **history to report from** - successful and failed Job history is kept (3 each) so status can read the last
  runs; Jobs are never TTL-deleted behind the CronJob's back;
* **backups outlive the installation by default** - the operator's backup PVC has no owner reference unless
  `deleteDataOnUninstall` is true; a `claimName` PVC belongs to the user and is only mounted;
* **same pod hardening as the database** - PSS restricted, the app user's password as a file, the constant
  script from `backup_script` with every setting as an env var.
"""

from __future__ import annotations

from typing import Any

from .backup_script import SCRIPT
from .controller_objects import password_volume, resources
from .database_objects import MARIADB_UID
from .names import BACKUP, DATABASE, DATABASE_PORT, Owner, object_meta
from .podsecurity import container_security_context, pod_security_context
from .spec import BackupSpec, OperatorSpec

BACKUP_DIR = "/backups"
HISTORY = 3


def claim_name(backup: BackupSpec) -> str:
    return backup.claim_name or BACKUP


def persistent_volume_claim(spec: OperatorSpec, owner: Owner) -> dict[str, Any] | None:
    """The operator's backup PVC; None when backups are off or go to the user's own `claimName`."""
    backup = spec.database.backup
    if backup is None or backup.claim_name:
        return None
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": backup.storage_size}},
    }
    if backup.storage_class:
        claim["storageClassName"] = backup.storage_class
    meta = object_meta(owner, BACKUP, BACKUP, "backup", owned=spec.database.delete_data_on_uninstall)
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": claim}


def _env(spec: OperatorSpec, owner: Owner, backup: BackupSpec) -> list[dict[str, Any]]:
    creds = spec.database.credentials
    env = [
        {"name": "BACKUP_DIR", "value": BACKUP_DIR},
        {"name": "DB_HOST", "value": f"{DATABASE}.{owner.namespace}.svc"},
        {"name": "DB_PORT", "value": str(DATABASE_PORT)},
        {"name": "DB_USER", "value": creds.user},
        {"name": "DB_NAME", "value": creds.database},
        {"name": "DB_PASSWORD_FILE", "value": "/var/run/secrets/multinic/database/password"},
    ]
    if backup.keep_last is not None:
        env.append({"name": "RETENTION_KEEP_LAST", "value": str(backup.keep_last)})
    if backup.max_age_minutes is not None:
        env.append({"name": "RETENTION_MAX_AGE_MINUTES", "value": str(backup.max_age_minutes)})
    return env


def cronjob(spec: OperatorSpec, owner: Owner) -> dict[str, Any] | None:
    backup = spec.database.backup
    if backup is None:
        return None
    meta = object_meta(owner, BACKUP, BACKUP, "backup")
    pod_labels = dict(meta["labels"])
    container = {
        "name": "backup",
        "image": backup.image or spec.database.image,
        "command": ["/bin/bash", "-c", SCRIPT],
        "env": _env(spec, owner, backup),
        "resources": resources(backup.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "backups", "mountPath": BACKUP_DIR},
            {"name": "database-password", "mountPath": "/var/run/secrets/multinic/database", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
        ],
    }
    body: dict[str, Any] = {
        "schedule": backup.schedule,
        "concurrencyPolicy": "Forbid",
        "suspend": False,
        "successfulJobsHistoryLimit": HISTORY,
        "failedJobsHistoryLimit": HISTORY,
        "jobTemplate": {
            "metadata": {"labels": dict(pod_labels)},
            "spec": {
                "backoffLimit": backup.backoff_limit,
                "activeDeadlineSeconds": backup.active_deadline_seconds,
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": pod_security_context(MARIADB_UID),
                        "containers": [container],
                        "volumes": [
                            {"name": "backups", "persistentVolumeClaim": {"claimName": claim_name(backup)}},
                            password_volume(spec, "database-password"),
                            {"name": "tmp", "emptyDir": {}},
                        ],
                    },
                },
            },
        },
    }
    if backup.time_zone:
        body["timeZone"] = backup.time_zone
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": body}
