"""Keeping the database passwords recoverable: the credentials Secret, its recovery copy, and when to refuse (pure).

Why a copy: MariaDB reads its passwords only when it initialises an empty data directory. If the credentials Secret
is deleted (by hand, by a careless `kubectl delete -f`, by a namespace-scoped cleanup script) and the operator
generated new passwords, the controller and the backups would be locked out of the data that is still on the
volume. So the operator keeps a second Secret, `multinic-mariadb-credentials-recovery`, that only it writes: a
copy of the stored passwords, carrying the protection labels (issue 13's webhook denies anyone else editing or
deleting it), with no owner reference unless `deleteDataOnUninstall`. The alternative - refusing and asking a
human - is kept for the one case where no copy survives (below). A copy in the operator's own namespace was
rejected: it would make the operator's identity the only reader of every installation's passwords across
namespaces and need Secret write rights there, and a namespace deletion removes the data volume anyway.

Invariants:

* **stored values win, per key** - credentials Secret > recovery copy > inline spec value > freshly generated;
  a key present in either Secret is never regenerated, and the Secret is created only when absent (never
  re-applied over existing data); a key missing from an existing Secret is added, nothing is overwritten;
* **the copy follows the Secret** - whatever the pods use (the credentials Secret) is what the copy holds, so
  restoring from it restores what MariaDB was initialised with, as far as anyone can know;
* **refuse rather than lock out** - a password that would have to be generated while the database volume
  already exists cannot match the data: the plan refuses (`refused` says what to do) and nothing is written;
* **no value in any message** - messages name Secrets and keys only.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .credentials import CredentialValues, Rng, credential_values, managed_keys
from .names import CREDENTIALS_SECRET, DATABASE, Owner, object_meta
from .spec import OperatorSpec

RECOVERY_SECRET = f"{CREDENTIALS_SECRET}-recovery"
DATA_CLAIM = f"data-{DATABASE}-0"  # the StatefulSet's first volume claim: its existence means "data exists"


@dataclass(frozen=True)
class CredentialsPlan:
    """What to write so both Secrets hold the passwords (nothing when `refused`)."""

    values: CredentialValues | None = field(default=None, repr=False)
    create_secret: bool = False  # the credentials Secret is absent: create it (POST, never apply)
    add_keys: tuple[str, ...] = ()  # the credentials Secret exists but lacks these keys: add them only
    write_recovery: bool = False  # the recovery copy is absent or differs from the credentials Secret
    restored: tuple[str, ...] = ()  # keys the recreated credentials Secret takes from the recovery copy
    refused: str | None = None

    @property
    def needs_secret(self) -> bool:
        return self.values is not None


def plan_credentials(
    spec: OperatorSpec,
    stored: Mapping[str, str] | None,
    recovery: Mapping[str, str] | None,
    *,
    data_exists: bool,
    rng: Rng = secrets.token_bytes,
) -> CredentialsPlan:
    """`stored`/`recovery`: the decoded data of the two Secrets (None: absent)."""
    keys = managed_keys(spec)
    if not keys:
        return CredentialsPlan()
    merged = {k: v for k, v in (recovery or {}).items() if k in keys and v}
    merged |= {k: v for k, v in (stored or {}).items() if k in keys and v}
    values = credential_values(spec, merged, rng)
    if values.generated and data_exists:
        missing = ", ".join(values.generated)
        return CredentialsPlan(
            refused=(
                f"Secrets {CREDENTIALS_SECRET} and {RECOVERY_SECRET} lack {missing} while the database volume "
                f"{DATA_CLAIM} exists: a new password would not match the data. Recreate {CREDENTIALS_SECRET} "
                f"with the original value (or set it inline / via a Secret reference), or delete {DATA_CLAIM} to "
                "start with an empty database"
            )
        )
    have = {k for k, v in (stored or {}).items() if k in keys and v}
    add = tuple(k for k in keys if stored is not None and k not in have)
    restored = tuple(k for k in keys if k not in have and k in (recovery or {}) and (recovery or {})[k])
    final = {k: values.values[k].reveal() for k in keys}
    current_copy = {k: v for k, v in (recovery or {}).items() if k in keys}
    return CredentialsPlan(
        values=values,
        create_secret=stored is None,
        add_keys=add,
        write_recovery=recovery is None or current_copy != final,
        restored=restored,
    )


def recovery_secret(spec: OperatorSpec, owner: Owner, secret: Mapping[str, Any]) -> dict[str, Any]:
    """The recovery copy of the credentials Secret `secret` (as built by `credentials.credentials_secret`)."""
    meta = object_meta(
        owner, RECOVERY_SECRET, DATABASE, "credentials-recovery", owned=spec.database.delete_data_on_uninstall
    )
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": dict(secret["data"])}
