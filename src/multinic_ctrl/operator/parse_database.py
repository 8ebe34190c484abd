"""Parsing `spec.database` (pure): MariaDB image, storage, credentials and backups.

Invariants: database and user names are SQL identifiers (the user never `root`); each password is a Secret
reference, an inline value (flagged by field path, never echoed) or absent (generated once by the operator); a
backup schedule is a CronJob schedule and its zone an IANA zone; backups require the operator-run database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import cron
from .model import DEFAULT_DATABASE_IMAGE, BackupSpec, Credentials, DatabaseSpec, PasswordSource
from .parse_controller import key_ref, resources
from .quantity import quantity
from .validation import (
    SQL_USER,
    SecretValue,
    boolean,
    dns_subdomain,
    duration_minutes,
    fail,
    image,
    integer,
    mapping,
    sql_identifier,
    string,
    timezone,
)


def _password(
    raw: Mapping[str, Any], path: str, inline_key: str, default_key: str, inline: list[str]
) -> PasswordSource:
    ref_key = f"{inline_key}SecretRef"
    if inline_key in raw and ref_key in raw:
        fail(path, f"give either {inline_key} or {ref_key}, not both")
    if ref_key in raw:
        return PasswordSource(ref=key_ref(raw[ref_key], f"{path}.{ref_key}", default_key=default_key))
    if inline_key not in raw:
        return PasswordSource()
    text = raw[inline_key]
    field_path = f"{path}.{inline_key}"
    if not isinstance(text, str) or not text:
        fail(field_path, "must be a non-empty string")
    if len(text) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in text):
        fail(field_path, "must be at most 256 characters without control characters")
    inline.append(field_path)
    return PasswordSource(inline=SecretValue(text))


def _credentials(value: Any, inline: list[str]) -> Credentials:
    path = "spec.database.credentials"
    keys = {"database", "user", "rootPassword", "rootPasswordSecretRef", "password", "passwordSecretRef"}
    raw = mapping(value, path, keys)
    user = sql_identifier(raw.get("user"), f"{path}.user", default="multinic", pattern=SQL_USER)
    if user.lower() == "root":
        fail(f"{path}.user", "must not be root (the controller and backups use their own account)")
    return Credentials(
        database=sql_identifier(raw.get("database"), f"{path}.database", default="multinic"),
        user=user,
        root_password=_password(raw, path, "rootPassword", "root-password", inline),
        password=_password(raw, path, "password", "password", inline),
    )


def _backup(value: Any, database_image: str, storage_size: str) -> BackupSpec | None:
    path = "spec.database.backup"
    keys = {"enabled", "schedule", "timeZone", "retention", "target", "image", "activeDeadlineSeconds"}
    keys |= {"backoffLimit", "resources"}
    raw = mapping(value, path, keys)
    if value is None or not boolean(raw.get("enabled"), f"{path}.enabled", default=True):
        return None
    schedule = string(raw.get("schedule"), f"{path}.schedule", default=BackupSpec.schedule, max_length=100)
    try:
        cron.check(schedule)
    except cron.CronError as exc:
        fail(f"{path}.schedule", str(exc))
    retention = mapping(raw.get("retention"), f"{path}.retention", {"keepLast", "maxAge"})
    keep_last = integer(retention.get("keepLast"), f"{path}.retention.keepLast", default=0, minimum=1, maximum=1000)
    max_age = duration_minutes(retention.get("maxAge"), f"{path}.retention.maxAge")
    target = mapping(raw.get("target"), f"{path}.target", {"claimName", "storageSize", "storageClassName"})
    claim = target.get("claimName")
    if claim is not None and ("storageSize" in target or "storageClassName" in target):
        fail(f"{path}.target", "give either claimName (an existing PVC) or storageSize/storageClassName, not both")
    storage_class = target.get("storageClassName")
    return BackupSpec(
        schedule=schedule,
        time_zone=timezone(raw.get("timeZone"), f"{path}.timeZone"),
        keep_last=keep_last or (None if max_age else BackupSpec.keep_last),
        max_age_minutes=max_age,
        claim_name=None if claim is None else dns_subdomain(claim, f"{path}.target.claimName"),
        storage_size=quantity(target.get("storageSize"), f"{path}.target.storageSize", "storage", default=storage_size),
        storage_class=None
        if storage_class is None
        else dns_subdomain(storage_class, f"{path}.target.storageClassName"),
        image=image(raw.get("image"), f"{path}.image", default=database_image),
        active_deadline_seconds=integer(
            raw.get("activeDeadlineSeconds"), f"{path}.activeDeadlineSeconds", default=3600, minimum=60, maximum=86400
        ),
        backoff_limit=integer(raw.get("backoffLimit"), f"{path}.backoffLimit", default=1, minimum=0, maximum=6),
        resources=resources(raw.get("resources"), f"{path}.resources", BackupSpec.resources),
    )


def parse_database(value: Any, inline: list[str]) -> DatabaseSpec:
    path = "spec.database"
    keys = {"enabled", "image", "storageSize", "storageClassName", "resources", "credentials", "backup"}
    raw = mapping(value, path, keys | {"deleteDataOnUninstall"})
    enabled = boolean(raw.get("enabled"), f"{path}.enabled", default=True)
    db_image = image(raw.get("image"), f"{path}.image", default=DEFAULT_DATABASE_IMAGE)
    storage_size = quantity(raw.get("storageSize"), f"{path}.storageSize", "storage", default="20Gi")
    storage_class = raw.get("storageClassName")
    backup = _backup(raw.get("backup"), db_image, storage_size)
    if backup and not enabled:
        fail(f"{path}.backup", "backups need the operator-run database (spec.database.enabled: true)")
    return DatabaseSpec(
        enabled=enabled,
        image=db_image,
        storage_size=storage_size,
        storage_class=None if storage_class is None else dns_subdomain(storage_class, f"{path}.storageClassName"),
        resources=resources(raw.get("resources"), f"{path}.resources", DatabaseSpec.resources),
        credentials=_credentials(raw.get("credentials"), inline),
        backup=backup,
        delete_data_on_uninstall=boolean(
            raw.get("deleteDataOnUninstall"), f"{path}.deleteDataOnUninstall", default=False
        ),
    )
