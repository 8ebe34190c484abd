"""Process settings: one frozen object built from command-line flags and the environment.

Flags win over environment variables, which win over defaults. Every problem is reported as a
`SettingsError` naming the offending variable or flag, so the CLI can print one line and exit 2 instead of
a traceback. Secrets (the database password) are kept out of `repr()` so that a settings object that ends up
in a log line or an exception cannot leak them.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

LogFormat = Literal["json", "console"]
# MySQL's --ssl-mode values (MariaDB's clients spell the same choices --ssl/--ssl-verify-server-cert).
DbSslMode = Literal["disabled", "required", "verify-ca", "verify-identity"]
DB_SSL_MODES: tuple[DbSslMode, ...] = ("disabled", "required", "verify-ca", "verify-identity")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# MISSION.md's documented defaults (the seed's in-cluster values); local runs override them via env or flags.
DEFAULT_DB_HOST = "110.0.0.101"
DEFAULT_DB_PORT = 30306
# An application user: `root` would give the controller (and anyone holding its Secret) every database.
DEFAULT_DB_USER = "multinic"
DEFAULT_DB_NAME = "multinic"
DEFAULT_PROBE_PORT = 8082


class SettingsError(ValueError):
    """A setting is missing or malformed; `source` names the variable or flag to fix."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


