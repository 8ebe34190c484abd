"""The controller Deployment and its Service (pure).

Invariants:

* **the operator's settings are not negotiable** - `TRIGGER_FROM=<ns>/<name>` (this MultiNicOperator's
  `reconcileTrigger` drives the controller), `LEADER_ELECT=true` with the Lease in the installation's namespace,
  `PROBE_PORT`, and for an operator-run database the `DB_*` settings come first and cannot be overridden (the
  spec parser refuses user env with those names);
* **the database password is a file** - `DB_PASSWORD_FILE` points at a read-only Secret volume, never an env
  value, so it is not visible in the pod spec or `kubectl describe`;
* **user env is literal** - every `$` is doubled, so Kubernetes' `$(VAR)` expansion cannot splice other
  variables into a value; `enableServiceLinks: false`, so a Service called `db` cannot inject `DB_PORT`;
* **PSS restricted** - see `podsecurity`.
"""

from __future__ import annotations

from typing import Any

from .names import CONTROLLER, CREDENTIALS_SECRET, DATABASE, DATABASE_PORT, Owner, object_meta, selector_labels
from .podsecurity import container_security_context, pod_security_context
from .spec import EnvVar, OperatorSpec, Resources

CONTROLLER_UID = 65532  # the image's user (Containerfile)
PASSWORD_DIR = "/var/run/secrets/multinic/database"  # noqa: S105 - a path
PASSWORD_FILE = f"{PASSWORD_DIR}/password"
SECRET_FILE_MODE = 0o440  # owner root, group fsGroup: readable by the non-root user only through its group
PORT_NAME = "http"


def resources(res: Resources) -> dict[str, Any]:
    """Requests = limits: a predictable (Guaranteed) pod."""
    both = {"cpu": res.cpu, "memory": res.memory}
    return {"requests": dict(both), "limits": dict(both)}


def _literal(value: str) -> str:
    return value.replace("$", "$$")


def env_var(var: EnvVar) -> dict[str, Any]:
    if var.value_from is not None:
        return {"name": var.name, "valueFrom": {k: dict(v) for k, v in var.value_from.items()}}
    if not var.value:
        return {"name": var.name}  # an empty value is dropped by the apiserver; omit it to compare cleanly
    return {"name": var.name, "value": _literal(var.value)}


def _operator_env(spec: OperatorSpec, owner: Owner) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "TRIGGER_FROM", "value": owner.trigger_from},
        {"name": "LEADER_ELECT", "value": "true"},
        {"name": "LEADER_ELECTION_NAMESPACE", "value": owner.namespace},
        {"name": "PROBE_PORT", "value": str(spec.controller.probe_port)},
    ]
    if spec.database.enabled:
        creds = spec.database.credentials
        env += [
            {"name": "DB_HOST", "value": f"{DATABASE}.{owner.namespace}.svc"},
            {"name": "DB_PORT", "value": str(DATABASE_PORT)},
            {"name": "DB_USER", "value": creds.user},
            {"name": "DB_NAME", "value": creds.database},
            {"name": "DB_PASSWORD_FILE", "value": PASSWORD_FILE},
        ]
    return env


def password_volume(spec: OperatorSpec, name: str) -> dict[str, Any]:
    """A Secret volume holding the application user's password as the file `password`."""
    ref = spec.database.credentials.password.ref
    secret, key = (ref.name, ref.key) if ref else (CREDENTIALS_SECRET, "password")
    return {
        "name": name,
        "secret": {"secretName": secret, "items": [{"key": key, "path": "password"}], "defaultMode": SECRET_FILE_MODE},
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def deployment(spec: OperatorSpec, owner: Owner, service_account: str) -> dict[str, Any]:
    ctl = spec.controller
    container: dict[str, Any] = {
        "name": "controller",
        "image": ctl.image,
        "args": ["run"],
        "ports": [{"name": PORT_NAME, "containerPort": ctl.probe_port, "protocol": "TCP"}],
        "env": _operator_env(spec, owner) + [env_var(v) for v in ctl.env],
        "resources": resources(ctl.resources),
        "livenessProbe": _probe(ctl.probe_path, 10, 3),
        "readinessProbe": _probe("/readyz", 5, 3),
        "startupProbe": _probe(ctl.probe_path, 5, 60),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - a private emptyDir
    }
    if ctl.image_pull_policy:
        container["imagePullPolicy"] = ctl.image_pull_policy
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    if spec.database.enabled:
        container["volumeMounts"].append({"name": "database-password", "mountPath": PASSWORD_DIR, "readOnly": True})
        volumes.append(password_volume(spec, "database-password"))
    meta = object_meta(owner, CONTROLLER, CONTROLLER, "controller")
    body: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(CONTROLLER)},
        "template": {
            "metadata": {"labels": dict(meta["labels"])},
            "spec": {
                "serviceAccountName": service_account,
                "automountServiceAccountToken": True,
                "enableServiceLinks": False,
                "securityContext": pod_security_context(CONTROLLER_UID),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if not ctl.replicas_managed_externally:
        body = {"replicas": ctl.replicas, **body}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": body}


def service(spec: OperatorSpec, owner: Owner) -> dict[str, Any]:
    """Probes, /metrics and POST /trigger (webhook mode) share the probe port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(owner, CONTROLLER, CONTROLLER, "controller"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(CONTROLLER),
            "ports": [
                {"name": PORT_NAME, "port": spec.controller.probe_port, "targetPort": PORT_NAME, "protocol": "TCP"}
            ],
        },
    }
