"""The database credentials Secret: which passwords the operator keeps, their values, and the Secret's shape (pure;
randomness is injected).

Invariants:

* **created once, never overwritten** - MariaDB reads its passwords only when it initialises an empty data
  directory, so a stored value always wins over a freshly generated one and over a (changed) inline value;
  `CredentialValues.differs_from_inline` says when the spec disagrees with what is stored, so status can say
  that the database keeps its original password;
* **cryptographic randomness** - generated passwords take 32 bytes from `secrets.token_bytes` (injectable for
  tests) and are URL-safe base64 (no quoting trouble in option files or shells);
* **the Secret is the only place a password is written** - inline spec passwords are copied into it and
  nowhere else; values travel as `SecretValue` and the Secret's `data` is the only place they are revealed;
* **kept on uninstall by default** - the Secret has no owner reference unless `deleteDataOnUninstall` is true
  (see `names.object_meta`), because a lost password locks everyone out of the retained data.

The reconciler must create this Secret only when it is absent (never apply it over an existing one); a key that
has to be *generated* while the data volume already exists means the original is lost - see `generated`.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .names import CREDENTIALS_SECRET, DATABASE, Owner, object_meta
from .spec import OperatorSpec, PasswordSource
from .validation import SecretValue

ROOT_PASSWORD_KEY = "root-password"  # noqa: S105 - a key name
PASSWORD_KEY = "password"  # noqa: S105 - a key name
Rng = Callable[[int], bytes]
PASSWORD_BYTES = 32


def generate_password(rng: Rng = secrets.token_bytes) -> SecretValue:
    return SecretValue(base64.urlsafe_b64encode(rng(PASSWORD_BYTES)).rstrip(b"=").decode("ascii"))


def _sources(spec: OperatorSpec) -> dict[str, PasswordSource]:
    creds = spec.database.credentials
    return {ROOT_PASSWORD_KEY: creds.root_password, PASSWORD_KEY: creds.password}


def managed_keys(spec: OperatorSpec) -> tuple[str, ...]:
    """Keys the operator's Secret holds (a password given as a user's Secret reference is not among them)."""
    if not spec.database.enabled:
        return ()
    return tuple(k for k, source in _sources(spec).items() if source.operator_managed)


@dataclass(frozen=True)
class CredentialValues:
    values: Mapping[str, SecretValue] = field(repr=False)
    generated: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    differs_from_inline: tuple[str, ...] = ()


def credential_values(
    spec: OperatorSpec, existing: Mapping[str, str] | None, rng: Rng = secrets.token_bytes
) -> CredentialValues:
    """Values for the managed keys: stored (from `existing`, the decoded Secret data) > inline > generated."""
    values: dict[str, SecretValue] = {}
    generated: list[str] = []
    kept: list[str] = []
    differs: list[str] = []
    sources = _sources(spec)
    for key in managed_keys(spec):
        inline = sources[key].inline
        stored = (existing or {}).get(key)
        if stored:
            values[key] = SecretValue(stored)
            kept.append(key)
            if inline is not None and inline != values[key]:
                differs.append(key)
        elif inline is not None:
            values[key] = inline
        else:
            values[key] = generate_password(rng)
            generated.append(key)
    return CredentialValues(values, tuple(generated), tuple(kept), tuple(differs))


def credentials_secret(spec: OperatorSpec, owner: Owner, values: CredentialValues) -> dict[str, Any] | None:
    """The operator's credentials Secret, or None when every password comes from the user's own Secrets."""
    keys = managed_keys(spec)
    if not keys:
        return None
    missing = [k for k in keys if k not in values.values]
    if missing:
        raise ValueError(f"no value for {', '.join(missing)}")
    meta = object_meta(owner, CREDENTIALS_SECRET, DATABASE, "database", owned=spec.database.delete_data_on_uninstall)
    data = {k: base64.b64encode(values.values[k].reveal().encode("utf-8")).decode("ascii") for k in keys}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": data}