@dataclass(frozen=True)
class DatabaseSettings:
    host: str = DEFAULT_DB_HOST
    port: int = DEFAULT_DB_PORT
    user: str = DEFAULT_DB_USER
    password: str = field(default="", repr=False)
    name: str = DEFAULT_DB_NAME
    pool_size: int = 10
    connect_timeout: float = 5.0
    statement_timeout: float = 10.0  # DB_STATEMENT_TIMEOUT: each round trip, client and server side
    transaction_timeout: float = 30.0  # DB_TRANSACTION_TIMEOUT: a whole transaction, pool wait included
    ssl_mode: DbSslMode = "disabled"
    ssl_ca: str | None = None  # PEM bundle the server's certificate must chain to (system CAs when None)
    ssl_cert: str | None = None  # client certificate, for servers that authenticate clients by certificate
    ssl_key: str | None = None  # its private key (unencrypted PEM, e.g. a mounted Secret)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for one new connection, or None for plain text (`disabled`).

        Built from the files each time it is called, so a CA bundle or client certificate rotated in a
        mounted Secret is used by the next new connection without a restart. Raises `ssl.SSLError`,
        `OSError` or `ValueError` (encrypted key) when a file cannot be used; `load_settings` calls this
        once so such problems are reported at start-up, naming the variable.
        """
        if self.ssl_mode == "disabled":
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca)
        if self.ssl_mode == "required":
            # Encrypted but unauthenticated: protects against passive listeners only (the caller warns).
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif self.ssl_mode == "verify-ca":
            context.check_hostname = False  # the chain is still verified (CERT_REQUIRED)
        if self.ssl_cert:
            context.load_cert_chain(self.ssl_cert, self.ssl_key, password=_refuse_passphrase)
        return context


def _refuse_passphrase() -> str:
    # Without a callback OpenSSL would prompt on the terminal and block the process.
    raise ValueError("the key is encrypted; give an unencrypted key (protect the file instead)")


@dataclass(frozen=True)
class NotificationSettings:
    """OPENSTACK_NOTIFICATIONS_*: the opt-in listener for Nova's and Neutron's notifications (notifications/).

    `url` holds the broker password: it is kept out of `repr()`, its password is registered as a secret
    (see `Settings.secrets`), and only `display_url` (password masked) is ever shown.
    """

    url: str = field(repr=False)
    exchanges: tuple[str, ...] = ("nova", "neutron")
    # Nova sends its interface attach/detach events only as versioned notifications (`versioned_notifications`)
    topics: tuple[str, ...] = ("notifications", "versioned_notifications")
    ca_bundle: str | None = None  # amqps:// only; system CAs when None
    min_interval: float = 1.0  # at most one re-observation per project per interval (plus one trailing)

    @property
    def display_url(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # an IPv6 address
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()

    def secrets(self) -> tuple[str, ...]:
        password = urlsplit(self.url).password or ""
        return tuple(s for s in {self.url, password, unquote(password)} if s)


@dataclass(frozen=True)
class ControllerSettings:
    workers: int = 4
    # Immediate mode's periodic re-read of OpenStack. Resyncs of configs that share credentials fall on common
    # slots and share one observation (controller/resync.py), so this costs OpenStack calls per project, not per
    # config: 30 s shows a hot-attached NIC within half a minute at 120 observations per project and hour.
    resync_seconds: float = 30.0
    # RESYNC_INTERVAL not set: each identity resyncs as often as its share of the old budget (one observation per
    # config every 5 minutes) allows, at most every resync_seconds (controller/resync.py `budgeted_interval`).
    resync_budgeted: bool = False
    # OPENSTACK_COALESCE_WINDOW: how long an observation waits for other configs of the same credentials to join
    # it (openstack/coalesce.py); 0 observes every config alone.
    coalesce_window: float = 0.05
    error_retry_seconds: float = 60.0  # configuration errors (bad credentials, unknown subnet)
    trigger_source: tuple[str, str] | None = None  # (namespace, name) of the MultiNicOperator with the policy
    trigger_token: str = field(default="", repr=False)  # bearer token for POST /trigger; empty: disabled
    leader_elect: bool = True
    leader_election_namespace: str = "multinic-system"
    leader_election_name: str = "multinic-controller"
    openstack_ca_bundle: str | None = None
    openstack_insecure: bool = False
    openstack_allowed_urls: str = ""  # comma-separated endpoint patterns; empty: any (see openstack/policy.py)
    reconcile_timeout: float = 150.0  # RECONCILE_TIMEOUT: a reconcile running longer is cancelled and retried
    stall_timeout: float = 300.0  # STALL_TIMEOUT: /healthz fails when queued work sees no progress this long
    notifications: NotificationSettings | None = None  # OPENSTACK_NOTIFICATIONS_URL; None: polling only


@dataclass(frozen=True)
class OperatorSettings:
    """`multinic-ctrl operator`: no database settings are needed (it never connects to MariaDB)."""

    namespaces: tuple[str, ...] = ()  # OPERATOR_NAMESPACES: MultiNicOperator namespaces; empty: all
    workers: int = 2
    resync_seconds: float = 60.0  # periodic re-check of every installation, on top of the watches
    leader_elect: bool = True
    leader_election_namespace: str = "multinic-system"
    leader_election_name: str = "multinic-operator"
    # The protection webhook (vprotection.multinic.example.com). Off unless enabled: the dataclass default is a
    # local run's; `load_settings` turns it on in a cluster (OPERATOR_WEBHOOK) or when WEBHOOK_URL is given.
    webhook_enabled: bool = False
    webhook_port: int = 9443  # WEBHOOK_PORT: the HTTPS listener (the Service maps 443 to it)
    webhook_address: str = "0.0.0.0"  # noqa: S104 - WEBHOOK_ADDRESS: the apiserver reaches the Pod IP
    # WEBHOOK_URL: clientConfig.url instead of the Service (tests, local runs: https://127.0.0.1:PORT/validate);
    # an IP host is added to the serving certificate.
    webhook_url: str | None = None
    webhook_service: str = "multinic-operator-webhook"  # WEBHOOK_SERVICE: Service name (and certificate DNS names)
    webhook_secret: str = "multinic-operator-webhook-tls"  # noqa: S105 - a name; WEBHOOK_SECRET: CA + serving certificate
    webhook_cert_lifetime: float = 365 * 86400.0  # WEBHOOK_CERT_LIFETIME: serving certificate (renewed at 2/3)
    webhook_status_interval: float = 10.0  # WEBHOOK_STATUS_INTERVAL: at most one protectionStatus write per period
    webhook_sync_period: float = 60.0  # WEBHOOK_SYNC_PERIOD: periodic check of the Secret and the configuration
    # The operator's own identity (exempt from its webhook): POD_NAMESPACE / SERVICE_ACCOUNT_NAME (downward API);
    # when not given: the in-cluster token's subject, else the apiserver's answer to "who am I".
    pod_namespace: str | None = None
    service_account: str | None = None


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    probe_port: int = DEFAULT_PROBE_PORT
    probe_address: str = "0.0.0.0"  # noqa: S104 - probes must be reachable by the kubelet on the pod IP
    log_format: LogFormat = "console"
    log_level: str = "info"
    namespaces: tuple[str, ...] = ()  # empty: watch all namespaces
    kubeconfig: Path | None = None
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    operator: OperatorSettings = field(default_factory=OperatorSettings)

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in any log line, event or status."""
        notifications = self.controller.notifications.secrets() if self.controller.notifications else ()
        return tuple(s for s in (self.database.password, self.controller.trigger_token, *notifications) if s)


