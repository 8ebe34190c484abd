"""The spec hash that decides whether OpenStack must be asked again.

Invariants:
- It changes whenever the answer can change: VM names, subnet, every credential field, and the password.
- Nothing stored in the database helps anyone learn a password. The hash sits in `cr_state`, which node agents
  (often sharing the database user) can read; a hash that covered the password, even keyed with a key derived
  from the database password, lets such a reader test password guesses offline. So the password itself is
  never an input. What stands in for it is not secret:
  - a password from a Secret is represented by that Secret's `uid` and `resourceVersion` (any write to the
    Secret moves the resourceVersion, so a rotation is seen; recreating it moves the uid);
  - an inline password (in the config's own spec) is represented by an HMAC keyed with the config's `uid`.
    The uid is not in the database; whoever can read it can read the config, and with it the password, so the
    HMAC gives a database reader nothing to test guesses against.
- It is stable across restarts and replicas (no per-process key), so an unchanged spec and Secret makes no
  OpenStack call after a restart - which `manual` and `webhook` modes depend on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from multinic_ctrl.controller.spec import ConfigSpec
from multinic_ctrl.openstack import Credentials


@dataclass(frozen=True, order=True)
class SecretVersion:
    """Which version of a referenced Secret a reconcile read: its identity, never its content."""

    name: str
    uid: str
    resource_version: str


def spec_hash(
    spec: ConfigSpec, credentials: Credentials, *, config_uid: str, secrets: Iterable[SecretVersion] = ()
) -> str:
    """SHA-256 over the non-secret inputs of a reconcile (see the module docstring for the password)."""
    fields = asdict(credentials)
    del fields["password"]
    inline = spec.credentials.get("password")
    if inline is not None and not config_uid:
        raise ValueError("an inline password needs the config's uid to be fingerprinted")
    document = {
        "vmNames": list(spec.vm_names),
        "subnetName": spec.subnet_name,
        "credentials": fields,
        "secrets": [[s.name, s.uid, s.resource_version] for s in sorted(set(secrets))],
        "inlinePassword": (
            hmac.new(config_uid.encode(), inline.encode(), hashlib.sha256).hexdigest() if inline is not None else None
        ),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()
