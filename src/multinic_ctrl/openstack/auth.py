"""Keystone v3 password authentication with a per-credential-set token cache.

- One cache entry per credential set, keyed by `Credentials.cache_key()` (a keyed hash, never the password).
- A token is reused until shortly before it expires. Expiry is measured on *our* monotonic clock from the
  token's lifetime (`expires_at - issued_at`), so a skewed Keystone clock cannot make us use expired tokens.
- Concurrent callers that miss the cache share one in-flight authentication (one POST, not N).
- `invalidate()` drops a token a service rejected with 401 so the next `get()` re-authenticates.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from .credentials import Credentials
from .endpoints import CatalogEndpoint, normalize_identity_url, parse_catalog
from .errors import AuthenticationError, OpenStackRequestError
from .http import HttpTransport, raise_for_status

log = structlog.get_logger(__name__)

SERVICE = "identity"
DEFAULT_REFRESH_MARGIN = 120.0
# One token per identity in use. Below the working set, eviction (earliest deadline first) removes tokens just
# before they are used again, and every observation of a cluster with more identities re-authenticates
# (measured: 1,000 projects at 256 entries - 822 Keystone calls per 1,000 observations). An entry is a token and
# its service catalog (a few KB).
_MAX_ENTRIES = 4096


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_at: datetime
    deadline: float  # monotonic time after which we stop using the token
    catalog: tuple[CatalogEndpoint, ...] = field(repr=False)
    project_id: str | None = None


def auth_body(creds: Credentials) -> dict[str, Any]:
    """The POST /v3/auth/tokens body: password method, user by name + domain, optional project scope."""
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": creds.username,
                        "domain": {"name": creds.user_domain_name},
                        "password": creds.password,
                    }
                },
            }
        }
    }
    if creds.project_id:
        body["auth"]["scope"] = {"project": {"id": creds.project_id}}
    elif creds.project_name:
        body["auth"]["scope"] = {
            "project": {
                "name": creds.project_name,
                "domain": {"name": creds.project_domain_name or "Default"},
            }
        }
    return body


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class TokenManager:
    def __init__(
        self,
        transport: HttpTransport,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._cache: dict[str, Token] = {}
        self._inflight: dict[str, asyncio.Task[Token]] = {}

    async def get(self, creds: Credentials) -> Token:
        key = creds.cache_key()
        cached = self._cache.get(key)
        if cached is not None and self._clock() < cached.deadline:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._authenticate(creds))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._finish, key))
        # shield: one waiter being cancelled must not cancel the authentication the others wait for.
        return await asyncio.shield(task)

    def _finish(self, key: str, task: asyncio.Task[Token]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled():
            return
        if task.exception() is None:
            self._store(key, task.result())

    def _store(self, key: str, token: Token) -> None:
        now = self._clock()
        for stale in [k for k, t in self._cache.items() if t.deadline <= now]:
            del self._cache[stale]
        if len(self._cache) >= _MAX_ENTRIES:
            del self._cache[min(self._cache, key=lambda k: self._cache[k].deadline)]
        self._cache[key] = token

    def cached(self, creds: Credentials) -> Token | None:
        """The valid token of `creds` if one is cached; never authenticates (callers that must not wait)."""
        token = self._cache.get(creds.cache_key())
        return token if token is not None and self._clock() < token.deadline else None

    def invalidate(self, creds: Credentials, token: Token) -> None:
        """Forget `token` (only if it is still the cached one: another caller may have refreshed it)."""
        key = creds.cache_key()
        if self._cache.get(key) is token:
            del self._cache[key]

    async def _authenticate(self, creds: Credentials) -> Token:
        url = normalize_identity_url(creds.auth_url) + "/auth/tokens"
        started = self._clock()
        resp = await self._transport.request(
            service=SERVICE,
            operation="authenticate",
            method="POST",
            url=url,
            json=auth_body(creds),
        )
        if resp.status == 401:
            log.warning(
                "Keystone rejected the credentials",
                user=creds.username,
                domain=creds.user_domain_name,
                project_id=creds.project_id,
            )
            raise AuthenticationError(
                f"Keystone rejected the credentials of user '{creds.username}' in domain "
                f"'{creds.user_domain_name}'" + _scope_hint(creds)
            )
        raise_for_status(resp, SERVICE, "authenticate")
        value = resp.headers.get("X-Subject-Token")
        token_body = resp.body.get("token") if isinstance(resp.body, dict) else None
        if not value or not isinstance(token_body, dict):
            raise OpenStackRequestError(
                SERVICE, "authenticate", resp.status, "response lacks X-Subject-Token header or token body"
            )
        expires_at = _parse_time(token_body.get("expires_at"))
        if expires_at is None:
            raise OpenStackRequestError(SERVICE, "authenticate", resp.status, "token has no valid expires_at")
        issued_at = _parse_time(token_body.get("issued_at"))
        if issued_at is not None:
            lifetime = (expires_at - issued_at).total_seconds()
        else:
            lifetime = (expires_at - datetime.now(expires_at.tzinfo)).total_seconds()
        margin = min(self._refresh_margin, max(lifetime, 0.0) * 0.1)
        project = token_body.get("project")
        token = Token(
            value=value,
            expires_at=expires_at,
            deadline=started + lifetime - margin,
            catalog=parse_catalog(token_body.get("catalog")),
            project_id=project.get("id") if isinstance(project, dict) else None,
        )
        log.info(
            "Keystone token issued",
            user=creds.username,
            domain=creds.user_domain_name,
            expires_at=expires_at.isoformat(),
        )
        return token


def _scope_hint(creds: Credentials) -> str:
    if creds.project_id:
        return f" for project ID '{creds.project_id}'"
    if creds.project_name:
        return f" for project '{creds.project_name}'"
    return ""
