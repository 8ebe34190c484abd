"""OpenstackConfig spec parsing and credential resolution (pure; no I/O).

The apiserver's schema already rejects most malformed objects; this module re-checks what the controller
relies on, because a CRD installed from an older manifest (or a direct etcd write) must not crash workers.
Credentials may come from three places, resolved per field in this order: inline `spec.credentials`, the
`passwordSecretRef` key for the password, and a whole Secret named by `spec.credentialsSecretRef` whose keys
are the same field names (`authURL`, `username`, `password`, ...).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multinic_ctrl.openstack import Credentials

MAX_VMS = 1000
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_MAX_NAME = 253
_CREDENTIAL_FIELDS = {
    "authURL": "auth_url",
    "username": "username",
    "projectID": "project_id",
    "projectName": "project_name",
    "domainName": "user_domain_name",
    "projectDomainName": "project_domain_name",
    "networkEndpoint": "network_endpoint",
    "computeEndpoint": "compute_endpoint",
    "region": "region",
    "interface": "interface",
}


class SpecError(ValueError):
    """The spec cannot be acted on; the message says which field to fix (shown in status)."""


class CredentialsError(ValueError):
    """Credentials cannot be resolved (missing Secret or key); never carries a secret value."""


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class ConfigSpec:
    vm_names: tuple[str, ...]
    subnet_name: str
    credentials: Mapping[str, str] = field(repr=False)  # inline fields, may include a password
    password_ref: SecretKeyRef | None = None
    credentials_secret: str | None = None

    def secret_names(self) -> frozenset[str]:
        names = {self.credentials_secret} if self.credentials_secret else set()
        if self.password_ref:
            names.add(self.password_ref.name)
        return frozenset(names)


def _string(value: Any, path: str, *, required: bool = False) -> str:
    if value is not None and not isinstance(value, str):
        raise SpecError(f"{path} must be a string")
    if value is None or not value.strip():
        if required:
            raise SpecError(f"{path} is required" + (" (it is blank)" if value else ""))
        return ""
    return value


def _shown(value: str) -> str:
    """The value for a message: quoted, and cut so an attacker-sized string cannot flood status or events."""
    return repr(value if len(value) <= 64 else value[:64] + "...")


def _secret_name(value: Any, path: str) -> str:
    """A Secret name as the apiserver defines it (DNS-1123 subdomain, at most 253 characters).

    The CRD schema checks the same; this check also covers objects stored before the schema had it. A name is
    later a URL path segment, so anything else (`../../kube-system/secrets/x`) must never get that far.
    """
    name = _string(value, path, required=True)
    if len(name) > _MAX_NAME or not _DNS1123_SUBDOMAIN.fullmatch(name):
        raise SpecError(
            f"{path} {_shown(name)} is not a valid Secret name "
            "(lower-case letters, digits, '-' and '.', at most 253 characters)"
        )
    return name


def _secret_key(value: Any, path: str) -> str:
    key = _string(value, path) or "password"
    if len(key) > _MAX_NAME or not _SECRET_KEY.fullmatch(key) or key in (".", ".."):
        raise SpecError(f"{path} {_shown(key)} is not a valid Secret key (letters, digits, '-', '_' and '.')")
    return key


def parse_spec(spec: Any) -> ConfigSpec:
    if not isinstance(spec, Mapping):
        raise SpecError("spec is missing")
    raw_names = spec.get("vmNames")
    if not isinstance(raw_names, list) or not raw_names:
        raise SpecError("spec.vmNames must list at least one VM name")
    if len(raw_names) > MAX_VMS:
        raise SpecError(f"spec.vmNames lists {len(raw_names)} VMs; at most {MAX_VMS} are supported")
    names: list[str] = []
    for i, name in enumerate(raw_names):
        text = _string(name, f"spec.vmNames[{i}]", required=True).strip()
        if text in names:
            raise SpecError(f"spec.vmNames lists {text!r} twice")
        names.append(text)
    subnet = _string(spec.get("subnetName"), "spec.subnetName", required=True).strip()
    creds = spec.get("credentials") or {}
    if not isinstance(creds, Mapping):
        raise SpecError("spec.credentials must be an object")
    inline = {k: _string(creds.get(k), f"spec.credentials.{k}") for k in [*_CREDENTIAL_FIELDS, "password"]}
    inline = {k: v for k, v in inline.items() if v}
    ref = creds.get("passwordSecretRef")
    password_ref = None
    if ref:
        if not isinstance(ref, Mapping):
            raise SpecError("spec.credentials.passwordSecretRef must be an object")
        password_ref = SecretKeyRef(
            _secret_name(ref.get("name"), "spec.credentials.passwordSecretRef.name"),
            _secret_key(ref.get("key"), "spec.credentials.passwordSecretRef.key"),
        )
    whole = spec.get("credentialsSecretRef")
    secret_name = None
    if whole:
        if not isinstance(whole, Mapping):
            raise SpecError("spec.credentialsSecretRef must be an object")
        secret_name = _secret_name(whole.get("name"), "spec.credentialsSecretRef.name")
    if "password" in inline and password_ref:
        raise SpecError("give either spec.credentials.password or spec.credentials.passwordSecretRef, not both")
    if not secret_name:
        for required in ("authURL", "username"):
            if required not in inline:
                raise SpecError(f"spec.credentials.{required} is required (or use spec.credentialsSecretRef)")
        if "password" not in inline and not password_ref:
            raise SpecError("a password is required: spec.credentials.passwordSecretRef or spec.credentials.password")
    return ConfigSpec(tuple(names), subnet, inline, password_ref, secret_name)


def resolve_credentials(spec: ConfigSpec, secrets: Mapping[str, Mapping[str, str]]) -> Credentials:
    """Build client credentials; `secrets` maps Secret name → decoded data for the referenced Secrets."""
    merged: dict[str, str] = {}
    if spec.credentials_secret:
        data = secrets.get(spec.credentials_secret)
        if data is None:
            raise CredentialsError(f"Secret '{spec.credentials_secret}' (spec.credentialsSecretRef) not found")
        for key in [*_CREDENTIAL_FIELDS, "password"]:
            value = _value(spec.credentials_secret, data, key, required=False)
            if value is not None:
                merged[key] = value
    merged.update(spec.credentials)
    if spec.password_ref:
        data = secrets.get(spec.password_ref.name)
        if data is None:
            raise CredentialsError(f"Secret '{spec.password_ref.name}' (passwordSecretRef) not found")
        merged["password"] = str(_value(spec.password_ref.name, data, spec.password_ref.key, required=True))
    for required in ("authURL", "username", "password"):
        if not merged.get(required):
            where = f" in Secret '{spec.credentials_secret}'" if spec.credentials_secret else ""
            raise CredentialsError(f"credentials lack '{required}'{where}")
    kwargs: dict[str, Any] = {_CREDENTIAL_FIELDS[k]: v for k, v in merged.items() if k in _CREDENTIAL_FIELDS}
    if "domainName" in merged and "projectDomainName" not in merged and "projectID" not in merged:
        kwargs["project_domain_name"] = merged["domainName"]
    return Credentials(password=merged["password"], **kwargs)


class SecretData(dict[str, str]):
    """A Secret's text values; `unreadable` names the keys whose values are not base64 of UTF-8 text.

    Secrets often hold binary values (TLS keys, keytabs) next to the ones we read: those must not break a
    reconcile, and a key we need that is not text must be reported as such, not as missing.
    """

    unreadable: frozenset[str] = frozenset()


def decode_secret(secret: Mapping[str, Any]) -> SecretData:
    """A Secret object's data, base64-decoded (stringData too, for objects not yet round-tripped)."""
    data = SecretData()
    unreadable = set()
    for key, value in (secret.get("data") or {}).items():
        try:
            data[key] = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, TypeError):  # binascii.Error and UnicodeDecodeError are ValueErrors
            unreadable.add(key)
    for key, value in (secret.get("stringData") or {}).items():
        if isinstance(value, str):
            data[key] = value
            unreadable.discard(key)
    data.unreadable = frozenset(unreadable)
    return data


def _value(secret: str, data: Mapping[str, str], key: str, *, required: bool) -> str | None:
    if key in data:
        return data[key]
    if key in getattr(data, "unreadable", ()):
        raise CredentialsError(f"Secret '{secret}' key '{key}' is not text (it must be UTF-8)")
    if required:
        raise CredentialsError(f"Secret '{secret}' has no key '{key}'")
    return None
