"""Where credentials may be sent: the cluster admin's allow-list of OpenStack endpoints.

Invariants:
- A config author chooses `authURL` and the endpoint overrides, so without a limit they can make the controller
  send a password (from a Secret they may not be able to read themselves) and its requests to any address,
  cluster-internal ones included. With `OPENSTACK_ALLOWED_URLS` set, every endpoint - the Keystone URL, the
  overrides and the endpoints the service catalog names - must match a pattern *before* any request to it.
- Matching is structural, never a string prefix or glob over the whole URL: `https://keystone.example.com`
  must not admit `https://keystone.example.com.evil.net` or `https://keystone.example.com@evil.net`.
- Plain `http://` is allowed by default (labs, the seed's examples) but reported as insecure unless the admin
  allowed that endpoint with an explicit `http://` pattern.

Pattern syntax (comma-separated): `SCHEME://HOST[:PORT][/PATH]`. SCHEME is `https` or `http`; HOST is a
name or IP literal (IPv6 in brackets), `*.example.com` for any subdomain of example.com, or `*` for any host;
no PORT admits any port; PATH is a prefix matched on whole segments (`/identity` admits `/identity/v3`, not
`/identity-evil`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigurationError


class EndpointNotAllowed(ConfigurationError):
    """An endpoint outside `OPENSTACK_ALLOWED_URLS`: refused before any request is sent to it."""


class InvalidPattern(ValueError):
    """A malformed `OPENSTACK_ALLOWED_URLS` entry (a settings error: the process refuses to start)."""


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int | None
    path: str


def _host(raw: str | None) -> str:
    host = (raw or "").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))  # canonical form: 127.000.0.1 and ::0001 are not new names
    except ValueError:
        return host


def _split(url: str) -> _Url:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url[:100]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("URLs with user information are not allowed")
    port = parts.port  # raises ValueError for a bad port
    return _Url(parts.scheme, _host(parts.hostname), port, parts.path.rstrip("/"))


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


@dataclass(frozen=True)
class UrlPattern:
    scheme: str
    host: str  # "*", "*.suffix" or an exact host
    port: int | None
    path: str

    @classmethod
    def parse(cls, text: str) -> UrlPattern:
        raw = text.strip()
        scheme, sep, rest = raw.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            raise InvalidPattern(f"{raw!r}: expected https://HOST[:PORT][/PATH] or http://...")
        authority, slash, path = rest.partition("/")
        if any(c in raw for c in "@?# ") or not authority:
            raise InvalidPattern(f"{raw!r}: a pattern is a scheme, a host, an optional port and path")
        if authority.startswith("["):
            host_part, _, after = authority[1:].partition("]")
            if after and not after.startswith(":"):
                raise InvalidPattern(f"{raw!r}: bad IPv6 literal")
            port_part = after[1:]
        else:
            host_part, _, port_part = authority.partition(":")
        port = None
        if port_part:
            if not port_part.isdigit() or not 0 < int(port_part) < 65536:
                raise InvalidPattern(f"{raw!r}: bad port {port_part!r}")
            port = int(port_part)
        if host_part == "*":
            host = "*"
        elif host_part.startswith("*."):
            host = "*." + _host(host_part[2:])
        else:
            host = _host(host_part)
        if host != "*" and (not host.removeprefix("*.") or "*" in host.removeprefix("*.")):
            raise InvalidPattern(f"{raw!r}: '*' is allowed only as the whole host or as its first label '*.'")
        return cls(scheme.lower(), host, port, ("/" + path).rstrip("/") if slash else "")

    def matches(self, url: _Url) -> bool:
        if url.scheme != self.scheme:
            return False
        if self.host == "*":
            pass
        elif self.host.startswith("*."):
            if not url.host.endswith(self.host[1:]) or url.host == self.host[2:]:
                return False
        elif url.host != self.host:
            return False
        if self.port is not None and (url.port or _default_port(url.scheme)) != self.port:
            return False
        return not self.path or url.path == self.path or url.path.startswith(self.path + "/")


@dataclass(frozen=True)
class EndpointPolicy:
    """The allow-list; empty means "any endpoint" (the default, for compatibility with existing installs)."""

    patterns: tuple[UrlPattern, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> EndpointPolicy:
        entries = [e for e in (text or "").split(",") if e.strip()]
        return cls(tuple(UrlPattern.parse(e) for e in entries))

    @property
    def restricted(self) -> bool:
        return bool(self.patterns)

    def check(self, url: str, what: str) -> None:
        """Raise `EndpointNotAllowed` unless `url` may receive requests (and so credentials or tokens)."""
        try:
            parsed = _split(url)
        except ValueError as exc:
            raise EndpointNotAllowed(f"{what} is not a usable endpoint: {exc}") from None
        if self.patterns and not any(p.matches(parsed) for p in self.patterns):
            raise EndpointNotAllowed(
                f"{what} {_shown(url)} is not in the cluster's allow-list of OpenStack endpoints "
                "(OPENSTACK_ALLOWED_URLS); ask the cluster admin, or use an allowed endpoint"
            )

    def plaintext(self, urls: Iterable[str]) -> list[str]:
        """The `http://` endpoints among `urls` that no explicit `http://` pattern allows: worth a warning."""
        found = []
        for url in urls:
            try:
                parsed = _split(url)
            except ValueError:
                continue
            if parsed.scheme == "http" and not any(p.matches(parsed) for p in self.patterns):
                found.append(f"http://{parsed.host}" + (f":{parsed.port}" if parsed.port else ""))
        return sorted(set(found))


def _shown(url: str) -> str:
    """Scheme, host and port only: a path or query could carry anything, and this text goes into status."""
    try:
        parsed = _split(url)
    except ValueError:
        return "(unparseable URL)"
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