def _parse_port(source: str, raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(source, f"{raw!r} is not a valid port (expected an integer 1-65535)") from None
    if not 1 <= port <= 65535:
        raise SettingsError(source, f"{port} is out of range (expected 1-65535)")
    return port


def _parse_positive_int(source: str, raw: str, *, maximum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(source, f"{raw!r} is not an integer") from None
    if not 1 <= value <= maximum:
        raise SettingsError(source, f"{value} is out of range (expected 1-{maximum})")
    return value


def _read_password(env: Mapping[str, str], flag_file: str | None) -> str:
    """`DB_PASSWORD_FILE` (a mounted Secret) is preferred in clusters; giving both is ambiguous, so refuse."""
    file_source = "--db-password-file" if flag_file else "DB_PASSWORD_FILE"
    path = flag_file or env.get("DB_PASSWORD_FILE", "")
    inline = env.get("DB_PASSWORD")
    if path and inline:
        raise SettingsError(file_source, "set either DB_PASSWORD or DB_PASSWORD_FILE, not both")
    if not path:
        return inline or ""
    try:
        # A trailing newline is almost always an artefact of `echo` or an editor, never part of the password.
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise SettingsError(file_source, f"cannot read {path}: {exc.strerror}") from None


def _existing_file(source: str, raw: str | None) -> str | None:
    if not raw:
        return None
    if not Path(raw).is_file():
        raise SettingsError(source, f"{raw} does not exist or is not a file")
    return raw


def _database_tls(pick: Any) -> dict[str, Any]:
    """`DB_SSL_*`: TLS to MariaDB, with MySQL's `--ssl-mode` choices.

    A CA bundle alone means "verify everything" (`verify-identity`): giving a CA is asking for
    authentication, and a weaker mode must be chosen explicitly. Without a CA the default stays `disabled`
    (in-cluster databases usually have no certificate); the verify modes then use the system CAs.
    Contradictions (a CA or client certificate with `disabled`, a CA with `required`, which never looks at
    it) are refused rather than silently ignored: a security setting that does nothing is worse than an
    error. Every file is loaded once here, so a wrong path, a non-PEM file or an encrypted key exits 2
    naming its variable instead of failing each connection later.
    """
    ca_src, raw = pick("db_ssl_ca", "DB_SSL_CA")
    ca = _existing_file(ca_src, raw)
    cert_src, raw = pick("db_ssl_cert", "DB_SSL_CERT")
    cert = _existing_file(cert_src, raw)
    key_src, raw = pick("db_ssl_key", "DB_SSL_KEY")
    key = _existing_file(key_src, raw)
    mode_src, raw = pick("db_ssl_mode", "DB_SSL_MODE")
    mode = (raw or "").strip().lower().replace("_", "-") or ("verify-identity" if ca else "disabled")
    if mode not in DB_SSL_MODES:
        raise SettingsError(mode_src, f"{raw!r} is not a TLS mode (expected one of {', '.join(DB_SSL_MODES)})")
    if bool(cert) != bool(key):
        given, missing = (cert_src, "DB_SSL_KEY") if cert else (key_src, "DB_SSL_CERT")
        raise SettingsError(given, f"a client certificate needs both DB_SSL_CERT and DB_SSL_KEY ({missing} is not set)")
    if mode == "disabled" and (ca or cert):
        given = ca_src if ca else cert_src
        raise SettingsError(given, "is set but DB_SSL_MODE is 'disabled'; unset it or choose a TLS mode")
    if mode == "required" and ca:
        raise SettingsError(
            mode_src,
            "'required' does not verify the server, so DB_SSL_CA would be ignored; use verify-ca or verify-identity",
        )
    if mode == "disabled":
        return {}
    try:
        ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as exc:
        raise SettingsError(ca_src if ca else mode_src, f"cannot load CA certificates: {_ssl_reason(exc)}") from None
    if cert:
        try:
            ssl.create_default_context().load_cert_chain(cert, key, password=_refuse_passphrase)
        except ValueError as exc:
            raise SettingsError(key_src, str(exc)) from None
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(
                cert_src, f"cannot load the client certificate and key: {_ssl_reason(exc)} (PEM files, matching?)"
            ) from None
    return {"ssl_mode": mode, "ssl_ca": ca, "ssl_cert": cert, "ssl_key": key}


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _parse_bool(source: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(source, f"{raw!r} is not a boolean (expected true or false)")


def _parse_seconds(source: str, raw: str) -> float:
    """Durations as `300`, `90s`, `5m` or `1h`."""
    text = raw.strip().lower()
    factor = {"s": 1, "m": 60, "h": 3600}.get(text[-1:], 0)
    number = text[:-1] if factor else text
    try:
        value = float(number) * (factor or 1)
    except ValueError:
        raise SettingsError(source, f"{raw!r} is not a duration (e.g. 300, 90s, 5m, 1h)") from None
    if value < 1:
        raise SettingsError(source, f"{raw!r} is too short (minimum 1s)")
    return value


def _parse_window(source: str, raw: str) -> float:
    """A short wait: `0` (off), `50ms`, `0.05`, `0.05s`; at most 5 s (every observation waits this long)."""
    text = raw.strip().lower()
    factor, number = (0.001, text[:-2]) if text.endswith("ms") else (1.0, text.removesuffix("s"))
    try:
        value = float(number) * factor
    except ValueError:
        raise SettingsError(source, f"{raw!r} is not a duration (e.g. 0, 50ms, 0.1s)") from None
    if not 0 <= value <= 5:
        raise SettingsError(source, f"{raw!r} is out of range (0 to 5s)")
    return value


def _parse_timeout(source: str, raw: str) -> float:
    """A bound on waiting: a duration of at least 1s and at most a day (`inf`, `nan` are not durations)."""
    value = _parse_seconds(source, raw)
    if not value <= 86400:
        raise SettingsError(source, f"{raw!r} is not a timeout of at most a day (e.g. 10s, 2m)")
    return value


def _read_secret_file(source: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(source, f"cannot read {path}: {exc.strerror}") from None


def _controller_settings(pick: Any, env: Mapping[str, str]) -> ControllerSettings:
    src, raw = pick("workers", "CONTROLLER_WORKERS")
    workers = _parse_positive_int(src, raw, maximum=64) if raw else 4
    src, raw_resync = pick("resync", "RESYNC_INTERVAL")
    resync = _parse_seconds(src, raw_resync) if raw_resync else 30.0
    src, raw = pick("openstack_coalesce_window", "OPENSTACK_COALESCE_WINDOW")
    window = _parse_window(src, raw) if raw else 0.05
    src, raw = pick("error_retry", "ERROR_RETRY_INTERVAL")
    error_retry = _parse_seconds(src, raw) if raw else 60.0
    src, raw = pick("trigger_from", "TRIGGER_FROM")
    trigger_source = None
    if raw:
        namespace, _, name = raw.partition("/")
        if not namespace or not name:
            raise SettingsError(src, f"{raw!r} must name a MultiNicOperator as NAMESPACE/NAME")
        trigger_source = (namespace, name)
    src, raw = pick("trigger_token_file", "TRIGGER_TOKEN_FILE")
    token = _read_secret_file(src, raw) if raw else env.get("TRIGGER_TOKEN", "")
    src, raw = pick("leader_elect", "LEADER_ELECT")
    # In a cluster several replicas may run, so one must lead; a local run against a kubeconfig is alone.
    leader_elect = _parse_bool(src, raw) if raw else in_cluster(env)
    src, raw = pick("leader_election_namespace", "LEADER_ELECTION_NAMESPACE")
    lease_namespace = raw or env.get("POD_NAMESPACE") or "multinic-system"
    src, raw = pick("openstack_ca_bundle", "OPENSTACK_CA_BUNDLE")
    ca_bundle = raw or None
    if ca_bundle and not Path(ca_bundle).is_file():
        raise SettingsError(src, f"{ca_bundle} does not exist or is not a file")
    src, raw = pick("openstack_insecure", "OPENSTACK_INSECURE")
    insecure = _parse_bool(src, raw) if raw else False
    _, allowed_urls = pick("openstack_allowed_urls", "OPENSTACK_ALLOWED_URLS")
    reconcile_src, raw = pick("reconcile_timeout", "RECONCILE_TIMEOUT")
    reconcile_timeout = _parse_timeout(reconcile_src, raw) if raw else 150.0
    stall_src, raw = pick("stall_timeout", "STALL_TIMEOUT")
    stall_timeout = _parse_timeout(stall_src, raw) if raw else 300.0
    if stall_timeout <= reconcile_timeout:
        # The stall check is the backstop for the deadline: shorter, it would restart a pod whose reconcile is
        # merely slow and about to be cancelled.
        raise SettingsError(stall_src, f"must be longer than {reconcile_src} ({reconcile_timeout:g}s)")
    return ControllerSettings(
        workers=workers,
        resync_seconds=resync,
        resync_budgeted=not raw_resync,
        coalesce_window=window,
        error_retry_seconds=error_retry,
        trigger_source=trigger_source,
        trigger_token=token,
        leader_elect=leader_elect,
        leader_election_namespace=lease_namespace,
        openstack_ca_bundle=ca_bundle,
        openstack_insecure=insecure,
        openstack_allowed_urls=allowed_urls or "",
        reconcile_timeout=reconcile_timeout,
        stall_timeout=stall_timeout,
        notifications=_notification_settings(pick, env),
    )


_BUS_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


def _notification_settings(pick: Any, env: Mapping[str, str]) -> NotificationSettings | None:
    """OPENSTACK_NOTIFICATIONS_URL (or _FILE, a mounted Secret) turns the listener on; the rest tunes it.

    The URL is never quoted back in an error: it holds the broker password.
    """
    url_src, inline = pick("openstack_notifications_url", "OPENSTACK_NOTIFICATIONS_URL")
    file_src, path = pick("openstack_notifications_url_file", "OPENSTACK_NOTIFICATIONS_URL_FILE")
    if inline and path:
        raise SettingsError(file_src, "set either OPENSTACK_NOTIFICATIONS_URL or OPENSTACK_NOTIFICATIONS_URL_FILE")
    url, src = (_read_secret_file(file_src, path), file_src) if path else ((inline or "").strip(), url_src)
    others = [
        var
        for var in (
            "OPENSTACK_NOTIFICATIONS_EXCHANGES",
            "OPENSTACK_NOTIFICATIONS_TOPICS",
            "OPENSTACK_NOTIFICATIONS_CA_BUNDLE",
            "OPENSTACK_NOTIFICATIONS_MIN_INTERVAL",
        )
        if env.get(var)
    ]
    if not url:
        if others:
            raise SettingsError(others[0], "is set but OPENSTACK_NOTIFICATIONS_URL is not (the listener is off)")
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SettingsError(src, "is not a valid URL (amqp://user:password@host:5672/vhost)") from None
    if parts.scheme not in ("amqp", "amqps"):
        raise SettingsError(src, f"scheme {parts.scheme!r} is not amqp or amqps")
    if not parts.hostname:
        raise SettingsError(src, "names no host (amqp://user:password@host:5672/vhost)")
    if parts.query or parts.fragment:
        raise SettingsError(
            src, "must not carry query parameters; TLS is amqps:// with OPENSTACK_NOTIFICATIONS_CA_BUNDLE"
        )
    if port == 0:
        raise SettingsError(src, "port 0 is not a port")
    exchanges = _name_list("OPENSTACK_NOTIFICATIONS_EXCHANGES", env.get("OPENSTACK_NOTIFICATIONS_EXCHANGES"))
    topics = _name_list("OPENSTACK_NOTIFICATIONS_TOPICS", env.get("OPENSTACK_NOTIFICATIONS_TOPICS"))
    ca_src = "OPENSTACK_NOTIFICATIONS_CA_BUNDLE"
    ca_bundle = _existing_file(ca_src, env.get(ca_src))
    if ca_bundle:
        if parts.scheme != "amqps":
            raise SettingsError(ca_src, "is set but the URL is amqp:// (plain text); use amqps://")
        try:
            ssl.create_default_context(cafile=ca_bundle)
        except (ssl.SSLError, OSError) as exc:
            raise SettingsError(ca_src, f"cannot load CA certificates: {_ssl_reason(exc)}") from None
    raw = env.get("OPENSTACK_NOTIFICATIONS_MIN_INTERVAL")
    min_interval = _parse_short_interval("OPENSTACK_NOTIFICATIONS_MIN_INTERVAL", raw) if raw else 1.0
    return NotificationSettings(
        url=url,
        exchanges=exchanges or NotificationSettings.exchanges,
        topics=topics or NotificationSettings.topics,
        ca_bundle=ca_bundle,
        min_interval=min_interval,
    )


def _parse_short_interval(source: str, raw: str) -> float:
    """`0` to `60s`, also as `500ms` or `0.5`."""
    text = raw.strip().lower()
    factor, number = (0.001, text[:-2]) if text.endswith("ms") else (1.0, text.removesuffix("s"))
    try:
        value = float(number) * factor
    except ValueError:
        raise SettingsError(source, f"{raw!r} is not a duration (e.g. 1s, 500ms)") from None
    if not 0 <= value <= 60:
        raise SettingsError(source, f"{raw!r} is out of range (0 to 60s)")
    return value


def _name_list(source: str, raw: str | None) -> tuple[str, ...]:
    """Comma-separated AMQP exchange or topic names (empty: the default)."""
    names = tuple(dict.fromkeys(n.strip() for n in (raw or "").split(",") if n.strip()))
    for name in names:
        if not _BUS_NAME.match(name):
            raise SettingsError(source, f"{name!r} is not an exchange or topic name (letters, digits, _ . : -)")
    return names


def _namespace_list(source: str, raw: str | None) -> tuple[str, ...]:
    namespaces = tuple(sorted({ns.strip() for ns in (raw or "").split(",") if ns.strip()}))
    for ns in namespaces:
        if len(ns) > 63 or not all(c.islower() or c.isdigit() or c == "-" for c in ns):
            raise SettingsError(source, f"{ns!r} is not a valid namespace name")
    return namespaces


def _operator_settings(pick: Any, env: Mapping[str, str], controller: ControllerSettings) -> OperatorSettings:
    """The operator shares LEADER_ELECT / LEADER_ELECTION_NAMESPACE with `run` (its Lease has its own name)."""
    src, raw = pick("operator_namespaces", "OPERATOR_NAMESPACES")
    namespaces = _namespace_list(src, raw)
    src, raw = pick("operator_workers", "OPERATOR_WORKERS")
    workers = _parse_positive_int(src, raw, maximum=16) if raw else 2
    src, raw = pick("operator_resync", "OPERATOR_RESYNC_INTERVAL")
    resync = _parse_seconds(src, raw) if raw else 60.0
    return OperatorSettings(
        namespaces=namespaces,
        workers=workers,
        resync_seconds=resync,
        leader_elect=controller.leader_elect,
        leader_election_namespace=controller.leader_election_namespace,
        **_webhook_settings(pick, env),
    )


def _webhook_settings(pick: Any, env: Mapping[str, str]) -> dict[str, Any]:
    """OPERATOR_WEBHOOK (default: on in a cluster, or when WEBHOOK_URL is set), WEBHOOK_PORT, WEBHOOK_URL, ..."""
    url_src, url = pick("webhook_url", "WEBHOOK_URL")
    if url:
        parsed = urlsplit(url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise SettingsError(url_src, f"{url!r} must be an https:// URL (e.g. https://127.0.0.1:9443/validate)")
    src, raw = pick("webhook", "OPERATOR_WEBHOOK")
    enabled = _parse_bool(src, raw) if raw else (in_cluster(env) or bool(url))
    src, raw = pick("webhook_port", "WEBHOOK_PORT")
    port = _parse_port(src, raw) if raw else (urlsplit(url).port or 9443 if url else 9443)
    _, address = pick("webhook_address", "WEBHOOK_ADDRESS")
    _, service = pick("webhook_service", "WEBHOOK_SERVICE")
    _, secret = pick("webhook_secret", "WEBHOOK_SECRET")
    src, raw = pick("webhook_cert_lifetime", "WEBHOOK_CERT_LIFETIME")
    lifetime = _parse_seconds(src, raw) if raw else 365 * 86400.0
    src, raw = pick("webhook_status_interval", "WEBHOOK_STATUS_INTERVAL")
    status_interval = _parse_timeout(src, raw) if raw else 10.0
    src, raw = pick("webhook_sync_period", "WEBHOOK_SYNC_PERIOD")
    sync_period = _parse_timeout(src, raw) if raw else 60.0
    _, pod_namespace = pick("pod_namespace", "POD_NAMESPACE")
    _, service_account = pick("service_account", "SERVICE_ACCOUNT_NAME")
    return {
        "webhook_enabled": enabled,
        "webhook_port": port,
        "webhook_address": address or "0.0.0.0",  # noqa: S104
        "webhook_url": url or None,
        "webhook_service": service or "multinic-operator-webhook",
        "webhook_secret": secret or "multinic-operator-webhook-tls",
        "webhook_cert_lifetime": lifetime,
        "webhook_status_interval": status_interval,
        "webhook_sync_period": sync_period,
        "pod_namespace": pod_namespace or None,
        "service_account": service_account or None,
    }


def in_cluster(env: Mapping[str, str]) -> bool:
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


def load_settings(flags: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from parsed flags (`None` values mean "not given") over the environment."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env

    def pick(flag: str, var: str) -> tuple[str, str | None]:
        if flag in flags:
            return "--" + flag.replace("_", "-"), str(flags[flag])
        return var, env.get(var)

    src, raw = pick("db_host", "DB_HOST")
    host = raw if raw is not None else DEFAULT_DB_HOST
    if not host.strip():
        raise SettingsError(src, "must not be empty")
    src, raw = pick("db_port", "DB_PORT")
    port = _parse_port(src, raw) if raw is not None else DEFAULT_DB_PORT
    src, raw = pick("db_user", "DB_USER")
    user = raw if raw is not None else DEFAULT_DB_USER
    if not user:
        raise SettingsError(src, "must not be empty")
    src, raw = pick("db_name", "DB_NAME")
    name = raw if raw is not None else DEFAULT_DB_NAME
    if not name or not all(c.isalnum() or c in "_$" for c in name):
        raise SettingsError(src, f"{name!r} is not a valid database name (letters, digits, '_' and '$')")
    src, raw = pick("db_pool_size", "DB_POOL_SIZE")
    pool_size = _parse_positive_int(src, raw, maximum=200) if raw is not None else 10
    password_file = flags.get("db_password_file")
    password = _read_password(env, str(password_file) if password_file else None)
    tls = _database_tls(pick)
    statement_src, raw = pick("db_statement_timeout", "DB_STATEMENT_TIMEOUT")
    statement_timeout = _parse_timeout(statement_src, raw) if raw else 10.0
    src, raw = pick("db_transaction_timeout", "DB_TRANSACTION_TIMEOUT")
    transaction_timeout = _parse_timeout(src, raw) if raw else 30.0
    if transaction_timeout < statement_timeout:
        raise SettingsError(src, f"must not be shorter than {statement_src} ({statement_timeout:g}s)")

    src, raw = pick("probe_port", "PROBE_PORT")
    probe_port = _parse_port(src, raw) if raw is not None else DEFAULT_PROBE_PORT
    src, raw = pick("probe_address", "PROBE_ADDRESS")
    probe_address = raw if raw else "0.0.0.0"  # noqa: S104

    src, raw = pick("log_format", "LOG_FORMAT")
    log_format = (raw or ("json" if in_cluster(env) else "console")).lower()
    if log_format not in ("json", "console"):
        raise SettingsError(src, f"{raw!r} is not a log format (expected json or console)")
    src, raw = pick("log_level", "LOG_LEVEL")
    log_level = (raw or "info").lower()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(src, f"{raw!r} is not a log level (expected one of {', '.join(_LOG_LEVELS)})")

    src, raw = pick("namespaces", "WATCH_NAMESPACES")
    namespaces = tuple(sorted({ns.strip() for ns in (raw or "").split(",") if ns.strip()}))
    for ns in namespaces:
        if len(ns) > 63 or not all(c.islower() or c.isdigit() or c == "-" for c in ns):
            raise SettingsError(src, f"{ns!r} is not a valid namespace name")

    src, raw = pick("kubeconfig", "KUBECONFIG")
    # Only the first entry of a colon-separated KUBECONFIG is used; it is checked when a command needs the
    # cluster, so `migrate` or `version` still work with a stale KUBECONFIG in the shell.
    kubeconfig = Path(raw.split(os.pathsep)[0]) if raw else None

    controller = _controller_settings(pick, env)
    return Settings(
        database=DatabaseSettings(
            host=host,
            port=port,
            user=user,
            password=password,
            name=name,
            pool_size=pool_size,
            statement_timeout=statement_timeout,
            transaction_timeout=transaction_timeout,
            **tls,
        ),
        probe_port=probe_port,
        probe_address=probe_address,
        log_format=log_format,  # type: ignore[arg-type]
        log_level=log_level,
        namespaces=namespaces,
        kubeconfig=kubeconfig,
        controller=controller,
        operator=_operator_settings(pick, env, controller),
    )
