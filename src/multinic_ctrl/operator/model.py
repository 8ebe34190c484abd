"""The parsed MultiNicOperator spec: frozen, typed, defaults filled in (see `spec.parse_spec`).

Invariant: inline passwords are `SecretValue`s and `EnvVar.value` is left out of the repr, so printing or logging a
parsed spec never shows a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .validation import SecretValue

DEFAULT_CONTROLLER_IMAGE = "multinic:v1alpha1"
DEFAULT_DATABASE_IMAGE = "mariadb:10.11"
DEFAULT_PROBE_PORT = 8082


@dataclass(frozen=True)
class Resources:
    cpu: str
    memory: str


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class EnvVar:
    """One core/v1 EnvVar: a literal `value` (escaped against `$(VAR)` expansion when built) or a `value_from`."""

    name: str
    value: str | None = field(default=None, repr=False)
    value_from: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ControllerSpec:
    image: str = DEFAULT_CONTROLLER_IMAGE
    image_pull_policy: str | None = None
    replicas: int = 2
    replicas_managed_externally: bool = False  # an autoscaler owns .spec.replicas: never set nor corrected
    resources: Resources = Resources("200m", "256Mi")
    probe_port: int = DEFAULT_PROBE_PORT
    probe_path: str = "/healthz"
    env: tuple[EnvVar, ...] = ()


@dataclass(frozen=True)
class PasswordSource:
    """Where a database password comes from: a user's Secret, an inline value, or (neither) generated."""

    inline: SecretValue | None = None
    ref: SecretKeyRef | None = None

    @property
    def operator_managed(self) -> bool:
        """Stored in the operator's credentials Secret (inline or generated), not in a user's Secret."""
        return self.ref is None


@dataclass(frozen=True)
class Credentials:
    database: str = "multinic"
    user: str = "multinic"
    root_password: PasswordSource = PasswordSource()
    password: PasswordSource = PasswordSource()


@dataclass(frozen=True)
class BackupSpec:
    schedule: str = "0 2 * * *"
    time_zone: str | None = None
    keep_last: int | None = 7
    max_age_minutes: int | None = None
    claim_name: str | None = None  # an existing PVC; None: the operator's own backup PVC
    storage_size: str = "20Gi"
    storage_class: str | None = None
    image: str | None = None  # None: the database image (it ships mariadb-dump, bash and gzip)
    active_deadline_seconds: int = 3600
    backoff_limit: int = 1
    resources: Resources = Resources("100m", "256Mi")


@dataclass(frozen=True)
class DatabaseSpec:
    enabled: bool = True
    image: str = DEFAULT_DATABASE_IMAGE
    storage_size: str = "20Gi"
    storage_class: str | None = None
    resources: Resources = Resources("500m", "512Mi")
    credentials: Credentials = Credentials()
    backup: BackupSpec | None = None
    delete_data_on_uninstall: bool = False


@dataclass(frozen=True)
class OpenStackSpec:
    identity_endpoint: str | None = None
    network_endpoint: str | None = None
    compute_endpoint: str | None = None


@dataclass(frozen=True)
class ProtectionSpec:
    enable_mutation_prevention: bool = True
    enable_auto_recovery: bool = True
    allowed_operations: tuple[str, ...] = ("get", "list", "watch")


@dataclass(frozen=True)
class TriggerSpec:
    mode: str = "immediate"
    interval: str | None = None
    schedule: str | None = None
    immediate_on_cr_change: bool = False
    timezone: str | None = None


@dataclass(frozen=True)
class OperatorSpec:
    controller: ControllerSpec = ControllerSpec()
    database: DatabaseSpec = DatabaseSpec()
    openstack: OpenStackSpec = OpenStackSpec()
    protection: ProtectionSpec = ProtectionSpec()
    reconcile_trigger: TriggerSpec = TriggerSpec()
    inline_secret_fields: tuple[str, ...] = ()  # field paths holding inline secrets (for a status warning)
