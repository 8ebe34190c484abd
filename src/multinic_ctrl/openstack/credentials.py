"""Credentials for one OpenStack identity, and their secret-free cache key."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass, field

# Per-process random key: a cache key derived from the password cannot be brute-forced offline from logs or
# memory dumps of another process, and it changes on every restart (the token cache is per process anyway).
_CACHE_KEY_SECRET = secrets.token_bytes(32)


@dataclass(frozen=True)
class Credentials:
    """One credential set as an OpenstackConfig spells it.

    `password` is excluded from `repr` so that logging the object (or an exception carrying it) never leaks
    it. Empty endpoint strings mean "use the service catalog" (see `endpoints.py`).
    """

    auth_url: str
    username: str
    password: str = field(repr=False)
    user_domain_name: str = "Default"
    project_id: str | None = None
    project_name: str | None = None
    project_domain_name: str | None = None
    network_endpoint: str | None = None
    compute_endpoint: str | None = None
    region: str | None = None
    interface: str = "public"

    def cache_key(self) -> str:
        """A stable per-process key for this credential set that never contains the plain password.

        HMAC-SHA256 (keyed with a random per-process secret) over every field: two specs that differ only in
        the password get different tokens, and the key is safe to log or use as a dict key.
        """
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(_CACHE_KEY_SECRET, canonical, hashlib.sha256).hexdigest()

    def describe(self) -> str:
        """Who we authenticate as, for messages: user, domain and project scope (no secrets)."""
        text = f"user '{self.username}' in domain '{self.user_domain_name}'"
        if self.project_id:
            text += f" (project ID '{self.project_id}')"
        elif self.project_name:
            text += f" (project '{self.project_name}' in domain '{self.project_domain_name or 'Default'}')"
        return text
