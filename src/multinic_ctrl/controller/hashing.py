"""The spec hash that decides whether OpenStack must be asked again.

It covers everything that changes the answer: VM names, subnet, and the resolved credentials including the
password - so rotating a password in a Secret triggers a reconcile. Because a password is part of the input,
the hash is keyed (HMAC-SHA256): the stored value cannot be brute-forced offline from a database dump. The key
comes from `MULTINIC_HASH_KEY_FILE`/`MULTINIC_HASH_KEY` when set; otherwise it is derived from the database
password (a secret the controller always has and a database dump does not contain), so the key is stable
across restarts and a restart does not re-sync every config (which manual and webhook modes must avoid).
Only with neither (a password-less local database) is it random per process: one re-sync per config then.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict
from pathlib import Path

from multinic_ctrl.controller.spec import ConfigSpec
from multinic_ctrl.openstack import Credentials


def load_hash_key(env: dict[str, str] | None = None, *, fallback_secret: str = "") -> bytes:
    env = dict(os.environ) if env is None else env
    path = env.get("MULTINIC_HASH_KEY_FILE")
    if path:
        return Path(path).read_bytes().strip()
    if env.get("MULTINIC_HASH_KEY"):
        return env["MULTINIC_HASH_KEY"].encode()
    if fallback_secret:
        # Domain-separated derivation: the key is never the secret itself.
        return hmac.new(b"multinic-spec-hash-key-v1", fallback_secret.encode(), hashlib.sha256).digest()
    return secrets.token_bytes(32)


def spec_hash(spec: ConfigSpec, credentials: Credentials, key: bytes) -> str:
    document = {
        "vmNames": list(spec.vm_names),
        "subnetName": spec.subnet_name,
        "credentials": asdict(credentials),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()
